// Applies a tracer decision to a stopped tracee's registers, by the means its ABI needs:
// x86 rewrites orig_rax/orig_eax in the regset; arm changes the number with
// PTRACE_SET_SYSCALL; aarch64 through the NT_ARM_SYSTEM_CALL regset (writing x8 does nothing).
import {
  type ArchAbi,
  abiForNodeArch,
  abiForStop,
  NT_ARM_SYSTEM_CALL,
  NT_PRSTATUS,
  PTRACE_SET_SYSCALL,
} from '../arch/abi.ts';
import * as native from './native.ts';

export interface RegChange {
  /** New syscall number; -1 skips the call. */
  nr?: number | undefined;
  args?: Map<number, bigint>;
  result?: bigint;
}

const HOST = abiForNodeArch(process.arch);

/** The layout of `regs`: it depends on the tracee (a 32-bit program gets the 32-bit regset) and its call. */
function layoutOf(regs: Buffer, auditArch: number): ArchAbi {
  const abi = HOST && abiForStop(HOST, auditArch, regs.length);
  if (!abi)
    throw new Error(
      `no register layout for arch 0x${auditArch.toString(16)} (${regs.length} bytes)`,
    );
  return abi;
}

/** Changes registers of a tracee stopped in a syscall whose AUDIT_ARCH is `auditArch`. */
export function applyRegs(tid: number, auditArch: number, change: RegChange): void {
  const { nr, args, result } = change;
  let regs = native.getRegset(tid, NT_PRSTATUS, 1024);
  const abi = layoutOf(regs, auditArch);
  const nrInRegs = nr !== undefined && abi.syscallChange === 'regs';
  if (args?.size || result !== undefined || nrInRegs) {
    regs = Buffer.from(regs);
    if (args) for (const [i, v] of args) abi.setArg(regs, i, v);
    if (result !== undefined) abi.setResult(regs, result);
    if (nrInRegs) abi.setNr(regs, nr);
    native.setRegset(tid, NT_PRSTATUS, regs);
  }
  if (nr === undefined || nrInRegs) return;
  if (abi.syscallChange === 'ptrace-set-syscall') {
    native.ptrace(PTRACE_SET_SYSCALL, tid, 0, nr);
  } else {
    const b = Buffer.alloc(4);
    b.writeInt32LE(nr);
    native.setRegset(tid, NT_ARM_SYSTEM_CALL, b);
  }
}

/** A stopped tracee's whole NT_PRSTATUS regset, to be put back with putBack(). */
export function saveRegs(tid: number): Buffer {
  return Buffer.from(native.getRegset(tid, NT_PRSTATUS, 1024));
}

/** The result of the call a tracee is stopped at the exit of, signed. */
export function resultAtExit(tid: number, auditArch: number): bigint {
  const regs = native.getRegset(tid, NT_PRSTATUS, 1024);
  return layoutOf(regs, auditArch).result(regs);
}

/**
 * At the exit stop of a call the tracer put in place of the program's (entry registers
 * `saved`), puts the program's registers back: with `again`, set to make its call once more
 * (the instruction pointer back over x86's 2-byte `int $0x80`/`syscall`, the number where the
 * kernel left the result); otherwise with `result` as its outcome.
 */
export function putBack(
  tid: number,
  auditArch: number,
  saved: Buffer,
  how: { again: true } | { again: false; result: bigint },
): void {
  const regs = Buffer.from(saved);
  const abi = layoutOf(regs, auditArch);
  if (how.again) {
    abi.setIp(regs, abi.ip(regs) - 2n);
    abi.setResult(regs, abi.nr(regs));
  } else {
    abi.setResult(regs, how.result);
  }
  native.setRegset(tid, NT_PRSTATUS, regs);
}
