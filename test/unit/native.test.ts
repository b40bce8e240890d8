import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { abiForNodeArch } from '../../arch/abi.ts';
import { watchChild } from '../../daemon/children.ts';
import {
  type ExitStatus,
  getWinsize,
  openpty,
  pipe,
  type SpawnOptions,
  setNonblock,
  setWinsize,
  spawn,
  syscallAs,
  waitpid,
} from '../../daemon/native.ts';
import { ofProgram } from '../../daemon/notify-stop.ts';

const PATH = 'PATH=/usr/local/bin:/usr/bin:/bin';
const devnull = fs.openSync('/dev/null', 'r');
t.teardown(() => fs.closeSync(devnull));

function options(argv: string[], extra: Partial<SpawnOptions> = {}): SpawnOptions {
  return {
    file: argv[0],
    argv,
    env: [PATH],
    cwd: null,
    umask: -1,
    fds: [devnull, -1, 2],
    setsid: false,
    ctty: -1,
    uid: -1,
    gid: -1,
    groups: null,
    ...extra,
  };
}

const exitOf = (pid: number) => new Promise<ExitStatus>((resolve) => watchChild(pid, resolve));

function readAll(fd: number): Promise<string> {
  const sock = new net.Socket({ fd, readable: true, writable: false });
  let out = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    out += d;
  });
  return new Promise((resolve, reject) => {
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

/** Spawns with a fresh pipe as fd 1 (plus `at` extra child fds) and collects output and exit. */
async function run(argv: string[], extra: Partial<SpawnOptions> = {}, at: number[] = [1]) {
  const [r, w] = pipe();
  const fds = [...(extra.fds ?? [devnull, -1, 2])];
  for (const fd of at) fds[fd] = w;
  for (let i = 0; i < fds.length; i++) fds[i] ??= -1;
  let pid: number;
  try {
    pid = spawn(options(argv, { ...extra, fds }));
  } finally {
    fs.closeSync(w);
  }
  const [out, status] = await Promise.all([readAll(r), exitOf(pid)]);
  return { out, status, pid };
}

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'tether-native-')));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

t.test('exit code', async (t) => {
  const { status, pid } = await run(['sh', '-c', 'exit 3']);
  t.same(status, { pid, code: 3, signal: null, core: false });
});

t.test('death by SIGSEGV', async (t) => {
  // core_pattern "core" (no path, no pipe) dumps into the cwd, so with a raised limit the
  // core flag is deterministic; any other pattern may not dump, so only its type is checked.
  const pattern = fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim();
  const hard = execFileSync('sh', ['-c', 'ulimit -H -c'], { encoding: 'utf8' }).trim();
  const deterministic = !/[|/]/.test(pattern) && hard !== '0';
  const dir = fs.mkdtempSync(path.join(tmp, 'core-'));
  const { status } = await run(['sh', '-c', 'ulimit -c unlimited; kill -SEGV $$'], { cwd: dir });
  t.equal(status.code, null);
  t.equal(status.signal, 11);
  if (deterministic) t.equal(status.core, true, `core dumped (core_pattern ${pattern})`);
  else t.type(status.core, 'boolean');
});

t.test('argv[0] is preserved', async (t) => {
  const { out } = await run(['sh', '-c', 'echo $0'], { argv: ['custom0', '-c', 'echo $0'] });
  t.equal(out, 'custom0\n');
});

t.test('environment is exactly the given one', async (t) => {
  const { out } = await run(['/usr/bin/env'], { env: ['A=1', 'B=two words'] });
  t.equal(out, 'A=1\nB=two words\n');
});

t.test('cwd and umask', async (t) => {
  const { out } = await run(['sh', '-c', 'pwd; umask'], { cwd: tmp, umask: 0o027 });
  t.equal(out, `${tmp}\n0027\n`);
});

t.test("PATH comes from the given env, execvp rules: a file without #! is /bin/sh's", async (t) => {
  const bin = fs.mkdtempSync(path.join(tmp, 'bin-'));
  fs.writeFileSync(path.join(bin, 'tool'), '#!/bin/sh\necho found\n', { mode: 0o755 });
  fs.writeFileSync(path.join(bin, 'noshebang'), 'echo "hi $0 $1"\n', { mode: 0o755 });
  fs.writeFileSync(path.join(bin, 'noexec'), '#!/bin/sh\n', { mode: 0o644 });
  const env = [`PATH=/nonexistent:${bin}`];
  t.equal((await run(['tool'], { env })).out, 'found\n');
  t.equal((await run(['noshebang', 'arg'], { env })).out, `hi ${bin}/noshebang arg\n`);
  t.throws(() => spawn(options(['noexec'], { env })), { code: 'EACCES' });
  t.throws(() => spawn(options(['tool'], { env: [PATH] })), { code: 'ENOENT' });
});

t.test('fd map: one pipe at fds 4 and 5, others closed', async (t) => {
  const { out } = await run(['sh', '-c', 'echo x >&5; echo y >&4'], {}, [4, 5]);
  t.equal(out, 'x\ny\n');
  // ls sees its own 0-2 and the directory it lists as 3: nothing of the daemon leaked.
  t.equal((await run(['ls', '/proc/self/fd'])).out, '0\n1\n2\n3\n');
});

t.test('fd map: sources that are also targets are not clobbered', async (t) => {
  const [ar, aw] = pipe();
  const [br, bw] = pipe();
  const fds = [devnull, -1, 2];
  fds[aw] = bw; // a swap: placing either one naively destroys the other's source
  fds[bw] = aw;
  for (let i = 0; i < fds.length; i++) fds[i] ??= -1;
  // dash redirects only fds 0-9, so write through /proc (reopens the same pipe).
  const script = `echo A >/proc/self/fd/${aw}; echo B >/proc/self/fd/${bw}`;
  const pid = spawn(options(['sh', '-c', script], { fds }));
  fs.closeSync(aw);
  fs.closeSync(bw);
  const [a, b, status] = await Promise.all([readAll(ar), readAll(br), exitOf(pid)]);
  t.equal(status.code, 0);
  t.equal(b, 'A\n');
  t.equal(a, 'B\n');
});

t.test('signals: default dispositions and empty mask in the child', async (t) => {
  // Node ignores SIGPIPE (and all are blocked across fork): none of that may reach the program.
  const { out } = await run(['grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status']);
  t.equal(out, 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
});

t.test('missing program throws ENOENT', async (t) => {
  t.throws(() => spawn(options(['/nonexistent/prog'])), { code: 'ENOENT', errno: 2 });
  t.throws(() => spawn(options(['no-such-program-tether'])), { code: 'ENOENT' });
});

t.test('chdir failure is reported and the child reaped', async (t) => {
  const children = () =>
    fs.readFileSync(`/proc/self/task/${process.pid}/children`, 'utf8').trim().split(/\s+/);
  const before = new Set(children());
  t.throws(() => spawn(options(['true'], { cwd: '/nonexistent' })), {
    code: 'ENOENT',
    syscall: 'chdir',
    message: /^chdir: ENOENT/,
  });
  t.same(
    children().filter((p) => !before.has(p)),
    [],
    'no zombie left behind',
  );
});

t.test('setsid makes a session and process group leader', async (t) => {
  const pid = spawn(options(['sleep', '30'], { setsid: true }));
  const exited = exitOf(pid);
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const [, , pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  t.equal(Number(pgrp), pid);
  t.equal(Number(session), pid);
  process.kill(-pid, 'SIGTERM');
  t.same(await exited, { pid, code: null, signal: 15, core: false });
});

t.test('pty with controlling terminal and window size', async (t) => {
  const pty = openpty();
  setWinsize(pty.master, 33, 101);
  t.same(getWinsize(pty.master), { rows: 33, cols: 101 });
  const script = 'test -t 0 && stty size && tty && : </dev/tty && echo ctty';
  let pid: number;
  try {
    pid = spawn(
      options(['sh', '-c', script], {
        fds: [pty.slave, pty.slave, pty.slave],
        ctty: 0,
        setsid: true,
      }),
    );
  } finally {
    fs.closeSync(pty.slave);
  }
  // Once the last slave fd closes the master reads EIO, which ends the stream here.
  const out = new Promise<string>((resolve) => {
    let s = '';
    fs.createReadStream('', { fd: pty.master, encoding: 'utf8' })
      .on('data', (d) => {
        s += d;
      })
      .on('error', () => resolve(s))
      .on('end', () => resolve(s));
  });
  const [text, status] = await Promise.all([out, exitOf(pid)]);
  t.equal(status.code, 0);
  t.equal(text, `33 101\r\n${pty.name}\r\nctty\r\n`);
});

t.test(
  'uid, gid and groups are applied',
  { skip: process.getuid?.() !== 0 && 'needs root' },
  async (t) => {
    const { out } = await run(['sh', '-c', 'id -u; id -g; id -G'], {
      uid: 65534,
      gid: 65534,
      groups: [65534],
    });
    t.equal(out, '65534\n65534\n65534\n');
  },
);

t.test('pipe and pty fds are close-on-exec', async (t) => {
  const [r, w] = pipe();
  const pty = openpty();
  const fds = [r, w, pty.master, pty.slave];
  const script = fds.map((fd) => `test -e /proc/self/fd/${fd} && echo leaked ${fd};`).join(' ');
  const out = execFileSync('sh', ['-c', `${script} true`], { encoding: 'utf8' });
  for (const fd of fds) fs.closeSync(fd);
  t.equal(out, '');
});

t.test('setNonblock', async (t) => {
  const [r, w] = pipe();
  setNonblock(r, true);
  t.throws(() => fs.readSync(r, Buffer.alloc(1)), { code: 'EAGAIN' });
  setNonblock(r, false);
  fs.writeSync(w, 'z');
  t.equal(fs.readSync(r, Buffer.alloc(1)), 1);
  fs.closeSync(r);
  fs.closeSync(w);
});

t.test('waitpid on a pid that is not our child throws ECHILD', async (t) => {
  t.throws(() => waitpid(1), { code: 'ECHILD', syscall: 'waitpid' });
});

t.test('child_process children are unaffected by the reaper', async (t) => {
  const pid = spawn(options(['sh', '-c', 'sleep 0.3; exit 4']));
  const ours = exitOf(pid);
  const theirs = new Promise<number | null>((resolve) => {
    execFile('sh', ['-c', 'sleep 0.1; exit 5'], (err) => resolve(err ? Number(err.code) : 0));
  });
  t.equal(await theirs, 5);
  t.equal((await ours).code, 4);
});

t.test(
  'SIGCHLD is blocked in every thread; child_process still sees its children exit',
  async (t) => {
    // watchChild starts the addon's SIGCHLD watcher.
    await exitOf(spawn(options(['true'])));
    const tasks = fs.readdirSync('/proc/self/task');
    for (const tid of tasks) {
      const status = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
      const blocked = BigInt(`0x${/^SigBlk:\s*([0-9a-f]+)$/m.exec(status)![1]}`);
      t.equal((blocked >> BigInt(os.constants.signals.SIGCHLD - 1)) & 1n, 1n, `thread ${tid}`);
    }
    t.ok(tasks.length > 1, 'Node runs more than one thread');
    // spawnSync blocks the main loop: the watcher thread alone must hand libuv the SIGCHLD.
    t.equal(execFileSync('sh', ['-c', 'echo sync'], { encoding: 'utf8' }), 'sync\n');
    const codes = await Promise.all(
      [1, 2, 3].map(
        (n) =>
          new Promise<number>((resolve) =>
            execFile('sh', ['-c', `exit ${n}`], (err) => resolve(err ? Number(err.code) : 0)),
          ),
      ),
    );
    t.same(codes, [1, 2, 3]);
  },
);

t.test('a child that exited before watchChild is still reported', async (t) => {
  const pid = spawn(options(['true']));
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.same(await exitOf(pid), { pid, code: 0, signal: null, core: false });
});

t.test('watched children keep the event loop alive, and only while they run', async (t) => {
  const children = new URL('../../daemon/children.ts', import.meta.url).href;
  const native = new URL('../../daemon/native.ts', import.meta.url).href;
  const script = `
    import { watchChild } from ${JSON.stringify(children)};
    import { spawn } from ${JSON.stringify(native)};
    const pid = spawn({ file: 'sleep', argv: ['sleep', '0.3'], env: [${JSON.stringify(PATH)}],
      cwd: null, umask: -1, fds: [], setsid: false, ctty: -1, uid: -1, gid: -1, groups: null });
    watchChild(pid, (s) => console.log('exit', s.code));
  `;
  const start = Date.now();
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script],
      { timeout: 10_000 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });
  t.equal(out, 'exit 0\n');
  t.ok(Date.now() - start < 5000, 'exits once no child is watched');
});

t.test(
  'syscallAs runs a call under a file system identity and gives this thread its own back',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-as-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const secret = path.join(dir, 'secret');
    fs.writeFileSync(secret, 'x', { mode: 0o600 });
    fs.chmodSync(dir, 0o755);
    const nr = abiForNodeArch(process.arch)!.syscallNumber('faccessat2')!;
    const R_OK = 4n;
    const AT_EACCESS = 0x200n;
    const access = (ids: number[]) =>
      syscallAs(ids, nr, [-100n, Buffer.from(`${secret}\0`), R_OK, AT_EACCESS]);
    t.equal(access([]), 0n, "the daemon's own identity reads it");
    if (process.getuid?.() === 0) {
      t.equal(access([65534, 65534, 65534]), BigInt(-os.constants.errno.EACCES), 'nobody may not');
      t.equal(access([0, 0]), 0n, 'root may');
    }
    // Back to the daemon's own identity: fs calls on this thread see it.
    t.equal(fs.readFileSync(secret, 'utf8'), 'x');
    t.equal(access([]), 0n);
    const missing = syscallAs([], nr, [-100n, Buffer.from(`${dir}/none\0`), R_OK, 0n]);
    t.equal(missing, BigInt(-os.constants.errno.ENOENT), 'a failure is its negative errno');
  },
);

t.test("links that name the calling process name the program's under unotify", async (t) => {
  t.equal(ofProgram('/proc/self/fd/2', 10, 12), '/proc/10/fd/2');
  t.equal(ofProgram('/proc/self', 10, 12), '/proc/10');
  t.equal(ofProgram('/proc/thread-self/comm', 10, 12), '/proc/10/task/12/comm');
  t.equal(ofProgram('/dev/fd/3', 10, 12), '/proc/10/fd/3');
  t.equal(ofProgram('/dev/stderr', 10, 12), '/proc/10/fd/2');
  t.equal(ofProgram('/proc/selfish', 10, 12), '/proc/selfish', 'only whole names');
  t.equal(ofProgram('/tmp/proc/self', 10, 12), '/tmp/proc/self');
});
