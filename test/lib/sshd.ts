// A real OpenSSH server as the benchmarks' baseline, made fair (BENCHMARKS.md):
// - the key exchange is named (curve25519-sha256 unless asked otherwise; the
//   default sntrup761x25519 costs ~65 ms of CPU per connection);
// - the login's HOME is an empty directory: sshd runs every command through
//   root's shell, and Debian's bash sources ~/.bashrc when started by sshd,
//   so a tool-starting rc file would add to each command. sshd's `SetEnv
//   HOME=` replaces the HOME it derived from the passwd entry before the
//   shell starts, so no dedicated user is needed (the working directory stays
//   root's home; `PermitUserRC no` skips ~/.ssh/rc there).
import { type ChildProcess, execFile, type StdioOptions, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Device } from './device.ts';

export interface SshdOptions {
  /** Key exchange for both ends; default curve25519-sha256. */
  kex?: string;
  port?: number;
  /** Where sshd runs: in the device namespace (default) or on the host end of
   *  its link, for clients started inside the device (e.g. sshfs). */
  on?: 'device' | 'host';
}

export interface ControlMaster {
  /** ssh arguments (up to and including the destination) that reuse the master. */
  args: string[];
  stop(): Promise<void>;
}

export interface Sshd {
  host: string;
  port: number;
  user: string;
  kex: string;
  /** Client private key (ed25519). */
  keyFile: string;
  /** Client options without port and destination, for scp/sshfs-style callers. */
  sshOptions: string[];
  /** ssh arguments: options, then `extra`, then the destination; a command may follow. */
  sshArgs(extra?: string[]): string[];
  controlMaster(): Promise<ControlMaster>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd}: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

// A forgotten server must not keep the test process alive: the 'exit'
// handler above kills it.
function detach(p: ChildProcess): void {
  p.unref();
  (p.stderr as Socket).unref();
}

function exited(p: ChildProcess): boolean {
  return p.exitCode !== null || p.signalCode !== null;
}

async function kill(p: ChildProcess): Promise<void> {
  running.delete(p);
  if (exited(p)) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.ref();
  p.kill('SIGTERM');
  await gone;
}

function waitListening(p: ChildProcess, log: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`sshd not listening after 10 s: ${log()}`)),
      10000,
    );
    const onExit = (code: number | null) => fail(new Error(`sshd exited (${code}): ${log()}`));
    function fail(e: Error): void {
      clearTimeout(timer);
      p.kill('SIGKILL');
      reject(e);
    }
    p.once('exit', onExit);
    p.once('error', fail);
    p.stderr!.on('data', () => {
      if (log().includes('Server listening on')) {
        clearTimeout(timer);
        p.off('exit', onExit);
        resolve();
      }
    });
  });
}

export async function startSshd(device: Device, opts: SshdOptions = {}): Promise<Sshd> {
  const kex = opts.kex ?? 'curve25519-sha256';
  const port = opts.port ?? 2222;
  const onHost = opts.on === 'host';
  const host = onHost ? device.hostAddr : device.devAddr;
  const dir = await mkdtemp(join(tmpdir(), 'tether-sshd-'));
  const home = join(dir, 'home');
  const hostKey = join(dir, 'host_ed25519');
  const keyFile = join(dir, 'id_ed25519');
  const cfg = join(dir, 'sshd_config');
  await mkdir(home);
  // Privilege separation directory; Debian's package creates it only at boot.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tether-host', '-f', hostKey]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tether-client', '-f', keyFile]);
  await run('cp', [`${keyFile}.pub`, join(dir, 'authorized_keys')]);
  await writeFile(
    cfg,
    [
      `ListenAddress ${host}:${port}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'UseDNS no',
      'PrintMotd no',
      'PrintLastLog no',
      'PermitUserRC no',
      `KexAlgorithms ${kex}`,
      `SetEnv HOME=${home}`,
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );

  const argv = ['/usr/sbin/sshd', '-D', '-e', '-f', cfg];
  const stdio: StdioOptions = ['ignore', 'ignore', 'pipe'];
  const sshd = onHost ? spawn(argv[0], argv.slice(1), { stdio }) : device.exec(argv, { stdio });
  running.add(sshd);
  // Keep the last few KB of its log, and keep reading so sshd never blocks on it.
  let log = '';
  sshd.stderr!.setEncoding('utf8').on('data', (d: string) => {
    log = (log + d).slice(-4096);
  });
  try {
    await waitListening(sshd, () => log);
    detach(sshd);
  } catch (err) {
    running.delete(sshd);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  const sshOptions = [
    '-F',
    '/dev/null',
    '-i',
    keyFile,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
    '-o',
    'StrictHostKeyChecking=accept-new',
    '-o',
    'BatchMode=yes',
    '-o',
    `KexAlgorithms=${kex}`,
    '-o',
    'LogLevel=ERROR',
  ];
  const sshArgs = (extra: string[] = []) => [
    ...sshOptions,
    '-p',
    String(port),
    ...extra,
    `root@${host}`,
  ];

  const masters = new Set<ControlMaster>();
  let masterSeq = 0;
  const controlMaster = async (): Promise<ControlMaster> => {
    const path = join(dir, `cm${masterSeq++}`);
    // Held in the foreground (no ControlPersist): its lifetime is ours to end.
    const master = spawn(
      'ssh',
      sshArgs(['-M', '-N', '-o', `ControlPath=${path}`, '-o', 'ControlPersist=no']),
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    running.add(master);
    let err = '';
    master.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    // The control socket appears once the master has authenticated.
    const deadline = Date.now() + 10000;
    while (!existsSync(path)) {
      if (exited(master) || Date.now() > deadline) {
        await kill(master);
        throw new Error(`ssh ControlMaster did not start: ${err.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    detach(master);
    const cm: ControlMaster = {
      args: sshArgs(['-o', `ControlPath=${path}`, '-o', 'ControlMaster=no']),
      stop: async () => {
        masters.delete(cm);
        await kill(master);
      },
    };
    masters.add(cm);
    return cm;
  };

  let stopping: Promise<void> | null = null;
  return {
    host,
    port,
    user: 'root',
    kex,
    keyFile,
    sshOptions,
    sshArgs,
    controlMaster,
    stop: () => {
      stopping ??= (async () => {
        await Promise.all([...masters].map((m) => m.stop()));
        await kill(sshd);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
