// Control messages inside a stream: a varint length, then one MessagePack
// value. Bulk bytes never go through here; they are raw stream data.
import type { Duplex } from 'node:stream';
import { decode, encode } from '@msgpack/msgpack';
import { ErrorCode, TransportError } from './errors.ts';
import { readVarint, varintLength, writeVarint } from './varint.ts';

/** Largest message accepted: argv plus environment of a big exec fit well. */
export const MAX_MESSAGE = 4 * 1024 * 1024;

export function encodeMessage(value: unknown): Buffer {
  const body = encode(value);
  const buf = Buffer.allocUnsafe(varintLength(body.length) + body.length);
  const off = writeVarint(buf, 0, body.length);
  buf.set(body, off);
  return buf;
}

export function writeMessage(stream: Duplex, value: unknown): boolean {
  return stream.write(encodeMessage(value));
}

const QUEUE_LIMIT = 64;

/**
 * Reads messages off a stream. `next()` resolves with the next message, or
 * null at a clean end of the stream; a malformed message or an end in the
 * middle of one rejects with a MESSAGE_ERROR.
 */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly queue: unknown[] = [];
  private waiter: { resolve: (v: unknown) => void; reject: (e: Error) => void } | null = null;
  private ended = false;
  private error: Error | null = null;
  readonly stream: Duplex;

  constructor(stream: Duplex) {
    this.stream = stream;
    stream.on('data', (d: Buffer) => this.onData(d));
    stream.on('end', () => {
      this.ended = true;
      if (this.buf.length > 0)
        this.fail(new TransportError(ErrorCode.MESSAGE_ERROR, 'stream ended inside a message'));
      this.wake();
    });
    stream.on('error', (e) => this.fail(e));
    stream.on('close', () => {
      if (!this.ended && !this.error)
        this.fail(new TransportError(ErrorCode.CANCELLED, 'stream closed'));
    });
  }

  next(): Promise<unknown> {
    // Unread messages stop the stream, so flow control bounds a flooding peer.
    if (this.queue.length <= QUEUE_LIMIT / 2 && this.stream.isPaused()) this.stream.resume();
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<unknown> {
    for (;;) {
      const m = await this.next();
      if (m === null) return;
      yield m;
    }
  }

  private onData(d: Buffer): void {
    if (this.error) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      let h: ReturnType<typeof readVarint>;
      try {
        h = readVarint(this.buf, 0);
      } catch {
        return this.fail(
          new TransportError(ErrorCode.MESSAGE_ERROR, 'message length beyond 2^53-1'),
        );
      }
      if (!h) break;
      if (h.value > MAX_MESSAGE) {
        return this.fail(
          new TransportError(
            ErrorCode.MESSAGE_ERROR,
            `message of ${h.value} bytes exceeds ${MAX_MESSAGE}`,
          ),
        );
      }
      if (this.buf.length < h.length + h.value) break;
      const body = this.buf.subarray(h.length, h.length + h.value);
      this.buf = this.buf.subarray(h.length + h.value);
      let msg: unknown;
      try {
        msg = decode(body);
      } catch (e) {
        return this.fail(
          new TransportError(ErrorCode.MESSAGE_ERROR, `bad MessagePack: ${(e as Error).message}`),
        );
      }
      this.queue.push(msg);
    }
    if (this.queue.length > QUEUE_LIMIT) this.stream.pause();
    this.wake();
  }

  private fail(e: Error): void {
    if (this.error) return;
    this.error = e;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.queue.length > 0) {
      this.waiter = null;
      w.resolve(this.queue.shift());
    } else if (this.error) {
      this.waiter = null;
      w.reject(this.error);
    } else if (this.ended) {
      this.waiter = null;
      w.resolve(null);
    }
  }
}

/**
 * Reads exactly one message off a stream and leaves the bytes after it in
 * the stream, for streams that carry a header and then raw data.
 */
export function readHeader(stream: Duplex): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (err: Error | null, value?: unknown, rest?: Buffer) => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
      if (err) return reject(err);
      if (rest && rest.length > 0) stream.unshift(rest);
      resolve(value);
    };
    const onEnd = () =>
      done(new TransportError(ErrorCode.MESSAGE_ERROR, 'stream ended before its header'));
    const onError = (e: Error) => done(e);
    const onReadable = () => {
      for (
        let chunk = stream.read() as Buffer | null;
        chunk !== null;
        chunk = stream.read() as Buffer | null
      ) {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        let h: ReturnType<typeof readVarint>;
        try {
          h = readVarint(buf, 0);
        } catch {
          return done(new TransportError(ErrorCode.MESSAGE_ERROR, 'header length beyond 2^53-1'));
        }
        if (!h) continue;
        if (h.value > MAX_MESSAGE) {
          return done(
            new TransportError(
              ErrorCode.MESSAGE_ERROR,
              `header of ${h.value} bytes exceeds ${MAX_MESSAGE}`,
            ),
          );
        }
        if (buf.length < h.length + h.value) continue;
        try {
          const value = decode(buf.subarray(h.length, h.length + h.value));
          return done(null, value, buf.subarray(h.length + h.value));
        } catch (e) {
          return done(
            new TransportError(
              ErrorCode.MESSAGE_ERROR,
              `bad MessagePack header: ${(e as Error).message}`,
            ),
          );
        }
      }
    };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}
