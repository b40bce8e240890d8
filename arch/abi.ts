// Per-ABI register layouts of the NT_PRSTATUS regset, and how a tracer reads and changes a
// stopped syscall there: pure functions over the regset bytes as PTRACE_GETREGSET fills them.
// Offsets are checked against each architecture's headers by test/unit/arch-abi.test.ts.
import { type Abi, syscallName, syscallNumber } from './syscalls.ts';

export const NT_PRSTATUS = 1;
/** aarch64 regset holding the syscall number the kernel will run (one int). */
export const NT_ARM_SYSTEM_CALL = 0x404;
/** arm ptrace request setting the syscall number (data = number). */
export const PTRACE_SET_SYSCALL = 23;

/**
 * Where the syscall number the kernel will run lives at an entry or seccomp stop:
 * - `regs`: in NT_PRSTATUS (x86 orig_rax/orig_eax): setNr() then PTRACE_SETREGSET;
 * - `ptrace-set-syscall`: PTRACE_SET_SYSCALL with data = number (arm, 32-bit tracer); r7
 *   is only the program's register;
 * - `nt-arm-system-call`: PTRACE_SETREGSET NT_ARM_SYSTEM_CALL with a 4-byte int (aarch64,
 *   and arm programs under a 64-bit tracer); x8/r7 are only the program's registers.
 * Skipping is number -1 with the result set at the same stop (see arch/README.md).
 */
export type SyscallChange = 'regs' | 'ptrace-set-syscall' | 'nt-arm-system-call';

/** Byte offsets in the NT_PRSTATUS regset. */
export interface RegOffsets {
  readonly nr: number;
  readonly args: readonly [number, number, number, number, number, number];
  readonly result: number;
  readonly sp: number;
  readonly ip: number;
}

export interface ArchAbi {
  /** The syscall table and struct layouts that apply (SYSCALLS[name], arch/structs.ts). */
  readonly name: Abi;
  /** Says which register layout this is, for messages. */
  readonly label: string;
  /** AUDIT_ARCH_* as seccomp_data.arch and PTRACE_GET_SYSCALL_INFO report it. */
  readonly auditArch: number;
  /** Bytes in the ABI's long and pointers: arguments are this wide. */
  readonly wordSize: 4 | 8;
  /** Bytes per register in the regset. */
  readonly regSize: 4 | 8;
  /** Length of NT_PRSTATUS as PTRACE_GETREGSET returns it for such a stop. */
  readonly regsetSize: number;
  readonly regs: RegOffsets;
  /** Bytes below the stack pointer the program may use without moving it. */
  readonly redZone: number;
  readonly syscallChange: SyscallChange;
  syscallName(nr: number): string | undefined;
  syscallNumber(name: string): number | undefined;
  /** The syscall number as the program passed it (int). */
  nr(regs: Buffer): number;
  /** Sets the number in the regset; only where syscallChange is 'regs' (throws elsewhere). */
  setNr(regs: Buffer, nr: number): void;
  /** Argument i (0–5), unsigned, wordSize bytes. */
  arg(regs: Buffer, i: number): bigint;
  /** Argument i as a C int (fds, flags, modes, AT_FDCWD): its low 32 bits, signed. */
  argInt(regs: Buffer, i: number): number;
  /** Sets argument i to `v` truncated to wordSize bytes (negative values in two's complement). */
  setArg(regs: Buffer, i: number, v: bigint | number): void;
  /** The result register, signed (a failure is -errno). */
  result(regs: Buffer): bigint;
  setResult(regs: Buffer, v: bigint | number): void;
  /** Stack and instruction pointers, the register's full width. */
  sp(regs: Buffer): bigint;
  ip(regs: Buffer): bigint;
  setIp(regs: Buffer, v: bigint): void;
}

type AbiSpec = Omit<
  ArchAbi,
  | 'syscallName'
  | 'syscallNumber'
  | 'nr'
  | 'setNr'
  | 'arg'
  | 'argInt'
  | 'setArg'
  | 'result'
  | 'setResult'
  | 'sp'
  | 'ip'
  | 'setIp'
>;

function makeAbi(spec: AbiSpec): ArchAbi {
  const { name, regSize, wordSize, regs: off } = spec;
  const wordBits = wordSize * 8;
  const regBits = regSize * 8;
  const read = (b: Buffer, at: number): bigint =>
    regSize === 8 ? b.readBigUInt64LE(at) : BigInt(b.readUInt32LE(at));
  const write = (b: Buffer, at: number, v: bigint): void => {
    if (regSize === 8) b.writeBigUInt64LE(BigInt.asUintN(64, v), at);
    else b.writeUInt32LE(Number(BigInt.asUintN(32, v)), at);
  };
  const argAt = (i: number): number => {
    const at = off.args[i];
    if (at === undefined) throw new RangeError(`syscall argument ${i}: there are 6 (0–5)`);
    return at;
  };
  return Object.freeze({
    ...spec,
    regs: Object.freeze({ ...off, args: Object.freeze([...off.args]) as RegOffsets['args'] }),
    syscallName: (nr: number) => syscallName(name, nr),
    syscallNumber: (n: string) => syscallNumber(name, n),
    // Little-endian: the low 32 bits come first whatever the register width.
    nr: (b: Buffer) => b.readInt32LE(off.nr),
    setNr(b: Buffer, nr: number): void {
      if (spec.syscallChange !== 'regs') {
        throw new Error(`${spec.label}: the syscall number is changed by ${spec.syscallChange}`);
      }
      // Sign-extended, so -1 reads as -1 at either width.
      write(b, off.nr, BigInt(nr));
    },
    arg: (b: Buffer, i: number) => BigInt.asUintN(wordBits, read(b, argAt(i))),
    argInt: (b: Buffer, i: number) => b.readInt32LE(argAt(i)),
    setArg: (b: Buffer, i: number, v: bigint | number) =>
      write(b, argAt(i), BigInt.asUintN(wordBits, BigInt(v))),
    result: (b: Buffer) => BigInt.asIntN(wordBits, read(b, off.result)),
    // Sign-extended to the register, as the kernel returns a long.
    setResult: (b: Buffer, v: bigint | number) =>
      write(b, off.result, BigInt.asUintN(regBits, BigInt.asIntN(wordBits, BigInt(v)))),
    // The program's own registers: 64-bit even for an int 0x80 call from 64-bit code.
    sp: (b: Buffer) => read(b, off.sp),
    ip: (b: Buffer) => read(b, off.ip),
    setIp: (b: Buffer, v: bigint) => write(b, off.ip, v),
  });
}

// x86_64 struct user_regs_struct (27 × 8): rbp 32, rbx 40, r10 56, r9 64, r8 72, rax 80,
// rcx 88, rdx 96, rsi 104, rdi 112, orig_rax 120, rip 128, rsp 152.
const X86_64_REGS: RegOffsets = {
  nr: 120,
  args: [112, 104, 96, 56, 72, 64],
  result: 80,
  sp: 152,
  ip: 128,
};

const X86_64_SPEC: AbiSpec = {
  name: 'x86_64',
  label: 'x86_64',
  auditArch: 0xc000003e,
  wordSize: 8,
  regSize: 8,
  regsetSize: 216,
  regs: X86_64_REGS,
  redZone: 128,
  syscallChange: 'regs',
};
const X86_64 = makeAbi(X86_64_SPEC);

// i386 user_regs_struct (17 × 4): ebx, ecx, edx, esi, edi, ebp, eax, ds, es, fs, gs,
// orig_eax 44, eip 48, cs, eflags, esp 60, ss. An x86_64 kernel gives a 32-bit program
// the same 68 bytes (user_regs_struct32).
const I386 = makeAbi({
  name: 'i386',
  label: 'i386',
  auditArch: 0x40000003,
  wordSize: 4,
  regSize: 4,
  regsetSize: 68,
  regs: { nr: 44, args: [0, 4, 8, 12, 16, 20], result: 24, sp: 60, ip: 48 },
  redZone: 0,
  syscallChange: 'regs',
});

// `int $0x80` from 64-bit code: an i386 syscall (AUDIT_ARCH_I386, i386 numbers and structs)
// in the x86_64 regset, arguments in rbx, rcx, rdx, rsi, rdi, rbp, truncated to 32 bits by
// the kernel. The program is 64-bit: its red zone applies, and its stack is above 4 GiB, so
// scratch space there cannot be passed as an argument.
const I386_FROM_X86_64 = makeAbi({
  ...X86_64_SPEC,
  name: 'i386',
  label: 'i386 syscall (int 0x80) from x86_64 code',
  auditArch: 0x40000003,
  wordSize: 4,
  regs: { ...X86_64_REGS, args: [40, 88, 96, 104, 112, 32] },
});

// arm struct pt_regs (18 × 4): r0–r15 (sp r13 at 52, pc r15 at 60), cpsr, ORIG_r0. At an
// entry or seccomp stop r0 holds argument 0 (the kernel reloads r0–r6 from here before the
// call) and ORIG_r0 a copy kept for restarts; r0 becomes the result.
const ARM_SPEC: AbiSpec = {
  name: 'arm',
  label: 'arm',
  auditArch: 0x40000028,
  wordSize: 4,
  regSize: 4,
  regsetSize: 72,
  regs: { nr: 28, args: [0, 4, 8, 12, 16, 20], result: 0, sp: 52, ip: 60 },
  redZone: 0,
  syscallChange: 'ptrace-set-syscall',
};
const ARM = makeAbi(ARM_SPEC);

// An arm program under a 64-bit tracer on an aarch64 kernel: the same 72 bytes (compat
// regset, ORIG_r0 = orig_x0), but PTRACE_SET_SYSCALL exists only for 32-bit tracers; the
// 64-bit tracer's view of a compat task has NT_ARM_SYSTEM_CALL.
const ARM_ON_AARCH64 = makeAbi({
  ...ARM_SPEC,
  label: 'arm (compat task, 64-bit tracer)',
  syscallChange: 'nt-arm-system-call',
});

// aarch64 struct user_pt_regs (34 × 8): x0–x30, sp 248, pc 256, pstate. orig_x0 is not in
// the regset: at the exit stop argument 0 is gone (x0 is the result).
const AARCH64 = makeAbi({
  name: 'aarch64',
  label: 'aarch64',
  auditArch: 0xc00000b7,
  wordSize: 8,
  regSize: 8,
  regsetSize: 272,
  regs: { nr: 64, args: [0, 8, 16, 24, 32, 40], result: 0, sp: 248, ip: 256 },
  redZone: 0,
  syscallChange: 'nt-arm-system-call',
});

/** The native ABI of each name: its own kernel, a tracer of its own width. */
export const ARCH_ABIS: Readonly<Record<Abi, ArchAbi>> = Object.freeze({
  x86_64: X86_64,
  i386: I386,
  arm: ARM,
  aarch64: AARCH64,
});

/**
 * The ABI whose syscall numbers and structs apply to AUDIT_ARCH `auditArch`; undefined for
 * others. Its register layout is the native one: to touch registers, use abiForStop().
 */
export function abiByAuditArch(auditArch: number): ArchAbi | undefined {
  return Object.values(ARCH_ABIS).find((a) => a.auditArch === auditArch >>> 0);
}

/**
 * The register layout of a regset of `size` bytes, for a tracer of ABI `host`: its own, or
 * its 32-bit compat one (i386 68 bytes under x86_64, arm 72 under aarch64).
 */
export function abiByRegsetSize(host: ArchAbi, size: number): ArchAbi | undefined {
  if (size === host.regsetSize) return host;
  if (host === X86_64 && size === I386.regsetSize) return I386;
  if (host === AARCH64 && size === ARM_ON_AARCH64.regsetSize) return ARM_ON_AARCH64;
  return undefined;
}

/**
 * The ABI of one stop, from the tracer's ABI, the stop's AUDIT_ARCH (PTRACE_GET_SYSCALL_INFO)
 * and the length PTRACE_GETREGSET NT_PRSTATUS returned. Undefined where they do not fit
 * together, e.g. an x86_64 kernel's x32 calls (AUDIT_ARCH_X86_64, number | 0x40000000) fit,
 * but their numbers are not in the table.
 */
export function abiForStop(
  host: ArchAbi,
  auditArch: number,
  regsetSize: number,
): ArchAbi | undefined {
  const layout = abiByRegsetSize(host, regsetSize);
  if (layout === undefined) return undefined;
  if (layout.auditArch === auditArch >>> 0) return layout;
  if (layout === X86_64 && auditArch >>> 0 === I386.auditArch) return I386_FROM_X86_64;
  return undefined;
}

/** The tracer's own ABI from Node's process.arch; undefined where tether does not run. */
export function abiForNodeArch(arch: string): ArchAbi | undefined {
  const byNode: Record<string, ArchAbi> = { x64: X86_64, ia32: I386, arm: ARM, arm64: AARCH64 };
  return Object.hasOwn(byNode, arch) ? byNode[arch] : undefined;
}
