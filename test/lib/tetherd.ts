// A tetherd running on a test device (its own network namespace, optionally
// a minimal root too), with a client configuration paired to it, and helpers
// to run the real CLI.
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadOrCreateIdentity } from '../../transport/identity.ts';
import { createDevice, type Device, type DeviceOptions } from './device.ts';
import { minimalRootTetherd } from './minroot.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const TETHER = join(ROOT, 'bin/tether');
export const TETHERD = join(ROOT, 'bin/tetherd');

export interface TestDaemon {
  device: Device;
  proc: ChildProcess;
  stateDir: string;
  /** TETHER_HOME of a client paired with this daemon (device "dev", the default). */
  home: string;
  fingerprint: string;
  port: number;
  stderr: () => string;
  /** Environment for running bin/tether against this daemon. */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
  /** Stops the daemon (SIGTERM), calls `whileDown`, and starts it with the same state. */
  restart(whileDown?: () => void): Promise<void>;
}

export interface DaemonOptions extends DeviceOptions {
  extraArgs?: string[];
  /** Leave the client unpaired (no authorized_clients entry). */
  unpaired?: boolean;
  /** Run the daemon in a mount namespace whose root holds only tetherd's own
   *  files and its state directory (test/lib/minroot.ts). */
  minimalRoot?: boolean;
  /** A packaged single executable to run instead of bin/tetherd (dist/release/…). */
  binary?: string;
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  const device = await createDevice(opts);
  const stateDir = mkdtempSync(join(tmpdir(), 'tetherd-state-'));
  const home = mkdtempSync(join(tmpdir(), 'tether-home-'));
  const [dev, client] = await Promise.all([
    loadOrCreateIdentity(stateDir, 'tetherd@test'),
    loadOrCreateIdentity(home, 'tether@test'),
  ]);
  if (!opts.unpaired)
    writeFileSync(join(stateDir, 'authorized_clients'), `${client.fingerprint} test\n`);
  const port = 1202;
  const args = [
    '--listen',
    `${device.devAddr}:${port}`,
    '--state',
    stateDir,
    '--user',
    'root',
    '--log-format',
    'json',
    // The suites run under each tracer (test/integration/*-ptrace.test.ts set this).
    ...(process.env.TETHER_TEST_TRACER ? ['--tracer', process.env.TETHER_TEST_TRACER] : []),
    ...(opts.extraArgs ?? []),
  ];
  let stderr = '';
  let proc!: ChildProcess;
  const stop = async () => {
    proc.kill('SIGTERM');
    await device.destroy();
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  };
  /** Starts the daemon process and waits until it listens. */
  const launch = () => {
    const argv = opts.minimalRoot
      ? minimalRootTetherd(args, stateDir, opts.binary)
      : [opts.binary ?? TETHERD, ...args];
    proc = device.exec(argv, {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const mark = stderr.length;
    proc.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (stderr.slice(mark).includes('tetherd: listening on')) resolve();
      };
      proc.stderr!.on('data', check);
      proc.once('exit', (code) => reject(new Error(`tetherd exited with ${code}: ${stderr}`)));
      setTimeout(() => reject(new Error(`tetherd did not start: ${stderr}`)), 20_000).unref();
    });
  };
  await launch().catch(async (e: unknown) => {
    // A daemon that fails to start leaves nothing behind: no caller gets a stop().
    await stop();
    throw e;
  });
  writeFileSync(
    join(home, 'config'),
    `default dev\ndevice dev\n  address ${device.devAddr}:${port}\n  fingerprint ${dev.fingerprint}\n  idletimeout 3\n`,
  );
  const daemon: TestDaemon = {
    device,
    proc,
    stateDir,
    home,
    fingerprint: dev.fingerprint,
    port,
    stderr: () => stderr,
    env: { ...process.env, TETHER_HOME: home, TETHER_DEVICE: '' },
    stop,
    async restart(whileDown) {
      const old = proc;
      const gone = new Promise((resolve) => old.once('exit', resolve));
      old.kill('SIGTERM');
      await gone;
      whileDown?.();
      await launch();
      daemon.proc = proc;
    },
  };
  return daemon;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/tether with the given args; `input` is written to its stdin. */
export function tether(
  d: { env: NodeJS.ProcessEnv },
  args: string[],
  opts: SpawnOptions & { input?: string | Buffer } = {},
): Promise<CliResult> & { child: ChildProcess } {
  const child = spawn(TETHER, args, { env: d.env, stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  const p = new Promise<CliResult>((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    if (child.stdin) {
      child.stdin.on('error', () => {});
      if (opts.input !== undefined) child.stdin.end(opts.input);
      else child.stdin.end();
    }
  });
  return Object.assign(p, { child });
}
