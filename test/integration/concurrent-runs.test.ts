// Concurrent runs on one state directory, as the local device makes them: each `tether run`
// starts its own `tetherd --stdio`, so `make -j` or `tether run a | tether run b` puts several
// daemons on the same state directory, starting and stopping while the others run programs.
// Each daemon keeps its exec links and run scratch to itself and removes only its own, and
// those of daemons provably gone.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { TETHERD, tether } from '../lib/tetherd.ts';

t.setTimeout(300_000);

const state = mkdtempSync(join(tmpdir(), 'tetherd-shared-'));
const home = mkdtempSync(join(tmpdir(), 'tether-home-'));
t.teardown(() => {
  rmSync(state, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});
// The local device's command (client/connect.ts), on a state directory of the test's own.
writeFileSync(
  join(home, 'config'),
  `default par\ndevice par\n  command exec '${TETHERD}' --stdio --log-level warn --user root --state '${state}'\n  agent no\n`,
);
const client = { env: { ...process.env, TETHER_HOME: home, TETHER_DEVICE: '' } };
const live = () => readdirSync(join(state, 'live'));

/** A daemon of the state directory that serves nobody: started, then stopped with `signal`. */
function bystander(signal: NodeJS.Signals, afterMs: number): Promise<void> {
  const d: ChildProcess = spawn(
    TETHERD,
    ['--stdio', '--log-level', 'warn', '--user', 'root', '--state', state],
    { stdio: ['pipe', 'ignore', 'ignore'] },
  );
  setTimeout(() => d.kill(signal), afterMs);
  return new Promise((resolve) => d.on('exit', () => resolve()));
}

t.test('8 loops of 100 execs beside daemons starting and stopping', async (t) => {
  const loop = 'n=0; for i in $(seq 100); do /bin/true || n=$((n+1)); done; echo "$n failed"';
  const loops = Array.from({ length: 8 }, () => tether(client, ['run', 'sh', '-c', loop]));
  // While they run: short runs (a daemon each), and daemons ended by SIGTERM and SIGKILL.
  const others: Promise<unknown>[] = [];
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 400));
    others.push(tether(client, ['run', '/bin/true']));
    others.push(bystander(i % 2 ? 'SIGKILL' : 'SIGTERM', 300));
  }
  const results = await Promise.all(loops);
  const short = (await Promise.all(others)).filter((r) => r !== undefined);
  results.forEach((r, i) => {
    t.same(
      { code: r.code, stdout: r.stdout, stderr: r.stderr },
      { code: 0, stdout: '0 failed\n', stderr: '' },
      `loop ${i}`,
    );
  });
  for (const r of short as { code: number; stderr: string }[])
    t.same({ code: r.code, stderr: r.stderr }, { code: 0, stderr: '' }, 'a short run');
});

t.test(
  "a killed daemon's directory goes when the next one starts; each removes its own",
  async (t) => {
    await bystander('SIGKILL', 1000);
    t.equal(live().length, 1, 'SIGKILL leaves its directory');
    // Its loader links' directory in /tmp too, named in its exec directory.
    const short = readFileSync(join(state, 'live', live()[0]!, 'exec/short-dir'), 'utf8');
    t.ok(existsSync(short), `and ${short}`);
    const r = await tether(client, ['run', '/bin/true']);
    t.equal(r.code, 0, r.stderr);
    t.same(live(), [], 'the next daemon removed it, and its own on exit');
    t.notOk(existsSync(short), `${short} too`);
  },
);
