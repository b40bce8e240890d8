// The same-arch test device (DESIGN §7): a network namespace joined to the
// host by a veth pair, optionally shaped. Needs root, iproute2 and
// iptables-legacy; the delay needs build/delayline (built on first use).
import {
  type ChildProcess,
  execFile,
  execFileSync,
  type SpawnOptions,
  spawn,
} from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface DeviceOptions {
  /** Round-trip time added to the link, in ms (half on each receiving end). */
  delayMs?: number;
  /** Link rate in Mbit/s, each direction. */
  rateMbit?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface Device {
  /** Namespace name; unique per createDevice call. */
  name: string;
  ns: string;
  hostIf: string;
  devIf: string;
  /** Host end of the link, as seen from the device. */
  hostAddr: string;
  /** Device end of the link, as seen from the host. */
  devAddr: string;
  delayMs: number;
  rateMbit: number;
  /** Spawns argv inside the namespace (`ip netns exec`). */
  exec(argv: string[], opts?: SpawnOptions): ChildProcess;
  run(argv: string[], opts?: RunOptions): Promise<RunResult>;
  /** Kills every process in the namespace and removes it, its link and its rules. */
  destroy(): Promise<void>;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DELAYLINE = `${ROOT}build/delayline`;
// Subnet claims: one file per /30 index, holding the owner's namespace name.
// /run is a tmpfs, so a reboot forgets them together with the namespaces.
const CLAIMS = '/run/tether-test-devices';
// 10.213.0.0/16 cut into /30s.
const SUBNETS = 16384;
// Host-side NFQUEUE numbers are machine-wide (the namespace side has its own).
const HOST_QUEUE_BASE = 20000;

let counter = 0;
let staleSwept = false;
const live = new Set<LiveDevice>();

interface LiveDevice {
  ns: string;
  hostIf: string;
  claim: string;
  hostRule: string[] | null;
  hostDelay: ChildProcess | null;
}

function ip4(idx: number, host: number): string {
  return `10.213.${idx >> 6}.${(idx & 63) * 4 + host}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownerPid(ns: string): number | null {
  const m = /^tether-(\d+)-\d+$/.exec(ns);
  return m ? Number(m[1]) : null;
}

function sh(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

function shSync(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

function nsPidsSync(ns: string): number[] {
  return shSync('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
}

// Scoped to the link's host end and tagged with the namespace name, so a
// sweep can tell whose rule it is.
function hostRuleArgs(op: '-I' | '-D', hostIf: string, ns: string, queue: number): string[] {
  return words(
    `-w -t mangle ${op} PREROUTING -i ${hostIf} -m comment --comment ${ns} -j NFQUEUE --queue-num ${queue}`,
  );
}

function words(s: string): string[] {
  return s.split(' ');
}

/** Removes what runs that died without destroy() left: namespaces, host
 *  rules and subnet claims whose owning pid is gone. createDevice runs it
 *  once per process. */
export function cleanupStale(): void {
  for (const line of shSync('ip', ['netns', 'list']).split('\n')) {
    const ns = line.split(' ')[0];
    const pid = ownerPid(ns);
    if (pid === null || pidAlive(pid)) continue;
    killAll(nsPidsSync(ns));
    shSync('ip', ['netns', 'del', ns]);
  }
  for (const line of shSync('iptables-legacy', ['-w', '-t', 'mangle', '-S', 'PREROUTING']).split(
    '\n',
  )) {
    const m = /^-A (PREROUTING .*--comment (tether-\d+-\d+) .*)$/.exec(line);
    if (!m || pidAlive(ownerPid(m[2])!)) continue;
    shSync('iptables-legacy', ['-w', '-t', 'mangle', '-D', ...m[1].split(' ')]);
  }
  let claims: string[] = [];
  try {
    claims = readdirSync(CLAIMS);
  } catch {}
  for (const idx of claims) {
    let pid: number | null = null;
    try {
      pid = ownerPid(readFileSync(`${CLAIMS}/${idx}`, 'utf8'));
    } catch {}
    if (pid !== null && !pidAlive(pid)) {
      try {
        unlinkSync(`${CLAIMS}/${idx}`);
      } catch {}
    }
  }
}

function usedSubnets(): Set<number> {
  const used = new Set<number>();
  const out = shSync('ip', ['-4', '-o', 'addr', 'show']);
  for (const m of out.matchAll(/inet 10\.213\.(\d+)\.(\d+)/g)) {
    used.add(Number(m[1]) * 64 + (Number(m[2]) >> 2));
  }
  return used;
}

// The claim file is created exclusively, so parallel test processes never
// share a subnet; addresses already on the host are skipped too.
function claimSubnet(ns: string, seq: number): { idx: number; claim: string } {
  mkdirSync(CLAIMS, { recursive: true });
  const used = usedSubnets();
  const start = (process.pid * 37 + seq) % SUBNETS;
  for (let i = 0; i < SUBNETS; i++) {
    const idx = (start + i) % SUBNETS;
    if (used.has(idx)) continue;
    const claim = `${CLAIMS}/${idx}`;
    let fd: number;
    try {
      fd = openSync(claim, 'wx');
    } catch {
      continue;
    }
    writeSync(fd, ns);
    closeSync(fd);
    return { idx, claim };
  }
  throw new Error('no free 10.213.0.0/16 subnet for a test device');
}

export function ensureDelayline(): void {
  execFileSync('sh', [`${ROOT}scripts/build-delayline.sh`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

// Resolves once the delay line has bound its queue. From then on it must not
// keep the test process alive: the 'exit' handler cleans up a forgotten device.
export function waitReady(child: ChildProcess, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`${what}: not ready after 5 s`)), 5000);
    const onExit = (code: number | null) =>
      fail(new Error(`${what} exited (${code}) before ready: ${err.trim()}`));
    function fail(e: Error): void {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.kill('SIGKILL');
      reject(e);
    }
    child.stderr!.on('data', (d: Buffer) => {
      err += d;
      process.stderr.write(d);
    });
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('ready\n')) {
        clearTimeout(timer);
        child.off('exit', onExit);
        child.unref();
        (child.stdout as Socket).unref();
        (child.stderr as Socket).unref();
        resolve();
      }
    });
    child.once('exit', onExit);
    child.once('error', fail);
  });
}

function destroySync(d: LiveDevice): void {
  live.delete(d);
  killAll(nsPidsSync(d.ns));
  shSync('ip', ['link', 'del', d.hostIf]);
  if (d.hostRule) shSync('iptables-legacy', d.hostRule);
  d.hostDelay?.kill('SIGKILL');
  shSync('ip', ['netns', 'del', d.ns]);
  try {
    unlinkSync(d.claim);
  } catch {}
}

process.on('exit', () => {
  for (const d of [...live]) destroySync(d);
});

// Stays in `live` until done: should the loop run dry meanwhile (nothing
// else keeps it alive), the 'exit' handler finishes the job.
async function destroyAsync(d: LiveDevice): Promise<void> {
  // Processes keep the namespace (and so its end of the link) alive: kill and
  // wait for them before the subnet is handed back.
  for (let i = 0; i < 100; i++) {
    const pids = (await sh('ip', ['netns', 'pids', d.ns]).catch(() => ''))
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
    if (pids.length === 0) break;
    killAll(pids);
    await new Promise((r) => setTimeout(r, 20));
  }
  await sh('ip', ['link', 'del', d.hostIf]).catch(() => {});
  if (d.hostRule) await sh('iptables-legacy', d.hostRule).catch(() => {});
  const hd = d.hostDelay;
  if (hd && hd.exitCode === null && hd.signalCode === null) {
    const gone = new Promise((r) => hd.once('exit', r));
    hd.ref();
    hd.kill('SIGKILL');
    await gone;
  }
  await sh('ip', ['netns', 'del', d.ns]).catch(() => {});
  try {
    unlinkSync(d.claim);
  } catch {}
  live.delete(d);
}

async function shape(
  dev: Device,
  ld: LiveDevice,
  idx: number,
  delayMs: number,
  rateMbit: number,
): Promise<void> {
  if (rateMbit > 0) {
    const rate = `rate ${rateMbit}mbit ceil ${rateMbit}mbit quantum 65536`;
    for (const [nsArgs, ifname] of [
      [['-n', dev.ns], dev.devIf],
      [[], dev.hostIf],
    ] as const) {
      await sh('tc', [...nsArgs, ...words(`qdisc add dev ${ifname} root handle 1: htb default 1`)]);
      await sh('tc', [
        ...nsArgs,
        ...words(`class add dev ${ifname} parent 1: classid 1:1 htb ${rate}`),
      ]);
    }
  }
  if (delayMs > 0) {
    ensureDelayline();
    const half = String(delayMs / 2);
    const inNs = dev.exec([DELAYLINE, '0', half], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitReady(inNs, 'delayline (device side)');
    await sh('ip', [
      ...words(`netns exec ${dev.ns} iptables-legacy -w -t mangle -A PREROUTING`),
      ...words(`-i ${dev.devIf} -j NFQUEUE --queue-num 0`),
    ]);
    const queue = HOST_QUEUE_BASE + idx;
    ld.hostDelay = spawn(DELAYLINE, [String(queue), half], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitReady(ld.hostDelay, 'delayline (host side)');
    await sh('iptables-legacy', hostRuleArgs('-I', dev.hostIf, dev.ns, queue));
    ld.hostRule = hostRuleArgs('-D', dev.hostIf, dev.ns, queue);
  }
}

export async function createDevice(opts: DeviceOptions = {}): Promise<Device> {
  const delayMs = opts.delayMs ?? 0;
  const rateMbit = opts.rateMbit ?? 0;
  if (!staleSwept) {
    staleSwept = true;
    cleanupStale();
  }
  const seq = counter++;
  const ns = `tether-${process.pid}-${seq}`;
  // Interface names are capped at 15 characters: base 36 keeps pid and counter short.
  const short = `tt${process.pid.toString(36)}x${seq.toString(36)}`;
  const hostIf = `${short}h`;
  const devIf = `${short}d`;
  const { idx, claim } = claimSubnet(ns, seq);
  const hostAddr = ip4(idx, 1);
  const devAddr = ip4(idx, 2);
  const ld: LiveDevice = { ns, hostIf, claim, hostRule: null, hostDelay: null };
  live.add(ld);

  const exec = (argv: string[], spawnOpts: SpawnOptions = {}): ChildProcess =>
    spawn('ip', ['netns', 'exec', ns, ...argv], spawnOpts);
  const run = (argv: string[], runOpts: RunOptions = {}): Promise<RunResult> =>
    new Promise((resolve, reject) => {
      const child = exec(argv, { env: runOpts.env, cwd: runOpts.cwd, stdio: 'pipe' });
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
      });
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      child.stdin!.end(runOpts.input);
    });
  let destroying: Promise<void> | null = null;
  const dev: Device = {
    name: ns,
    ns,
    hostIf,
    devIf,
    hostAddr,
    devAddr,
    delayMs,
    rateMbit,
    exec,
    run,
    destroy: () => {
      destroying ??= destroyAsync(ld);
      return destroying;
    },
  };

  try {
    await sh('ip', ['netns', 'add', ns]);
    await sh('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', devIf, 'netns', ns]);
    await sh('ip', ['addr', 'add', `${hostAddr}/30`, 'dev', hostIf]);
    await sh('ip', ['link', 'set', hostIf, 'up']);
    const inNs = (args: string[]) => sh('ip', ['-n', ns, ...args]);
    await inNs(['link', 'set', 'lo', 'up']);
    await inNs(['addr', 'add', `${devAddr}/30`, 'dev', devIf]);
    await inNs(['link', 'set', devIf, 'up']);
    await inNs(['route', 'add', 'default', 'via', hostAddr]);
    await shape(dev, ld, idx, delayMs, rateMbit);
  } catch (err) {
    await dev.destroy();
    throw err;
  }
  return dev;
}
