#!/usr/bin/env node
// tetherd: the device daemon. Listens for mutually authenticated TLS
// connections (or serves one connection on stdio) and runs programs for them.
import { chmodSync, lstatSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { Command, InvalidArgumentError, Option } from 'commander';
import pkg from '../package.json' with { type: 'json' };
import type { Connection } from '../transport/connection.ts';
import { ErrorCode } from '../transport/errors.ts';
import { encodeFrame, FrameType } from '../transport/frames.ts';
import { loadOrCreateIdentity } from '../transport/identity.ts';
import { DEFAULT_PORT, type StatusReply } from '../transport/protocol.ts';
import { ALPN, createTlsServer, HTTP_ALPN, peerFingerprint } from '../transport/tls.ts';
import { Activity } from './activity.ts';
import { PairingGate } from './admission.ts';
import { ContentCache } from './cache.ts';
import type { RunAs } from './exec.ts';
import { ExecLinks } from './exec-links.ts';
import { Instance, runsOnlyDir } from './instance.ts';
import { createLogger, type Logger } from './log.ts';
import * as native from './native.ts';
import { openPairing, pairingOpen } from './pairing.ts';
import { serveConnection } from './server.ts';
import { defaultStateDir, State } from './state.ts';
import type { StatusSources } from './status.ts';
import { VIEWER_HEADER, type ViewerSocket } from './status-viewer.ts';
import { lookupUser } from './users.ts';
import { hasSeccomp, type Tracing, type ViewEnv } from './view-session.ts';

/** Connections tetherd serves at once (each client holds one, or one per agent). */
const MAX_CONNECTIONS = 256;

/** How long runs get to end after their SIGTERM when tetherd stops. */
const STOP_GRACE_MS = 10_000;

function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(v);
  const port = Number(m?.[3] ?? DEFAULT_PORT);
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new InvalidArgumentError('expected HOST[:PORT]');
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError('expected a positive number of seconds');
  return n;
}

interface DaemonOptions {
  listen: { host: string; port: number };
  stdio?: boolean;
  state: string;
  user?: string;
  pair?: boolean;
  idleTimeout: number;
  /** False with --no-seccomp: every syscall of a traced program stops (PTRACE_SYSCALL). */
  seccomp: boolean;
  /** --tracer; undefined: unotify where the kernel wakes the listener synchronously. */
  tracer?: Tracing;
  logLevel: string;
  logFormat: 'json' | 'pretty';
  /** The status API's unix socket; undefined: in the state directory; false: none. */
  statusSocket?: string | false;
}

function resolveRunAs(user: string | undefined): RunAs {
  const isRoot = process.getuid?.() === 0;
  if (user === undefined) {
    if (isRoot)
      throw new Error(
        'tetherd runs as root: name the user programs run as with --user NAME (--user root to allow root)',
      );
    return { uid: -1, gid: -1, groups: null };
  }
  const u = lookupUser(user);
  if (!isRoot) {
    if (u.uid !== process.getuid?.())
      throw new Error(`--user ${user}: only root can run programs as another user`);
    return { uid: -1, gid: -1, groups: null };
  }
  return { uid: u.uid, gid: u.gid, groups: u.groups };
}

/**
 * How redirected calls reach tetherd: --tracer, else seccomp user notification where the
 * kernel has its synchronous wake-up (Linux 6.6; slower than ptrace without it, see
 * docs/hot-path.md), else ptrace alone.
 */
function chooseTracer(want: Tracing | undefined, seccomp: boolean): Tracing {
  if (!seccomp) {
    if (want === 'unotify') throw new Error('--tracer unotify needs seccomp filters');
    return 'ptrace';
  }
  const level = native.notifyProbe();
  if (want === 'unotify' && level === 0)
    throw new Error('--tracer unotify: this kernel has no seccomp user notification');
  return want ?? (level === 2 ? 'unotify' : 'ptrace');
}

/** The content cache and run scratch space under the state directory, if tracing can work. */
function makeViewEnv(
  stateDir: string,
  useSeccomp: boolean,
  tracer: Tracing | undefined,
  runGid: number,
  log: Logger,
): ViewEnv | null {
  const status = readFileSync('/proc/self/status', 'latin1');
  const seccomp = useSeccomp && hasSeccomp(status);
  // A tracer asked for and not there is the user's error, not a missing feature.
  const tracing = chooseTracer(tracer, seccomp);
  try {
    // Run users reach the cache and their scratch through it; what is secret in it (the
    // identity, authorized clients) is 0600 itself, so search permission is enough.
    chmodSync(stateDir, (statSync(stateDir).mode & 0o777) | 0o111);
    const instance = new Instance(stateDir);
    const runsDir = join(instance.dir, 'runs');
    runsOnlyDir(runsDir, runGid);
    const links = new ExecLinks(join(instance.dir, 'exec'), runGid);
    process.once('exit', () => {
      links.close();
      instance.close();
    });
    return {
      cache: new ContentCache(join(stateDir, 'cache'), {
        links: join(instance.dir, 'cache'),
        runGid,
        shared: instance.others > 0,
      }),
      runGid,
      runsDir,
      seccomp,
      tracer: tracing,
      links,
    };
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'runs with a view are unavailable');
    return null;
  }
}

async function serve(o: DaemonOptions, log: Logger): Promise<void> {
  const state = new State(o.state);
  const runAs = resolveRunAs(o.user);
  const id = await loadOrCreateIdentity(state.dir, `tetherd@${hostname()}`);
  const viewEnv = makeViewEnv(state.dir, o.seccomp, o.tracer, runAs.gid, log);
  const activity = new Activity();
  const sources: StatusSources = {
    activity,
    cache: viewEnv?.cache ?? null,
    name: hostname(),
    fingerprint: id.fingerprint,
    seccomp: viewEnv?.seccomp ?? null,
    tracer: viewEnv?.tracer ?? null,
  };
  // fastify and prom-client load after the daemon listens: starting is what slow devices wait for.
  let statusLoad: ReturnType<typeof loadStatusApp> | null = null;
  const statusApp = () => {
    statusLoad ??= loadStatusApp(sources, log);
    return statusLoad;
  };
  const base = {
    state,
    runAs,
    log,
    deviceFingerprint: id.fingerprint,
    deviceName: hostname(),
    idleTimeoutMs: o.idleTimeout * 1000,
    viewEnv,
    activity,
    status: async (url: string, viewer: string | null): Promise<StatusReply> => {
      const headers = viewer === null ? {} : { [VIEWER_HEADER]: viewer };
      const r = await (await statusApp()).inject({ method: 'GET', url, headers });
      return { status: r.statusCode, type: String(r.headers['content-type'] ?? ''), body: r.body };
    },
  };

  if (o.stdio) {
    // The channel (ssh, a local pipe) has authenticated the peer already.
    const socket = Duplex.from({ readable: process.stdin, writable: process.stdout });
    const conn = serveConnection(socket, { kind: 'authorized', fingerprint: null }, base);
    conn.on('close', () => process.exit(0));
    stopOnSignals(
      activity,
      () => {},
      () => conn.close(ErrorCode.NO_ERROR, 'tetherd is shutting down'),
    );
    dieCleanly(log, () => conn.close(ErrorCode.INTERNAL_ERROR, 'tetherd failed'));
    return;
  }

  if (o.pair) {
    const code = openPairing(state);
    process.stderr.write(`tetherd: pairing code ${code} (valid 10 minutes, one use)\n`);
  }
  const live = new Set<Connection>();
  const track = (c: Connection) => {
    live.add(c);
    c.on('close', () => live.delete(c));
  };
  const server = createTlsServer(id, [ALPN, HTTP_ALPN]);
  // Beyond this many sockets new ones are dropped at once, TLS handshakes included.
  server.maxConnections = MAX_CONNECTIONS;
  const pairingGate = new PairingGate();
  server.on('secureConnection', (socket) => {
    // A peer may reset at any moment (a refused one too): that ends its socket, not tetherd.
    socket.on('error', (e) => log.debug({ err: e.message }, 'socket error'));
    const fp = peerFingerprint(socket);
    const addr = `${socket.remoteAddress}:${socket.remotePort}`;
    if (!fp) {
      log.warn({ addr }, 'client sent no certificate');
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const client = state.client(fp);
    if (socket.alpnProtocol === HTTP_ALPN) {
      // The status API, for paired clients only; anyone else gets nothing at all.
      if (client)
        statusApp().then(
          (app) => {
            (socket as ViewerSocket).tetherViewer = fp;
            app.server.emit('connection', socket);
          },
          (e: Error) => socket.destroy(e),
        );
      else {
        log.warn({ addr, client: fp }, 'refused status request of an unknown client');
        socket.destroy();
      }
      return;
    }
    if (client) {
      log.info({ addr, client: fp }, 'client connected');
      const peer = { kind: 'authorized', fingerprint: fp, name: client.name } as const;
      track(serveConnection(socket, peer, base, addr));
    } else if (pairingOpen(state)) {
      const slot = pairingGate.admit(socket.remoteAddress ?? '?');
      if ('refused' in slot) {
        log.warn({ addr, client: fp, err: slot.refused }, 'refused pairing connection');
        socket.end(
          encodeFrame({ type: FrameType.CLOSE, code: ErrorCode.REFUSED, reason: slot.refused }),
        );
        return;
      }
      log.info({ addr, client: fp }, 'unknown client: pairing only');
      const c = serveConnection(socket, { kind: 'pairing', fingerprint: fp }, base, addr);
      c.on('close', slot.release);
      track(c);
    } else {
      log.warn({ addr, client: fp }, 'refused unknown client');
      // CLOSE instead of HELLO: nothing of the protocol is offered to a stranger.
      const reason = `client key ${fp} is not authorized on this device; pair it with \`tether pair\``;
      socket.end(encodeFrame({ type: FrameType.CLOSE, code: ErrorCode.UNAUTHORIZED, reason }));
    }
  });
  server.on('tlsClientError', (err, socket) => {
    log.warn({ addr: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => resolve());
  });
  const addr = server.address();
  log.info({ addr, fingerprint: id.fingerprint, version: pkg.version }, 'listening');
  // Tests and scripts wait for this line to know the port (with --listen HOST:0).
  if (typeof addr === 'object' && addr)
    process.stderr.write(`tetherd: listening on ${addr.address}:${addr.port}\n`);
  const socketPath =
    o.statusSocket === false ? null : (o.statusSocket ?? join(state.dir, 'status.sock'));
  if (socketPath) await listenStatusSocket(statusApp, socketPath, log);
  stopOnSignals(
    activity,
    () => {
      log.info({ connections: live.size, runs: activity.listRuns().length }, 'shutting down');
      server.close();
      if (socketPath) rmSync(socketPath, { force: true });
    },
    () => {
      for (const c of live) c.close(ErrorCode.NO_ERROR, 'tetherd is shutting down');
      setImmediate(() => process.exit(0));
    },
  );
  dieCleanly(log, () => {
    for (const c of live) c.close(ErrorCode.INTERNAL_ERROR, 'tetherd failed');
  });
}

/**
 * SIGTERM and SIGINT: `begin` (stop accepting), then the runs get a SIGTERM and STOP_GRACE_MS
 * to end, so what they wrote reaches the host and their clients get their exit; then `closeAll`
 * closes the connections, which kills what is left: no program outlives the daemon. A second
 * signal does not wait.
 */
function stopOnSignals(activity: Activity, begin: () => void, closeAll: () => void): void {
  let stopping = false;
  const stop = async () => {
    if (!stopping) {
      stopping = true;
      begin();
      await activity.terminateRuns(STOP_GRACE_MS);
    }
    closeAll();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function loadStatusApp(sources: StatusSources, log: Logger) {
  const { createStatusApp } = await import('./status.ts');
  return createStatusApp(sources, log);
}

/** The status API on a unix socket only its owner can use; failing that, a warning. */
async function listenStatusSocket(
  app: () => Promise<{ server: Server }>,
  path: string,
  log: Logger,
): Promise<void> {
  try {
    const http = (await app()).server;
    // A socket left by a daemon that was killed.
    if (lstatSync(path, { throwIfNoEntry: false })?.isSocket()) rmSync(path);
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      // The socket is made 0600 by the umask during listen, which binds at once: nothing else
      // of the daemon runs under that umask.
      const umask = process.umask(0o177);
      try {
        http.listen(path, () => {
          http.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    log.info({ path }, 'status API on unix socket');
  } catch (e) {
    log.warn({ path, err: (e as Error).message }, 'status socket unavailable');
  }
}

/** A bug must not leave runs behind: on an uncaught error, end them all, then exit 1. */
function dieCleanly(log: Logger, endAll: () => void): void {
  process.on('uncaughtException', (err) => {
    log.fatal({ err: err.message, stack: err.stack }, 'uncaught error: ending every run');
    try {
      endAll();
    } finally {
      process.exit(1);
    }
  });
}

const program = new Command('tetherd')
  .description('tether device daemon: runs programs for paired tether clients')
  .version(`tetherd ${pkg.version} (node ${process.version}, ${process.arch})`, '-V, --version')
  // Options after a subcommand are its own (`tetherd pair --state DIR`).
  .enablePositionalOptions()
  .addOption(
    new Option('-l, --listen <host:port>', 'address to listen on')
      .default(parseListen(`0.0.0.0:${DEFAULT_PORT}`), `0.0.0.0:${DEFAULT_PORT}`)
      .argParser(parseListen),
  )
  .option(
    '--stdio',
    'serve one connection on stdin/stdout (authenticated by the channel, e.g. ssh)',
  )
  .option('--state <dir>', 'state directory (keys, paired clients)', defaultStateDir())
  .option('-u, --user <name>', 'user that programs run as (required when tetherd runs as root)')
  .option('--pair', 'open pairing at start and print a one-time code')
  .option('--status-socket <path>', 'unix socket of the status API (default: STATE/status.sock)')
  .option('--no-status-socket', 'no status API on a unix socket (it stays on the TLS port)')
  .option(
    '--no-seccomp',
    'stop traced programs at every syscall instead of filtering (what kernels without seccomp get)',
  )
  .addOption(
    new Option(
      '--tracer <tracer>',
      'how redirected calls reach tetherd (default: unotify on Linux 6.6 and later, else ptrace)',
    ).choices(['ptrace', 'unotify']),
  )
  .addOption(
    new Option('--idle-timeout <seconds>', 'close a connection silent this long')
      .default(60)
      .argParser(parseSeconds),
  )
  .addOption(
    new Option('--log-level <level>', 'log level')
      .choices(['trace', 'debug', 'info', 'warn', 'error', 'silent'])
      .default('info'),
  )
  .addOption(
    new Option('--log-format <format>', 'log format')
      .choices(['json', 'pretty'])
      .default(process.stderr.isTTY ? 'pretty' : 'json'),
  )
  .action(async (o: DaemonOptions) => {
    const log = createLogger(o.logLevel, o.logFormat);
    try {
      await serve(o, log);
    } catch (e) {
      process.stderr.write(`tetherd: ${(e as Error).message}\n`);
      process.exit(1);
    }
  });

program
  .command('pair')
  .description('open pairing for the running daemon and print the one-time code')
  .option('--state <dir>', 'state directory', defaultStateDir())
  .action((o: { state: string }) => {
    const code = openPairing(new State(o.state));
    process.stdout.write(
      `pairing code: ${code}\nvalid for 10 minutes, one use; on the host run: tether pair NAME ADDRESS\n`,
    );
  });

program
  .command('fingerprint')
  .description("print the device's key fingerprint (created on first use)")
  .option('--state <dir>', 'state directory', defaultStateDir())
  .action(async (o: { state: string }) => {
    const id = await loadOrCreateIdentity(new State(o.state).dir, `tetherd@${hostname()}`);
    process.stdout.write(`${id.fingerprint}\n`);
  });

program.parseAsync().catch((e: Error) => {
  process.stderr.write(`tetherd: ${e.message}\n`);
  process.exit(1);
});
