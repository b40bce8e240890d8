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

/** Changes registers of a tracee stopped in a syscall whose AUDIT_ARCH is `auditArch`. */
export function applyRegs(tid: number, auditArch: number, change: RegChange): void {
  const { nr, args, result } = change;
  let regs = native.getRegset(tid, NT_PRSTATUS, 1024);
  // The layout depends on the tracee (a 32-bit program gets the 32-bit regset) and its call.
  const abi: ArchAbi | undefined = HOST && abiForStop(HOST, auditArch, regs.length);
  if (!abi)
    throw new Error(
      `no register layout for arch 0x${auditArch.toString(16)} (${regs.length} bytes)`,
    );
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
