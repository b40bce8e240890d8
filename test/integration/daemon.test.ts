// tetherd's own life: a SIGTERM gives the runs a SIGTERM and time to end (their
// exit and what they wrote reach the host), then closes its connections and kills
// what is left.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { sleepers, waitFor } from '../lib/procs.ts';
import { startDaemon, tether } from '../lib/tetherd.ts';

t.test('SIGTERM to tetherd ends its runs with a SIGTERM and tells the client', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const marker = `500.${process.pid}5`;
  const run = tether(d, ['run', 'sleep', marker]);
  t.ok(await waitFor(() => sleepers(marker).length > 0, 10_000), 'the run started');
  // ip netns exec execs tetherd's wrapper, which execs node: the pid is the daemon's.
  process.kill(d.proc.pid!, 'SIGTERM');
  const r = await run;
  t.equal(r.signal, 'SIGTERM', `the run died of the SIGTERM, and tether with it: ${r.stderr}`);
  t.ok(await waitFor(() => sleepers(marker).length === 0, 5_000), 'the run is gone');
  t.match(d.stderr(), /"msg":"shutting down"/);
});

t.test(
  'a run that handles the SIGTERM finishes: its writes reach the host, its exit the client',
  async (t) => {
    const d = await startDaemon({ minimalRoot: true });
    const dir = mkdtempSync(join(tmpdir(), 'tether-stop-'));
    t.teardown(async () => {
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const script =
      'trap \'echo "saved at stop" >state.txt; exit 5\' TERM; echo ready >ready.txt; while :; do sleep 0.1; done';
    const run = tether(d, ['run', '-C', dir, 'sh', '-c', script]);
    t.ok(
      await waitFor(() => {
        try {
          return readFileSync(join(dir, 'ready.txt'), 'utf8') === 'ready\n';
        } catch {
          return false;
        }
      }, 15_000),
      'the run started',
    );
    process.kill(d.proc.pid!, 'SIGTERM');
    const r = await run;
    t.equal(r.code, 5, r.stderr);
    t.equal(readFileSync(join(dir, 'state.txt'), 'utf8'), 'saved at stop\n');
  },
);

t.test('a run that ignores SIGTERM is killed after the grace time', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const marker = `501.${process.pid}5`;
  const run = tether(d, ['run', 'sh', '-c', `trap "" TERM; sleep ${marker}`]);
  t.ok(await waitFor(() => sleepers(marker).length > 0, 10_000), 'the run started');
  process.kill(d.proc.pid!, 'SIGTERM');
  const r = await run;
  t.equal(r.code, 255);
  t.match(r.stderr, /^tether: dev: .*shutting down/m);
  t.ok(await waitFor(() => sleepers(marker).length === 0, 5_000), 'the run was killed');
});
