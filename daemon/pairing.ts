// One-time pairing codes. The code lives in the state directory (mode 0600:
// the daemon needs it in clear for the PAKE, transport/pake.ts), so
// `tetherd pair` on the device can open pairing for a daemon already running.
import { randomInt } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { deviceFinish, deviceStart, type PakeIds } from '../transport/pake.ts';
import type { PairResult } from '../transport/protocol.ts';
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

function isOpen(p: PairingFile | null): p is PairingFile {
  return p !== null && p.expires > Date.now() && p.attempts < MAX_ATTEMPTS;
}

export function pairingOpen(state: State): boolean {
  return isOpen(read(state));
}

/** An attempt under way: the answer to the client's start, and the check of its finish. */
export interface PairingAttempt {
  ke2: string;
  finish(ke3: string | null): Promise<PairResult>;
}

const NOT_OPEN = 'pairing is not open on the device (run `tetherd pair` there)';

/**
 * Starts an attempt with the client's PAKE start. Every attempt counts, won or not, and the
 * code dies after MAX_ATTEMPTS, so it cannot be guessed online; a won attempt consumes it.
 */
export async function startPairing(
  state: State,
  ke1: string,
  ids: PakeIds,
): Promise<PairingAttempt | { error: string }> {
  const p = read(state);
  if (!isOpen(p)) return { error: NOT_OPEN };
  write(state, { ...p, attempts: p.attempts + 1 });
  const pake = await deviceStart(p.code, ke1, ids);
  return {
    ke2: pake.ke2,
    async finish(ke3) {
      if (ke3 === null || !(await deviceFinish(pake.state, ke3, ids)))
        return { ok: false, error: 'wrong pairing code' };
      // Another attempt may have won meanwhile, or `tetherd pair` made a new code.
      const now = read(state);
      if (!now || now.code !== p.code || now.expires <= Date.now())
        return { ok: false, error: NOT_OPEN };
      rmSync(state.pairingPath, { force: true });
      return { ok: true };
    },
  };
}
