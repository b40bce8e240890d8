// B4's raw TLS baseline, client side: a separate Node process (so its row
// pays a Node start and a handshake, as the tether and ssh rows do) that asks
// tls-sink for N bytes and discards them. Prints its own handshake and
// transfer times as JSON on stderr; exits 1 if fewer bytes came.
// Usage: tls-drain.ts HOST PORT N
import tls from 'node:tls';

const [host, port, n] = process.argv.slice(2);
const want = Number(n);
const t0 = performance.now();
let tHandshake = 0;
let got = 0;
const sock = tls.connect(
  {
    host,
    port: Number(port),
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    // A throwaway self-signed certificate on a private link: nothing to verify.
    rejectUnauthorized: false,
  },
  () => {
    tHandshake = performance.now();
    sock.write(`${want}\n`);
  },
);
sock.on('data', (d: Buffer) => {
  got += d.length;
});
sock.on('end', () => {
  const t1 = performance.now();
  process.stderr.write(
    `${JSON.stringify({ bytes: got, handshakeMs: tHandshake - t0, transferMs: t1 - tHandshake })}\n`,
  );
  process.exit(got === want ? 0 : 1);
});
sock.on('error', (e) => {
  process.stderr.write(`tls-drain: ${e.message}\n`);
  process.exit(1);
});
