// Runs through the per-device agent: one TLS connection serves many runs.
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { agentPaths } from '../../client/agent.ts';
import { procState, sleepers, waitFor } from '../lib/procs.ts';
import { startDaemon, TETHER, tether } from '../lib/tetherd.ts';

const d = await startDaemon();
t.teardown(async () => {
  await tether(d, ['agent', '--stop']);
  await d.stop();
});
const connections = () =>
  d
    .stderr()
    .split('\n')
    .filter((l) => l.includes('"client connected"')).length;

t.test('agent: runs share one connection and behave as direct runs', async (t) => {
  const started = await tether(d, ['agent']);
  t.equal(started.code, 0, started.stderr);
  const before = connections();
  for (let i = 0; i < 3; i++) {
    const r = await tether(d, ['run', 'sh', '-c', `cat; echo err${i} >&2; exit ${i + 3}`], {
      input: `in${i}\n`,
    });
    t.equal(r.code, i + 3);
    t.equal(r.stdout, `in${i}\n`);
    t.equal(r.stderr, `err${i}\n`);
  }
  const seg = await tether(d, ['run', 'sh', '-c', 'kill -SEGV $$']);
  t.equal(seg.signal, 'SIGSEGV');
  const parallel = await Promise.all(
    Array.from({ length: 8 }, (_, i) => tether(d, ['run', 'sh', '-c', `echo ${i}`])),
  );
  t.same(
    parallel.map((r) => r.stdout),
    Array.from({ length: 8 }, (_, i) => `${i}\n`),
  );
  // Options send the run through the Node CLI and the agent's bridge: its view stream too.
  // (Not in the client's own directory: the view never serves that one.)
  const work = mkdtempSync('/var/tmp/tether-agent-');
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  for (let i = 0; i < 2; i++) {
    const viaNode = await tether(d, [
      'run',
      '-C',
      work,
      '-e',
      `N=${i}`,
      'sh',
      '-c',
      'echo $N > n; cat n',
    ]);
    t.equal(viaNode.code, 0, viaNode.stderr);
    t.equal(viaNode.stdout, `${i}\n`);
  }
  t.equal(connections(), before, 'no new TLS connection for any of these runs');
  const direct = await tether(d, ['run', '--no-agent', 'true']);
  t.equal(direct.code, 0);
  t.equal(connections(), before + 1, '--no-agent connects directly');
});

t.test('agent: the native launcher runs the plain form itself', async (t) => {
  const marker = `450.${process.pid}6`;
  const run = tether(d, ['run', 'sleep', marker]);
  const seen = () => sleepers(marker).length > 0;
  t.ok(await waitFor(seen, 10_000), 'sleep runs on the device');
  t.match(
    readlinkSync(`/proc/${run.child.pid}/exe`),
    /build\/tether-launch$/,
    'no Node started for it',
  );
  run.child.kill('SIGINT');
  const r = await run;
  t.equal(r.signal, 'SIGINT', 'the launcher died of the signal that ended the program');

  const f = join(d.home, 'fd5');
  const io = await tether(
    d,
    [
      'run',
      'sh',
      '-c',
      `"$0" run sh -c 'read x; echo "got $x"; echo five >&5; echo err >&2; exit 9' 5>${f}; echo "status $?"; echo after`,
      TETHER,
    ],
    {
      input: 'line\n',
    },
  );
  t.equal(
    io.stdout,
    'got line\nstatus 9\nafter\n',
    'stdin, exit status, and stdout usable after the run',
  );
  t.equal(io.stderr, 'err\n');
  t.equal(readFileSync(f, 'utf8'), 'five\n', 'extra fd 5 written');
  const seg = await tether(d, ['run', 'sh', '-c', 'kill -SEGV $$']);
  t.equal(seg.signal, 'SIGSEGV');
  const named = tether(d, ['run', '-d', 'dev', '--', 'sh', '-c', 'sleep 0.5; exit 5']);
  await new Promise((r) => setTimeout(r, 200));
  t.match(readlinkSync(`/proc/${named.child.pid}/exe`), /build\/tether-launch$/, '-d NAME too');
  t.equal((await named).code, 5);
  const missing = await tether(d, ['run', 'no-such-program-here']);
  t.equal(missing.code, 127);
  t.equal(missing.stderr, 'tether: no-such-program-here: No such file or directory\n');
});

t.test('agent: TSTP stops the program and tether, CONT resumes both', async (t) => {
  const marker = `600.${process.pid}7`;
  const run = tether(d, ['run', 'sleep', marker]);
  t.ok(await waitFor(() => sleepers(marker).length > 0, 10_000), 'sleep started');
  const pid = Number.parseInt(sleepers(marker)[0]!, 10);
  const state = procState;
  run.child.kill('SIGTSTP');
  // A traced program in a group stop shows 't' (tracing stop), an untraced one 'T'.
  t.ok(
    await waitFor(() => /^[Tt]$/.test(state(pid)), 5_000),
    'the program on the device is stopped',
  );
  t.ok(
    await waitFor(() => state(run.child.pid!) === 'T', 5_000),
    'tether stopped itself, as job control expects',
  );
  run.child.kill('SIGCONT');
  t.ok(
    await waitFor(() => state(pid) === 'S' || state(pid) === 'R', 5_000),
    `CONT resumed the program (${state(pid)})`,
  );
  run.child.kill('SIGTERM');
  const r = await run;
  t.equal(r.signal, 'SIGTERM');
});

t.test('agent: a run killed while running leaves nothing on the device', async (t) => {
  const marker = `400.${process.pid}4`;
  const run = tether(d, ['run', 'sleep', marker]);
  const seen = () => sleepers(marker).length > 0;
  t.ok(await waitFor(seen, 10_000), 'sleep runs on the device');
  run.child.kill('SIGKILL');
  await run;
  t.ok(
    await waitFor(() => !seen(), 5_000),
    'the agent passed the abort on and the daemon killed the run',
  );
});

t.test('agent: --stop ends it and a stale socket is ignored', async (t) => {
  process.env.TETHER_HOME = d.home;
  const paths = agentPaths('dev');
  const stopped = await tether(d, ['agent', '--stop']);
  t.equal(stopped.code, 0);
  for (let i = 0; i < 50 && existsSync(paths.socket); i++)
    await new Promise((r) => setTimeout(r, 100));
  t.notOk(existsSync(join(paths.dir, 'dev.sock')), 'socket removed');
  writeFileSync(paths.socket, '');
  const r = await tether(d, ['run', 'sh', '-c', 'echo direct']);
  t.equal(r.stdout, 'direct\n', 'falls back to a direct connection');
});
