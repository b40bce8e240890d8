// Control messages inside a stream: a varint length, then one MessagePack
// value (never nil: nil would read as the end of the stream). Bulk bytes
// never go through here; they are raw stream data.
import type { Duplex } from 'node:stream';
import { Decoder, encode } from '@msgpack/msgpack';
import { ByteQueue } from './bytequeue.ts';
import { ErrorCode, TransportError } from './errors.ts';
import { readVarint, varintLength, writeVarint } from './varint.ts';

/** Largest message accepted: argv plus environment of a big exec fit well. */
export const MAX_MESSAGE = 4 * 1024 * 1024;

/**
 * Decoding limits beyond the size: no message of the protocol has more than a few thousand
 * entries in an array or map (argv, environment, a directory listing), and a value of many tiny
 * ones costs far more memory decoded than its bytes do.
 */
const decoder = new Decoder({
  maxArrayLength: 1 << 20,
  maxMapLength: 1 << 16,
  maxStrLength: MAX_MESSAGE,
  maxBinLength: MAX_MESSAGE,
  maxExtLength: 0,
});

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

const bad = (what: string) => new TransportError(ErrorCode.MESSAGE_ERROR, what);

/**
 * Takes one whole message off the front of `q`: the value, or undefined if
 * it is not all there yet. Throws MESSAGE_ERROR for a malformed one.
 */
function takeMessage(q: ByteQueue, max = MAX_MESSAGE): unknown {
  let h: ReturnType<typeof readVarint>;
  try {
    h = readVarint(q.peek(8), 0);
  } catch {
    throw bad('message length beyond 2^53-1');
  }
  if (!h) return undefined;
  if (h.value > max) throw bad(`message of ${h.value} bytes exceeds ${max}`);
  if (q.length < h.length + h.value) return undefined;
  const body = q.take(h.length + h.value).subarray(h.length);
  let value: unknown;
  try {
    value = decoder.decode(body);
  } catch (e) {
    throw bad(`bad MessagePack: ${(e as Error).message}`);
  }
  if (value === null || value === undefined) throw bad('nil message');
  return value;
}

const QUEUE_LIMIT = 64;

/**
 * Reads messages off a stream. `next()` resolves with the next message, or
 * null at a clean end of the stream; a malformed message or an end in the
 * middle of one rejects with a MESSAGE_ERROR.
 */
export class MessageReader {
  private readonly bytes = new ByteQueue();
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
      if (this.bytes.length > 0) this.fail(bad('stream ended inside a message'));
      this.wake();
    });
    stream.on('error', (e) => this.fail(e));
    stream.on('close', () => {
      if (!this.ended && !this.error) {
        this.fail(new TransportError(ErrorCode.CANCELLED, 'stream closed'));
      }
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
    this.bytes.push(d);
    try {
      for (let m = takeMessage(this.bytes); m !== undefined; m = takeMessage(this.bytes)) {
        this.queue.push(m);
      }
    } catch (e) {
      return this.fail(e as Error);
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
 * the stream, for streams that carry a header and then raw data. `max`: its
 * largest size (a stranger's is small).
 */
export function readHeader(stream: Duplex, max = MAX_MESSAGE): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const q = new ByteQueue();
    const done = (err: Error | null, value?: unknown) => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
      if (err) return reject(err);
      if (q.length > 0) stream.unshift(q.takeAll());
      resolve(value);
    };
    const onEnd = () => done(bad('stream ended before its header'));
    const onError = (e: Error) => done(e);
    const onReadable = () => {
      for (let c = stream.read() as Buffer | null; c !== null; c = stream.read() as Buffer | null) {
        q.push(c);
        let value: unknown;
        try {
          value = takeMessage(q, max);
        } catch (e) {
          return done(e as Error);
        }
        if (value !== undefined) return done(null, value);
      }
    };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}
