// tetherd's own life: a SIGTERM closes its connections and kills their runs.
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { startDaemon, tether } from '../lib/tetherd.ts';

const sleeping = (marker: string) => {
  try {
    return execFileSync('pgrep', ['-f', `^sleep ${marker.replace('.', '\\.')}$`]).length > 0;
  } catch {
    return false;
  }
};
const until = async (cond: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; Date.now() < end && !cond(); )
    await new Promise((r) => setTimeout(r, 100));
  return cond();
};

t.test('SIGTERM to tetherd ends its runs and tells the client', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const marker = `500.${process.pid}5`;
  const run = tether(d, ['run', 'sleep', marker]);
  t.ok(await until(() => sleeping(marker), 10_000), 'the run started');
  // ip netns exec execs tetherd's wrapper, which execs node: the pid is the daemon's.
  process.kill(d.proc.pid!, 'SIGTERM');
  const r = await run;
  t.equal(r.code, 255);
  t.match(r.stderr, /^tether: dev: .*shutting down/m);
  t.ok(await until(() => !sleeping(marker), 5_000), 'the run was killed');
});
