// A redirected call that reached tetherd as a seccomp user notification instead of a ptrace
// stop (the unotify tracer, docs/hot-path.md), and how a handler's decision about it is carried
// out. A notification can be answered or let run as written, but its arguments cannot be
// changed: a decision to run the call on another path (a rewrite) is carried out by tetherd
// itself, which runs the same call on that path under the program's file system identity and
// copies what it wrote into the program's buffer; an open is opened here and the fd installed
// in the program (SECCOMP_IOCTL_NOTIF_ADDFD). Only the calls NOTIFIED lists notify: those
// whose every decision can be carried out so.
import { closeSync, constants, lstatSync, openSync } from 'node:fs';
import { constants as os } from 'node:os';
import type { ArchAbi } from '../arch/abi.ts';
import { AT, OPEN_FLAGS } from '../arch/fcntl.ts';
import { STATX, STRUCTS } from '../arch/structs.ts';
import * as native from './native.ts';
import { idsOf, umaskOf } from './procfs.ts';
import { type Action, SyscallStop, type Task } from './syscall-stop.ts';

/** The calls that notify: those only answered, opened, or run on another path. */
export const NOTIFIED = [
  'stat',
  'lstat',
  'newfstatat',
  'stat64',
  'lstat64',
  'fstatat64',
  'statx',
  'fstat',
  'fstat64',
  'access',
  'faccessat',
  'faccessat2',
  'readlink',
  'readlinkat',
  'getxattr',
  'lgetxattr',
  'listxattr',
  'llistxattr',
  'fgetxattr',
  'flistxattr',
  'statfs',
  'statfs64',
  'getcwd',
  'fchdir',
  'getdents64',
  'open',
  'openat',
  'creat',
] as const;
type Notified = (typeof NOTIFIED)[number];
const OPENS = new Set<string>(['open', 'openat', 'creat']);

/**
 * Where a rewritten call's output goes: its buffer argument and either the struct it holds
 * (written whole) or the argument saying the buffer's size (the result says how much of it).
 * Calls never rewritten (fd calls, getcwd, getdents64) and opens have none.
 */
type Out =
  | { buf: number; struct: 'stat' | 'stat64' | 'statx' | 'statfs' | 'statfs64' }
  | { buf: number; sizeArg: number }
  | null;
const OUT: Partial<Record<Notified, Out>> = {
  stat: { buf: 1, struct: 'stat' },
  lstat: { buf: 1, struct: 'stat' },
  newfstatat: { buf: 2, struct: 'stat' },
  stat64: { buf: 1, struct: 'stat64' },
  lstat64: { buf: 1, struct: 'stat64' },
  fstatat64: { buf: 2, struct: 'stat64' },
  statx: { buf: 4, struct: 'statx' },
  access: null,
  faccessat: null,
  faccessat2: null,
  readlink: { buf: 1, sizeArg: 2 },
  readlinkat: { buf: 2, sizeArg: 3 },
  getxattr: { buf: 2, sizeArg: 3 },
  lgetxattr: { buf: 2, sizeArg: 3 },
  listxattr: { buf: 1, sizeArg: 2 },
  llistxattr: { buf: 1, sizeArg: 2 },
  statfs: { buf: 1, struct: 'statfs' },
  statfs64: { buf: 2, struct: 'statfs64' },
};

const MAX_OUT = 1 << 16;
/** Addresses handed out for strings kept in tetherd: above any user address. */
const LOCAL_BASE = 0xffff_8000_0000_0000n;

/** The raw struct seccomp_notif: id, pid, flags, then struct seccomp_data. */
export function decodeNotif(b: Buffer): {
  id: bigint;
  pid: number;
  nr: number;
  arch: number;
  args: bigint[];
} {
  return {
    id: b.readBigUInt64LE(0),
    pid: b.readUInt32LE(8),
    nr: b.readInt32LE(16),
    arch: b.readUInt32LE(20),
    args: Array.from({ length: 6 }, (_, i) => b.readBigUInt64LE(32 + 8 * i)),
  };
}

export class NotifiedStop extends SyscallStop {
  readonly id: bigint;
  /** Strings a rewrite would have put on the program's stack, kept here instead. */
  private readonly local = new Map<bigint, Buffer>();

  constructor(task: Task, abi: ArchAbi, nr: number, name: string, args: bigint[], id: bigint) {
    super(task, abi, nr, name, args, 0n);
    this.id = id;
  }

  override scratch(data: Buffer): bigint {
    const at = LOCAL_BASE + BigInt(this.local.size) * 0x1_0000n;
    this.local.set(at, data);
    // What the fast path keeps for an open: the device path it was sent to.
    this.written = { addr: at, data };
    return at;
  }

  /** Carries out `action` and answers the notification (see the file's head). */
  respond(n: native.Notifier, action: Action): void | Promise<void> {
    const send = (r: bigint) => {
      const [val, error] = r < 0n && r > -4096n ? [0n, Number(r)] : [r, 0];
      native.notifySend(n, this.id, val, error, false);
    };
    if (action.kind === 'pass') {
      native.notifySend(n, this.id, 0n, 0, true);
      return;
    }
    if (action.kind === 'return') return send(action.value);
    if (action.kind === 'replace') return send(this.replaceHere(action));
    if (OPENS.has(this.name))
      return this.openHere(n, action.args).then((r) => {
        if (r !== 0n) send(r);
      });
    return send(this.runHere(action.args));
  }

  /** The one replacement a notified call decides: getdents64's lseek of its own fd. */
  private replaceHere(action: Extract<Action, { kind: 'replace' }>): bigint {
    if (this.name !== 'getdents64' || action.nr !== this.abi.syscallNumber('lseek'))
      return BigInt(-os.errno.EIO);
    const fd = Number(BigInt.asIntN(32, this.args[0]!));
    const r = native.pidfdSeek(this.proc.pid, fd, Number(action.args.get(1)!));
    return r < 0 ? BigInt(r) : (action.result ?? 0n);
  }

  /** The rewritten path (absolute, on the device), as the program would resolve it. */
  private devicePath(changed: Map<number, bigint>): { idx: number; path: string } | null {
    for (const [idx, v] of changed) {
      const b = this.local.get(v);
      if (b === undefined) continue;
      if (b[0] !== 0x2f) return null;
      return { idx, path: ofProgram(b.toString('utf8', 0, b.length - 1), this.proc.pid, this.tid) };
    }
    return null;
  }

  /**
   * Opens the rewritten path with the rewritten flags, as the program, and installs the fd in
   * it: the failure to send, or 0n once the fd answered the call.
   */
  private async openHere(n: native.Notifier, changed: Map<number, bigint>): Promise<bigint> {
    const F = OPEN_FLAGS[this.abi.name];
    const at = this.name === 'openat' ? 1 : 0;
    const to = this.devicePath(changed);
    const ids = idsOf(this.tid);
    if (to === null) return BigInt(-os.errno.EIO);
    if (ids === null) return BigInt(-os.errno.ESRCH);
    const flagsArg = this.name === 'creat' ? null : at + 1;
    const flags =
      flagsArg === null
        ? F.O_CREAT | F.O_WRONLY | F.O_TRUNC
        : Number(BigInt.asIntN(32, changed.get(flagsArg) ?? this.args[flagsArg]!));
    // The mode matters only to a file the open creates (with the program's umask).
    const mode =
      flags & F.O_CREAT
        ? Number(this.args[this.name === 'creat' ? 1 : at + 2]! & 0o7777n) & ~umaskOf(this.tid)
        : 0;
    const who = process.getuid?.() === 0 ? [ids.fsuid, ids.fsgid, ...ids.groups] : [];
    // An open of a FIFO waits for its other end, and must not outlive the call: once the
    // program is gone, the other end is opened and closed to end the wait. Through a handle
    // held from the start: the run's scratch (and the FIFO's name) may be gone by then.
    const fifo = holdFifo(to.path, F.O_PATH);
    const opening = native.openAs(who, to.path, flags & ~F.O_CLOEXEC, mode);
    const watch =
      fifo === null
        ? null
        : setInterval(() => {
            if (!native.notifyIdValid(n, this.id)) unblockFifo(fifo, flags & F.O_ACCMODE);
          }, 100);
    const fd = await opening.finally(() => {
      if (watch !== null) clearInterval(watch);
      if (fifo !== null) closeSync(fifo);
    });
    if (fd < 0) return BigInt(fd);
    try {
      const r = native.notifyAddFd(n, this.id, fd, (flags & F.O_CLOEXEC) !== 0);
      return r >= 0 || r === -os.errno.ENOENT ? 0n : BigInt(r);
    } finally {
      closeSync(fd);
    }
  }

  private runHere(changed: Map<number, bigint>): bigint {
    const name = this.name as Notified;
    const ids = idsOf(this.tid);
    if (ids === null) return BigInt(-os.errno.ESRCH);
    const args: (bigint | Buffer)[] = [...this.args];
    // The new path is a device path, absolute: the program's dirfd (an fd of the program,
    // not of tetherd) is not needed.
    const to = this.devicePath(changed);
    if (to === null || !(name in OUT)) return BigInt(-os.errno.EIO);
    if (to.idx === 1) args[0] = BigInt(AT.FDCWD);
    args[to.idx] = Buffer.from(`${to.path}\0`);
    let nr = this.nr;
    // access(2) checks the real ids: faccessat2 with AT_EACCESS under them does the same here.
    let who = [ids.fsuid, ids.fsgid, ...ids.groups];
    if (name === 'access' || name === 'faccessat' || name === 'faccessat2') {
      const o = name === 'access' ? 0 : 1;
      const flags = name === 'faccessat2' ? Number(this.args[3]!) : 0;
      nr = this.abi.syscallNumber('faccessat2')!;
      args.splice(
        0,
        6,
        o ? args[0]! : BigInt(AT.FDCWD),
        args[o]!,
        args[o + 1]!,
        BigInt(flags | AT.EACCESS),
      );
      if (!(flags & AT.EACCESS)) who = [ids.uid, ids.gid, ...ids.groups];
    } else if (name === 'getxattr' || name === 'lgetxattr') {
      const attr = this.readString(this.args[1]!, 256);
      if (attr === null) return BigInt(-os.errno.EFAULT);
      args[1] = Buffer.concat([attr, Buffer.of(0)]);
    }
    const out = OUT[name] ?? null;
    let buf: Buffer | null = null;
    if (out !== null) {
      const n =
        'struct' in out
          ? out.struct === 'statx'
            ? STATX.size
            : out.struct === 'statfs64'
              ? Number(this.args[1]!)
              : STRUCTS[this.abi.name][out.struct]!.size
          : Math.min(Number(BigInt.asIntN(32, this.args[out.sizeArg]!)), MAX_OUT);
      // A size of 0 asks only how long the answer would be.
      if (n > 0) args[out.buf] = buf = Buffer.alloc(n);
    }
    // The daemon's own identity when it is not root: programs run as the daemon's user.
    const r = native.syscallAs(process.getuid?.() === 0 ? who : [], nr, args);
    if (r >= 0n && buf !== null && out !== null)
      this.writeMem(this.args[out.buf]!, 'struct' in out ? buf : buf.subarray(0, Number(r)));
    return r;
  }
}

/** An O_PATH handle on `path` when it is a FIFO, else null. */
function holdFifo(path: string, O_PATH: number): number | null {
  try {
    return lstatSync(path).isFIFO() ? openSync(path, O_PATH | constants.O_NOFOLLOW) : null;
  } catch {
    return null;
  }
}

/** Ends an open waiting on the FIFO held as `handle` by opening and closing its other end. */
function unblockFifo(handle: number, access: number): void {
  const other = access === constants.O_WRONLY ? constants.O_RDONLY : constants.O_WRONLY;
  try {
    closeSync(openSync(`/proc/self/fd/${handle}`, other | constants.O_NONBLOCK));
  } catch {
    // Nobody waits on the other side any more: nothing to end.
  }
}

/**
 * A device path as the program would resolve it, for tetherd to use: the links that name the
 * calling process (/proc/self, /proc/thread-self, /dev/fd, /dev/std*) name the program's.
 * A device symlink elsewhere that leads into them still resolves in tetherd's context.
 */
export function ofProgram(path: string, pid: number, tid: number): string {
  const m =
    /^\/(proc\/self|proc\/thread-self|dev\/fd|dev\/stdin|dev\/stdout|dev\/stderr)(?=\/|$)/.exec(
      path,
    );
  if (!m) return path;
  const stand: Record<string, string> = {
    'proc/self': `/proc/${pid}`,
    'proc/thread-self': `/proc/${pid}/task/${tid}`,
    'dev/fd': `/proc/${pid}/fd`,
    'dev/stdin': `/proc/${pid}/fd/0`,
    'dev/stdout': `/proc/${pid}/fd/1`,
    'dev/stderr': `/proc/${pid}/fd/2`,
  };
  return stand[m[1]!]! + path.slice(m[0].length);
}
