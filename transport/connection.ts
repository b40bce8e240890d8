// A multiplexed, flow-controlled connection over any ordered byte stream
// (TLS, stdio, unix socket). Frames: frames.ts; the wire: docs/protocol.md.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { decode, encode } from '@msgpack/msgpack';
import { ErrorCode, TransportError } from './errors.ts';
import {
  encodeFrame,
  type Frame,
  FrameParser,
  FrameType,
  MAX_STREAM_CHUNK,
  streamFrameHeader,
} from './frames.ts';
import { Stream } from './stream.ts';

/** Protocol versions this implementation speaks, newest last. */
export const VERSIONS = [1];

export interface ConnectionOptions {
  role: 'client' | 'server';
  /** Capabilities announced in HELLO (e.g. 'exec', 'pair'). */
  caps?: string[];
  /** Credit granted to the peer per stream and for the whole connection. */
  streamWindow?: number;
  connectionWindow?: number;
  /** Streams the peer may have open at once. */
  maxStreams?: number;
  /** Close when nothing is heard for this long; PINGs keep a live peer heard. */
  idleTimeoutMs?: number;
  /** Versions offered; tests use it to check negotiation. */
  versions?: number[];
}

export interface PeerHello {
  version: number;
  caps: string[];
  streamWindow: number;
  connectionWindow: number;
  maxStreams: number;
}

/** Bytes of stream data queued on the socket before the sender waits for 'drain'. */
const SEND_BUFFER = 256 * 1024;
/**
 * After expectSilence(), frames within this long are the peer's last before it stopped (it
 * sends its suspend notice, then may still flush credit or a PONG): only later ones mean it
 * is back.
 */
const SILENCE_GRACE_MS = 500;

/** Bytes of unflushed control frames beyond which we stop reading the peer. */
const CONTROL_BACKLOG = 128 * 1024;

const DEFAULTS = {
  streamWindow: 4 * 1024 * 1024,
  connectionWindow: 16 * 1024 * 1024,
  maxStreams: 1024,
  idleTimeoutMs: 60_000,
};

function parseHello(body: Uint8Array): Omit<PeerHello, 'version'> & { versions: number[] } {
  let h: unknown;
  try {
    h = decode(body, {
      maxStrLength: 4096,
      maxArrayLength: 256,
      maxMapLength: 64,
      maxBinLength: 0,
      maxExtLength: 0,
    });
  } catch (e) {
    throw new TransportError(
      ErrorCode.PROTOCOL_ERROR,
      `HELLO is not MessagePack: ${(e as Error).message}`,
    );
  }
  const bad = (what: string) => new TransportError(ErrorCode.PROTOCOL_ERROR, `HELLO: ${what}`);
  if (!h || typeof h !== 'object' || Array.isArray(h)) throw bad('not a map');
  const m = h as Record<string, unknown>;
  const uint = (k: string, min: number) => {
    const v = m[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(`bad ${k}`);
    return v;
  };
  const versions = m.versions;
  if (!Array.isArray(versions) || !versions.every((v) => Number.isSafeInteger(v)))
    throw bad('bad versions');
  const caps = m.caps;
  if (!Array.isArray(caps) || !caps.every((c) => typeof c === 'string')) throw bad('bad caps');
  return {
    versions: versions as number[],
    caps: caps as string[],
    streamWindow: uint('streamWindow', 1024),
    connectionWindow: uint('connectionWindow', 1024),
    maxStreams: uint('maxStreams', 1),
  };
}

type ConnectionEvents = {
  stream: [Stream];
  ready: [PeerHello];
  goaway: [code: number, reason: string];
  close: [err: TransportError | null];
};

export class Connection extends EventEmitter<ConnectionEvents> {
  readonly role: 'client' | 'server';
  readonly socket: Duplex;
  peer: PeerHello | null = null;
  /** Last measured round-trip time in ms, or NaN before the first PONG. */
  rtt = Number.NaN;
  closed = false;
  closeError: TransportError | null = null;

  private readonly opts: Required<ConnectionOptions>;
  private readonly parser = new FrameParser();
  private readonly streams = new Map<number, Stream>();
  private readonly ready_ = new Set<Stream>();
  private nextLocalId: number;
  private highestPeerId = -1;
  // Stream limits count streams ever opened, as QUIC's MAX_STREAMS: each side
  // raises the peer's limit as the peer's streams close on its side, so the
  // two never disagree about how many are open.
  private localStreamLimit = Number.POSITIVE_INFINITY;
  private peerStreamLimit: number;
  private peerStreamsClosed = 0;
  private readPaused = false;
  private silenceExpected = false;
  /** When expectSilence() was called: frames the peer sent just before it stopped still come. */
  private silenceSince = 0;
  /** Bytes of control frames written but not yet flushed. */
  private controlQueued = 0;
  private blocked = false;

  private connSent = 0;
  private connSendMax = 0;
  private connRecv = 0;
  private connConsumed = 0;
  private connRecvMax: number;

  private goingAway = false;
  private peerGoingAway = false;
  private lastHeard = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly pings = new Map<string, { t0: bigint; resolve: (ms: number) => void }>();
  private readonly readyPromise: Promise<PeerHello>;

  constructor(socket: Duplex, options: ConnectionOptions) {
    super();
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.opts = { caps: [], versions: VERSIONS, ...DEFAULTS, ...given, role: options.role };
    this.role = options.role;
    this.socket = socket;
    this.nextLocalId = this.role === 'client' ? 0 : 1;
    this.connRecvMax = this.opts.connectionWindow;
    this.peerStreamLimit = this.opts.maxStreams;
    this.readyPromise = new Promise((resolve, reject) => {
      this.once('ready', resolve);
      this.once('close', (err) =>
        reject(err ?? new TransportError(ErrorCode.CONNECTION_LOST, 'closed before HELLO')),
      );
    });
    this.readyPromise.catch(() => {});

    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEnd());
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // Node's own messages mostly name the code already ("read ECONNRESET"): once is enough.
      const why = e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
      this.terminate(new TransportError(ErrorCode.CONNECTION_LOST, why || 'error', true));
    });
    socket.on('close', () =>
      this.terminate(new TransportError(ErrorCode.CONNECTION_LOST, 'connection lost', true)),
    );
    socket.on('drain', () => {
      this.blocked = false;
      if (this.readPaused) {
        this.readPaused = false;
        socket.resume();
      }
      this.pump();
    });

    const tick = Math.max(50, Math.floor(this.opts.idleTimeoutMs / 3));
    this.timer = setInterval(() => this.onTick(), tick);
    this.timer.unref();

    this.sendHello();
  }

  /** Resolves with the peer's HELLO once versions are agreed. */
  ready(): Promise<PeerHello> {
    return this.readyPromise;
  }

  isLocalId(id: number): boolean {
    return (id & 1) === (this.role === 'client' ? 0 : 1);
  }

  /** Opens a new stream. Data waits for the peer's HELLO before it is sent. */
  openStream(): Stream {
    if (this.closed)
      throw this.closeError ?? new TransportError(ErrorCode.CONNECTION_LOST, 'connection closed');
    if (this.peerGoingAway || this.goingAway)
      throw new TransportError(ErrorCode.REFUSED, 'connection is going away');
    if (this.nextLocalId >> 1 >= this.localStreamLimit) {
      throw new TransportError(
        ErrorCode.STREAM_LIMIT_ERROR,
        `the peer allows ${this.localStreamLimit} streams so far`,
      );
    }
    const id = this.nextLocalId;
    this.nextLocalId += 2;
    const s = new Stream(this, id, this.peer?.streamWindow ?? 0, this.opts.streamWindow);
    this.track(s);
    return s;
  }

  /** Measures one round trip with PING/PONG. */
  ping(): Promise<number> {
    const opaque = randomBytes(8);
    return new Promise((resolve) => {
      this.pings.set(opaque.toString('hex'), { t0: process.hrtime.bigint(), resolve });
      this.control({ type: FrameType.PING, opaque });
    });
  }

  /** Graceful drain: no new streams either way; closes when the last one ends. */
  goaway(code: number = ErrorCode.NO_ERROR, reason = ''): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.control({ type: FrameType.GOAWAY, lastId: Math.max(0, this.highestPeerId), code, reason });
    this.maybeFinishDrain();
  }

  /** Closes now: sends CLOSE, aborts every stream with the given code. */
  close(code: number = ErrorCode.NO_ERROR, reason = ''): void {
    if (this.closed) return;
    this.control({ type: FrameType.CLOSE, code, reason });
    this.terminate(code === ErrorCode.NO_ERROR ? null : new TransportError(code, reason));
    this.socket.end();
  }

  // ---- receive path ----

  private onData(d: Buffer): void {
    if (this.closed) return;
    this.lastHeard = Date.now();
    // The peer's last frames before it stopped (credit, a PONG) are not it speaking again.
    if (performance.now() - this.silenceSince > SILENCE_GRACE_MS) this.silenceExpected = false;
    try {
      for (const f of this.parser.push(d)) {
        this.onFrame(f);
        if (this.closed) return;
      }
      // Answers to a peer that does not read (PONGs to a PING flood) would
      // pile up: stop reading it until our writes drain.
      if (this.controlQueued > CONTROL_BACKLOG && !this.readPaused) {
        this.readPaused = true;
        this.socket.pause();
      }
    } catch (e) {
      if (e instanceof TransportError) this.close(e.code, e.message.replace(/^[A-Z_0-9]+: /, ''));
      else this.close(ErrorCode.INTERNAL_ERROR, (e as Error).message);
    }
  }

  private onEnd(): void {
    if (this.closed) return;
    if (this.parser.pending > 0) {
      this.close(
        ErrorCode.FRAME_ENCODING_ERROR,
        `truncated frame: input ended ${this.parser.pending} bytes into it`,
      );
    } else {
      this.terminate(
        new TransportError(
          ErrorCode.CONNECTION_LOST,
          'peer closed the connection without CLOSE',
          true,
        ),
      );
      this.socket.end();
    }
  }

  private onFrame(f: Frame): void {
    if (!this.peer && f.type !== FrameType.HELLO && f.type !== FrameType.CLOSE) {
      throw new TransportError(ErrorCode.PROTOCOL_ERROR, 'first frame must be HELLO');
    }
    switch (f.type) {
      case FrameType.HELLO:
        return this.onHello(f.body);
      case FrameType.STREAM:
        return this.onStreamData(f.id, f.data, f.fin);
      case FrameType.RESET_STREAM: {
        const s = this.existing(f.id);
        if (s) {
          s.resetReceived = true;
          s.destroy(new TransportError(f.code, 'stream reset by peer', true));
        }
        return;
      }
      case FrameType.STOP_SENDING: {
        const s = this.existing(f.id);
        if (s && !s.peerStopped) {
          // Only our direction ends: unsent data is dropped, the stream's user told.
          s.peerStopped = true;
          this.ready_.delete(s);
          const p = s.pending;
          s.pending = null;
          p?.done();
          if (s.finPending) this._schedule(s);
          s.emit('stop', f.code);
        }
        return;
      }
      case FrameType.MAX_STREAMS:
        if (f.max > this.localStreamLimit) this.localStreamLimit = f.max;
        return;
      case FrameType.MAX_DATA:
        if (f.max > this.connSendMax) {
          this.connSendMax = f.max;
          // Streams that stopped for want of connection credit left the ready set.
          for (const st of this.streams.values())
            if (st.pending || st.finPending) this.ready_.add(st);
          this.pump();
        }
        return;
      case FrameType.MAX_STREAM_DATA: {
        const s = this.existing(f.id);
        if (s && f.max > s.sendMax) {
          s.sendMax = f.max;
          this._schedule(s);
        }
        return;
      }
      case FrameType.PING:
        this.control({ type: FrameType.PONG, opaque: f.opaque });
        return;
      case FrameType.PONG: {
        const key = f.opaque.toString('hex');
        const p = this.pings.get(key);
        if (p) {
          this.pings.delete(key);
          this.rtt = Number(process.hrtime.bigint() - p.t0) / 1e6;
          p.resolve(this.rtt);
        }
        return;
      }
      case FrameType.GOAWAY:
        this.peerGoingAway = true;
        for (const s of this.streams.values()) {
          if (s.local && s.id > f.lastId && s.recvOffset === 0)
            s.destroy(new TransportError(ErrorCode.REFUSED, 'peer is going away', true));
        }
        this.emit('goaway', f.code, f.reason);
        this.maybeFinishDrain();
        return;
      case FrameType.CLOSE:
        this.terminate(
          f.code === ErrorCode.NO_ERROR ? null : new TransportError(f.code, f.reason, true),
          f.reason,
        );
        this.socket.end();
        return;
    }
  }

  private onHello(body: Uint8Array): void {
    if (this.peer) throw new TransportError(ErrorCode.PROTOCOL_ERROR, 'second HELLO');
    const h = parseHello(body);
    const common = this.opts.versions.filter((v) => h.versions.includes(v));
    if (common.length === 0) {
      throw new TransportError(
        ErrorCode.VERSION_MISMATCH,
        `no common protocol version: peer speaks [${h.versions.join(',')}], we speak [${this.opts.versions.join(',')}]`,
      );
    }
    this.peer = {
      version: Math.max(...common),
      caps: h.caps,
      streamWindow: h.streamWindow,
      connectionWindow: h.connectionWindow,
      maxStreams: h.maxStreams,
    };
    this.connSendMax = h.connectionWindow;
    this.localStreamLimit = h.maxStreams;
    for (const s of this.streams.values()) if (s.local) s.sendMax = h.streamWindow;
    this.emit('ready', this.peer);
    for (const s of this.streams.values()) this._schedule(s);
  }

  /** The stream for a frame's id, or null for one already gone; throws for impossible ids. */
  private existing(id: number): Stream | null {
    const s = this.streams.get(id);
    if (s) return s;
    if (this.isLocalId(id)) {
      if (id >= this.nextLocalId)
        throw new TransportError(
          ErrorCode.STREAM_STATE_ERROR,
          `frame for stream ${id} we never opened`,
        );
    } else if (id > this.highestPeerId) {
      throw new TransportError(
        ErrorCode.STREAM_STATE_ERROR,
        `frame for stream ${id} the peer never opened`,
      );
    }
    return null;
  }

  private onStreamData(id: number, data: Buffer, fin: boolean): void {
    let s = this.streams.get(id);
    if (!s) {
      if (this.isLocalId(id) || id <= this.highestPeerId) {
        this.existing(id);
        this.countReceived(data.length);
        this.connConsumed += data.length;
        this.maybeGrantConnection();
        return;
      }
      s = this.acceptPeerStream(id);
    }
    if (s.finReceived)
      throw new TransportError(ErrorCode.STREAM_STATE_ERROR, `data after FIN on stream ${id}`);
    if (s.recvOffset + data.length > s.recvMax) {
      throw new TransportError(
        ErrorCode.FLOW_CONTROL_ERROR,
        `stream ${id} exceeded its credit of ${s.recvMax} bytes`,
      );
    }
    this.countReceived(data.length);
    s.recvOffset += data.length;
    if (s.destroyed || s.readableEnded || s.stopSent) {
      // Dropped on arrival: consumed now, and not again when the stream closes.
      this.connConsumed += data.length;
      s.consumedReported += data.length;
      this.maybeGrantConnection();
    } else if (data.length > 0) {
      s.deliver(data);
    }
    if (fin) {
      s.finReceived = true;
      if (!s.destroyed && !s.stopSent) s.deliver(null);
    }
  }

  private countReceived(n: number): void {
    this.connRecv += n;
    if (this.connRecv > this.connRecvMax) {
      throw new TransportError(
        ErrorCode.FLOW_CONTROL_ERROR,
        `connection exceeded its credit of ${this.connRecvMax} bytes`,
      );
    }
  }

  private acceptPeerStream(id: number): Stream {
    this.highestPeerId = id;
    if (id >> 1 >= this.peerStreamLimit) {
      throw new TransportError(
        ErrorCode.STREAM_LIMIT_ERROR,
        `peer opened stream ${id} beyond its limit of ${this.peerStreamLimit}`,
      );
    }
    const s = new Stream(this, id, this.peer!.streamWindow, this.opts.streamWindow);
    this.track(s);
    if (this.goingAway) {
      s.destroy(new TransportError(ErrorCode.REFUSED, 'going away'));
      return s;
    }
    this.emit('stream', s);
    return s;
  }

  private track(s: Stream): void {
    this.streams.set(s.id, s);
    s.on('close', () => {
      this.streams.delete(s.id);
      this.ready_.delete(s);
      if (!s.local) {
        this.peerStreamsClosed++;
        this.peerStreamLimit = this.peerStreamsClosed + this.opts.maxStreams;
        this.control({ type: FrameType.MAX_STREAMS, max: this.peerStreamLimit });
      }
      // Bytes the reader never took still count as consumed for the connection.
      const unread = s.recvOffset - s.consumedReported;
      if (unread > 0) {
        s.consumedReported = s.recvOffset;
        this.connConsumed += unread;
        this.maybeGrantConnection();
      }
      this.maybeFinishDrain();
    });
    // A stream nobody listens to for errors must not crash the process.
    s.on('error', () => {});
  }

  // ---- flow control ----

  /** @internal Called by Stream._read: the reader made room. */
  _consumed(s: Stream): void {
    if (this.closed) return;
    const consumed = s.consumed;
    const delta = consumed - s.consumedReported;
    if (delta > 0) {
      s.consumedReported = consumed;
      this.connConsumed += delta;
    }
    if (!s.finReceived && s.recvMax - consumed <= s.window / 2) {
      s.recvMax = consumed + s.window;
      this.control({ type: FrameType.MAX_STREAM_DATA, id: s.id, max: s.recvMax });
    }
    this.maybeGrantConnection();
  }

  private maybeGrantConnection(): void {
    const w = this.opts.connectionWindow;
    if (!this.closed && this.connRecvMax - this.connConsumed <= w / 2) {
      this.connRecvMax = this.connConsumed + w;
      this.control({ type: FrameType.MAX_DATA, max: this.connRecvMax });
    }
  }

  // ---- send path ----

  /** @internal A stream has data or FIN to send. */
  _schedule(s: Stream): void {
    if (s.pending || s.finPending) this.ready_.add(s);
    this.pump();
  }

  private pump(): void {
    if (this.closed || !this.peer || this.blocked || this.ready_.size === 0) return;
    this.socket.cork();
    try {
      while (!this.blocked && this.ready_.size > 0) {
        let progressed = false;
        for (const s of [...this.ready_]) {
          if (this.blocked) break;
          if (this.sendSome(s)) progressed = true;
        }
        if (!progressed) break;
      }
    } finally {
      process.nextTick(() => this.socket.uncork());
    }
  }

  /** Sends one chunk (or a bare FIN) of `s`; false if it could not move. */
  private sendSome(s: Stream): boolean {
    const p = s.pending;
    if (p) {
      const credit = Math.min(s.sendMax - s.sendOffset, this.connSendMax - this.connSent);
      const n = Math.min(MAX_STREAM_CHUNK, p.data.length, credit);
      if (n <= 0 && p.data.length > 0) {
        this.ready_.delete(s);
        return false;
      }
      const last = n === p.data.length;
      const fin = last && s.finPending !== null;
      this.write(streamFrameHeader(s.id, n, fin));
      if (n > 0) this.write(p.data.subarray(0, n));
      s.sendOffset += n;
      this.connSent += n;
      this.ready_.delete(s);
      if (last) {
        s.pending = null;
        p.done();
        if (fin) this.finishSend(s);
      } else {
        p.data = p.data.subarray(n);
        this.ready_.add(s);
      }
      return true;
    }
    if (s.finPending) {
      this.ready_.delete(s);
      this.write(streamFrameHeader(s.id, 0, true));
      this.finishSend(s);
      return true;
    }
    this.ready_.delete(s);
    return false;
  }

  private finishSend(s: Stream): void {
    const cb = s.finPending!;
    s.finPending = null;
    s.finSent = true;
    cb();
  }

  private write(buf: Buffer): void {
    this.socket.write(buf);
    // A socket's own high-water mark (16 KiB) would let one chunk be in
    // flight at a time; keep a few hundred KiB queued so the kernel and TLS
    // always have work. 'drain' follows, since write() returned false.
    if (this.socket.writableLength >= SEND_BUFFER) this.blocked = true;
  }

  private control(f: Frame): void {
    if (this.closed || this.socket.destroyed || this.socket.writableEnded) return;
    const buf = encodeFrame(f);
    this.controlQueued += buf.length;
    this.socket.write(buf, () => {
      this.controlQueued -= buf.length;
    });
  }

  private sendHello(): void {
    const body = encode({
      versions: this.opts.versions,
      caps: this.opts.caps,
      streamWindow: this.opts.streamWindow,
      connectionWindow: this.opts.connectionWindow,
      maxStreams: this.opts.maxStreams,
    });
    this.control({ type: FrameType.HELLO, body });
  }

  /** @internal */
  _stopSending(s: Stream, code: number): void {
    this.control({ type: FrameType.STOP_SENDING, id: s.id, code });
  }

  /** @internal A stream was destroyed; tell the peer if it ended early. */
  _streamDestroyed(s: Stream, err: Error | null): void {
    this.ready_.delete(s);
    const p = s.pending;
    s.pending = null;
    p?.done(err ?? new TransportError(ErrorCode.CANCELLED, 'stream destroyed'));
    const fin = s.finPending;
    s.finPending = null;
    fin?.(err ?? new TransportError(ErrorCode.CANCELLED, 'stream destroyed'));
    // A RESET aborts both directions, so a reset stream needs no answer.
    if (this.closed || s.resetSent || s.resetReceived) return;
    // Done both ways (our FIN out; theirs in, or stopped by us): nothing to abort,
    // and a RESET would make the peer drop what it has not read yet.
    if (s.finSent && (s.finReceived || s.stopSent)) return;
    s.resetSent = true;
    const code = err instanceof TransportError ? err.code : ErrorCode.CANCELLED;
    this.control({ type: FrameType.RESET_STREAM, id: s.id, code });
  }

  // ---- lifecycle ----

  /**
   * The peer is about to go silent on purpose (its process stopped by job
   * control), or we are: no idle timeout until the peer is heard again.
   */
  expectSilence(): void {
    this.silenceExpected = true;
    this.silenceSince = performance.now();
  }

  private onTick(): void {
    const quiet = Date.now() - this.lastHeard;
    if (quiet >= this.opts.idleTimeoutMs && !this.silenceExpected) {
      this.close(ErrorCode.IDLE_TIMEOUT, `nothing heard for ${Math.round(quiet / 1000)} s`);
      this.socket.destroy();
    } else if (quiet >= this.opts.idleTimeoutMs / 3) {
      this.ping().catch(() => {});
    }
  }

  private maybeFinishDrain(): void {
    if ((this.goingAway || this.peerGoingAway) && this.streams.size === 0)
      this.close(ErrorCode.NO_ERROR, 'drained');
  }

  /** Marks the connection closed and aborts every stream; idempotent. */
  private terminate(err: TransportError | null, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err;
    clearInterval(this.timer);
    // Streams still open at a clean close are cut short all the same: say why.
    const streamErr =
      err ?? new TransportError(ErrorCode.CONNECTION_LOST, reason || 'connection closed', true);
    for (const s of [...this.streams.values()]) {
      // After a clean close, a stream finished both ways keeps its unread data.
      if (!s.destroyed && !(err === null && s.finSent && s.finReceived)) s.destroy(streamErr);
    }
    for (const p of this.pings.values()) p.resolve(Number.NaN);
    this.pings.clear();
    this.emit('close', err);
  }
}
