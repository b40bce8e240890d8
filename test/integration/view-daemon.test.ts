// The view under the daemon's settings: the content cache across restarts (cached contents
// are not fetched again, a damaged entry is noticed by its hash and fetched anew), without
// seccomp (every syscall stops), runs as an unprivileged user, and the tracer it uses.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { notifyProbe } from '../../daemon/native.ts';
import { startDaemon, TETHERD, tether } from '../lib/tetherd.ts';

const work = mkdtempSync(join(tmpdir(), 'tether-cache-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test('cached contents persist across a restart and are checked by hash', async (t) => {
  const d = await startDaemon({ minimalRoot: true });
  t.teardown(() => d.stop());
  const run = (args: string[]) =>
    tether(d, ['run', '--view', '-u', 'NODE_OPTIONS', '-C', work, ...args]);
  const data = randomBytes(200_000);
  writeFileSync(join(work, 'blob'), data);
  const sum = async () => (await run(['sha256sum', 'blob'])).stdout.split(' ')[0];
  const want = createHash('sha256').update(data).digest('hex');
  t.equal(await sum(), want);

  const files = join(d.stateDir, 'cache/files');
  const entry = readdirSync(files)
    .map((f) => join(files, f))
    .find((f) => readFileSync(f).equals(data));
  t.ok(entry, 'the content is in the cache');
  const before = statSync(entry!);

  await d.restart();
  t.equal(await sum(), want);
  const after = statSync(entry!);
  t.equal(after.ino, before.ino, 'the entry was not written again after the restart');
  t.equal(after.mtimeMs, before.mtimeMs);

  // Damage the entry while the daemon is down: its hash no longer matches.
  const bad = Buffer.from(data);
  bad[1000] ^= 0xff;
  await d.restart(() => writeFileSync(entry!, bad));
  t.equal(await sum(), want, 'the damaged copy is not used');
  t.ok(readFileSync(entry!).equals(data), 'the entry holds the host content again');
});

t.test('without seccomp every syscall stops, and runs still work', async (t) => {
  const d = await startDaemon({ minimalRoot: true, extraArgs: ['--no-seccomp'] });
  t.teardown(() => d.stop());
  writeFileSync(join(work, 'in.txt'), 'b\na\nc\n');
  const r = await tether(d, [
    'run',
    '--view',
    '-u',
    'NODE_OPTIONS',
    '-C',
    work,
    'sh',
    '-c',
    'sort in.txt > out.txt && cat out.txt && readlink /proc/self/exe && ls -d "$PWD"',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `a\nb\nc\n/usr/bin/readlink\n${work}\n`);
  t.equal(readFileSync(join(work, 'out.txt'), 'utf8'), 'a\nb\nc\n');
});

t.test('a run as an unprivileged user reads, writes and runs host files', async (t) => {
  // The minimal root knows only root: this device is the host's own tree.
  const d = await startDaemon({ extraArgs: ['--user', 'nobody'] });
  t.teardown(() => d.stop());
  writeFileSync(join(work, 'readable'), 'for everyone\n');
  // Root's alone on the device (in its own /tmp, a device directory), named through a host
  // symlink: tetherd, root, checks and opens it as the run's user.
  const deviceDir = mkdtempSync(join(tmpdir(), 'tether-roots-'));
  t.teardown(() => rmSync(deviceDir, { recursive: true, force: true }));
  chmodSync(deviceDir, 0o755);
  writeFileSync(join(deviceDir, 'secret'), 'root only\n', { mode: 0o600 });
  symlinkSync(join(deviceDir, 'secret'), join(work, 'roots'));
  const r = await tether(d, [
    'run',
    '-u',
    'NODE_OPTIONS',
    '-C',
    work,
    'sh',
    '-c',
    'id -un; cat readable; echo mine > written; cat written; test -r roots || echo not-readable; ' +
      'cat roots >/dev/null 2>&1 || echo not-opened; ' +
      'test -e roots && echo there; cd / && pwd',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'nobody\nfor everyone\nmine\nnot-readable\nnot-opened\nthere\n/\n');
  t.equal(readFileSync(join(work, 'written'), 'utf8'), 'mine\n');
});

/** Whether process `pid` holds a seccomp listener (the unotify tracer's, during a run). */
function holdsListener(pid: number): boolean {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).some((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`) === 'anon_inode:seccomp notify';
    } catch {
      return false;
    }
  });
}

t.test(
  'the tracer: unotify where the kernel wakes the listener synchronously, ptrace on request',
  async (t) => {
    const probe = notifyProbe();
    const cases: [string[], string][] = [
      [[], probe === 2 ? 'unotify' : 'ptrace'],
      [['--tracer', 'ptrace'], 'ptrace'],
    ];
    if (probe > 0) cases.push([['--tracer', 'unotify'], 'unotify']);
    for (const [extraArgs, want] of cases) {
      // The default, not what a *-ptrace.test.ts wrapper asks for.
      const asked = process.env.TETHER_TEST_TRACER;
      delete process.env.TETHER_TEST_TRACER;
      const d = await startDaemon({ extraArgs }).finally(() => {
        if (asked !== undefined) process.env.TETHER_TEST_TRACER = asked;
      });
      t.teardown(() => d.stop());
      const { info } = JSON.parse((await tether(d, ['status', '--json'])).stdout);
      t.equal(info.tracer, want, `${extraArgs.join(' ') || 'default'}: status says ${want}`);
      const run = tether(d, ['run', '-C', work, 'sh', '-c', 'test -e /etc/passwd && sleep 1']);
      let held = false;
      for (let i = 0; i < 40 && !held; i++) {
        held = holdsListener(info.pid);
        await new Promise((r) => setTimeout(r, 25));
      }
      const r = await run;
      t.equal(r.code, 0, r.stderr);
      t.equal(
        held,
        want === 'unotify',
        `tetherd ${want === 'unotify' ? 'holds' : 'holds no'} listener during the run`,
      );
      t.notOk(holdsListener(info.pid), 'no listener is left after the run');
    }
  },
);

t.test('a tracer tetherd cannot use is a one-line error', async (t) => {
  const state = mkdtempSync(join(tmpdir(), 'tetherd-tracer-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const start = (...args: string[]) =>
    spawnSync(TETHERD, ['--state', state, '--user', 'root', '--no-status-socket', ...args], {
      encoding: 'utf8',
      timeout: 30_000,
    });
  const bogus = start('--tracer', 'bogus');
  t.not(bogus.status, 0);
  t.match(bogus.stderr, /--tracer <tracer>.*bogus.*ptrace, unotify/);
  const noSeccomp = start('--tracer', 'unotify', '--no-seccomp');
  t.equal(noSeccomp.status, 1);
  t.equal(noSeccomp.stderr, 'tetherd: --tracer unotify needs seccomp filters\n');
});

t.test(
  'a host FIFO joins programs of a run; an open waiting on it ends with its program',
  async (t) => {
    const d = await startDaemon();
    t.teardown(() => d.stop());
    const dir = mkdtempSync(join(work, 'fifo-'));
    spawnSync('mkfifo', [join(dir, 'f')]);
    const run = (script: string) => tether(d, ['run', '-C', dir, 'sh', '-c', script]);
    const r = await run('cat f & sleep 0.3; echo through > f; wait');
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, 'through\n');
    const { info } = JSON.parse((await tether(d, ['status', '--json'])).stdout);
    // tetherd's threads that open for a program (daemon/native/notify.c names them).
    const opening = () =>
      readdirSync(`/proc/${info.pid}/task`).filter((task) => {
        try {
          return readFileSync(`/proc/${info.pid}/task/${task}/comm`, 'utf8') === 'tether-open\n';
        } catch {
          return false;
        }
      }).length;
    // Nobody writes: cat waits in its open until timeout kills it.
    const killed = await run('timeout -s KILL 1 cat f; echo $?');
    t.equal(killed.stdout, '137\n', killed.stderr);
    let left = opening();
    for (let i = 0; i < 40 && left > 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      left = opening();
    }
    t.equal(left, 0, 'no thread of tetherd still waits on the FIFO');
    const again = await run('cat f & sleep 0.3; echo again > f; wait');
    t.equal(again.stdout, 'again\n', again.stderr);
  },
);
