import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { formatStatus } from '../../client/status.ts';
import { Activity } from '../../daemon/activity.ts';
import { ContentCache } from '../../daemon/cache.ts';
import { createLogger } from '../../daemon/log.ts';
import { createStatusApp } from '../../daemon/status.ts';
import pkg from '../../package.json' with { type: 'json' };
import { parseHeader, parseStatusReply } from '../../transport/protocol.ts';

const run = (argv: string[], pid: number) => ({
  describe: () => ({
    id: 4,
    state: 'running',
    pid,
    argv,
    cwd: '/src',
    view: true,
    tty: false,
    since: new Date(Date.now() - 5000).toISOString(),
  }),
  terminate: () => {},
});

async function app(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'tether-status-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const activity = new Activity();
  const cache = new ContentCache(dir);
  const a = await createStatusApp(
    { activity, cache, name: 'board', fingerprint: 'SHA256:dev', seccomp: true, tracer: 'ptrace' },
    createLogger('silent', 'json'),
  );
  t.teardown(() => a.close());
  return { a, activity, cache };
}

t.test('/health, /v1/info and /v1/sessions follow what the daemon does', async (t) => {
  const { a, activity, cache } = await app(t);
  t.same((await a.inject('/health')).json(), { status: 'ok' });

  let info = (await a.inject('/v1/info')).json();
  t.equal(info.version, pkg.version);
  t.equal(info.arch, process.arch);
  t.match(info.kernel.release, /^\d+\.\d+/);
  t.equal(info.runs, 0);
  t.same(info.cache, { entries: 0, bytes: 0, limit: 1 << 30, hits: 0, misses: 0, hitRate: null });

  cache.put('1:2:3:4:5', Buffer.from('hello'));
  cache.served(false);
  cache.served(true);
  cache.served(true);
  const c = activity.connectionOpened({
    client: 'SHA256:cl',
    name: 'laptop',
    address: '10.0.0.1:5',
  });
  const r = run(['make', '-j2'], 4242);
  activity.runOpened(r, c);
  info = (await a.inject('/v1/info')).json();
  t.equal(info.connections, 1);
  t.equal(info.runs, 1);
  t.match(info.cache, { entries: 1, bytes: 5, hits: 2, misses: 1 });
  t.equal(info.cache.hitRate, 2 / 3);

  const { sessions } = (await a.inject('/v1/sessions')).json();
  t.equal(sessions.length, 1);
  t.match(sessions[0], { id: c, client: 'SHA256:cl', name: 'laptop', address: '10.0.0.1:5' });
  t.same(
    sessions[0].runs.map((x: { pid: number; argv: string[] }) => [x.pid, x.argv]),
    [[4242, ['make', '-j2']]],
  );

  activity.runClosed(r);
  activity.connectionClosed(c);
  t.same((await a.inject('/v1/sessions')).json(), { sessions: [] });
  t.equal((await a.inject('/nope')).statusCode, 404);
});

t.test('/metrics is Prometheus text with the daemon gauges and counters', async (t) => {
  const { a, activity, cache } = await app(t);
  const c = activity.connectionOpened({ client: null, name: null, address: null });
  activity.runOpened(run(['sleep', '9'], 7), c);
  cache.served(true);
  const res = await a.inject('/metrics');
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const value = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(res.body);
    return m ? Number(m[1]) : undefined;
  };
  t.equal(value('tetherd_runs'), 1);
  t.equal(value('tetherd_connections'), 1);
  t.equal(value('tetherd_runs_started_total'), 1);
  t.equal(value('tetherd_cache_hits_total'), 1);
  t.equal(value('tetherd_cache_misses_total'), 0);
  t.equal(value('tetherd_info'), 1);
  t.match(res.body, `tetherd_info{version="${pkg.version}"`);
  t.ok((value('process_resident_memory_bytes') ?? 0) > 0, 'the process metrics are there');
  t.match(res.body, /^# TYPE tetherd_runs_started_total counter$/m);
  // A second scrape gives the same totals, not doubled ones.
  t.match((await a.inject('/metrics')).body, /^tetherd_runs_started_total 1$/m);
});

t.test('status streams: requests and replies are checked', async (t) => {
  t.same(parseHeader({ kind: 'status', path: '/v1/info' }), { kind: 'status', path: '/v1/info' });
  for (const path of ['v1/info', '', 7, `/${'x'.repeat(300)}`, '/a\0b'])
    t.throws(
      () => parseHeader({ kind: 'status', path }),
      { message: /^MESSAGE_ERROR/ },
      JSON.stringify(path).slice(0, 40),
    );
  t.same(parseStatusReply({ status: 200, type: 'application/json', body: '{}' }), {
    status: 200,
    type: 'application/json',
    body: '{}',
  });
  t.throws(() => parseStatusReply({ status: 200, type: 'x' }), { message: /^MESSAGE_ERROR/ });
});

t.test('tether status prints the daemon, its cache and one line per run', async (t) => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  const text = formatStatus(
    'board',
    {
      name: 'board',
      version: '0.1.0',
      node: 'v24.21.0',
      arch: 'arm64',
      kernel: { release: '6.1.0-56-arm64' },
      fingerprint: 'SHA256:dev',
      uptimeSeconds: 3 * 3600 + 125,
      rssBytes: 80 * 1024 * 1024,
      connections: 1,
      runs: 1,
      cache: { entries: 12, bytes: 3 * 1024 * 1024, hits: 9, misses: 3, hitRate: 0.75 },
    },
    [
      {
        id: 1,
        client: 'SHA256:cl',
        name: 'laptop',
        address: '10.0.0.1:5',
        since: '2026-01-01T11:59:00Z',
        runs: [
          {
            id: 4,
            state: 'running',
            pid: 4242,
            argv: ['make', '-j2'],
            since: '2026-01-01T11:59:30Z',
          },
        ],
      },
    ],
    now,
  );
  t.equal(
    text,
    [
      'board: tetherd 0.1.0 (node v24.21.0, arm64) on Linux 6.1.0-56-arm64, up 3h2m, 80.0 MiB resident',
      'key SHA256:dev',
      'cache: 12 files, 3.0 MiB; 75.0% of 12 opens from the cache',
      '1 connection, 1 run',
      '  connection 1: laptop from 10.0.0.1:5, 1m',
      '  RUN  PID   STATE    AGE  CLIENT  COMMAND',
      '  4    4242  running  30s  laptop  make -j2',
      '',
    ].join('\n'),
  );
});
