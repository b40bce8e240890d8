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

interface Addon {
  spawn(opts: SpawnOptions): number;
  waitpid(pid: number): ExitStatus | null;
  pipe(size?: number): [number, number];
  socketpair(): [number, number];
  openpty(): Pty;
  setWinsize(fd: number, rows: number, cols: number): void;
  getWinsize(fd: number): Winsize;
  setNonblock(fd: number, on: boolean): void;
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
export const spawn: (opts: SpawnOptions) => number = addon.spawn;
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
