// One-time pairing codes. The code lives in the state directory (mode 0600:
// the daemon needs it in clear to check HMAC proofs), so
// `tetherd pair` on the device can open pairing for a daemon already running.
import { randomInt, timingSafeEqual } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { pairProof } from '../transport/protocol.ts';
import type { State } from './state.ts';

const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const MAX_ATTEMPTS = 5;

interface PairingFile {
  code: string;
  expires: number;
  attempts: number;
}

/** Makes a new code valid for `ttlMs`, replacing any earlier one; returns it for display. */
export function openPairing(state: State, ttlMs = 10 * 60 * 1000): string {
  let code = '';
  for (let i = 0; i < 10; i++) code += ALPHABET[randomInt(ALPHABET.length)];
  write(state, { code, expires: Date.now() + ttlMs, attempts: 0 });
  return `${code.slice(0, 5)}-${code.slice(5)}`;
}

function write(state: State, p: PairingFile): void {
  const tmp = `${state.pairingPath}.tmp`;
  writeFileSync(tmp, JSON.stringify(p), { mode: 0o600 });
  renameSync(tmp, state.pairingPath);
}

function read(state: State): PairingFile | null {
  try {
    const p = JSON.parse(readFileSync(state.pairingPath, 'utf8')) as PairingFile;
    if (
      typeof p.code !== 'string' ||
      typeof p.expires !== 'number' ||
      typeof p.attempts !== 'number'
    )
      return null;
    return p;
  } catch {
    return null;
  }
}

export function pairingOpen(state: State): boolean {
  const p = read(state);
  return p !== null && p.expires > Date.now() && p.attempts < MAX_ATTEMPTS;
}

export type PairResult = { ok: true; proof: Buffer } | { ok: false; error: string };

/**
 * Checks a client's proof. Success consumes the code; failures count, and
 * the code dies after MAX_ATTEMPTS so it cannot be guessed online.
 */
export function checkPairing(
  state: State,
  proof: Uint8Array,
  clientFp: string,
  deviceFp: string,
): PairResult {
  const p = read(state);
  if (!p || p.expires <= Date.now() || p.attempts >= MAX_ATTEMPTS) {
    return { ok: false, error: 'pairing is not open on the device (run `tetherd pair` there)' };
  }
  const want = pairProof(p.code, 'client', clientFp, deviceFp);
  const given = Buffer.from(proof);
  const match = given.length === want.length && timingSafeEqual(given, want);
  if (!match) {
    write(state, { ...p, attempts: p.attempts + 1 });
    return { ok: false, error: 'wrong pairing code' };
  }
  rmSync(state.pairingPath, { force: true });
  return { ok: true, proof: pairProof(p.code, 'device', clientFp, deviceFp) };
}
