// What every handler shares: its type, and small helpers for decisions made now or later.
import { constants } from 'node:os';
import type { Action, SyscallStop } from '../syscall-stop.ts';
import type { Redirector } from './redirector.ts';

export const E = constants.errno;

/** Decides one trapped call of one run. */
export type Handler = (r: Redirector, s: SyscallStop) => Action | Promise<Action>;

/** A register argument as the C int it is. */
export const s32 = (x: bigint) => Number(BigInt.asIntN(32, x));

/** f(v) now when v is known, else when it arrives. */
export function then<T>(
  v: T | Promise<T>,
  f: (v: T) => Action | Promise<Action>,
): Action | Promise<Action> {
  return v instanceof Promise ? v.then(f) : f(v);
}
