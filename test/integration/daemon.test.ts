// tetherd's own life: a SIGTERM closes its connections and kills their runs.
import t from 'tap';
import { sleepers, waitFor } from '../lib/procs.ts';
import { startDaemon, tether } from '../lib/tetherd.ts';

t.test('SIGTERM to tetherd ends its runs and tells the client', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const marker = `500.${process.pid}5`;
  const run = tether(d, ['run', 'sleep', marker]);
  t.ok(await waitFor(() => sleepers(marker).length > 0, 10_000), 'the run started');
  // ip netns exec execs tetherd's wrapper, which execs node: the pid is the daemon's.
  process.kill(d.proc.pid!, 'SIGTERM');
  const r = await run;
  t.equal(r.code, 255);
  t.match(r.stderr, /^tether: dev: .*shutting down/m);
  t.ok(await waitFor(() => sleepers(marker).length === 0, 5_000), 'the run was killed');
});
