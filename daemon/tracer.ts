// The tracer: keeps every process and thread of a run under ptrace, and hands each redirected
// syscall stop to a handler that decides what happens to it. All ptrace calls run on the main
// thread, woken by SIGCHLD, waiting on exactly the known tracee tids (never -1: libuv reaps its
// own children and the addon's reaper its own). Under the unotify tracer the calls the filter
// notifies (daemon/notify-stop.ts) reach the same handler from the listener's thread, without
// a ptrace stop.
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { type ArchAbi, abiByAuditArch } from '../arch/abi.ts';
import type { Logger } from './log.ts';
import * as native from './native.ts';
import { decodeNotif, NotifiedStop } from './notify-stop.ts';
import {
  decodeSyscallInfo,
  decodeWaitStatus,
  PTRACE,
  PTRACE_EVENT,
  PTRACE_O,
  type WaitEvent,
} from './ptrace.ts';
import { applyRegs, putBack, resultAtExit, saveRegs } from './regs.ts';
import { offSigchld, onSigchld } from './sigchld.ts';
import { type Action, fail, type Proc, SyscallStop, type Task } from './syscall-stop.ts';

const SIG = constants.signals;
/** How long the tracer keeps polling after the last stop before it waits for SIGCHLD. */
const SPIN_MS = 0.05;
const MAX_PUMP_MS = 20;
const MAX_U32 = 0xffffffffn;
/** Bytes of the low scratch mapping: room for a few paths and an exec's strings. */
const LOW_SCRATCH = 256n * 1024n;
const GROUP_STOP_SIGNALS = new Set<number>([SIG.SIGSTOP, SIG.SIGTSTP, SIG.SIGTTIN, SIG.SIGTTOU]);

/** Options every tracee gets: follow every child, thread and exec; die with the tracer. */
export const TRACE_OPTIONS =
  PTRACE_O.TRACESYSGOOD |
  PTRACE_O.TRACEFORK |
  PTRACE_O.TRACEVFORK |
  PTRACE_O.TRACECLONE |
  PTRACE_O.TRACEEXEC |
  PTRACE_O.TRACEEXIT |
  PTRACE_O.TRACESECCOMP |
  PTRACE_O.EXITKILL;

export interface TracerHooks {
  /** Decides one redirected syscall; the task stays stopped until the promise settles. */
  onSyscall(stop: SyscallStop): Action | Promise<Action>;
  /** A process's exec succeeded. */
  onExec?(proc: Proc): void;
  /** A task is about to exit (its files still open). */
  onTaskExit?(task: Task): void;
  /** The root process ended (its wait status); the run is over once it is reaped. */
  onRootExit(ev: WaitEvent): void;
}

export class Tracer {
  private readonly tasks = new Map<number, Task>();
  private readonly hooks: TracerHooks;
  private readonly log: Logger;
  private readonly rootPid: number;
  /** Without seccomp every syscall stops twice (entry and exit) under PTRACE_SYSCALL. */
  private readonly syscallMode: boolean;
  private keepAlive: NodeJS.Timeout | null;
  private pumping = false;
  /**
   * A storm of stops queues many SIGCHLDs, each handled in turn in the same loop phase as the
   * connection's I/O: pumping for each would starve the link (no PONG for seconds). They only
   * schedule one pump instead.
   */
  private readonly onSigchld = () => this.schedule();
  private scheduled = false;
  /** Answers the wait gives itself (daemon/fast-answers.ts); null under PTRACE_SYSCALL. */
  private readonly answers: native.AnswerTable | null;
  /** Receives the calls the filter notifies (the unotify tracer); null under ptrace alone. */
  private notifier: native.Notifier | null = null;

  constructor(
    rootPid: number,
    root: Proc,
    hooks: TracerHooks,
    log: Logger,
    syscallMode: boolean,
    answers: native.AnswerTable | null = null,
    listener: number | null = null,
  ) {
    this.rootPid = rootPid;
    this.hooks = hooks;
    this.log = log;
    this.syscallMode = syscallMode;
    // A result can only be set at the exit stop there; a trace log shows every call.
    this.answers = syscallMode || log.isLevelEnabled('trace') ? null : answers;
    // The root was seized before its execve: running (to its filtered execve), or without a
    // filter held in an INTERRUPT stop, which the first pump resumes into PTRACE_SYSCALL.
    this.tasks.set(rootPid, {
      tid: rootPid,
      proc: root,
      started: true,
      busy: false,
      exitResult: null,
      lowTop: null,
      mapping: null,
    });
    onSigchld(this.onSigchld, log);
    if (listener !== null)
      this.notifier = native.notifyStart(listener, this.answers, (b) => this.notified(b));
    // The SIGCHLD watch does not hold the loop open: without this it could end while tracees run.
    this.keepAlive = setInterval(() => {}, 2 ** 31 - 1);
    process.nextTick(() => this.pump());
  }

  get size(): number {
    return this.tasks.size;
  }

  /**
   * Collects every pending stop until the known tids stay quiet for SPIN_MS. A resumed tracee
   * usually stops again within microseconds; catching that here saves the SIGCHLD round
   * through the event loop, which costs more than the stop itself. Never longer than
   * MAX_PUMP_MS at a time, so the connection is still served.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      const start = performance.now();
      let lastFound = start;
      for (;;) {
        const now = performance.now();
        if (this.pass()) lastFound = now;
        else if (now - lastFound >= SPIN_MS) break;
        if (now - start >= MAX_PUMP_MS) {
          this.schedule();
          break;
        }
      }
    } finally {
      this.pumping = false;
    }
    this.maybeStop();
  }

  /** One waitpid over every known task that is not being decided on; true if any reported. */
  private pass(): boolean {
    let found = false;
    for (const task of this.tasks.values()) {
      if (task.busy) continue;
      let st: number | null;
      try {
        st = native.waitStatus(task.tid, this.answers);
      } catch (e) {
        // ECHILD: the thread vanished without a report (a sibling's exec reaped it).
        if ((e as NodeJS.ErrnoException).code === 'ECHILD') this.tasks.delete(task.tid);
        else throw e;
        continue;
      }
      if (st === null) continue;
      found = true;
      // Answered from the table and resumed already.
      if (st === -1) continue;
      this.event(task, decodeWaitStatus(st));
    }
    return found;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private maybeStop(): void {
    if (this.tasks.size > 0) return;
    if (this.notifier !== null) {
      native.notifyStop(this.notifier);
      this.notifier = null;
    }
    if (!this.keepAlive) return;
    clearInterval(this.keepAlive);
    this.keepAlive = null;
    offSigchld(this.onSigchld);
  }

  private event(task: Task, ev: WaitEvent): void {
    if (ev.kind !== 'stopped') {
      this.tasks.delete(task.tid);
      if (task.tid === this.rootPid) this.hooks.onRootExit(ev);
      return;
    }
    const { signal, event } = ev;
    if (signal === (SIG.SIGTRAP | 0x80)) return this.syscallStop(task);
    switch (event) {
      case PTRACE_EVENT.SECCOMP:
        return this.syscallStop(task);
      case PTRACE_EVENT.FORK:
      case PTRACE_EVENT.VFORK:
      case PTRACE_EVENT.CLONE:
        this.newTask(task, event);
        return this.resume(task, 0);
      case PTRACE_EVENT.EXEC:
        return this.exec(task);
      case PTRACE_EVENT.EXIT:
        return this.exiting(task);
      case PTRACE_EVENT.STOP:
        if (!task.started) {
          task.started = true;
          return this.resume(task, 0);
        }
        if (GROUP_STOP_SIGNALS.has(signal)) {
          // A group stop: stay stopped, but let the tracer see the SIGCONT that ends it.
          try {
            native.ptrace(PTRACE.LISTEN, task.tid, 0, 0);
          } catch (e) {
            this.gone(task.tid, e);
          }
          return;
        }
        // An INTERRUPT stop (PTRACE_SYSCALL mode start): just go on.
        return this.resume(task, 0);
      default:
        // A signal for the program: deliver it.
        return this.resume(task, event === 0 ? signal : 0);
    }
  }

  private newTask(parent: Task, event: number): void {
    let tid: number;
    try {
      tid = native.getEventMsg(parent.tid);
    } catch (e) {
      this.gone(parent.tid, e);
      return;
    }
    let proc = parent.proc;
    if (event !== PTRACE_EVENT.CLONE || tgidOf(tid) !== parent.proc.pid) {
      // A new process: its own copy of the parent's state (fork copies the cwd).
      proc = { ...parent.proc, pid: tid, pendingExe: null };
    }
    this.tasks.set(tid, {
      tid,
      proc,
      started: false,
      busy: false,
      exitResult: null,
      lowTop: null,
      mapping: null,
    });
  }

  private exec(task: Task): void {
    // A non-leader thread that execs takes over the leader's tid; the other threads are gone.
    const pid = task.proc.pid;
    for (const [tid, t] of this.tasks)
      if (t.proc === task.proc && tid !== task.tid) this.tasks.delete(tid);
    if (task.tid !== pid) {
      this.tasks.delete(task.tid);
      task.tid = pid;
      this.tasks.set(pid, task);
    }
    // The new program has none of the old one's mappings.
    task.lowTop = null;
    if (task.proc.pendingExe !== null) {
      task.proc.exe = task.proc.pendingExe;
      task.proc.pendingExe = null;
    }
    this.hooks.onExec?.(task.proc);
    this.resume(task, 0);
  }

  private exiting(task: Task): void {
    try {
      this.hooks.onTaskExit?.(task);
    } catch (e) {
      this.log.error({ tid: task.tid, err: (e as Error).message }, 'exit hook failed');
    }
    this.resume(task, 0);
  }

  private syscallStop(task: Task): void {
    let info: ReturnType<typeof decodeSyscallInfo>;
    try {
      info = decodeSyscallInfo(native.getSyscallInfo(task.tid));
    } catch (e) {
      this.gone(task.tid, e);
      return;
    }
    if (info.op === 'exit') {
      if (task.mapping !== null) return this.lowScratchMapped(task, info.arch);
      if (task.exitResult !== null) {
        const value = task.exitResult;
        task.exitResult = null;
        this.apply(task, info.arch, { kind: 'return', value }, true);
      }
      return this.resume(task, 0);
    }
    if (info.op === 'none') return this.resume(task, 0);
    const abi = abiByAuditArch(info.arch);
    if (!abi) {
      // No ABI tether knows (the filter fails those calls already): refuse, never pass.
      task.exitResult = null;
      this.apply(task, info.arch, fail(constants.errno.ENOSYS), false);
      return this.resume(task, 0);
    }
    if (abi.wordSize === 4 && info.sp > MAX_U32 && task.lowTop === null) {
      return this.lowScratch(task, abi, info.arch);
    }
    const name = abi.syscallName(info.nr) ?? `#${info.nr}`;
    // A 32-bit call's registers may carry stale high bits in a 64-bit kernel's view.
    const args = abi.wordSize === 4 ? info.args.map((a) => a & 0xffffffffn) : info.args;
    const stop = new SyscallStop(task, abi, info.nr, name, args, info.sp);
    task.busy = true;
    let action: Action | Promise<Action>;
    try {
      action = this.hooks.onSyscall(stop);
    } catch (e) {
      action = this.handlerFailed(stop, e);
    }
    if (action instanceof Promise) {
      action.then(
        (a) => this.finish(task, info.arch, a),
        (e) => this.finish(task, info.arch, this.handlerFailed(stop, e)),
      );
    } else {
      this.finish(task, info.arch, action);
    }
  }

  /** A call the filter notified (seccomp user notification), decided like a stop. */
  private notified(b: Buffer | null): void {
    const n = this.notifier;
    if (n === null) return;
    if (b === null) {
      // Nothing answers the program's redirected calls any more: end the run.
      this.log.error('seccomp listener failed: ending the run');
      for (const t of this.tasks.values()) process.kill(t.proc.pid, 'SIGKILL');
      return;
    }
    const { id, pid, nr, arch, args } = decodeNotif(b);
    const task = this.tasks.get(pid);
    const abi = abiByAuditArch(arch);
    if (!task || !abi) {
      // The filter notifies only the tracer's own ABI, and every tracee is known before it runs.
      this.log.error({ tid: pid, nr, arch }, 'notification from an unknown task or ABI');
      native.notifySend(n, id, 0n, -constants.errno.ENOSYS, false);
      return;
    }
    const name = abi.syscallName(nr) ?? `#${nr}`;
    const stop = new NotifiedStop(task, abi, nr, name, args, id);
    const respond = (a: Action) =>
      Promise.resolve()
        .then(() => this.notifier === n && stop.respond(n, a))
        .catch((e) => this.notifier === n && stop.respond(n, this.handlerFailed(stop, e)))
        .catch((e) =>
          this.log.error({ tid: pid, err: (e as Error).message }, 'cannot answer a notification'),
        );
    let action: Action | Promise<Action>;
    try {
      action = this.hooks.onSyscall(stop);
    } catch (e) {
      action = this.handlerFailed(stop, e);
    }
    if (action instanceof Promise)
      action.then(respond, (e) => respond(this.handlerFailed(stop, e)));
    else respond(action);
  }

  /**
   * A 64-bit program's first i386 call: scratch on its stack could not be passed (pointers are
   * 32 bits), so the task maps some below 4 GiB first: its call becomes an mmap2 (whose
   * addresses an i386 call gets below 4 GiB), and at the exit lowScratchMapped() makes it again.
   */
  private lowScratch(task: Task, abi: ArchAbi, auditArch: number): void {
    try {
      task.mapping = saveRegs(task.tid);
      const MAP_PRIVATE_ANONYMOUS = 0x22n;
      const PROT_READ_WRITE = 3n;
      applyRegs(task.tid, auditArch, {
        nr: abi.syscallNumber('mmap2')!,
        args: new Map([
          [0, 0n],
          [1, LOW_SCRATCH],
          [2, PROT_READ_WRITE],
          [3, MAP_PRIVATE_ANONYMOUS],
          [4, -1n],
          [5, 0n],
        ]),
      });
    } catch (e) {
      this.gone(task.tid, e);
      return;
    }
    this.resume(task, 0, true);
  }

  private lowScratchMapped(task: Task, auditArch: number): void {
    const saved = task.mapping!;
    task.mapping = null;
    try {
      const r = resultAtExit(task.tid, auditArch);
      if (r < 0n && r > -4096n) {
        // No room: the program's call fails as the mmap did.
        putBack(task.tid, auditArch, saved, { again: false, result: r });
      } else {
        task.lowTop = BigInt.asUintN(32, r) + LOW_SCRATCH;
        putBack(task.tid, auditArch, saved, { again: true });
      }
    } catch (e) {
      this.gone(task.tid, e);
      return;
    }
    this.resume(task, 0);
  }

  private handlerFailed(stop: SyscallStop, e: unknown): Action {
    // A tracer bug must not let the call through unredirected: fail it instead.
    this.log.error(
      { tid: stop.tid, syscall: stop.name, err: (e as Error).message, stack: (e as Error).stack },
      'syscall handler failed',
    );
    return fail(constants.errno.EIO);
  }

  private finish(task: Task, auditArch: number, action: Action): void {
    task.busy = false;
    if (!this.tasks.has(task.tid)) return;
    this.apply(task, auditArch, action, false);
    // A replaced call whose result we set needs its exit stop, once.
    this.resume(task, 0, task.exitResult !== null);
    // Decided after a round trip: its next stop comes soon, and a busy task's reports (a kill
    // while it waited) were not collected meanwhile.
    this.pump();
  }

  private apply(task: Task, auditArch: number, action: Action, atExit: boolean): void {
    if (action.kind === 'pass') return;
    try {
      if (action.kind === 'return' && this.syscallMode && !atExit) {
        // Under PTRACE_SYSCALL the result can only be set at the exit stop.
        task.exitResult = action.value;
        applyRegs(task.tid, auditArch, { nr: -1 });
        return;
      }
      if (action.kind === 'return')
        applyRegs(task.tid, auditArch, { nr: atExit ? undefined : -1, result: action.value });
      else if (action.kind === 'rewrite') applyRegs(task.tid, auditArch, { args: action.args });
      else {
        applyRegs(task.tid, auditArch, { nr: action.nr, args: action.args });
        if (action.result !== undefined) task.exitResult = action.result;
      }
    } catch (e) {
      this.gone(task.tid, e);
    }
  }

  private resume(task: Task, signal: number, toExit = false): void {
    try {
      const req = this.syscallMode || toExit ? PTRACE.SYSCALL : PTRACE.CONT;
      native.ptrace(req, task.tid, 0, signal);
    } catch (e) {
      this.gone(task.tid, e);
    }
  }

  /** A ptrace request failed: ESRCH means the task was killed meanwhile; its exit will come. */
  private gone(tid: number, e: unknown): void {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return;
    this.log.error({ tid, err: (e as Error).message }, 'ptrace request failed');
  }
}

function tgidOf(tid: number): number {
  try {
    const m = /^Tgid:\s*(\d+)$/m.exec(readFileSync(`/proc/${tid}/status`, 'latin1'));
    return m ? Number(m[1]) : tid;
  } catch {
    return tid;
  }
}
