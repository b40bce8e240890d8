// A redirected call that reached tetherd as a seccomp user notification instead of a ptrace
// stop (the unotify tracer, docs/hot-path.md), and how a handler's decision about it is carried
// out. A notification can be answered or let run as written, but its arguments cannot be
// changed: a decision to run the call on another path (a rewrite) is carried out by tetherd
// itself, which runs the same call on that path under the program's file system identity and
// copies what it wrote into the program's buffer. Only the calls NOTIFIED lists notify.
import { constants } from 'node:os';
import type { ArchAbi } from '../arch/abi.ts';
import { AT } from '../arch/fcntl.ts';
import { STATX, STRUCTS } from '../arch/structs.ts';
import * as native from './native.ts';
import { idsOf } from './procfs.ts';
import { type Action, SyscallStop, type Task } from './syscall-stop.ts';

/** The calls that notify: those only answered (by the host's attributes) or run elsewhere. */
export const NOTIFIED = [
  'stat',
  'lstat',
  'newfstatat',
  'stat64',
  'lstat64',
  'fstatat64',
  'statx',
  'access',
  'faccessat',
  'faccessat2',
  'readlink',
  'readlinkat',
  'getxattr',
  'lgetxattr',
  'listxattr',
  'llistxattr',
] as const;

/**
 * Where each notified call's output goes: its buffer argument and either the struct it holds
 * (written whole) or the argument saying the buffer's size (the result says how much of it).
 */
type Out = { buf: number; struct: 'stat' | 'statx' } | { buf: number; sizeArg: number } | null;
const OUT: Record<(typeof NOTIFIED)[number], Out> = {
  stat: { buf: 1, struct: 'stat' },
  lstat: { buf: 1, struct: 'stat' },
  newfstatat: { buf: 2, struct: 'stat' },
  stat64: { buf: 1, struct: 'stat' },
  lstat64: { buf: 1, struct: 'stat' },
  fstatat64: { buf: 2, struct: 'stat' },
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
    return at;
  }

  /**
   * The response to send: [val, error, continue]. A rewrite runs here (see the file's head);
   * a replacement of the call is never a notified call's decision.
   */
  response(action: Action): [bigint, number, boolean] {
    if (action.kind === 'pass') return [0n, 0, true];
    if (action.kind === 'return') return result(action.value);
    if (action.kind === 'replace') return [0n, -constants.errno.EIO, false];
    return result(this.runHere(action.args));
  }

  private runHere(changed: Map<number, bigint>): bigint {
    const name = this.name as (typeof NOTIFIED)[number];
    const ids = idsOf(this.tid);
    if (ids === null) return BigInt(-constants.errno.ESRCH);
    const args: (bigint | Buffer)[] = this.args.map((a, i) => {
      const v = changed.get(i) ?? a;
      return this.local.get(v) ?? v;
    });
    // The new path is a device path, absolute: the program's dirfd (an fd of the program,
    // not of tetherd) is not needed.
    const pathIdx = [...changed.keys()].find((i) => this.local.has(changed.get(i)!));
    const path = pathIdx === undefined ? null : this.local.get(changed.get(pathIdx)!)!;
    if (pathIdx === undefined || path === null || path[0] !== 0x2f)
      return BigInt(-constants.errno.EIO);
    if (pathIdx === 1) args[0] = BigInt(AT.FDCWD);
    args[pathIdx] = Buffer.from(
      `${ofProgram(path.toString('utf8', 0, path.length - 1), this.proc.pid, this.tid)}\0`,
    );
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
      if (attr === null) return BigInt(-constants.errno.EFAULT);
      args[1] = Buffer.concat([attr, Buffer.of(0)]);
    }
    const out = OUT[name];
    let buf: Buffer | null = null;
    if (out !== null) {
      const n =
        'struct' in out
          ? out.struct === 'statx'
            ? STATX.size
            : STRUCTS[this.abi.name][name.endsWith('64') ? 'stat64' : 'stat']!.size
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

function result(value: bigint): [bigint, number, boolean] {
  return value < 0n && value > -4096n ? [0n, Number(value), false] : [value, 0, false];
}
