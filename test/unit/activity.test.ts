import t from 'tap';
import { Activity } from '../../daemon/activity.ts';

function fakeRun(onTerminate: () => void) {
  return {
    describe: () => ({
      id: 1,
      state: 'running',
      pid: 1,
      argv: ['x'],
      cwd: '/',
      view: false,
      tty: false,
      since: new Date().toISOString(),
    }),
    terminate: onTerminate,
  };
}

t.test('a stopping daemon waits for its runs to end after their SIGTERM', async (t) => {
  const a = new Activity();
  const c = a.connectionOpened({ client: null, name: null, address: null });
  const runs = [0, 1].map(() => {
    const r = fakeRun(() => setTimeout(() => a.runClosed(r), 50));
    a.runOpened(r, c);
    return r;
  });
  const started = Date.now();
  await a.terminateRuns(5000);
  t.equal(a.listRuns().length, 0, 'both ended');
  t.ok(Date.now() - started < 4000, 'without waiting for the grace time');
  t.equal(runs.length, 2);
});

t.test('runs that ignore their SIGTERM are waited for the grace time only', async (t) => {
  const a = new Activity();
  let terminated = 0;
  a.runOpened(
    fakeRun(() => terminated++),
    a.connectionOpened({ client: null, name: null, address: null }),
  );
  const started = Date.now();
  await a.terminateRuns(300);
  t.equal(terminated, 1);
  t.ok(Date.now() - started >= 290, 'it waited');
  t.equal(a.listRuns().length, 1, 'the run is still there for the caller to kill');
  await a.terminateRuns(0);
  t.equal(terminated, 2);
});

t.test('with no runs, stopping does not wait', async (t) => {
  const a = new Activity();
  const started = Date.now();
  await a.terminateRuns(10_000);
  t.ok(Date.now() - started < 1000);
});
