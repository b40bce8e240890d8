// Each side's long-term identity: an ECDSA P-256 key and a self-signed
// certificate, pinned by the peer through the SHA-256 fingerprint of the
// certificate (as OpenSSH pins host keys), never through a CA.
import { createHash, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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

/** Of the certificate in `pem`, which may also hold the key. */
export function fingerprintOfPem(pem: string): string {
  const cert = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(pem)?.[0];
  if (!cert) throw new Error('no certificate in PEM');
  return fingerprintOf(new X509Certificate(cert).raw);
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

/** The PEM blocks of one file: the key and the certificate travel together. */
function split(pem: string): { key: string; cert: string } | null {
  const key = /-----BEGIN PRIVATE KEY-----[^-]+-----END PRIVATE KEY-----\n?/.exec(pem)?.[0];
  const cert = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/.exec(pem)?.[0];
  return key && cert ? { key, cert } : null;
}

/** A new identity, in memory: the caller decides where (and whether) it is kept. */
export async function createIdentity(commonName: string): Promise<Identity> {
  const parts = await generate(commonName);
  return { ...parts, fingerprint: fingerprintOfPem(parts.cert) };
}

/** Writes `id` to `path` (0600) in one step: a reader sees the old file or the new one. */
export function saveIdentity(path: string, id: Identity): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, id.key + id.cert, { mode: 0o600 });
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** The identity kept at `path`, or null when there is none. */
export function loadIdentity(path: string): Identity | null {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const parts = split(pem);
  if (!parts) throw new Error(`${path}: not a key and certificate`);
  return { ...parts, fingerprint: fingerprintOfPem(parts.cert) };
}

/**
 * Loads the identity (identity.pem: key and certificate) from `dir`,
 * creating it on first use. Several processes may start at once: each
 * writes a private temporary file and links it into place, which fails
 * for all but the first; the others then read the winner's.
 */
export async function loadOrCreateIdentity(dir: string, commonName: string): Promise<Identity> {
  const path = join(dir, 'identity.pem');
  const existing = loadIdentity(path);
  if (existing) return existing;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { key, cert } = await generate(commonName);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, key + cert, { mode: 0o600 });
  try {
    linkSync(tmp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
  return loadIdentity(path)!;
}
