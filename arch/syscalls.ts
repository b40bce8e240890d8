// Syscall numbers per ABI, generated from the kernel's headers by
// arch/gen-syscalls.ts. Pure data; nothing here does I/O.
import * as aarch64 from './syscalls/aarch64.ts';
import * as arm from './syscalls/arm.ts';
import * as i386 from './syscalls/i386.ts';
import * as x86_64 from './syscalls/x86_64.ts';

export type Abi = 'x86_64' | 'i386' | 'arm' | 'aarch64';

export const ABIS: readonly Abi[] = Object.freeze(['x86_64', 'i386', 'arm', 'aarch64']);

export interface SyscallTable {
  readonly byName: Readonly<Record<string, number>>;
  readonly byNumber: Readonly<Record<number, string>>;
}

export const SYSCALLS: Readonly<Record<Abi, SyscallTable>> = Object.freeze({
  x86_64,
  i386,
  arm,
  aarch64,
});

/** The number of `name` on `abi`; undefined where the ABI lacks it (open on aarch64). */
export function syscallNumber(abi: Abi, name: string): number | undefined {
  const { byName } = SYSCALLS[abi];
  // hasOwn: names like "constructor" must not resolve through the prototype.
  return Object.hasOwn(byName, name) ? byName[name] : undefined;
}

/** The name of syscall `nr` on `abi`; undefined if unassigned. */
export function syscallName(abi: Abi, nr: number): string | undefined {
  const { byNumber } = SYSCALLS[abi];
  return Object.hasOwn(byNumber, nr) ? byNumber[nr] : undefined;
}
