// Checks the implementation against the hand-written vectors in test/vectors/
// (docs/protocol.md), in both directions: encode → hex and hex → decode.
import { readFileSync } from 'node:fs';
import { duplexPair, PassThrough } from 'node:stream';
import { decode } from '@msgpack/msgpack';
import t from 'tap';
import { Connection, type ConnectionOptions } from '../../transport/connection.ts';
import { ErrorCode, TransportError } from '../../transport/errors.ts';
import {
  encodeFrame,
  type Frame,
  FrameParser,
  FrameType,
  MAX_FRAME_PAYLOAD,
  streamFrameHeader,
} from '../../transport/frames.ts';
import { fingerprintOf } from '../../transport/identity.ts';
import { encodeMessage, MAX_MESSAGE, MessageReader, readHeader } from '../../transport/messages.ts';
import {
  normalizePairCode,
  parseExecControl,
  parseExecEvent,
  parseHeader,
  parsePairFinish,
  parsePairReply,
  parsePairResult,
} from '../../transport/protocol.ts';
import {
  encodeVarint,
  readVarint,
  VarintRangeError,
  varintLength,
} from '../../transport/varint.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

const load = (name: string) =>
  JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8'));
const F = load('frames.json');
const M = load('messages.json');

const hex = (h: string) => Buffer.from(h, 'hex');
const code = (name: string): number => {
  const c = (ErrorCode as Record<string, number>)[name];
  if (c === undefined) throw new Error(`unknown error code name ${name}`);
  return c;
};

// ---- frames: JSON form <-> Frame ----

function toFrame(j: Obj): Frame {
  const type = (FrameType as Record<string, number>)[j.type as string];
  switch (type) {
    case FrameType.HELLO:
      return { type, body: hex(j.body as string) };
    case FrameType.STREAM:
      return { type, id: j.id as number, data: hex(j.data as string), fin: j.fin as boolean };
    case FrameType.RESET_STREAM:
    case FrameType.STOP_SENDING:
      return { type, id: j.id as number, code: j.code as number };
    case FrameType.MAX_DATA:
      return { type, max: j.max as number };
    case FrameType.MAX_STREAM_DATA:
      return { type, id: j.id as number, max: j.max as number };
    case FrameType.PING:
    case FrameType.PONG:
      return { type, opaque: hex(j.opaque as string) };
    case FrameType.GOAWAY:
      return {
        type,
        lastId: j.lastId as number,
        code: j.code as number,
        reason: j.reason as string,
      };
    case FrameType.CLOSE:
      return { type, code: j.code as number, reason: j.reason as string };
    default:
      throw new Error(`vector names unknown frame type ${j.type}`);
  }
}

const typeName = (n: number) => Object.entries(FrameType).find(([, v]) => v === n)?.[0];

/** A decoded frame as JSON, bytes as hex, for comparison with a vector. */
function fromFrame(f: Frame): Obj {
  const out: Obj = { type: typeName(f.type) ?? String(f.type) };
  for (const [k, v] of Object.entries(f)) {
    if (k === 'type') continue;
    out[k] = v instanceof Uint8Array ? Buffer.from(v).toString('hex') : (v as Json);
  }
  return out;
}

function parseAll(buf: Buffer, chunk = buf.length || 1): { frames: Frame[]; pending: number } {
  const p = new FrameParser();
  const frames: Frame[] = [];
  for (let i = 0; i < buf.length; i += chunk) frames.push(...p.push(buf.subarray(i, i + chunk)));
  return { frames, pending: p.pending };
}

t.test('varints', async (t) => {
  for (const v of F.varints) {
    const buf = hex(v.hex);
    if (v.error) {
      let err: unknown = null;
      try {
        readVarint(buf, 0);
      } catch (e) {
        err = e;
      }
      t.ok(err instanceof VarintRangeError, `${v.name}: rejected with VarintRangeError`);
      continue;
    }
    if (v.incomplete) {
      t.equal(readVarint(buf, 0), null, `${v.name}: needs more bytes`);
      continue;
    }
    t.same(readVarint(buf, 0), { value: v.value, length: buf.length }, `${v.name}: decodes`);
    // The same bytes after a prefix decode the same at their offset.
    t.same(readVarint(Buffer.concat([hex('ff'), buf]), 1), { value: v.value, length: buf.length });
    if (v.canonical) {
      t.equal(encodeVarint(v.value).toString('hex'), v.hex, `${v.name}: encodes`);
      t.equal(varintLength(v.value), buf.length);
    }
  }
  t.throws(() => encodeVarint(2 ** 53), RangeError, 'the encoder refuses 2^53');
  t.throws(() => encodeVarint(-1), RangeError, 'the encoder refuses negatives');
});

t.test('frames encode and decode exactly', async (t) => {
  for (const v of F.frames) {
    const buf = hex(v.hex);
    if (!v.decodeOnly) {
      const f = toFrame(v.frame);
      t.equal(encodeFrame(f).toString('hex'), v.hex, `${v.name}: encodeFrame`);
      if (f.type === FrameType.STREAM) {
        const head = streamFrameHeader(f.id, f.data.length, f.fin);
        t.equal(Buffer.concat([head, f.data]).toString('hex'), v.hex, `${v.name}: header path`);
      }
    }
    for (const chunk of [buf.length, 1]) {
      const { frames, pending } = parseAll(buf, chunk);
      t.equal(frames.length, 1, `${v.name}: one frame (chunks of ${chunk})`);
      t.same(fromFrame(frames[0]!), v.frame, `${v.name}: decoded fields (chunks of ${chunk})`);
      t.equal(pending, 0);
    }
    if (v.hello) t.same(decode(hex(v.frame.body)), v.hello, `${v.name}: HELLO body`);
  }
});

t.test('all vector frames back to back, in every chunk size', async (t) => {
  const canon = F.frames.filter((v: Obj) => !v.decodeOnly);
  const all = Buffer.concat(canon.map((v: Obj) => hex(v.hex as string)));
  for (const chunk of [1, 2, 3, 7, 64, 1000, all.length]) {
    const { frames, pending } = parseAll(all, chunk);
    t.same(
      frames.map(fromFrame),
      canon.map((v: Obj) => v.frame),
      `chunks of ${chunk}`,
    );
    t.equal(pending, 0);
  }
});

t.test('invalid frames fail with their error code', async (t) => {
  for (const v of F.invalid) {
    const want = code(v.error);
    for (const chunk of [0, 1]) {
      const p = new FrameParser();
      const buf = hex(v.hex);
      let err: unknown = null;
      try {
        if (chunk === 0) p.push(buf);
        else for (let i = 0; i < buf.length; i++) p.push(buf.subarray(i, i + 1));
      } catch (e) {
        err = e;
      }
      t.ok(
        err instanceof TransportError,
        `${v.name}: a TransportError (${chunk ? 'bytewise' : 'whole'})`,
      );
      t.equal((err as TransportError).code, want, `${v.name}: ${v.error}`);
    }
  }
});

t.test('incomplete input is held, not rejected', async (t) => {
  for (const v of F.incomplete) {
    const { frames, pending } = parseAll(hex(v.hex));
    t.equal(frames.length, v.frames ?? 0, `${v.name}: frames`);
    t.equal(pending, v.pending, `${v.name}: pending bytes`);
  }
});

t.test('the size cap is exactly MAX_FRAME_PAYLOAD', async (t) => {
  t.equal(MAX_FRAME_PAYLOAD, F.maxFramePayload);
  // A STREAM payload is the id (1 byte for id 0) plus the data.
  const atCap = encodeFrame({
    type: FrameType.STREAM,
    id: 0,
    data: Buffer.alloc(MAX_FRAME_PAYLOAD - 1, 7),
    fin: false,
  });
  const { frames } = parseAll(atCap);
  t.equal(frames.length, 1, 'a payload of exactly the cap is accepted');
  const over = encodeFrame({
    type: FrameType.STREAM,
    id: 0,
    data: Buffer.alloc(MAX_FRAME_PAYLOAD, 7),
    fin: false,
  });
  t.throws(() => new FrameParser().push(over.subarray(0, 6)), {
    code: ErrorCode.FRAME_SIZE_ERROR,
  });
});

// ---- sessions: byte sequences fed to a real Connection ----

interface SessionResult {
  conn: Connection;
  closed: boolean;
  err: TransportError | null;
  out: Frame[];
  outPending: number;
  streams: number[];
}

async function runSession(v: Obj): Promise<SessionResult> {
  const [a, b] = duplexPair();
  const opts = {
    role: v.role,
    idleTimeoutMs: 60_000,
    ...(v.options as object),
  } as ConnectionOptions;
  const conn = new Connection(b, opts);
  const outBufs: Buffer[] = [];
  a.on('data', (d: Buffer) => outBufs.push(d));
  const streams: number[] = [];
  conn.on('stream', (s) => {
    streams.push(s.id);
    s.resume();
  });
  let closed = false;
  let err: TransportError | null = null;
  conn.on('close', (e) => {
    closed = true;
    err = e;
  });
  a.write(hex((v.input as string[]).join('')));
  if (v.end) a.end();
  const expect = v.expect as Obj;
  // In-memory pairs hold no handle: keep the loop alive while waiting.
  const keep = setTimeout(() => {}, 10_000);
  const deadline = Date.now() + (expect.open ? 50 : 3000);
  while (Date.now() < deadline && !(closed && !expect.open)) {
    await new Promise((r) => setTimeout(r, 5));
  }
  clearTimeout(keep);
  const parsed = parseAll(Buffer.concat(outBufs));
  return { conn, closed, err, out: parsed.frames, outPending: parsed.pending, streams };
}

t.test('sessions against a Connection', async (t) => {
  for (const v of F.sessions) {
    const r = await runSession(v);
    const e = v.expect;
    const name = `${v.name} (${v.role})`;
    t.equal(r.outPending, 0, `${name}: output is whole frames`);
    t.equal(r.out[0]?.type, FrameType.HELLO, `${name}: the connection's first frame is HELLO`);
    const last = r.out[r.out.length - 1];
    const sentClose = r.out.some((f) => f.type === FrameType.CLOSE);
    if (e.close) {
      t.ok(r.closed, `${name}: closed`);
      t.ok(r.err instanceof TransportError, `${name}: with an error`);
      t.equal(r.err?.code, code(e.close), `${name}: ${e.close}`);
      t.equal(r.err?.remote, false, `${name}: detected locally`);
      t.equal(last?.type, FrameType.CLOSE, `${name}: ends with CLOSE`);
      t.equal(last?.type === FrameType.CLOSE && last.code, code(e.close), `${name}: CLOSE code`);
    } else if (e.closeRemote) {
      t.ok(r.closed, `${name}: closed`);
      t.equal(r.err?.code, code(e.closeRemote), `${name}: ${e.closeRemote}`);
      t.equal(r.err?.remote, true, `${name}: the peer's doing`);
      if (e.reason !== undefined) t.equal(r.err?.message, `${e.closeRemote}: ${e.reason}`);
      t.notOk(sentClose, `${name}: no CLOSE sent back`);
    } else if (e.closeClean) {
      t.ok(r.closed, `${name}: closed`);
      t.equal(r.err, null, `${name}: cleanly`);
    } else {
      t.notOk(r.closed, `${name}: still open (${r.err?.message ?? ''})`);
      if (e.version !== undefined) t.equal(r.conn.peer?.version, e.version, `${name}: version`);
    }
    if (e.streams) t.same(r.streams, e.streams, `${name}: streams opened by the peer`);
    const sent = r.out.map((f) => encodeFrame(f).toString('hex'));
    for (const h of e.sends ?? []) t.ok(sent.includes(h), `${name}: sends ${h}`);
    for (const n of e.neverSends ?? []) {
      const type = (FrameType as Record<string, number>)[n];
      t.notOk(
        r.out.some((f) => f.type === type),
        `${name}: never sends ${n}`,
      );
    }
    r.conn.close();
  }
});

// ---- messages ----

/** JSON vector value -> JS value: {"$bin": hex} becomes a Uint8Array. */
function toValue(j: Json): unknown {
  if (Array.isArray(j)) return j.map(toValue);
  if (j && typeof j === 'object') {
    if (typeof j.$bin === 'string') return new Uint8Array(hex(j.$bin));
    return Object.fromEntries(Object.entries(j).map(([k, v]) => [k, toValue(v)]));
  }
  return j;
}

function fromValue(x: unknown): Json {
  if (x instanceof Uint8Array) return { $bin: Buffer.from(x).toString('hex') };
  if (Array.isArray(x)) return x.map(fromValue);
  if (x && typeof x === 'object') {
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, fromValue(v)]));
  }
  return x as Json;
}

const parsers: Record<string, (x: unknown) => unknown> = {
  header: parseHeader,
  event: parseExecEvent,
  control: parseExecControl,
  pairReply: parsePairReply,
  pairFinish: parsePairFinish,
  pairResult: parsePairResult,
};

/** Settles with the reader's next result, or 'pending' if nothing comes within `ms`. */
function nextWithin(r: MessageReader, ms: number): Promise<unknown> {
  const keep = setTimeout(() => {}, ms + 100);
  return Promise.race([
    r.next().then(
      (v) => ({ value: v }),
      (e) => ({ error: e }),
    ),
    new Promise((res) => setTimeout(() => res('pending'), ms)),
  ]).finally(() => clearTimeout(keep));
}

t.test('messages encode, read and parse exactly', async (t) => {
  t.equal(MAX_MESSAGE, M.maxMessage);
  for (const v of M.messages) {
    const value = toValue(v.value);
    t.equal(encodeMessage(value).toString('hex'), v.hex, `${v.name}: encodeMessage`);
    const s = new PassThrough();
    const reader = new MessageReader(s);
    s.end(hex(v.hex));
    const got = await reader.next();
    t.same(fromValue(got), v.value, `${v.name}: MessageReader`);
    t.equal(await reader.next(), null, `${v.name}: then the end`);
    t.same(fromValue(parsers[v.parser]!(got)), v.parsed, `${v.name}: ${v.parser} parser`);
  }
});

t.test('all messages in one stream, one byte at a time', async (t) => {
  const s = new PassThrough();
  const reader = new MessageReader(s);
  const all = Buffer.concat(M.messages.map((v: Obj) => hex(v.hex as string)));
  for (let i = 0; i < all.length; i++) s.write(all.subarray(i, i + 1));
  s.end();
  const got: Json[] = [];
  for await (const m of reader) got.push(fromValue(m));
  t.same(
    got,
    M.messages.map((v: Obj) => v.value),
  );
});

t.test('readHeader takes one message and leaves the raw bytes after it', async (t) => {
  for (const v of M.messages.slice(0, 4)) {
    const s = new PassThrough();
    s.end(Buffer.concat([hex(v.hex), Buffer.from('raw bytes')]));
    const header = await readHeader(s);
    t.same(fromValue(header), v.value, `${v.name}: header`);
    const rest: Buffer[] = [];
    for await (const c of s) rest.push(c as Buffer);
    t.equal(Buffer.concat(rest).toString(), 'raw bytes', `${v.name}: rest intact`);
  }
});

t.test('invalid message bytes are a MESSAGE_ERROR', async (t) => {
  for (const v of M.invalidBytes) {
    const s = new PassThrough();
    const reader = new MessageReader(s);
    if (v.end) s.end(hex(v.hex));
    else s.write(hex(v.hex));
    let before = 0;
    let outcome: unknown;
    for (;;) {
      outcome = await nextWithin(reader, 1000);
      if (outcome && typeof outcome === 'object' && 'value' in outcome && outcome.value !== null) {
        before++;
        continue;
      }
      break;
    }
    t.equal(before, v.before, `${v.name}: messages before the error`);
    const err = (outcome as { error?: unknown }).error;
    t.ok(err instanceof TransportError, `${v.name}: rejects with a TransportError`);
    t.equal((err as TransportError).code, code(v.error), `${v.name}: ${v.error}`);
  }
});

t.test('an incomplete message waits, and ending there is a MESSAGE_ERROR', async (t) => {
  for (const v of M.incompleteBytes) {
    const s = new PassThrough();
    const reader = new MessageReader(s);
    s.write(hex(v.hex));
    t.equal(await nextWithin(reader, 50), 'pending', `${v.name}: waits`);
    s.end();
    const r = (await nextWithin(reader, 1000)) as { error?: TransportError };
    t.equal(r.error?.code, ErrorCode.MESSAGE_ERROR, `${v.name}: then fails at the end`);
  }
});

t.test('invalid values are rejected by their parser with MESSAGE_ERROR', async (t) => {
  for (const v of M.invalidValues) {
    const value = toValue(v.value);
    // Through MessagePack, as the value would arrive.
    const msg = encodeMessage(value);
    const arrived = decode(msg.subarray(readVarint(msg, 0)!.length));
    for (const x of [value, arrived]) {
      let err: unknown = null;
      try {
        parsers[v.parser]!(x);
      } catch (e) {
        err = e;
      }
      t.ok(err instanceof TransportError, `${v.name}: a TransportError`);
      t.equal((err as TransportError).code, code(v.error), `${v.name}: ${v.error}`);
    }
  }
});

t.test('pairing codes and fingerprints', async (t) => {
  t.equal(normalizePairCode(' abcde - fghjk '), 'ABCDEFGHJK');
  for (const v of M.fingerprints) {
    t.equal(fingerprintOf(hex(v.der)), v.fingerprint, v.name);
  }
});
