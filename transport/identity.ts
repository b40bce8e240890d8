// Each side's long-term identity: an ECDSA P-256 key and a self-signed
// certificate, pinned by the peer through the SHA-256 fingerprint of the
// certificate (as OpenSSH pins host keys), never through a CA.
import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Identity {
  key: string;
  cert: string;
  fingerprint: string;
}

/** SHA256:<base64> of a DER certificate, the form ssh-keygen -l prints. */
export function fingerprintOf(der: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(der).digest('base64').replace(/=+$/, '')}`;
}

export function fingerprintOfPem(pem: string): string {
  return fingerprintOf(new X509Certificate(pem).raw);
}

async function generate(commonName: string): Promise<{ key: string; cert: string }> {
  // Loaded only here: it costs ~0.3 s, and only a first start makes a certificate.
  // @peculiar/x509 resolves its services through tsyringe, which needs the polyfill.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: `CN=${commonName.replace(/[,=+<>#;"\\]/g, '_')}`,
    notBefore: new Date(now - 24 * 3600 * 1000),
    notAfter: new Date(now + 100 * 365 * 24 * 3600 * 1000),
    signingAlgorithm: alg,
    keys,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`;
  return { key: key.replace(/\n\n/g, '\n'), cert: cert.toString('pem') };
}

/**
 * Loads the identity from `dir` (key.pem, cert.pem), creating it on first use.
 * The key file is written 0600 and moved into place atomically.
 */
export async function loadOrCreateIdentity(dir: string, commonName: string): Promise<Identity> {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  try {
    const key = readFileSync(keyPath, 'utf8');
    const cert = readFileSync(certPath, 'utf8');
    return { key, cert, fingerprint: fingerprintOfPem(cert) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { key, cert } = await generate(commonName);
  writeFileSync(`${keyPath}.tmp`, key, { mode: 0o600 });
  writeFileSync(`${certPath}.tmp`, cert, { mode: 0o644 });
  renameSync(`${certPath}.tmp`, certPath);
  renameSync(`${keyPath}.tmp`, keyPath);
  return { key, cert, fingerprint: fingerprintOfPem(cert) };
}
