// `tether run` against a real tetherd across a veth link with real TLS.
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { procState, sleepers, waitFor } from '../lib/procs.ts';
import { startDaemon, TETHER, TETHERD, tether } from '../lib/tetherd.ts';

const d = await startDaemon({ extraArgs: ['--idle-timeout', '3'] });
t.teardown(() => d.stop());
const tmp = mkdtempSync(join(tmpdir(), 'tether-exec-'));

t.test('exit status, stdout and stderr stay separate', async (t) => {
  const r = await tether(d, ['run', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  t.equal(r.code, 3);
  t.equal(r.stdout, 'out\n');
  t.equal(r.stderr, 'err\n');
});

t.test('argv[0], arguments with spaces, env, cwd and umask arrive', async (t) => {
  const r = await tether(
    d,
    [
      'run',
      '-e',
      'ADDED=1',
      '-u',
      'HOME',
      '-C',
      '/tmp',
      'sh',
      '-c',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion, not a template
      'printf "%s|" "$0" "$1" "$ADDED" "${HOME-unset}" "$FROMHOST" "$(pwd)" "$(umask)"',
      'zero',
      'a b',
    ],
    {
      env: { ...d.env, FROMHOST: 'yes' },
    },
  );
  t.equal(r.stdout, 'zero|a b|1|unset|yes|/tmp|0022|');
});

t.test('a program killed by SIGSEGV makes tether die of SIGSEGV', async (t) => {
  const r = await tether(d, ['run', 'sh', '-c', 'kill -SEGV $$']);
  t.equal(r.signal, 'SIGSEGV');
});

t.test('seq 1000000 | tether run wc -l', async (t) => {
  const r = await tether(d, ['run', 'sh', '-c', 'seq 1000000 | "$0" run wc -l', TETHER], {
    env: d.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.equal(r.stdout.trim(), '1000000');
  const input = execFileSync('seq', ['1000000'], { maxBuffer: 64 << 20 });
  const r2 = await tether(d, ['run', 'wc', '-l'], { input });
  t.equal(r2.stdout.trim(), '1000000');
});

t.test('stdin EOF reaches cat', async (t) => {
  const r = await tether(d, ['run', 'cat'], { input: 'line1\nline2\n' });
  t.equal(r.code, 0);
  t.equal(r.stdout, 'line1\nline2\n');
});

t.test('extra fds: echo x >&5; read y <&4', async (t) => {
  const f = join(tmp, 'f');
  const g = join(tmp, 'g');
  writeFileSync(g, 'from-g\n');
  const r = await tether(d, [
    'run',
    'sh',
    '-c',
    `"$0" run sh -c 'echo x >&5; read y <&4; echo "y=$y"' 5>${f} 4<${g}`,
    TETHER,
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'y=from-g\n');
  t.equal(readFileSync(f, 'utf8'), 'x\n');
});

t.test('no pty without -t; a pty with its size with -t', async (t) => {
  const r = await tether(d, ['run', 'sh', '-c', 'test -t 0 || test -t 1 || echo notty']);
  t.equal(r.stdout, 'notty\n');
  // script(1) gives tether a terminal of 33 rows and 101 columns.
  const r3 = spawn(
    'script',
    [
      '-qec',
      `stty rows 33 cols 101; ${TETHER} run -t sh -c 'test -t 0 && stty size; exit 4'`,
      '/dev/null',
    ],
    {
      env: d.env,
    },
  );
  let out = '';
  r3.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const code = await new Promise((resolve) => r3.on('close', resolve));
  t.match(out, /33 101/);
  t.equal(code, 4);
});

t.test('SIGINT to tether ends sleep 100 on the device', async (t) => {
  const marker = `100.${process.pid}1`;
  const run = tether(d, ['run', 'sleep', marker]);
  t.ok(await waitFor(() => sleepers(marker).length > 0, 10_000), 'sleep started');
  run.child.kill('SIGINT');
  const r = await run;
  t.equal(r.signal, 'SIGINT', 'tether died of the same signal');
  t.ok(await waitFor(() => sleepers(marker).length === 0, 5_000), 'sleep is gone');
});

t.test('killing the connection leaves no process of the run', async (t) => {
  const marker = `200.${process.pid}2`;
  const run = tether(d, [
    'run',
    'sh',
    '-c',
    `sleep ${marker} & (sleep ${marker}; true) & sleep ${marker}`,
  ]);
  t.ok(await waitFor(() => sleepers(marker).length === 3, 10_000), 'the tree started');
  run.child.kill('SIGKILL');
  await run;
  t.ok(
    await waitFor(() => sleepers(marker).length === 0, 5_000),
    'every process of the run is gone',
  );
});

t.test('a dead link (no FIN) times out and kills the run', async (t) => {
  const marker = `300.${process.pid}3`;
  const run = tether(d, ['run', 'sleep', marker]);
  t.ok(await waitFor(() => sleepers(marker).length > 0, 10_000), 'sleep started');
  execFileSync('ip', ['link', 'set', d.device.hostIf, 'down']);
  try {
    const r = await run;
    t.equal(r.code, 255, 'tether reports its own error');
    t.match(r.stderr, /^tether: dev: .*(IDLE_TIMEOUT|nothing heard)/m);
    t.ok(await waitFor(() => sleepers(marker).length === 0, 10_000), 'the daemon killed the run');
  } finally {
    execFileSync('ip', ['link', 'set', d.device.hostIf, 'up']);
    execFileSync('ip', ['addr', 'replace', `${d.device.hostAddr}/30`, 'dev', d.device.hostIf]);
  }
});

t.test('a missing program exits 127 with one line', async (t) => {
  const r = await tether(d, ['run', 'no-such-program-here']);
  t.equal(r.code, 127);
  t.equal(r.stderr, 'tether: no-such-program-here: No such file or directory\n');
});

t.test("-C is relative to the caller's cwd, as cd; a missing one is one line, 255", async (t) => {
  const base = mkdtempSync(join(tmp, 'cwd-'));
  mkdirSync(join(base, 'sub'));
  writeFileSync(join(base, 'file'), '');
  const inBase = { cwd: base };
  const sub = await tether(d, ['run', '-C', 'sub', '/bin/pwd'], inBase);
  t.same([sub.code, sub.stdout, sub.stderr], [0, `${base}/sub\n`, '']);
  const up = await tether(d, ['run', '-C', 'sub/../..', '/bin/pwd'], inBase);
  t.equal(up.stdout, `${tmp}\n`);
  const missing = await tether(d, ['run', '-C', 'nope', '/bin/pwd'], inBase);
  t.equal(missing.code, 255);
  t.equal(missing.stderr, `tether: chdir ${base}/nope: No such file or directory\n`);
  const file = await tether(d, ['run', '-C', 'file', '/bin/pwd'], inBase);
  t.equal(file.code, 255);
  t.equal(file.stderr, `tether: chdir ${base}/file: Not a directory\n`);
});

t.test("the caller's PATH is the program's: tether and the daemon need none of it", async (t) => {
  const noPath = { ...d.env, PATH: '/nonexistent' };
  const r = await tether(d, ['run', '/bin/sh', '-c', 'echo "$PATH"'], { env: noPath });
  t.same([r.code, r.stdout, r.stderr], [0, '/nonexistent\n', ''], 'a TLS device');
  // A device whose command is bin/tetherd, as the local device's.
  const home = mkdtempSync(join(tmp, 'home-'));
  const state = mkdtempSync(join(tmp, 'state-'));
  writeFileSync(
    join(home, 'config'),
    `device cmd\n  command exec '${TETHERD}' --stdio --log-level warn --user root --state '${state}'\n`,
  );
  const c = await tether(d, ['run', '-d', 'cmd', '/bin/sh', '-c', 'echo "$PATH"'], {
    env: { ...noPath, TETHER_HOME: home },
  });
  t.same([c.code, c.stdout, c.stderr], [0, '/nonexistent\n', ''], 'a command device');
});

t.test(
  "tether run FILE runs as execvp(3): a file the kernel cannot run is /bin/sh's",
  async (t) => {
    // Under the view's read-only root (a host file) and without the view (the device's own).
    const dir = mkdtempSync('/var/tmp/tether-execvp-');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'blank.sh'), '#!   \necho blank "$0" "$@"\n', { mode: 0o755 });
    writeFileSync(join(dir, 'plain.sh'), 'echo plain "$0" "$@"\n', { mode: 0o755 });
    symlinkSync('loop2', join(dir, 'loop1'));
    symlinkSync('loop1', join(dir, 'loop2'));
    for (const view of ['--view', '--no-view']) {
      const blank = await tether(d, ['run', view, '-C', dir, './blank.sh', 'a'], { cwd: dir });
      t.same([blank.code, blank.stdout, blank.stderr], [0, 'blank ./blank.sh a\n', ''], view);
      const plain = await tether(d, ['run', view, '-C', dir, './plain.sh', 'b'], { cwd: dir });
      t.same([plain.code, plain.stdout, plain.stderr], [0, 'plain ./plain.sh b\n', ''], view);
      const loop = await tether(d, ['run', view, '-C', dir, './loop1'], { cwd: dir });
      t.same(
        [loop.code, loop.stderr],
        [126, 'tether: ./loop1: Too many levels of symbolic links\n'],
        `${view}: the C library's words`,
      );
    }
  },
);

t.test('many concurrent runs on one daemon', async (t) => {
  const runs = await Promise.all(
    Array.from({ length: 16 }, (_, i) => tether(d, ['run', 'sh', '-c', `echo ${i}; exit ${i}`])),
  );
  runs.forEach((r, i) => {
    t.equal(r.code, i);
    t.equal(r.stdout, `${i}\n`);
  });
});

t.test('yes | head: the program dies of SIGPIPE when our reader goes', async (t) => {
  const r = await tether(d, [
    'run',
    'sh',
    '-c',
    `"$0" run yes | head -3; echo "status=\${PIPESTATUS:-}"`,
    TETHER,
  ]);
  t.equal(r.stdout, 'y\ny\ny\nstatus=\n');
  const r2 = spawn('bash', ['-c', `${TETHER} run yes | head -1; echo "\${PIPESTATUS[0]}"`], {
    env: d.env,
  });
  let out = '';
  r2.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  await new Promise((resolve) => r2.on('close', resolve));
  t.equal(out, 'y\n141\n', 'tether ended as SIGPIPE (128+13), like a local yes');
});

t.test('a stalled reader of stdout does not hold back stderr', async (t) => {
  const run = tether(d, [
    'run',
    'sh',
    '-c',
    '(sleep 0.5; echo late-stderr >&2) & yes | head -c 50000000; wait',
  ]);
  const out = run.child.stdout!;
  out.pause();
  // The test reads nothing from stdout until stderr has spoken.
  out.removeAllListeners('data');
  const gotStderr = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 15_000);
    run.child.stderr!.on('data', (c: Buffer) => {
      if (c.toString().includes('late-stderr')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
  });
  t.ok(gotStderr, 'stderr arrived while stdout was stalled');
  let bytes = 0;
  out.on('data', (c: Buffer) => {
    bytes += c.length;
  });
  out.resume();
  const r = await run;
  t.equal(r.code, 0);
  t.equal(bytes, 50_000_000, 'all of stdout arrived afterwards');
});

t.test('a forwarded USR1 reaches the program', async (t) => {
  const flag = join(tmp, 'usr1-ready');
  const run = tether(d, [
    'run',
    'sh',
    '-c',
    `trap "echo got-usr1; exit 7" USR1; touch ${flag}; while :; do sleep 0.1; done`,
  ]);
  t.ok(await waitFor(() => existsSync(flag), 10_000), 'the program runs');
  run.child.kill('SIGUSR1');
  const r = await run;
  t.equal(r.code, 7);
  t.match(r.stdout, /got-usr1/);
});

t.test('a direct run stopped by ^Z outlives the idle timeout and resumes', async (t) => {
  const marker = `700.${process.pid}8`;
  const run = tether(d, ['run', 'sleep', marker]);
  t.ok(await waitFor(() => sleepers(marker).length > 0, 10_000), 'sleep started');
  const pid = Number.parseInt(sleepers(marker)[0]!, 10);
  const state = procState;
  run.child.kill('SIGTSTP');
  t.ok(await waitFor(() => state(run.child.pid!) === 'T', 5_000), 'tether is stopped');
  // A traced program in a group stop shows 't' (tracing stop), an untraced one 'T'.
  t.ok(await waitFor(() => /^[Tt]$/.test(state(pid)), 5_000), 'the program is stopped');
  // Both ends time a silent link out after 3 s here.
  await new Promise((r) => setTimeout(r, 4500));
  run.child.kill('SIGCONT');
  t.ok(
    await waitFor(() => ['S', 'R'].includes(state(pid)), 5_000),
    `the program resumed (${state(pid)})`,
  );
  run.child.kill('SIGTERM');
  const r = await run;
  t.equal(r.signal, 'SIGTERM', r.stderr);
});
