// One shaped link with everything the benchmarks compare on it: tetherd with
// a paired client and a running agent, sshd (curve25519, optionally also the
// default sntrup761x25519) with a ControlMaster, and the raw TLS sink; on
// demand (B2, B3, B5) a second agent for a config device with `view yes`, and
// an sshd on the host end of the link for sshfs mounts made on the device.
// stop() tears it all down; stopSync() is the last resort from an 'exit'
// handler (device.ts and sshd.ts kill their own processes there too).
import { type ChildProcess, execFile } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { type ControlMaster, type Sshd, startSshd } from '../test/lib/sshd.ts';
import { ROOT, startDaemon, TETHER, type TestDaemon } from '../test/lib/tetherd.ts';
import { checkOk, timedRun } from './measure.ts';

export const NODE = join(ROOT, 'node_modules/.bin/node');
export const SINK = join(ROOT, 'bench/tls-sink.ts');
export const DRAIN = join(ROOT, 'bench/tls-drain.ts');
export const KEX = 'curve25519-sha256';
export const DEFAULT_KEX = 'sntrup761x25519-sha512@openssh.com';
const SINK_PORT = 4433;
/** The config device that runs with the view: same daemon as `dev`, `view yes`. */
export const VIEW_DEVICE = 'view';
const HOST_SSHD_PORT = 2224;

export interface LinkSpec {
  name: string;
  delayMs: number;
  rateMbit: number;
}

export const LINKS: Record<string, LinkSpec> = {
  none: { name: 'none', delayMs: 0, rateMbit: 0 },
  '1ms': { name: '1ms', delayMs: 1, rateMbit: 0 },
  '10ms': { name: '10ms', delayMs: 10, rateMbit: 100 },
};

export interface Rtt {
  min: number;
  avg: number;
  max: number;
}

export interface Testbed {
  link: LinkSpec;
  daemon: TestDaemon;
  sshd: Sshd;
  sshdDefaultKex: Sshd | null;
  cm: ControlMaster;
  agentPid: number;
  sink: { host: string; port: number };
  rtt: Rtt | null;
  /** "client connected" lines in tetherd's log: one per TLS connection. */
  connections(): number;
  agentAlive(): boolean;
  /** Starts (once) the agent of VIEW_DEVICE and returns its pid: `tether run -d view PROGRAM`
   *  from a directory is then the launcher's hot path with the view, that directory bound. */
  viewAgent(): Promise<number>;
  /** Starts (once) an sshd on the host end of the link, for sshfs run on the device. */
  hostSshd(): Promise<Sshd>;
  stop(): Promise<void>;
  stopSync(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** RTT as ping -U sees it (plain ping misses the delay line's queueing: BENCHMARKS.md). */
function measureRtt(addr: string): Promise<Rtt | null> {
  return new Promise((resolve) => {
    execFile('ping', ['-U', '-q', '-n', '-c', '20', '-i', '0.02', addr], (_err, stdout) => {
      const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(stdout);
      resolve(m ? { min: Number(m[1]), avg: Number(m[2]), max: Number(m[3]) } : null);
    });
  });
}

function startSink(daemon: TestDaemon, keyDir: string): Promise<ChildProcess> {
  const p = daemon.device.exec(
    [
      NODE,
      SINK,
      daemon.device.devAddr,
      String(SINK_PORT),
      join(keyDir, 'key.pem'),
      join(keyDir, 'cert.pem'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  p.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err = (err + d).slice(-4096);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tls-sink not listening: ${err}`)), 10_000);
    p.once('exit', (code) => reject(new Error(`tls-sink exited (${code}): ${err}`)));
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (!d.includes('listening')) return;
      clearTimeout(timer);
      // It lives as long as the device: destroy() kills it with the namespace.
      p.unref();
      (p.stdout as Socket).unref();
      (p.stderr as Socket).unref();
      resolve(p);
    });
  });
}

export async function startTestbed(
  link: LinkSpec,
  opts: { defaultKex: boolean; sinkKeyDir: string },
  onPartial: (stop: () => Promise<void>, stopSync: () => void) => void,
): Promise<Testbed> {
  // Filled in as parts come up, so a failure (or Ctrl-C) halfway tears down what exists.
  let daemon: TestDaemon | null = null;
  const sshds: Sshd[] = [];
  let cm: ControlMaster | null = null;
  let agentPid: number | null = null;
  let viewAgentPid: number | null = null;

  const stopSync = () => {
    if (agentPid !== null && alive(agentPid)) process.kill(agentPid, 'SIGKILL');
    if (viewAgentPid !== null && alive(viewAgentPid)) process.kill(viewAgentPid, 'SIGKILL');
    if (daemon) {
      // The device itself goes in device.ts's own 'exit' handler.
      rmSync(daemon.stateDir, { recursive: true, force: true });
      rmSync(daemon.home, { recursive: true, force: true });
    }
  };
  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      const quietly = async (f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (e) {
          process.stderr.write(`bench: cleanup: ${(e as Error).message}\n`);
        }
      };
      const stopAgent = async (pid: number | null, device: string) => {
        if (pid === null || !daemon) return;
        const env = daemon.env;
        await quietly(() =>
          timedRun([TETHER, 'agent', '--stop', '-d', device], { env, timeoutMs: 10_000 }),
        );
        for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      };
      await stopAgent(agentPid, 'dev');
      await stopAgent(viewAgentPid, VIEW_DEVICE);
      if (cm) await quietly(() => cm!.stop());
      for (const s of sshds) await quietly(() => s.stop());
      if (daemon) await quietly(() => daemon!.stop());
    })();
    return stopping;
  };
  onPartial(stop, stopSync);

  daemon = await startDaemon({ delayMs: link.delayMs, rateMbit: link.rateMbit });
  const sshd = await startSshd(daemon.device, { kex: KEX, port: 2222 });
  sshds.push(sshd);
  let sshdDefaultKex: Sshd | null = null;
  if (opts.defaultKex) {
    sshdDefaultKex = await startSshd(daemon.device, { kex: DEFAULT_KEX, port: 2223 });
    sshds.push(sshdDefaultKex);
  }
  cm = await sshd.controlMaster();
  const started = await timedRun([TETHER, 'agent'], { env: daemon.env, timeoutMs: 20_000 });
  checkOk('tether agent', started);
  agentPid = Number(readFileSync(join(daemon.home, 'agents', 'dev.pid'), 'utf8'));
  await startSink(daemon, opts.sinkKeyDir);
  const rtt = await measureRtt(daemon.device.devAddr);

  const d = daemon;
  const pid = agentPid;
  let viewAgent: Promise<number> | null = null;
  let hostSshd: Promise<Sshd> | null = null;
  return {
    link,
    daemon: d,
    sshd,
    sshdDefaultKex,
    cm,
    agentPid: pid,
    sink: { host: d.device.devAddr, port: SINK_PORT },
    rtt,
    connections: () =>
      d
        .stderr()
        .split('\n')
        .filter((l) => l.includes('"client connected"')).length,
    agentAlive: () => alive(pid),
    viewAgent: () => {
      viewAgent ??= (async () => {
        // The same daemon and key as `dev`; only `view yes` differs. The agent reads its device's
        // config when it starts; the launcher then hands it runs that take the view.
        const cfg = readFileSync(join(d.home, 'config'), 'utf8');
        const m = /^\s*address (\S+)\n\s*fingerprint (\S+)$/m.exec(cfg);
        if (!m) throw new Error(`no address and fingerprint in ${join(d.home, 'config')}`);
        appendFileSync(
          join(d.home, 'config'),
          `device ${VIEW_DEVICE}\n  address ${m[1]}\n  fingerprint ${m[2]}\n  idletimeout 3\n  view yes\n`,
        );
        // Idle through B1 and B4 on a link is no reason to leave.
        const argv = [TETHER, 'agent', '-d', VIEW_DEVICE, '--idle-timeout', '86400'];
        checkOk('tether agent -d view', await timedRun(argv, { env: d.env, timeoutMs: 20_000 }));
        viewAgentPid = Number(readFileSync(join(d.home, 'agents', `${VIEW_DEVICE}.pid`), 'utf8'));
        return viewAgentPid;
      })();
      return viewAgent;
    },
    hostSshd: () => {
      hostSshd ??= startSshd(d.device, { kex: KEX, port: HOST_SSHD_PORT, on: 'host' }).then((s) => {
        sshds.push(s);
        return s;
      });
      return hostSshd;
    },
    stop,
    stopSync,
  };
}

/** The sshfs command line (run on the device) that mounts the host's `dir` over the same path. */
function sshfsCommand(hs: Sshd, dir: string): string[] {
  const opts: string[] = [];
  for (let i = 0; i < hs.sshOptions.length; i += 2) {
    const [k, v] = [hs.sshOptions[i]!, hs.sshOptions[i + 1]!];
    if (k === '-i') opts.push('-o', `IdentityFile=${v}`);
    else opts.push(k, v);
  }
  return ['sshfs', `${hs.user}@${hs.host}:${dir}`, dir, '-p', String(hs.port), ...opts];
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Mounts the host's `dir` with sshfs over the same path on the device, in the mount namespace of
 * the device's sshd (every ssh session on the device sees it; tetherd and the host do not). The
 * mount is made through the ControlMaster; sshfs connects back to the host's sshd with
 * curve25519 and default options (its caches included). Returns the ms the mount took.
 */
export async function sshfsMount(tb: Testbed, dir: string): Promise<number> {
  const hs = await tb.hostSshd();
  const cmd = `${sshfsCommand(hs, dir).map(q).join(' ')} && mountpoint -q ${q(dir)}`;
  const s = await timedRun(['ssh', ...tb.cm.args, cmd], { timeoutMs: 30_000 });
  checkOk(`sshfs mount of ${dir} on the device`, s);
  return s.ms;
}

/** Unmounts `dir` on the device if sshfs has it mounted there. */
export async function sshfsUnmount(tb: Testbed, dir: string): Promise<void> {
  const cmd = `if mountpoint -q ${q(dir)}; then umount ${q(dir)}; fi`;
  checkOk(
    `sshfs unmount of ${dir} on the device`,
    await timedRun(['ssh', ...tb.cm.args, cmd], { timeoutMs: 30_000 }),
  );
}

/** Whether `program` is on the host's PATH (a baseline's package may be missing). */
export function installed(program: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin')
    .split(':')
    .some((d) => d && existsSync(join(d, program)));
}
