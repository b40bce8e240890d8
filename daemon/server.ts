// Serves one connection: authenticates it (or lets it pair), then routes
// the streams the client opens to exec sessions.
import type { Duplex } from 'node:stream';
import { Connection } from '../transport/connection.ts';
import { ErrorCode, TransportError } from '../transport/errors.ts';
import { encodeMessage, readHeader } from '../transport/messages.ts';
import {
  Caps,
  type PairReply,
  type PairRequest,
  type PairResult,
  parseHeader,
  parsePairFinish,
  type StatusReply,
} from '../transport/protocol.ts';
import type { Stream } from '../transport/stream.ts';
import type { Activity } from './activity.ts';
import { ExecSession, type RunAs } from './exec.ts';
import type { Logger } from './log.ts';
import { startPairing } from './pairing.ts';
import type { State } from './state.ts';
import { ViewMemories } from './view-memory.ts';
import type { ViewEnv } from './view-session.ts';

export interface ServeOptions {
  state: State;
  runAs: RunAs;
  log: Logger;
  deviceFingerprint: string;
  deviceName: string;
  idleTimeoutMs?: number;
  /** What traced runs need; null where this device cannot trace (runs without a view only). */
  viewEnv: ViewEnv | null;
  activity: Activity;
  /** Answers a GET of the status API for `viewer` (a client's key; null: see everything). */
  status: (path: string, viewer: string | null) => Promise<StatusReply>;
}

/** Credit a pairing connection gets, per stream and in all: a pair request is ~200 bytes. */
const PAIR_WINDOW = 16 * 1024;
const PAIR_HEADER_MAX = 4 * 1024;

/** Who is on the other end, as established before any stream is read. */
export type Peer =
  /** `name`: what the client paired with, from authorized_clients. */
  | { kind: 'authorized'; fingerprint: string | null; name?: string | null }
  | { kind: 'pairing'; fingerprint: string };

export function serveConnection(
  socket: Duplex,
  peer: Peer,
  opts: ServeOptions,
  address: string | null = null,
): Connection {
  const pairing = peer.kind === 'pairing';
  const caps = pairing ? [Caps.PAIR] : [Caps.EXEC, Caps.STATUS];
  // A stranger may pair and nothing else: one small stream at a time, whatever it sends.
  const limits = pairing
    ? { streamWindow: PAIR_WINDOW, connectionWindow: PAIR_WINDOW, maxStreams: 1 }
    : {};
  const conn = new Connection(socket, {
    role: 'server',
    caps,
    idleTimeoutMs: opts.idleTimeoutMs,
    ...limits,
  });
  const log = opts.log.child({ peer: peer.fingerprint ?? 'stdio' });
  const { activity } = opts;
  const connId = activity.connectionOpened({
    client: peer.fingerprint,
    name: peer.kind === 'authorized' ? (peer.name ?? null) : null,
    address,
  });
  const sessions = new Map<number, ExecSession>();
  const memories = new ViewMemories();
  /** Streams of a run whose exec header is still in flight; fd -1 is its view stream. */
  const waitingFds = new Map<number, { fd: number; stream: Stream }[]>();
  const attach = (session: ExecSession, fd: number, stream: Stream) =>
    fd === -1 ? session.attachView(stream) : session.attachFd(fd, stream);

  conn.on('close', (err) => {
    activity.connectionClosed(connId);
    for (const s of sessions.values()) {
      s.abort();
      activity.runClosed(s);
    }
    sessions.clear();
    if (err && err.code !== ErrorCode.NO_ERROR) log.info({ err: err.message }, 'connection closed');
    else log.debug('connection closed');
  });

  // A failure while serving one stream ends that stream, never the daemon.
  conn.on('stream', (stream) => {
    handle(stream).catch((e: Error) => {
      log.error({ err: e.message, stack: e.stack }, 'stream handler failed');
      stream.destroy(new TransportError(ErrorCode.INTERNAL_ERROR, e.message));
    });
  });

  /** A stranger's `pair` stream: the PAKE's three messages, then the verdict. */
  async function pair(stream: Stream, req: PairRequest, fingerprint: string): Promise<void> {
    const ids = { clientFp: fingerprint, deviceFp: opts.deviceFingerprint };
    const refuse = (error: string) => {
      log.warn({ client: req.name, err: error }, 'pairing refused');
      stream.end(encodeMessage({ ok: false, error } satisfies PairResult));
      stream.resume();
    };
    let attempt: Awaited<ReturnType<typeof startPairing>>;
    try {
      attempt = await startPairing(opts.state, req.ke1, ids);
    } catch (e) {
      const err = new TransportError(
        ErrorCode.MESSAGE_ERROR,
        `bad pairing start: ${(e as Error).message}`,
      );
      stream.destroy(err);
      conn.close(err.code, err.message);
      return;
    }
    if ('error' in attempt) return refuse(attempt.error);
    stream.write(
      encodeMessage({ ok: true, name: opts.deviceName, ke2: attempt.ke2 } satisfies PairReply),
    );
    // No finish (a stream ended or broken instead): the client found the answer wrong.
    const ke3 = await readHeader(stream, PAIR_HEADER_MAX).then(
      (m) => parsePairFinish(m).ke3,
      () => null,
    );
    const r = await attempt.finish(ke3);
    if (!r.ok) return refuse(r.error);
    opts.state.authorize(fingerprint, req.name);
    log.info({ client: req.name }, 'paired');
    stream.end(encodeMessage(r satisfies PairResult));
    stream.resume();
  }

  async function handle(stream: Stream): Promise<void> {
    let header: ReturnType<typeof parseHeader>;
    try {
      header = parseHeader(await readHeader(stream, pairing ? PAIR_HEADER_MAX : undefined));
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'bad stream header');
      const err =
        e instanceof TransportError ? e : new TransportError(ErrorCode.MESSAGE_ERROR, String(e));
      stream.destroy(err);
      // A stranger gets no second try on the same connection.
      if (pairing) conn.close(err.code, err.message);
      return;
    }
    if (peer.kind === 'pairing') {
      if (header.kind !== 'pair') {
        stream.destroy(new TransportError(ErrorCode.UNAUTHORIZED, 'not authorized'));
        conn.close(ErrorCode.UNAUTHORIZED, 'client key is not authorized on this device');
        return;
      }
      await pair(stream, header, peer.fingerprint);
      return;
    }
    switch (header.kind) {
      case 'exec': {
        const session = new ExecSession(stream, header, opts.runAs, log, opts.viewEnv, memories);
        sessions.set(stream.id, session);
        activity.runOpened(session, connId);
        stream.on('close', () => {
          sessions.delete(stream.id);
          activity.runClosed(session);
        });
        for (const w of waitingFds.get(stream.id) ?? []) attach(session, w.fd, w.stream);
        waitingFds.delete(stream.id);
        return;
      }
      case 'fd':
      case 'view': {
        const fd = header.kind === 'fd' ? header.fd : -1;
        const session = sessions.get(header.exec);
        if (session) attach(session, fd, stream);
        else if (header.exec < stream.id && conn.isLocalId(header.exec) === false) {
          // The exec header may still be in flight through its own reader.
          const list = waitingFds.get(header.exec) ?? [];
          list.push({ fd, stream });
          waitingFds.set(header.exec, list);
          setTimeout(() => {
            const waiting = waitingFds.get(header.exec);
            if (!waiting?.some((w) => w.stream === stream)) return;
            const rest = waiting.filter((w) => w.stream !== stream);
            if (rest.length > 0) waitingFds.set(header.exec, rest);
            else waitingFds.delete(header.exec);
            stream.destroy(
              new TransportError(ErrorCode.STREAM_STATE_ERROR, `no exec stream ${header.exec}`),
            );
          }, 10_000).unref();
        } else
          stream.destroy(
            new TransportError(ErrorCode.STREAM_STATE_ERROR, `no exec stream ${header.exec}`),
          );
        return;
      }
      case 'status': {
        const reply = await opts.status(header.path, peer.fingerprint);
        stream.end(encodeMessage(reply));
        stream.resume();
        return;
      }
      case 'pair':
        // Already paired: nothing to do, but say so.
        stream.end(
          encodeMessage({
            ok: false,
            error: 'this client is already paired with the device',
          } satisfies PairReply),
        );
        stream.resume();
        return;
    }
  }
  return conn;
}
