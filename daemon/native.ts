// Typed access to the C addon (daemon/native/tether.c). The addon only provides mechanisms;
// callers decide everything. Failing calls throw an Error with `.code` (errno name such as
// 'ENOENT'), `.errno` (number) and `.syscall` (the failing step, e.g. 'chdir').
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface SpawnOptions {
  /** Program; without a '/' it is searched in the PATH of `env` (execvp rules, no sh fallback). */
  file: string;
  argv: string[];
  /** Exactly the child's environment, as "K=V". */
  env: string[];
  cwd: string | null;
  /** -1 keeps the daemon's umask. */
  umask: number;
  /** Index = fd in the child, value = parent fd dup'ed there or -1 (closed). All other fds close. */
  fds: number[];
  setsid: boolean;
  /** Child fd made the controlling terminal (TIOCSCTTY) after setsid, or -1. */
  ctty: number;
  /** -1 keeps the daemon's id. */
  uid: number;
  gid: number;
  /** Supplementary groups, or null to keep the daemon's. */
  groups: number[] | null;
  /**
   * Trace the program: the child is PTRACE_SEIZEd with these options before its execve, which
   * becomes the tracer's first stop; `filter` (struct sock_filter[]) is installed right before
   * the execve. spawn then returns before the exec: its outcome is the tracer's to see.
   * `stop` holds the child in a PTRACE_INTERRUPT stop before it may reach its execve (for a
   * tracer without a filter, which must see that execve).
   */
  trace?: { options: number; filter: Buffer | null; stop?: boolean; listener?: boolean };
}

/** A traced spawn whose filter reports to a listener (seccomp user notification). */
export interface NotifiedSpawn {
  pid: number;
  /** The filter's listener fd, close-on-exec, for notifyStart(). */
  listener: number;
}

export interface ExitStatus {
  pid: number;
  code: number | null;
  signal: number | null;
  core: boolean;
}

export interface Pty {
  master: number;
  slave: number;
  name: string;
}

export interface Winsize {
  rows: number;
  cols: number;
}

/** A table of answers the tracer's wait gives without JavaScript (daemon/native/answers.c). */
export type AnswerTable = { readonly __answerTable: unique symbol };

export interface AnswerStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
}

/** A thread receiving a listener's notifications (daemon/native/notify.c). */
export type Notifier = { readonly __notifier: unique symbol };

interface Addon {
  spawn(opts: SpawnOptions): number | NotifiedSpawn;
  waitpid(pid: number): ExitStatus | null;
  pipe(size?: number): [number, number];
  socketpair(): [number, number];
  openpty(): Pty;
  setWinsize(fd: number, rows: number, cols: number): void;
  getWinsize(fd: number): Winsize;
  setNonblock(fd: number, on: boolean): void;
  lseek(fd: number, offset: number): void;
  mkfifo(path: string, mode: number): void;
  strerror(errnum: number): string;
  ptrace(request: number, pid: number, addr: number, data: number): number;
  getEventMsg(pid: number): number;
  getSiginfo(pid: number): Buffer;
  getSyscallInfo(pid: number): Buffer;
  getRegset(pid: number, type: number, maxSize: number): Buffer;
  setRegset(pid: number, type: number, regs: Buffer): void;
  readMem(pid: number, addr: bigint, len: number): Buffer;
  readString(pid: number, addr: bigint, max: number): Buffer | null;
  writeMem(pid: number, addr: bigint, data: Buffer): void;
  waitStatus(pid: number, answers?: AnswerTable | null): number | null;
  answersCreate(arch: number, specs: Buffer, maxEntries: number, maxBytes: number): AnswerTable;
  answersSet(
    table: AnswerTable,
    key: Buffer,
    ret: number,
    data: Buffer | null,
    ttlMs: number,
  ): void;
  answersForgetPassing(table: AnswerTable): void;
  answersClear(table: AnswerTable): void;
  answersClose(table: AnswerTable): void;
  answersStats(table: AnswerTable): AnswerStats;
  notifyStart(
    listener: number,
    table: AnswerTable | null,
    onNotify: (n: Buffer | null) => void,
  ): Notifier;
  notifySend(n: Notifier, id: bigint, val: bigint, error: number, cont: boolean): boolean;
  notifyStop(n: Notifier): void;
  notifyProbe(): number;
  syscallAs(ids: number[], nr: number, args: (bigint | Buffer)[]): bigint;
  notifyAddFd(n: Notifier, id: bigint, fd: number, cloexec: boolean): number;
  notifyIdValid(n: Notifier, id: bigint): boolean;
  openAs(ids: number[], path: string, flags: number, mode: number): Promise<number>;
  pidfdSeek(pid: number, fd: number, offset: number): number;
  inotifyInit(): number;
  inotifyAddWatch(fd: number, path: string, mask: number): number;
  inotifyRmWatch(fd: number, wd: number): void;
  inotifyRead(fd: number, buf: Buffer): number;
  sigchldWatch(callback: () => void): void;
}

// TETHER_ADDON: packaged builds extract the addon somewhere else than the repository.
const addonPath =
  process.env.TETHER_ADDON ??
  fileURLToPath(new URL(`../build/${process.arch}/tether.node`, import.meta.url));

function load(): Addon {
  try {
    return createRequire(import.meta.url)(addonPath) as Addon;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
      throw new Error(`native addon not built: run npm ci (missing ${addonPath})`, { cause: err });
    }
    throw err;
  }
}

const addon = load();

/** Forks and execs; returns the pid once execve succeeded, throws the child's failure otherwise. */
export const spawn = addon.spawn as (opts: SpawnOptions) => number;
/** spawn() with `trace.listener`: the pid and the listener of the filter. */
export const spawnNotified = addon.spawn as (opts: SpawnOptions) => NotifiedSpawn;
/** Non-blocking wait on exactly `pid` (never -1, so libuv keeps its own children): null if running. */
export const waitpid: (pid: number) => ExitStatus | null = addon.waitpid;
/** [readFd, writeFd], both close-on-exec. */
export const pipe: (size?: number) => [number, number] = addon.pipe;
export const socketpair: () => [number, number] = addon.socketpair;
/** Master and slave, both close-on-exec and not the daemon's controlling terminal. */
export const openpty: () => Pty = addon.openpty;
export const setWinsize: (fd: number, rows: number, cols: number) => void = addon.setWinsize;
export const getWinsize: (fd: number) => Winsize = addon.getWinsize;
export const setNonblock: (fd: number, on: boolean) => void = addon.setNonblock;
/** Sets an fd's offset (SEEK_SET). */
export const lseek: (fd: number, offset: number) => void = addon.lseek;
/** Makes a FIFO at `path`. */
export const mkfifo: (path: string, mode: number) => void = addon.mkfifo;
/** The C library's message for an errno. */
export const strerror: (errnum: number) => string = addon.strerror;

/** ptrace(request, pid, addr, data) for requests whose addr and data are integers. */
export const ptrace: (request: number, pid: number, addr: number, data: number) => number =
  addon.ptrace;
export const getEventMsg: (pid: number) => number = addon.getEventMsg;
/** The raw siginfo_t of a signal-delivery stop. */
export const getSiginfo: (pid: number) => Buffer = addon.getSiginfo;
/** The raw struct ptrace_syscall_info of a syscall or seccomp stop. */
export const getSyscallInfo: (pid: number) => Buffer = addon.getSyscallInfo;
/** A regset (e.g. NT_PRSTATUS) as long as the kernel filled it: its length tells the ABI. */
export const getRegset: (pid: number, type: number, maxSize: number) => Buffer = addon.getRegset;
export const setRegset: (pid: number, type: number, regs: Buffer) => void = addon.setRegset;
/** Up to len bytes of the tracee's memory; shorter where its mapping ends. */
export const readMem: (pid: number, addr: bigint, len: number) => Buffer = addon.readMem;
/** Bytes before the first NUL (max bytes when none), or null when addr is unmapped. */
export const readString: (pid: number, addr: bigint, max: number) => Buffer | null =
  addon.readString;
export const writeMem: (pid: number, addr: bigint, data: Buffer) => void = addon.writeMem;
/**
 * Raw wait status of exactly this pid or thread (__WALL, WNOHANG), or null. With `answers`,
 * a seccomp stop the table answers is resumed at once and reported as -1.
 */
export const waitStatus: (pid: number, answers?: AnswerTable | null) => number | null =
  addon.waitStatus;
/**
 * A table for calls of AUDIT_ARCH `arch`: `specs` holds 7 signed bytes per syscall number
 * (class, path, buf, flags, mode and size argument, follow), class 0 for calls it never
 * answers. It starts over empty when maxEntries or maxBytes would be passed.
 */
export const answersCreate: (
  arch: number,
  specs: Buffer,
  maxEntries: number,
  maxBytes: number,
) => AnswerTable = addon.answersCreate;
/**
 * Keeps an answer: `ret` for the call, `data` written at its buffer argument; for the rest of
 * the run (ttlMs 0) or for ttlMs, until answersForgetPassing().
 */
export const answersSet: (
  table: AnswerTable,
  key: Buffer,
  ret: number,
  data: Buffer | null,
  ttlMs: number,
) => void = addon.answersSet;
/** Answers kept with a ttl stop counting (those kept for the run stay). */
export const answersForgetPassing: (table: AnswerTable) => void = addon.answersForgetPassing;
export const answersClear: (table: AnswerTable) => void = addon.answersClear;
/** Frees a table's answers at once (not when the collector gets to it); it answers nothing after. */
export const answersClose: (table: AnswerTable) => void = addon.answersClose;
export const answersStats: (table: AnswerTable) => AnswerStats = addon.answersStats;
/**
 * Takes a filter's listener (closed by notifyStop) and receives its notifications on a thread:
 * those `table` answers are answered there; `onNotify` gets each other one (the raw struct
 * seccomp_notif) on the main thread, or null once the listener failed.
 */
export const notifyStart: (
  listener: number,
  table: AnswerTable | null,
  onNotify: (n: Buffer | null) => void,
) => Notifier = addon.notifyStart;
/**
 * Answers notification `id`: with `val`, the failure `error` (a negative errno), or by letting
 * the call run as written (`cont`). False when it is no longer pending (its task was
 * interrupted: it asks again, or killed).
 */
export const notifySend: (
  n: Notifier,
  id: bigint,
  val: bigint,
  error: number,
  cont: boolean,
) => boolean = addon.notifySend;
/** Stops the thread and closes the listener. */
export const notifyStop: (n: Notifier) => void = addon.notifyStop;
/** 0: no seccomp user notification; 1: it works; 2: with synchronous wake-up (Linux 6.6). */
export const notifyProbe: () => number = addon.notifyProbe;
/**
 * The raw result (negative errno on failure) of syscall `nr` run on this thread under the file
 * system identity [uid, gid, ...groups] ([]: the daemon's own), restored after. A Buffer
 * argument is passed as a pointer to its bytes.
 */
export const syscallAs: (ids: number[], nr: number, args: (bigint | Buffer)[]) => bigint =
  addon.syscallAs;
/**
 * Installs a copy of our `fd` in the notifying program (its lowest free number) and answers
 * notification `id` with that number (Linux 5.14): the number, or a negative errno
 * (-ENOENT: no longer pending; any other: still pending, to be answered with it).
 */
export const notifyAddFd: (n: Notifier, id: bigint, fd: number, cloexec: boolean) => number =
  addon.notifyAddFd;
/** Whether notification `id` is still pending (its task neither interrupted nor gone). */
export const notifyIdValid: (n: Notifier, id: bigint) => boolean = addon.notifyIdValid;
/**
 * Opens `path` on a thread of its own (a FIFO's open waits for its other end) under the file
 * system identity [uid, gid, ...groups] ([]: the daemon's): our fd (close-on-exec), or a
 * negative errno. A file it creates gets `mode` exactly.
 */
export const openAs: (ids: number[], path: string, flags: number, mode: number) => Promise<number> =
  addon.openAs;
/** lseek(SEEK_SET) on the open file description behind fd `fd` of process `pid`: 0 or -errno. */
export const pidfdSeek: (pid: number, fd: number, offset: number) => number = addon.pidfdSeek;
/** A non-blocking, close-on-exec inotify fd; events are read with inotifyRead. */
export const inotifyInit: () => number = addon.inotifyInit;
export const inotifyAddWatch: (fd: number, path: string, mask: number) => number =
  addon.inotifyAddWatch;
export const inotifyRmWatch: (fd: number, wd: number) => void = addon.inotifyRmWatch;
/** Reads queued events into buf: the byte count, 0 when none is queued. */
export const inotifyRead: (fd: number, buf: Buffer) => number = addon.inotifyRead;
/** From now on SIGCHLD is never delivered; `callback` runs in the loop after one or more. */
export const sigchldWatch: (callback: () => void) => void = addon.sigchldWatch;
