// A minimal root for the test device (DESIGN §7): tetherd runs in a mount
// namespace of its own whose root holds only what the daemon needs, so a
// program that works there got its files through tether. The mounts are made
// by minroot.sh inside that namespace and die with its last process; the
// host keeps nothing but the empty mount point MOUNTPOINT.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = fileURLToPath(new URL('minroot.sh', import.meta.url));
/** Where each namespace mounts its root tmpfs before pivoting into it. Mounts
 *  there are private to their namespace, so one directory serves all runs. */
export const MOUNTPOINT = '/run/tether-minroot';

export interface MinimalRootOptions {
  /** Host files bound read-only at their own path. */
  files?: string[];
  /** Host directories bound read-write (and exec-permitted) at their own path. */
  dirs?: string[];
}

/** argv that runs `command` (absolute program path first) in a new private
 *  mount namespace whose root is a tmpfs with `files`, `dirs`, a generated
 *  /etc (root in passwd and group), /proc, /sys, a small /dev with its own
 *  devpts, and an empty /tmp. Prefix it with `ip netns exec` to combine it
 *  with a network namespace. */
export function minimalRootArgv(command: string[], opts: MinimalRootOptions = {}): string[] {
  const binds = [
    ...(opts.files ?? []).flatMap((f) => ['-f', f]),
    ...(opts.dirs ?? []).flatMap((d) => ['-d', d]),
  ];
  return [
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    'sh',
    SCRIPT,
    MOUNTPOINT,
    ...binds,
    '--',
    ...command,
  ];
}

let node: string | null = null;
let files: string[] | null = null;

/** The real Node binary. node_modules/.bin/node is a link, and a package
 *  manager may make it a shim that starts another file: then Node itself
 *  says where it is (100 ms, so only then). */
export function nodeBinary(): string {
  if (node) return node;
  const linked = realpathSync(`${ROOT}node_modules/.bin/node`);
  const head = Buffer.alloc(4);
  const fd = openSync(linked, 'r');
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  node = head.equals(Buffer.from('\x7fELF', 'latin1'))
    ? linked
    : execFileSync(linked, ['-p', 'process.execPath'], { encoding: 'utf8' }).trim();
  return node;
}

/** The daemon's command line without bin/tetherd, a sh script the minimal root cannot run. */
export function tetherdCommand(): string[] {
  return [nodeBinary(), `${ROOT}dist/tetherd.mjs`];
}

/** Shared objects `ldd` resolves for `file`, its ELF interpreter included. */
function sharedLibs(file: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return []; // "not a dynamic executable"
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    if (line.includes('not found')) throw new Error(`ldd ${file}: ${line.trim()}`);
    const m = /(?:=>\s+|^\s*)(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}

/** Every host file tetherd loads: Node, the bundle (and its source map), the
 *  addon and the libraries both link. The bundle needs no node_modules: its
 *  dependencies are inlined, and pino writes on fd 2 in both log formats (no
 *  transport worker). */
export function tetherdFiles(): string[] {
  if (files) return files;
  const addon = `${ROOT}build/${process.arch}/tether.node`;
  const found = [...tetherdCommand(), addon, `${ROOT}dist/tetherd.mjs.map`].filter((f) =>
    existsSync(f),
  );
  files = [...new Set([...found, ...sharedLibs(nodeBinary()), ...sharedLibs(addon)])];
  return files;
}

/** argv of a tetherd run with `args` in a minimal root that also holds its state directory.
 *  `binary`: a packaged single tetherd executable instead, with nothing but its libraries. */
export function minimalRootTetherd(args: string[], stateDir: string, binary?: string): string[] {
  if (binary)
    return minimalRootArgv([binary, ...args], {
      files: [binary, ...sharedLibs(binary)],
      dirs: [stateDir],
    });
  return minimalRootArgv([...tetherdCommand(), ...args], {
    files: tetherdFiles(),
    dirs: [stateDir],
  });
}
