// A run's streams close on both sides when it ends, failed or not: each
// open one holds a stream credit, and a long-lived agent connection would
// run out of them.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { duplexPair } from 'node:stream';
import t from 'tap';
import { TetherError } from '../../client/errors.ts';
import { type RunIO, run } from '../../client/run.ts';
import { viewMounts } from '../../client/view-config.ts';
import { Activity } from '../../daemon/activity.ts';
import { ContentCache } from '../../daemon/cache.ts';
import { ExecLinks } from '../../daemon/exec-links.ts';
import { Instance, runsOnlyDir } from '../../daemon/instance.ts';
import { createLogger } from '../../daemon/log.ts';
import { serveConnection } from '../../daemon/server.ts';
import { State } from '../../daemon/state.ts';
import type { ViewEnv } from '../../daemon/view-session.ts';
import { Connection } from '../../transport/connection.ts';
import { waitFor } from '../lib/procs.ts';

const openStreams = (c: Connection) =>
  (c as unknown as { streams: Map<number, unknown> }).streams.size;

/** What tetherd sets up for runs with a view (daemon/main.ts), in a state directory of ours. */
function testViewEnv(): ViewEnv {
  const state = mkdtempSync(join(tmpdir(), 'tetherd-state-'));
  const instance = new Instance(state);
  const runsDir = join(instance.dir, 'runs');
  runsOnlyDir(runsDir, -1);
  return {
    cache: new ContentCache(join(state, 'cache'), { links: join(instance.dir, 'cache') }),
    runsDir,
    runGid: -1,
    seccomp: true,
    tracer: 'ptrace',
    links: new ExecLinks(join(instance.dir, 'exec'), -1),
  };
}

const io: RunIO = {
  endpoint: () => ({ keepOpen: false }),
  controls: () => () => {},
  note: () => {},
  localFd: () => null,
};

t.test('failed and finished runs leave no stream open on either side', async (t) => {
  const [a, b] = duplexPair();
  const server = serveConnection(
    b,
    { kind: 'authorized', fingerprint: null },
    {
      state: new State(mkdtempSync(join(tmpdir(), 'tetherd-state-'))),
      runAs: { uid: -1, gid: -1, groups: null },
      log: createLogger('silent', 'json'),
      deviceFingerprint: 'test',
      deviceName: 'test',
      viewEnv: testViewEnv(),
      activity: new Activity(),
      status: async () => ({ status: 404, type: 'text/plain', body: '' }),
    },
  );
  const client = new Connection(a, { role: 'client', caps: ['exec'] });
  await client.ready();
  const req = {
    env: ['PATH=/usr/bin:/bin'],
    cwd: '/',
    umask: 0o22,
    tty: null,
    fds: [],
    verbose: false,
    deviceName: 'test',
    view: null,
    hide: [],
  };
  for (let i = 0; i < 3; i++) {
    const err = await run(client, { ...req, argv: ['no-such-program-here'] }, io).catch(
      (e: unknown) => e,
    );
    t.ok(err instanceof TetherError && err.exitCode === 127, 'a missing program fails with 127');
  }
  const ok = await run(client, { ...req, argv: ['sh', '-c', 'exit 4'] }, io);
  t.same(ok, { code: 4 });
  // With the view: the daemon ends the view stream when the run is over, and the client's
  // view service its side (it used to stay open, one per run, on an agent's connection).
  const view = viewMounts({ name: 'test', setenv: [], binds: [] }, { binds: [] }, '/');
  const viewed = await run(client, { ...req, argv: ['sh', '-c', 'exit 5'], view }, io);
  t.same(viewed, { code: 5 });
  t.ok(
    await waitFor(() => openStreams(client) === 0 && openStreams(server) === 0, 5_000, 20),
    'no stream left open',
  );
  client.close();
});
