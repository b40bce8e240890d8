// The kernel's ptrace interface in TypeScript terms: request and option numbers, wait-status
// decoding and struct ptrace_syscall_info. The same on every Linux ABI tether supports
// (arm's PTRACE_SET_SYSCALL lives with its ABI in arch/).

export const PTRACE = {
  CONT: 7,
  DETACH: 17,
  SYSCALL: 24,
  SETOPTIONS: 0x4200,
  INTERRUPT: 0x4207,
  LISTEN: 0x4208,
} as const;

export const PTRACE_O = {
  TRACESYSGOOD: 0x1,
  TRACEFORK: 0x2,
  TRACEVFORK: 0x4,
  TRACECLONE: 0x8,
  TRACEEXEC: 0x10,
  TRACEEXIT: 0x40,
  TRACESECCOMP: 0x80,
  EXITKILL: 0x100000,
} as const;

export const PTRACE_EVENT = {
  FORK: 1,
  VFORK: 2,
  CLONE: 3,
  EXEC: 4,
  EXIT: 6,
  SECCOMP: 7,
  STOP: 128,
} as const;

export const NT_PRSTATUS = 1;

/** What one raw wait status says. */
export type WaitEvent =
  | { kind: 'exited'; code: number }
  | { kind: 'killed'; signal: number; core: boolean }
  /** A ptrace stop: `signal` is the stop signal, `event` the PTRACE_EVENT_* (0 for none). */
  | { kind: 'stopped'; signal: number; event: number };

export function decodeWaitStatus(st: number): WaitEvent {
  const low = st & 0x7f;
  if (low === 0) return { kind: 'exited', code: (st >> 8) & 0xff };
  if ((st & 0xff) === 0x7f) return { kind: 'stopped', signal: (st >> 8) & 0xff, event: st >>> 16 };
  return { kind: 'killed', signal: low, core: (st & 0x80) !== 0 };
}

/** struct ptrace_syscall_info, decoded (linux/ptrace.h). */
export type SyscallInfo =
  | {
      op: 'entry' | 'seccomp';
      arch: number;
      ip: bigint;
      sp: bigint;
      nr: number;
      args: bigint[];
    }
  | { op: 'exit'; arch: number; ip: bigint; sp: bigint; rval: bigint; isError: boolean }
  | { op: 'none'; arch: number; ip: bigint; sp: bigint };

export function decodeSyscallInfo(b: Buffer): SyscallInfo {
  const op = b[0];
  const arch = b.readUInt32LE(4);
  const ip = b.readBigUInt64LE(8);
  const sp = b.readBigUInt64LE(16);
  if (op === 1 || op === 3) {
    const args: bigint[] = [];
    for (let i = 0; i < 6; i++) args.push(b.readBigUInt64LE(32 + 8 * i));
    // The kernel widens the number to 64 bits; -1 (a skipped call) must stay -1.
    const nr = Number(b.readBigInt64LE(24));
    return { op: op === 1 ? 'entry' : 'seccomp', arch, ip, sp, nr, args };
  }
  if (op === 2)
    return { op: 'exit', arch, ip, sp, rval: b.readBigInt64LE(24), isError: b[32] !== 0 };
  return { op: 'none', arch, ip, sp };
}
