// The policy half of the tracer's fast path (the mechanism is daemon/native/answers.c): which
// calls the C table may answer without waking JavaScript, and which answers go into it. An
// answer is kept only when it is a function of the call as written for the rest of the run:
// an absolute path that the walk left as written, in a read-only mount, answered from the
// connection's read-only memory (which a connection never forgets), with the errors that
// memory keeps. Everything else stays a miss, decided by daemon/redirect.ts as before.
import { constants } from 'node:os';
import { type ArchAbi, abiForNodeArch } from '../arch/abi.ts';
import { AT, OPEN_FLAGS } from '../arch/fcntl.ts';
import { encodeStat, encodeStatx } from '../arch/structs.ts';
import type { ViewStat } from '../transport/view.ts';
import * as native from './native.ts';
import type { Action, SyscallStop } from './syscall-stop.ts';

/** Answer classes; daemon/native/answers.c names readlink (5) and open (8) as CLASS_*. */
const CLASS = {
  stat: 1,
  stat64: 2,
  statx: 3,
  access: 4,
  readlink: 5,
  xattr: 6,
  xattrList: 7,
  open: 8,
} as const;
type Class = keyof typeof CLASS;

/** Where a call's arguments are (-1: it has none); `follow` when no flags say it. */
interface Spec {
  cls: Class;
  path: number;
  buf: number;
  flags: number;
  mode: number;
  size: number;
  follow: boolean;
}

const spec = (cls: Class, path: number, o: Partial<Omit<Spec, 'cls' | 'path'>>): Spec => ({
  cls,
  path,
  buf: -1,
  flags: -1,
  mode: -1,
  size: -1,
  follow: true,
  ...o,
});

/** By syscall name, for whichever ABI has it. */
const SPECS: Record<string, Spec> = {
  stat: spec('stat', 0, { buf: 1 }),
  lstat: spec('stat', 0, { buf: 1, follow: false }),
  newfstatat: spec('stat', 1, { buf: 2, flags: 3 }),
  stat64: spec('stat64', 0, { buf: 1 }),
  lstat64: spec('stat64', 0, { buf: 1, follow: false }),
  fstatat64: spec('stat64', 1, { buf: 2, flags: 3 }),
  statx: spec('statx', 1, { flags: 2, buf: 4 }),
  access: spec('access', 0, { mode: 1 }),
  faccessat: spec('access', 1, { mode: 2 }),
  faccessat2: spec('access', 1, { mode: 2, flags: 3 }),
  readlink: spec('readlink', 0, { buf: 1, size: 2, follow: false }),
  readlinkat: spec('readlink', 1, { buf: 2, size: 3, follow: false }),
  // Host files show no extended attributes: the answer only says whether the path is there.
  // A plain read-only open of cached content: opened as its device copy (a path rewrite).
  open: spec('open', 0, { flags: 1 }),
  openat: spec('open', 1, { flags: 2 }),
  getxattr: spec('xattr', 0, {}),
  lgetxattr: spec('xattr', 0, { follow: false }),
  listxattr: spec('xattrList', 0, {}),
  llistxattr: spec('xattrList', 0, { follow: false }),
};

const SPEC_BYTES = 11;

/**
 * A relative path as answers.c keys it (after its leading "./"), or null when it names its
 * directory some other way ("..", ".", "//", a trailing "/"): those are never kept.
 */
export function relativeKey(raw: string): string | null {
  let rel = raw;
  while (rel.startsWith('./')) rel = rel.slice(2);
  if (rel === '' || rel.split('/').some((c) => c === '' || c === '.' || c === '..')) return null;
  return rel;
}

/**
 * Open flags that make an open more than a plain read of a file (daemon/redirect.ts doOpen
 * rewrites only the others to a cached copy without asking the host).
 */
export function plainOpenMask(abi: ArchAbi): number {
  const F = OPEN_FLAGS[abi.name];
  return F.O_CREAT | F.O_TRUNC | F.O_PATH | F.O_DIRECTORY | F.O_NOFOLLOW | F.O_ACCMODE;
}

/** Errors the read-only memory keeps, per class (access also keeps its verdicts). */
const KEPT_ERRORS: Record<Class, readonly string[]> = {
  stat: ['ENOENT', 'ENOTDIR'],
  stat64: ['ENOENT', 'ENOTDIR'],
  statx: ['ENOENT', 'ENOTDIR'],
  readlink: ['ENOENT', 'ENOTDIR'],
  access: ['ENOENT', 'ENOTDIR', 'EACCES', 'EROFS'],
  xattr: ['ENOENT', 'ENOTDIR', 'ENODATA'],
  xattrList: ['ENOENT', 'ENOTDIR'],
  open: [],
};

const ERRNO = new Map<number, string>(
  Object.entries(constants.errno as Record<string, number>).map(([k, v]) => [v, k]),
);

/** Bounds of one run's table (~1 KiB per listed file); when full it starts over empty. */
const MAX_ENTRIES = 65536;
const MAX_BYTES = 32 * 1024 * 1024;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

const HOST: ArchAbi | undefined = abiForNodeArch(process.arch);
/** The struct stat layouts the host ABI's stat calls write. */
const HOST_STAT_KINDS = (['stat', 'stat64'] as const).filter((k) =>
  Object.entries(SPECS).some(
    ([name, sp]) => sp.cls === k && HOST?.syscallNumber(name) !== undefined,
  ),
);
const ENODATA = constants.errno.ENODATA;

/** Calls answered and looked up in vain by the tables of finished runs, and the live tables. */
const finished = { hits: 0, misses: 0 };
const live = new Set<FastAnswers>();

/** Every run's fast-path counts since tetherd started (status API). */
export function fastTotals(): { hits: number; misses: number } {
  const t = { ...finished };
  for (const f of live) {
    const s = f.stats();
    if (s) {
      t.hits += s.hits;
      t.misses += s.misses;
    }
  }
  return t;
}

export class FastAnswers {
  /** The C table, passed to the tracer's wait; null where this ABI has no fast path. */
  readonly table: native.AnswerTable | null;

  constructor() {
    if (!HOST) {
      this.table = null;
      return;
    }
    const specs = Buffer.alloc(1024 * SPEC_BYTES);
    const zero = plainOpenMask(HOST);
    for (const [name, s] of Object.entries(SPECS)) {
      const nr = HOST.syscallNumber(name);
      if (nr === undefined || nr >= 1024) continue;
      const at = nr * SPEC_BYTES;
      specs.set(
        [CLASS[s.cls], s.path, s.buf, s.flags, s.mode, s.size, s.follow ? 1 : 0].map(
          (v) => v & 0xff,
        ),
        at,
      );
      if (s.cls === 'open') specs.writeUInt32LE(zero, at + 7);
    }
    this.table = native.answersCreate(HOST.auditArch, specs, MAX_ENTRIES, MAX_BYTES);
    live.add(this);
  }

  /** The run is over: its counts go to the totals, its answers go. */
  close(): void {
    if (!this.table || !live.delete(this)) return;
    const s = native.answersStats(this.table);
    finished.hits += s.hits;
    finished.misses += s.misses;
    native.answersClose(this.table);
  }

  /** The dirfd a relative path of this call starts from, as answers.c takes it. */
  dirfd(s: SyscallStop): number {
    return SPECS[s.name]?.path === 1 ? Number(BigInt.asIntN(32, s.args[0]!)) : AT.FDCWD;
  }

  /** Whether the C table could answer this stop's call (the tracer's ABI, a call it knows). */
  covers(s: SyscallStop): boolean {
    return this.table !== null && s.abi === HOST && SPECS[s.name] !== undefined;
  }

  /**
   * The kind of daemon/recent-answers.ts answer a writable mount's call was decided from, or
   * null when none is kept (readlink asks each time).
   */
  recentKind(s: SyscallStop): string | null {
    const sp = SPECS[s.name];
    if (!sp || sp.cls === 'readlink') return null;
    const f = this.follows(s, sp) ? 'f' : 'n';
    return sp.cls === 'access' ? `a${Number(s.args[sp.mode]! & 7n)}${f}` : f;
  }

  /**
   * Keeps `action`, the decision about a stop whose path `raw` the caller found fit
   * (covers(), absolute, left as written, in a host mount), for the C table to repeat: for
   * the rest of the run (ttlMs 0, a read-only mount) or for ttlMs (a writable one).
   */
  remember(s: SyscallStop, raw: string, action: Action, ttlMs: number): void {
    const sp = SPECS[s.name];
    if (!this.table || !sp) return;
    if (sp.cls === 'open') {
      // The path argument replaced by the device copy's, written by the rewrite.
      const w = s.written;
      if (action.kind !== 'rewrite' || action.args.size !== 1 || !w) return;
      if (action.args.get(sp.path) !== w.addr) return;
      native.answersSet(this.table, this.key(s, sp, raw), 0, w.data, ttlMs);
      return;
    }
    if (action.kind !== 'return') return;
    const value = action.value;
    let data: Buffer | null = null;
    if (value < 0n) {
      const code = ERRNO.get(Number(-value));
      if (!code || !KEPT_ERRORS[sp.cls].includes(code)) return;
    } else if (sp.cls === 'readlink') {
      const w = s.written;
      // A target cut to the caller's buffer is not the whole answer.
      if (!w || w.addr !== s.args[sp.buf] || BigInt(w.data.length) !== value) return;
      if (value >= BigInt(Number(BigInt.asIntN(32, s.args[sp.size]!)))) return;
      data = w.data;
    } else if (sp.buf >= 0) {
      const w = s.written;
      if (!w || w.addr !== s.args[sp.buf] || value !== 0n) return;
      data = w.data;
    } else if (value !== 0n) return;
    native.answersSet(this.table, this.key(s, sp, raw), Number(value), data, ttlMs);
  }

  /**
   * What `ls -l` asks about entry `name` of a directory it listed, answered ahead from the
   * listing under each of `prefixes` (the directory's key paths): lstat, statx, getxattr and
   * lgetxattr, and (not for a symlink, whose target the listing does not show) stat. The
   * caller found the entry fit as fastFits() does.
   */
  prefill(prefixes: string[], name: string, st: ViewStat, ttlMs: number): void {
    if (!this.table || !HOST) return;
    const follows = (st.mode & S_IFMT) === S_IFLNK ? [0] : [0, 1];
    const answers: [Class, number, Buffer | null][] = [];
    for (const kind of HOST_STAT_KINDS) {
      const b = encodeStat(HOST.name, kind, st);
      if (b !== 'EOVERFLOW') answers.push([kind, 0, b]);
    }
    answers.push(['statx', 0, encodeStatx(st)], ['xattr', -ENODATA, null]);
    for (const prefix of prefixes) {
      const path = Buffer.from(`${prefix}/${name}`);
      for (const [cls, ret, data] of answers)
        for (const f of follows) {
          const key = Buffer.allocUnsafe(3 + path.length);
          key[0] = CLASS[cls];
          key[1] = f;
          key[2] = 0;
          path.copy(key, 3);
          native.answersSet(this.table, key, ret, data, ttlMs);
        }
    }
  }

  stats(): { entries: number; bytes: number; hits: number; misses: number } | null {
    return this.table && native.answersStats(this.table);
  }

  /** Everything goes (a cached file an open answer names was dropped). */
  clear(): void {
    if (this.table) native.answersClear(this.table);
  }

  /** The run changed something in a writable mount: answers kept with a ttl go. */
  forgetPassing(): void {
    if (this.table) native.answersForgetPassing(this.table);
  }

  private follows(s: SyscallStop, sp: Spec): boolean {
    if (sp.cls === 'open') return true;
    return sp.flags >= 0
      ? !(Number(s.args[sp.flags]! & 0xffffffffn) & AT.SYMLINK_NOFOLLOW)
      : sp.follow;
  }

  /** The key answers.c builds from a stop: class, follow, access mode, the path's bytes. */
  private key(s: SyscallStop, sp: Spec, raw: string): Buffer {
    const follow = this.follows(s, sp);
    const mode = sp.mode >= 0 ? Number(s.args[sp.mode]! & 7n) : 0;
    return Buffer.concat([Buffer.from([CLASS[sp.cls], follow ? 1 : 0, mode]), Buffer.from(raw)]);
  }
}
