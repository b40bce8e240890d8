// Frame layout (docs/protocol.md): type varint, payload-length varint, payload.
// The parser is incremental, bounds every length before allocating, and
// reports a malformed input as a TransportError instead of throwing anything else.
import { ByteQueue } from './bytequeue.ts';
import { ErrorCode, TransportError } from './errors.ts';
import { readVarint, VarintRangeError, varintLength, writeVarint } from './varint.ts';

export const FrameType = {
  HELLO: 0x01,
  STREAM: 0x02,
  STREAM_FIN: 0x03,
  RESET_STREAM: 0x04,
  STOP_SENDING: 0x05,
  MAX_DATA: 0x06,
  MAX_STREAM_DATA: 0x07,
  PING: 0x08,
  PONG: 0x09,
  GOAWAY: 0x0a,
  CLOSE: 0x0b,
  MAX_STREAMS: 0x0c,
} as const;

/** Largest payload a peer may send; larger frames close the connection. */
export const MAX_FRAME_PAYLOAD = 64 * 1024 + 64;
/** Largest stream data carried by one frame we send. */
export const MAX_STREAM_CHUNK = 60 * 1024;

export type Frame =
  | { type: typeof FrameType.HELLO; body: Uint8Array }
  | { type: typeof FrameType.STREAM; id: number; data: Buffer; fin: boolean }
  | { type: typeof FrameType.RESET_STREAM; id: number; code: number }
  | { type: typeof FrameType.STOP_SENDING; id: number; code: number }
  | { type: typeof FrameType.MAX_DATA; max: number }
  | { type: typeof FrameType.MAX_STREAMS; max: number }
  | { type: typeof FrameType.MAX_STREAM_DATA; id: number; max: number }
  | { type: typeof FrameType.PING; opaque: Buffer }
  | { type: typeof FrameType.PONG; opaque: Buffer }
  | { type: typeof FrameType.GOAWAY; lastId: number; code: number; reason: string }
  | { type: typeof FrameType.CLOSE; code: number; reason: string };

function frame(type: number, parts: (number | Uint8Array)[]): Buffer {
  let len = 0;
  for (const p of parts) len += typeof p === 'number' ? varintLength(p) : p.length;
  const head = varintLength(type) + varintLength(len);
  const buf = Buffer.allocUnsafe(head + len);
  let off = writeVarint(buf, 0, type);
  off = writeVarint(buf, off, len);
  for (const p of parts) {
    if (typeof p === 'number') off = writeVarint(buf, off, p);
    else {
      buf.set(p, off);
      off += p.length;
    }
  }
  return buf;
}

/** A reason as UTF-8, cut to 1024 bytes at a character boundary. */
function utf8(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= 1024) return b;
  let end = 1024;
  // Back off continuation bytes (10xxxxxx) so the cut falls before a character.
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

export function encodeFrame(f: Frame): Buffer {
  switch (f.type) {
    case FrameType.HELLO:
      return frame(f.type, [f.body]);
    case FrameType.STREAM:
      return frame(f.fin ? FrameType.STREAM_FIN : FrameType.STREAM, [f.id, f.data]);
    case FrameType.RESET_STREAM:
    case FrameType.STOP_SENDING:
      return frame(f.type, [f.id, f.code]);
    case FrameType.MAX_DATA:
    case FrameType.MAX_STREAMS:
      return frame(f.type, [f.max]);
    case FrameType.MAX_STREAM_DATA:
      return frame(f.type, [f.id, f.max]);
    case FrameType.PING:
    case FrameType.PONG:
      return frame(f.type, [f.opaque]);
    case FrameType.GOAWAY:
      return frame(f.type, [f.lastId, f.code, utf8(f.reason)]);
    case FrameType.CLOSE:
      return frame(f.type, [f.code, utf8(f.reason)]);
  }
}

/** Only the header of a STREAM frame, so bulk data is written without a copy. */
export function streamFrameHeader(id: number, length: number, fin: boolean): Buffer {
  const payload = varintLength(id) + length;
  const type = fin ? FrameType.STREAM_FIN : FrameType.STREAM;
  const buf = Buffer.allocUnsafe(1 + varintLength(payload) + varintLength(id));
  let off = writeVarint(buf, 0, type);
  off = writeVarint(buf, off, payload);
  writeVarint(buf, off, id);
  return buf;
}

const fail = (code: number, reason: string) => new TransportError(code, reason);

/** Reads fields of one payload; every read checks the bound. */
class PayloadReader {
  off = 0;
  readonly buf: Buffer;
  readonly name: string;
  constructor(buf: Buffer, name: string) {
    this.buf = buf;
    this.name = name;
  }
  varint(): number {
    let d: ReturnType<typeof readVarint>;
    try {
      d = readVarint(this.buf, this.off);
    } catch (e) {
      if (e instanceof VarintRangeError)
        throw fail(ErrorCode.FRAME_ENCODING_ERROR, `${this.name}: ${e.message}`);
      throw e;
    }
    if (!d) throw fail(ErrorCode.FRAME_ENCODING_ERROR, `${this.name}: truncated field`);
    this.off += d.length;
    return d.value;
  }
  rest(): Buffer {
    const r = this.buf.subarray(this.off);
    this.off = this.buf.length;
    return r;
  }
  bytes(n: number): Buffer {
    if (this.buf.length - this.off !== n)
      throw fail(ErrorCode.FRAME_ENCODING_ERROR, `${this.name}: expected ${n} bytes`);
    return this.rest();
  }
  end(): void {
    if (this.off !== this.buf.length)
      throw fail(ErrorCode.FRAME_ENCODING_ERROR, `${this.name}: trailing bytes`);
  }
}

function reasonOf(r: PayloadReader): string {
  const b = r.rest();
  if (b.length > 1024) throw fail(ErrorCode.FRAME_ENCODING_ERROR, `${r.name}: reason too long`);
  return new TextDecoder('utf-8', { fatal: false }).decode(b);
}

export function decodePayload(type: number, payload: Buffer): Frame {
  switch (type) {
    case FrameType.HELLO:
      return { type, body: payload };
    case FrameType.STREAM:
    case FrameType.STREAM_FIN: {
      const r = new PayloadReader(payload, 'STREAM');
      const id = r.varint();
      return { type: FrameType.STREAM, id, data: r.rest(), fin: type === FrameType.STREAM_FIN };
    }
    case FrameType.RESET_STREAM:
    case FrameType.STOP_SENDING: {
      const r = new PayloadReader(
        payload,
        type === FrameType.RESET_STREAM ? 'RESET_STREAM' : 'STOP_SENDING',
      );
      const id = r.varint();
      const code = r.varint();
      r.end();
      return { type, id, code };
    }
    case FrameType.MAX_DATA:
    case FrameType.MAX_STREAMS: {
      const r = new PayloadReader(
        payload,
        type === FrameType.MAX_DATA ? 'MAX_DATA' : 'MAX_STREAMS',
      );
      const max = r.varint();
      r.end();
      return { type, max };
    }
    case FrameType.MAX_STREAM_DATA: {
      const r = new PayloadReader(payload, 'MAX_STREAM_DATA');
      const id = r.varint();
      const max = r.varint();
      r.end();
      return { type, id, max };
    }
    case FrameType.PING:
    case FrameType.PONG: {
      const r = new PayloadReader(payload, type === FrameType.PING ? 'PING' : 'PONG');
      return { type, opaque: Buffer.from(r.bytes(8)) };
    }
    case FrameType.GOAWAY: {
      const r = new PayloadReader(payload, 'GOAWAY');
      const lastId = r.varint();
      const code = r.varint();
      return { type, lastId, code, reason: reasonOf(r) };
    }
    case FrameType.CLOSE: {
      const r = new PayloadReader(payload, 'CLOSE');
      const code = r.varint();
      return { type, code, reason: reasonOf(r) };
    }
    default:
      throw fail(ErrorCode.FRAME_ENCODING_ERROR, `unknown frame type 0x${type.toString(16)}`);
  }
}

/** A frame header: 1–8 bytes of type, 1–8 of length. */
const MAX_HEADER = 16;

/**
 * Incremental frame parser: push bytes, get whole frames. Holds at most one
 * frame's worth of bytes; a declared length above the cap fails at once.
 */
export class FrameParser {
  private readonly queue = new ByteQueue();
  /** Type, header length and payload length of the frame being gathered. */
  private head: { type: number; headLen: number; payloadLen: number } | null = null;
  readonly maxPayload: number;
  constructor(maxPayload = MAX_FRAME_PAYLOAD) {
    this.maxPayload = maxPayload;
  }

  /** Appends bytes and returns the frames now complete; throws TransportError. */
  push(data: Buffer): Frame[] {
    this.queue.push(data);
    const frames: Frame[] = [];
    for (;;) {
      if (!this.head) {
        const buf = this.queue.peek(MAX_HEADER);
        let t: ReturnType<typeof readVarint>;
        let l: ReturnType<typeof readVarint> = null;
        try {
          t = readVarint(buf, 0);
          if (t) l = readVarint(buf, t.length);
        } catch {
          throw fail(ErrorCode.FRAME_ENCODING_ERROR, 'frame header varint beyond 2^53-1');
        }
        if (!t || !l) break;
        if (l.value > this.maxPayload) {
          throw fail(
            ErrorCode.FRAME_SIZE_ERROR,
            `frame of ${l.value} bytes exceeds ${this.maxPayload}`,
          );
        }
        this.head = { type: t.value, headLen: t.length + l.length, payloadLen: l.value };
      }
      const { type, headLen, payloadLen } = this.head;
      if (this.queue.length < headLen + payloadLen) break;
      this.head = null;
      const bytes = this.queue.take(headLen + payloadLen);
      frames.push(decodePayload(type, bytes.subarray(headLen)));
    }
    return frames;
  }

  /** Bytes of an incomplete frame still held; non-zero at EOF means truncation. */
  get pending(): number {
    return this.queue.length;
  }
}
