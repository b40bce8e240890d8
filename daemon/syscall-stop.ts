// A syscall stop as the redirect handlers see it (whether ptrace stopped the program or the
// filter notified tetherd), the process state it belongs to, and what a handler decides.
import { type ArchAbi, abiForNodeArch } from '../arch/abi.ts';
import * as native from './native.ts';

const HOST_RED_ZONE = abiForNodeArch(process.arch)?.redZone ?? 0;
const MAX_U32 = 0xffffffffn;

/** State shared by the threads of one process (thread group). */
export interface Proc {
  pid: number;
  /** The view path of the working directory. */
  cwd: string;
  /** The placeholder the kernel has as the cwd, when the cwd is a host directory. */
  cwdStandIn?: string;
  /** The view path of the running program, for /proc/self/exe. */
  exe: string;
  /** Set by an execve handler; becomes `exe` when the exec happens. */
  pendingExe: string | null;
}

export interface Task {
  tid: number;
  proc: Proc;
  /** Seen running: its next PTRACE_EVENT_STOP is a group stop, not its first stop. */
  started: boolean;
  /** A handler is deciding about this task's current stop. */
  busy: boolean;
  /** PTRACE_SYSCALL mode: the result to put in place at the syscall-exit stop. */
  exitResult: bigint | null;
  /**
   * Scratch below 4 GiB for i386 calls (int $0x80) of 64-bit code, whose stack is above it:
   * the top of a mapping the tracer had the task make (lowScratch()); null until then.
   */
  lowTop: bigint | null;
  /** The program's registers while the tracer's mmap for lowTop runs in place of its call. */
  mapping: Buffer | null;
}

/** What happens to a syscall. */
export type Action =
  | { kind: 'pass' }
  /** Skip the syscall; the program sees `value` (a negative errno for a failure). */
  | { kind: 'return'; value: bigint }
  /** Run it with these arguments replaced. */
  | { kind: 'rewrite'; args: Map<number, bigint> }
  /** Run another syscall instead; with `result`, the program sees that instead of its result. */
  | { kind: 'replace'; nr: number; args: Map<number, bigint>; result?: bigint };

export const pass: Action = { kind: 'pass' };
export const ret = (value: number | bigint): Action => ({ kind: 'return', value: BigInt(value) });
export const fail = (errno: number): Action => ret(-errno);

/** One syscall stop, as a handler sees it. */
export class SyscallStop {
  readonly task: Task;
  readonly abi: ArchAbi;
  readonly nr: number;
  readonly name: string;
  readonly args: bigint[];
  readonly sp: bigint;
  private scratchTop: bigint;

  constructor(task: Task, abi: ArchAbi, nr: number, name: string, args: bigint[], sp: bigint) {
    this.task = task;
    this.abi = abi;
    this.nr = nr;
    this.name = name;
    this.args = args;
    this.sp = sp;
    // int $0x80 from 64-bit code is an i386 call in a program that has x86_64's red zone.
    this.scratchTop =
      abi.wordSize === 4 && sp > MAX_U32 && task.lowTop !== null
        ? task.lowTop
        : sp - BigInt(Math.max(abi.redZone, HOST_RED_ZONE));
  }

  get tid(): number {
    return this.task.tid;
  }

  get proc(): Proc {
    return this.task.proc;
  }

  /** A NUL-terminated string argument; null when the pointer is bad (EFAULT). */
  readString(addr: bigint, max = 4096): Buffer | null {
    if (addr === 0n) return null;
    return native.readString(this.task.tid, addr, max);
  }

  readMem(addr: bigint, len: number): Buffer {
    return native.readMem(this.task.tid, addr, len);
  }

  /** The last writeMem() of this stop: what an answer put in the program's buffer. */
  written: { addr: bigint; data: Buffer } | null = null;

  writeMem(addr: bigint, data: Buffer): void {
    native.writeMem(this.task.tid, addr, data);
    this.written = { addr, data };
  }

  /**
   * Copies `data` onto the tracee's stack below its red zone and returns its address. Only
   * valid for the syscall being decided: the program's next call may reuse the space.
   */
  scratch(data: Buffer): bigint {
    this.scratchTop = (this.scratchTop - BigInt(data.length)) & ~15n;
    this.writeMem(this.scratchTop, data);
    return this.scratchTop;
  }
}
