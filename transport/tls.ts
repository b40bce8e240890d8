// Mutual TLS 1.3 with pinned self-signed certificates. Certificate chains are
// not checked (there is no CA); the fingerprint is the identity, checked by
// the caller against its pinned list right after the handshake.
import tls from 'node:tls';
import { fingerprintOf, type Identity } from './identity.ts';

export const ALPN = 'tether/1';
/** The daemon's status API shares its port, chosen by ALPN. */
export const HTTP_ALPN = 'http/1.1';

const common = {
  minVersion: 'TLSv1.3' as const,
  maxVersion: 'TLSv1.3' as const,
  rejectUnauthorized: false,
};

export function peerFingerprint(socket: tls.TLSSocket): string | null {
  const c = socket.getPeerCertificate();
  return c?.raw ? fingerprintOf(c.raw) : null;
}

export function createTlsServer(id: Identity, alpn: string[] = [ALPN]): tls.Server {
  return tls.createServer({
    ...common,
    key: id.key,
    cert: id.cert,
    requestCert: true,
    ALPNProtocols: alpn,
  });
}

/** Connects and resolves once the handshake is done; the caller checks the pin. */
export function connectTls(
  id: Identity,
  host: string,
  port: number,
  timeoutMs = 15_000,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      ...common,
      host,
      port,
      key: id.key,
      cert: id.cert,
      ALPNProtocols: [ALPN],
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        Object.assign(new Error(`connection to ${host}:${port} timed out`), { code: 'ETIMEDOUT' }),
      );
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
