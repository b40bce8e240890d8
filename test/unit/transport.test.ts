import { once } from 'node:events';
import { duplexPair } from 'node:stream';
import t from 'tap';
import { Connection } from '../../transport/connection.ts';
import { ErrorCode, TransportError } from '../../transport/errors.ts';
import { encodeFrame, FrameType } from '../../transport/frames.ts';
import { MessageReader, writeMessage } from '../../transport/messages.ts';
import type { Stream } from '../../transport/stream.ts';

function pair(
  opts: { streamWindow?: number; connectionWindow?: number; clientVersions?: number[] } = {},
) {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client', versions: opts.clientVersions, ...opts });
  const server = new Connection(b, { role: 'server', ...opts });
  return { client, server, a, b };
}

async function readAll(s: Stream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

t.test('HELLO agrees on a version and capabilities', async (t) => {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client', caps: ['exec'], versions: [1, 2] });
  const server = new Connection(b, { role: 'server', caps: ['exec', 'pair'], versions: [1] });
  const [hc, hs] = await Promise.all([client.ready(), server.ready()]);
  t.equal(hc.version, 1);
  t.equal(hs.version, 1);
  t.same(hc.caps, ['exec', 'pair']);
  t.same(hs.caps, ['exec']);
  client.close();
});

t.test('no common version closes both sides with VERSION_MISMATCH', async (t) => {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client', versions: [2] });
  const server = new Connection(b, { role: 'server', versions: [1] });
  const [[errC], [errS]] = await Promise.all([once(client, 'close'), once(server, 'close')]);
  t.equal((errC as TransportError).code, ErrorCode.VERSION_MISMATCH);
  t.equal((errS as TransportError).code, ErrorCode.VERSION_MISMATCH);
  t.match((errC as Error).message, /peer speaks \[1\]|peer speaks \[2\]/);
});

t.test('streams opened by either side echo data and FIN', async (t) => {
  const { client, server } = pair();
  server.on('stream', (s) => s.pipe(s));
  client.on('stream', (s) => s.pipe(s));
  const s1 = client.openStream();
  const s2 = server.openStream();
  t.equal(s1.id % 2, 0, 'client ids are even');
  t.equal(s2.id % 2, 1, 'server ids are odd');
  const big = Buffer.alloc(3 * 1024 * 1024 + 7, 'x');
  s1.end(big);
  s2.end('hello');
  const [r1, r2] = await Promise.all([readAll(s1), readAll(s2)]);
  t.equal(r1.length, big.length);
  t.ok(r1.equals(big));
  t.equal(r2.toString(), 'hello');
  client.close();
});

t.test('a stalled reader on one stream does not block another', async (t) => {
  const { client, server } = pair({ streamWindow: 64 * 1024, connectionWindow: 256 * 1024 });
  const got = new Map<number, Stream>();
  server.on('stream', (s) => got.set(s.id, s));
  const stalled = client.openStream();
  const live = client.openStream();
  // Fill far beyond the stalled stream's window; nobody reads it.
  let stalledWritten = 0;
  const chunk = Buffer.alloc(16 * 1024);
  const fill = () => {
    while (stalledWritten < 8 * 1024 * 1024 && stalled.write(chunk)) stalledWritten += chunk.length;
  };
  stalled.on('drain', fill);
  fill();
  live.end(Buffer.alloc(2 * 1024 * 1024, 'y'));
  while (!got.has(live.id)) await new Promise((r) => setTimeout(r, 5));
  const data = await readAll(got.get(live.id)!);
  t.equal(data.length, 2 * 1024 * 1024, 'the live stream got everything');
  t.ok(
    stalledWritten < 1024 * 1024,
    `the stalled writer was held back (${stalledWritten} bytes accepted)`,
  );
  client.close();
});

t.test('messages round-trip and a bad one is a MESSAGE_ERROR', async (t) => {
  const { client, server } = pair();
  const p = new Promise<unknown[]>((resolve, reject) => {
    server.on('stream', async (s) => {
      const r = new MessageReader(s);
      const out: unknown[] = [];
      try {
        for await (const m of r) out.push(m);
        resolve(out);
      } catch (e) {
        reject(e);
      }
    });
  });
  const s = client.openStream();
  writeMessage(s, { type: 'start', argv: ['a', 'b'] });
  writeMessage(s, { type: 'signal', n: 2 });
  s.end();
  t.same(await p, [
    { type: 'start', argv: ['a', 'b'] },
    { type: 'signal', n: 2 },
  ]);

  const bad = new Promise<Error>((resolve) => {
    server.removeAllListeners('stream');
    server.on('stream', (s2) => {
      new MessageReader(s2).next().then(
        () => resolve(new Error('no error')),
        (e) => resolve(e),
      );
    });
  });
  const s2 = client.openStream();
  s2.end(Buffer.from([0x02, 0xc1, 0xc1]));
  const e = await bad;
  t.equal((e as TransportError).code, ErrorCode.MESSAGE_ERROR);
  client.close();
});

t.test('malformed input closes with a clear error, never a crash', async (t) => {
  const cases: [string, Buffer, number][] = [
    [
      'data before HELLO',
      encodeFrame({ type: FrameType.MAX_DATA, max: 5 }),
      ErrorCode.PROTOCOL_ERROR,
    ],
    ['unknown frame type', Buffer.from([0x3f, 0x00]), ErrorCode.FRAME_ENCODING_ERROR],
    ['oversized frame', Buffer.from([0x02, 0x80, 0x10, 0x00, 0x00]), ErrorCode.FRAME_SIZE_ERROR],
    [
      'garbage HELLO',
      encodeFrame({ type: FrameType.HELLO, body: Buffer.from([0xc1]) }),
      ErrorCode.PROTOCOL_ERROR,
    ],
  ];
  for (const [name, bytes, code] of cases) {
    const [a, b] = duplexPair();
    const server = new Connection(b, { role: 'server' });
    a.on('data', () => {});
    const closed = once(server, 'close');
    a.write(bytes);
    const [err] = await closed;
    t.equal((err as TransportError).code, code, name);
  }
  // Truncated: a header promising more than ever arrives, then EOF.
  const [a, b] = duplexPair();
  const server = new Connection(b, { role: 'server' });
  a.on('data', () => {});
  const closed = once(server, 'close');
  a.end(Buffer.from([0x01, 0x10, 0x00]));
  const [err] = await closed;
  t.equal((err as TransportError).code, ErrorCode.FRAME_ENCODING_ERROR, 'truncated frame');
});

t.test('a peer exceeding its credit is a FLOW_CONTROL_ERROR', async (t) => {
  const [a, b] = duplexPair();
  const server = new Connection(b, { role: 'server', streamWindow: 1024 });
  const raw = new Connection(a, { role: 'client' });
  await raw.ready();
  // Bypass the client's own flow control by writing frames to the socket.
  const closed = once(server, 'close');
  a.write(encodeFrame({ type: FrameType.STREAM, id: 0, data: Buffer.alloc(2000), fin: false }));
  const [err] = await closed;
  t.equal((err as TransportError).code, ErrorCode.FLOW_CONTROL_ERROR);
});

t.test(
  'RESET_STREAM aborts the peer stream with the code; STOP_SENDING stops the writer',
  async (t) => {
    const { client, server } = pair();
    const srv = new Promise<Stream>((r) => server.on('stream', r));
    const s = client.openStream();
    s.write('x');
    const peer = await srv;
    peer.resume();
    const errP = once(peer, 'error');
    s.reset(42, 'user abort');
    const [e] = await errP;
    t.equal((e as TransportError).code, 42);
    const s2 = client.openStream();
    s2.write('y');
    const srv2 = await new Promise<Stream>((r) => server.once('stream', r));
    const errW = once(s2, 'error');
    srv2.destroy(new TransportError(7, 'no more'));
    const [e2] = await errW;
    t.equal((e2 as TransportError).code, 7);
    client.close();
  },
);

t.test('PING measures RTT; GOAWAY drains then closes cleanly', async (t) => {
  const { client, server } = pair();
  await client.ready();
  const rtt = await client.ping();
  t.ok(rtt >= 0 && Number.isFinite(rtt));
  const srv = new Promise<Stream>((r) => server.on('stream', r));
  const s = client.openStream();
  s.write('a');
  const peer = await srv;
  const goaway = once(client, 'goaway');
  server.goaway(0, 'shutdown');
  await goaway;
  t.throws(() => client.openStream(), /going away/);
  const closed = once(client, 'close');
  peer.end('bye');
  peer.resume();
  s.end();
  t.equal((await readAll(s)).toString(), 'bye');
  const [err] = await closed;
  t.equal(err, null, 'closed without error after the drain');
});

t.test('idle timeout closes a silent connection', async (t) => {
  const [a, b] = duplexPair();
  const server = new Connection(b, { role: 'server', idleTimeoutMs: 300 });
  a.on('data', () => {});
  // An in-memory pair holds no handle; a real socket would keep the loop alive.
  const keep = setTimeout(() => {}, 10_000);
  const [err] = await once(server, 'close');
  clearTimeout(keep);
  t.equal((err as TransportError).code, ErrorCode.IDLE_TIMEOUT);
});

t.test('a socket error is the connection-lost reason, its code named once', async (t) => {
  const [a] = duplexPair();
  const conn = new Connection(a, { role: 'client' });
  conn.ready().catch(() => {});
  a.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  await new Promise((r) => setImmediate(r));
  t.equal(conn.closeError?.code, ErrorCode.CONNECTION_LOST);
  t.match(conn.closeError?.message, /read ECONNRESET$/);
  t.notMatch(
    conn.closeError?.message,
    /ECONNRESET.*ECONNRESET/,
    'not "ECONNRESET: read ECONNRESET"',
  );
});
