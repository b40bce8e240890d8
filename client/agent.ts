// The per-device agent (like ssh's ControlMaster): holds one connection to
// the device and lets later `tether run`s use it through a unix socket, so
// a run pays no TLS handshake. Local clients speak the same protocol to the
// agent as to a device; the agent maps each of their streams onto a stream
// of the device connection.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { isSea } from 'node:sea';
import { Connection } from '../transport/connection.ts';
import { ErrorCode, TransportError } from '../transport/errors.ts';
import { encodeMessage, readHeader } from '../transport/messages.ts';
import { Caps } from '../transport/protocol.ts';
import type { Stream } from '../transport/stream.ts';
import { configDir, type DeviceConfig } from './config.ts';
import { connect } from './connect.ts';
import { TetherError } from './errors.ts';
import { listenForLaunches } from './launch.ts';

export function agentPaths(device: string): {
  dir: string;
  socket: string;
  launch: string;
  pid: string;
} {
  const dir = join(configDir(), 'agents');
  const safe = device.replace(/[^\w.-]/g, '_');
  return {
    dir,
    socket: join(dir, `${safe}.sock`),
    launch: join(dir, `${safe}.launch`),
    pid: join(dir, `${safe}.pid`),
  };
}

/** A Connection through the device's running agent, or null if none answers. */
export async function connectAgent(device: string): Promise<Connection | null> {
  const { socket: path } = agentPaths(device);
  const sock = await new Promise<net.Socket | null>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', (e: NodeJS.ErrnoException) => {
      // A socket file nobody listens on is left by an agent that died.
      if (e.code === 'ECONNREFUSED') rmSync(path, { force: true });
      resolve(null);
    });
  });
  if (!sock) return null;
  const conn = new Connection(sock, { role: 'client', caps: [Caps.EXEC] });
  try {
    const hello = await conn.ready();
    if (hello.caps.includes(Caps.EXEC)) return conn;
  } catch {
    // An agent that is shutting down: fall back to a direct connection.
  }
  conn.close();
  return null;
}

/** Maps one local stream onto a new device stream, rewriting the header's exec id. */
async function bridge(
  local: Stream,
  upstream: Connection,
  ids: Map<number, Stream>,
): Promise<void> {
  let header: unknown;
  try {
    header = await readHeader(local);
  } catch (e) {
    local.destroy(e as Error);
    return;
  }
  const h = header as Record<string, unknown> | null;
  // A run's fd and view streams name its exec stream, whose id differs upstream.
  if (h && (h.kind === 'fd' || h.kind === 'view')) {
    const exec = ids.get(h.exec as number);
    if (!exec) {
      local.destroy(
        new TransportError(ErrorCode.STREAM_STATE_ERROR, `no exec stream ${String(h.exec)}`),
      );
      return;
    }
    header = { ...h, exec: exec.id };
  }
  let up: Stream;
  try {
    up = upstream.openStream();
  } catch (e) {
    local.destroy(
      e instanceof TransportError ? e : new TransportError(ErrorCode.INTERNAL_ERROR, String(e)),
    );
    return;
  }
  ids.set(local.id, up);
  local.on('close', () => ids.delete(local.id));
  up.write(encodeMessage(header));
  local.pipe(up);
  up.pipe(local);
  // An abort on either side aborts the other with the same code.
  const forward = (from: Stream, to: Stream) =>
    from.on('error', (e) => {
      if (!to.destroyed)
        to.destroy(
          new TransportError(e instanceof TransportError ? e.code : ErrorCode.CANCELLED, e.message),
        );
    });
  forward(local, up);
  forward(up, local);
}

export interface AgentOptions {
  idleTimeoutS: number;
  /** Called once the socket accepts runs. */
  onReady?: () => void;
}

/** Runs the agent in this process until the device link ends or it idles out. */
export async function serveAgent(d: DeviceConfig, opts: AgentOptions): Promise<void> {
  const paths = agentPaths(d.name);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const upstream = await connect(d);
  const locals = new Set<Connection>();
  let idleTimer: NodeJS.Timeout | null = null;
  const server = net.createServer((sock) => {
    const local = new Connection(sock, {
      role: 'server',
      caps: [Caps.EXEC],
      idleTimeoutMs: 24 * 3600 * 1000,
    });
    const ids = new Map<number, Stream>();
    locals.add(local);
    if (idleTimer) clearTimeout(idleTimer);
    local.on('stream', (s) => {
      bridge(s, upstream, ids);
    });
    local.on('close', () => {
      for (const up of ids.values())
        up.destroy(new TransportError(ErrorCode.CANCELLED, 'run went away'));
      locals.delete(local);
      armIdle();
    });
  });
  let launches = 0;
  let launchServer: net.Server | null = null;
  const shutdown = (why: string) => {
    server.close();
    launchServer?.close();
    rmSync(paths.socket, { force: true });
    rmSync(paths.launch, { force: true });
    try {
      if (readFileSync(paths.pid, 'utf8').trim() === String(process.pid))
        rmSync(paths.pid, { force: true });
    } catch {
      // No pid file.
    }
    for (const l of locals) l.close(ErrorCode.CONNECTION_LOST, why);
    upstream.close();
    // Nothing is left to serve: leave now rather than wait on stray timers.
    setImmediate(() => process.exit(0));
  };
  const armIdle = () => {
    if (locals.size > 0 || launches > 0) return;
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = setTimeout(() => shutdown('agent idle'), opts.idleTimeoutS * 1000);
  };
  upstream.on('close', (err) => shutdown(`device link lost${err ? `: ${err.message}` : ''}`));
  process.on('SIGTERM', () => shutdown('agent stopped'));
  process.on('SIGINT', () => shutdown('agent stopped'));
  rmSync(paths.socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(paths.socket, () => resolve());
  });
  rmSync(paths.launch, { force: true });
  launchServer = await listenForLaunches(paths.launch, upstream, d, (delta) => {
    launches += delta;
    if (idleTimer) clearTimeout(idleTimer);
    armIdle();
  });
  writeFileSync(paths.pid, `${process.pid}\n`);
  armIdle();
  opts.onReady?.();
}

/** Starts an agent in the background and waits until it accepts runs. */
export async function startAgentProcess(device: string, idleTimeoutS: number): Promise<void> {
  const child = spawn(
    process.execPath,
    [
      // A single executable is its own main script.
      ...(isSea() ? [] : [process.argv[1]!]),
      'agent',
      '-d',
      device,
      '--foreground',
      '--idle-timeout',
      String(idleTimeoutS),
    ],
    {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) resolve();
    });
    child.once('exit', () =>
      reject(new TetherError(err.trim().replace(/^tether: /, '') || `agent for ${device} exited`)),
    );
  });
  child.stdout.destroy();
  child.stderr.destroy();
  child.unref();
}

export function stopAgent(device: string): boolean {
  const { pid } = agentPaths(device);
  try {
    process.kill(Number(readFileSync(pid, 'utf8')), 'SIGTERM');
    return true;
  } catch {
    return false;
  }
}
