// The daemon's status API: /health, /v1/info, /v1/sessions and /metrics (Prometheus).
// One fastify app answers on the TLS port (ALPN http/1.1, paired clients only), on
// the local unix socket and, through inject, on `status` streams of a connection.
import { version as kernelVersion, release } from 'node:os';
import Fastify, { LogController } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import pkg from '../package.json' with { type: 'json' };
import type { Activity } from './activity.ts';
import type { ContentCache } from './cache.ts';
import { fastTotals } from './fast-answers.ts';
import type { Logger } from './log.ts';
import { viewerOf } from './status-viewer.ts';

export interface StatusSources {
  activity: Activity;
  cache: ContentCache | null;
  name: string;
  fingerprint: string;
  /** Whether traced runs filter with seccomp (false: every syscall stops). */
  seccomp: boolean | null;
  /** How redirected calls reach tetherd (null: no traced runs). */
  tracer: 'ptrace' | 'unotify' | null;
}

function cacheStats(cache: ContentCache | null) {
  if (!cache) return null;
  const s = cache.stats;
  const opens = s.hits + s.misses;
  return { ...s, hitRate: opens === 0 ? null : s.hits / opens };
}

function info(src: StatusSources) {
  const { activity } = src;
  return {
    name: src.name,
    version: pkg.version,
    node: process.version,
    arch: process.arch,
    kernel: { release: release(), version: kernelVersion() },
    fingerprint: src.fingerprint,
    pid: process.pid,
    startedAt: new Date(activity.startedAt).toISOString(),
    uptimeSeconds: Math.round((Date.now() - activity.startedAt) / 1000),
    rssBytes: process.memoryUsage.rss(),
    connections: activity.listConnections().length,
    runs: activity.listRuns().length,
    view: src.cache !== null,
    seccomp: src.seccomp,
    tracer: src.tracer,
    cache: cacheStats(src.cache),
    fastAnswers: src.cache ? fastTotals() : null,
  };
}

function sessions(activity: Activity, viewer: string | null) {
  const runs = activity.listRuns();
  const mine = activity.listConnections().filter((c) => viewer === null || c.client === viewer);
  return mine.map((c) => ({
    ...c,
    since: new Date(c.since).toISOString(),
    runs: runs.filter((r) => r.connection === c.id).map(({ connection: _, ...r }) => r),
  }));
}

function metrics(src: StatusSources): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register });
  const { activity } = src;
  // Counters mirror totals kept by the daemon: set to them at each scrape.
  const total = (name: string, help: string, value: () => number) =>
    new Counter({
      name,
      help,
      registers: [register],
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  const gauge = (name: string, help: string, value: () => number) =>
    new Gauge({
      name,
      help,
      registers: [register],
      collect() {
        this.set(value());
      },
    });
  new Gauge({
    name: 'tetherd_info',
    help: 'tetherd build and host facts (always 1)',
    labelNames: ['version', 'node', 'arch', 'kernel'],
    registers: [register],
    collect() {
      this.set(
        { version: pkg.version, node: process.version, arch: process.arch, kernel: release() },
        1,
      );
    },
  });
  gauge('tetherd_uptime_seconds', 'seconds since tetherd started', () =>
    Math.round((Date.now() - activity.startedAt) / 1000),
  );
  gauge('tetherd_connections', 'open client connections', () => activity.listConnections().length);
  gauge('tetherd_runs', 'runs of programs in progress', () => activity.listRuns().length);
  total(
    'tetherd_connections_accepted_total',
    'client connections accepted',
    () => activity.connectionsAccepted,
  );
  total('tetherd_runs_started_total', 'runs asked for by clients', () => activity.runsStarted);
  if (src.cache) {
    const cache = src.cache;
    gauge(
      'tetherd_cache_bytes',
      'bytes of host file content cached on the device',
      () => cache.stats.bytes,
    );
    gauge('tetherd_cache_entries', 'host files cached on the device', () => cache.stats.entries);
    total(
      'tetherd_cache_hits_total',
      'host file opens served from the device cache',
      () => cache.hits,
    );
    total(
      'tetherd_cache_misses_total',
      'host file opens whose content came over the link',
      () => cache.misses,
    );
    total(
      'tetherd_fast_answers_total',
      "redirected calls the tracer's wait answered from a run's table, without JavaScript",
      () => fastTotals().hits,
    );
  }
  return register;
}

export async function createStatusApp(src: StatusSources, log: Logger) {
  const app = Fastify({
    loggerInstance: log.child({ api: 'status' }),
    logController: new LogController({ disableRequestLogging: true }),
  });
  const register = metrics(src);
  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/v1/info', async () => info(src));
  app.get('/v1/sessions', async (req) => ({
    sessions: sessions(src.activity, viewerOf(req.socket, req.headers)),
  }));
  app.get('/metrics', async (_req, reply) => {
    reply.type(register.contentType);
    return register.metrics();
  });
  await app.ready();
  return app;
}
