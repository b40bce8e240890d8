// One bidirectional stream of a Connection, as a Node Duplex. The stream
// keeps its own flow-control counters; the Connection does the I/O.
import { Duplex } from 'node:stream';
import type { Connection } from './connection.ts';
import { ErrorCode, TransportError } from './errors.ts';

export interface PendingWrite {
  data: Buffer;
  done: (err?: Error | null) => void;
}

export class Stream extends Duplex {
  readonly id: number;
  /** @internal */ readonly conn: Connection;

  // Send side: the peer's credit and what we have sent against it.
  /** @internal */ sendOffset = 0;
  /** @internal */ sendMax: number;
  /** @internal */ pending: PendingWrite | null = null;
  /** @internal */ finPending: ((err?: Error | null) => void) | null = null;
  /** @internal */ finSent = false;
  /** @internal */ resetSent = false;
  /** @internal */ resetReceived = false;
  /** The peer will read no more: what we write is dropped (see 'stop'). */
  peerStopped = false;
  /** @internal We asked the peer to stop sending; its data is dropped on arrival. */
  stopSent = false;

  // Receive side: the credit we granted and how much the reader has taken.
  /** @internal */ recvOffset = 0;
  /** @internal */ recvMax: number;
  /** @internal */ pushed = 0;
  /** @internal */ consumedReported = 0;
  /** @internal */ finReceived = false;
  // Received data waits here until the reader asks (pull model); credit is
  // granted as it is handed over, so a reader that stops stops its writer.
  private inbox: (Buffer | null)[] = [];
  private wantRead = false;
  /** @internal */ readonly window: number;

  constructor(conn: Connection, id: number, sendMax: number, window: number) {
    const hwm = Math.min(64 * 1024, Math.floor(window / 4));
    super({ allowHalfOpen: true, readableHighWaterMark: hwm, writableHighWaterMark: 64 * 1024 });
    this.conn = conn;
    this.id = id;
    this.sendMax = sendMax;
    this.window = window;
    this.recvMax = window;
  }

  /** True if this side opened the stream. */
  get local(): boolean {
    return this.conn.isLocalId(this.id);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.peerStopped) return cb();
    this.pending = { data: chunk, done: cb };
    this.conn._schedule(this);
  }

  // Writes queued while one is in flight leave as one: a program writing 4 KiB
  // at a time would otherwise cost a frame and a TLS record per write.
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this._write(data, 'binary', cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finPending = cb;
    this.conn._schedule(this);
  }

  override _read(): void {
    this.wantRead = true;
    this.drainInbox();
    this.conn._consumed(this);
  }

  /** @internal Data (or null for FIN) that arrived from the peer. */
  deliver(data: Buffer | null): void {
    this.inbox.push(data);
    if (this.wantRead) {
      this.drainInbox();
      this.conn._consumed(this);
    }
  }

  private drainInbox(): void {
    while (this.wantRead && this.inbox.length > 0) {
      const d = this.inbox.shift()!;
      if (d === null) {
        this.wantRead = false;
        this.push(null);
        return;
      }
      this.pushed += d.length;
      this.wantRead = this.push(d);
    }
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.conn._streamDestroyed(this, err);
    cb(err);
  }

  /**
   * Stops reading: the peer is asked to stop sending (its writes are then
   * dropped and it sees 'stop'); our readable side ends here. The other
   * direction goes on.
   */
  stopSending(code: number = ErrorCode.CANCELLED): void {
    if (this.stopSent || this.finReceived || this.destroyed) return;
    this.stopSent = true;
    this.inbox = [];
    this.conn._stopSending(this, code);
    this.push(null);
    this.resume();
  }

  /** Aborts the stream in both directions with an application error code. */
  reset(code: number = ErrorCode.CANCELLED, reason = 'reset'): void {
    this.destroy(new TransportError(code, reason));
  }

  /**
   * Bytes handed to the reader. They leave our inbox only when the reader
   * asks (_read), and Node's own buffer stops taking more past its
   * high-water mark, so counting them as consumed keeps memory within the
   * window plus one chunk, without depending on when Node calls _read again.
   */
  /** @internal */ get consumed(): number {
    return this.pushed;
  }
}
