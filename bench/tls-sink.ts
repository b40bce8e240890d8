// B4's raw TLS baseline, server side: started inside the device namespace,
// it answers each connection's request line "N\n" with N zero bytes, then
// closes. Plain Node TLS 1.3 with default ciphers (as tether's transport).
// Usage: tls-sink.ts HOST PORT KEY.pem CERT.pem
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const [host, port, keyPath, certPath] = process.argv.slice(2);
// 256 KiB per write: large enough that the per-write cost is noise.
const zeros = Buffer.alloc(256 * 1024);

function send(sock: tls.TLSSocket, n: number): void {
  let left = n;
  const pump = () => {
    while (left > 0) {
      const chunk = left >= zeros.length ? zeros : zeros.subarray(0, left);
      left -= chunk.length;
      if (!sock.write(chunk)) {
        sock.once('drain', pump);
        return;
      }
    }
    sock.end();
  };
  pump();
}

const server = tls.createServer(
  {
    key: readFileSync(keyPath!),
    cert: readFileSync(certPath!),
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  },
  (sock) => {
    sock.on('error', () => {});
    let req = '';
    const onData = (d: Buffer) => {
      req += d.toString('latin1');
      const nl = req.indexOf('\n');
      if (nl < 0) return;
      sock.off('data', onData);
      send(sock, Number(req.slice(0, nl)));
    };
    sock.on('data', onData);
  },
);
server.listen(Number(port), host, () => process.stdout.write('listening\n'));
