// The policy half of the tracer's fast path (the mechanism is daemon/native/answers.c): which
// calls the C table may answer without waking JavaScript, and which answers go into it. An
// answer is kept only when it is a function of the call as written for the rest of the run:
// an absolute path that the walk left as written, in a read-only mount, answered from the
// connection's read-only memory (which a connection never forgets), with the errors that
// memory keeps. Everything else stays a miss, decided by daemon/redirect.ts as before.
import { constants } from 'node:os';
import { type ArchAbi, abiForNodeArch } from '../arch/abi.ts';
import { AT } from '../arch/fcntl.ts';
import * as native from './native.ts';
import type { Action, SyscallStop } from './tracer.ts';

const CLASS = { stat: 1, stat64: 2, statx: 3, access: 4, readlink: 5 } as const;
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
};

/** Errors the read-only memory keeps, per class (access also keeps its verdicts). */
const KEPT_ERRORS: Record<Class, readonly string[]> = {
  stat: ['ENOENT', 'ENOTDIR'],
  stat64: ['ENOENT', 'ENOTDIR'],
  statx: ['ENOENT', 'ENOTDIR'],
  readlink: ['ENOENT', 'ENOTDIR'],
  access: ['ENOENT', 'ENOTDIR', 'EACCES', 'EROFS'],
};

const ERRNO = new Map<number, string>(
  Object.entries(constants.errno as Record<string, number>).map(([k, v]) => [v, k]),
);

/** Bounds of one run's table; when full it starts over empty. */
const MAX_ENTRIES = 16384;
const MAX_BYTES = 8 * 1024 * 1024;

const HOST: ArchAbi | undefined = abiForNodeArch(process.arch);

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
    const specs = Buffer.alloc(1024 * 7);
    for (const [name, s] of Object.entries(SPECS)) {
      const nr = HOST.syscallNumber(name);
      if (nr === undefined || nr >= 1024) continue;
      specs.set(
        [CLASS[s.cls], s.path, s.buf, s.flags, s.mode, s.size, s.follow ? 1 : 0].map(
          (v) => v & 0xff,
        ),
        nr * 7,
      );
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
    native.answersClear(this.table);
  }

  /** Whether the C table could answer this stop's call (the tracer's ABI, a call it knows). */
  covers(s: SyscallStop): boolean {
    return this.table !== null && s.abi === HOST && SPECS[s.name] !== undefined;
  }

  /**
   * Keeps `action`, the decision about a stop whose path `raw` the caller found fit
   * (covers(), absolute, left as written, read-only mount), for the C table to repeat.
   */
  remember(s: SyscallStop, raw: string, action: Action): void {
    const sp = SPECS[s.name];
    if (!this.table || !sp || action.kind !== 'return') return;
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
    native.answersSet(this.table, this.key(s, sp, raw), Number(value), data);
  }

  stats(): { entries: number; bytes: number; hits: number; misses: number } | null {
    return this.table && native.answersStats(this.table);
  }

  /** The key answers.c builds from a stop: class, follow, access mode, the path's bytes. */
  private key(s: SyscallStop, sp: Spec, raw: string): Buffer {
    const follow =
      sp.flags >= 0 ? !(Number(s.args[sp.flags]! & 0xffffffffn) & AT.SYMLINK_NOFOLLOW) : sp.follow;
    const mode = sp.mode >= 0 ? Number(s.args[sp.mode]! & 7n) : 0;
    return Buffer.concat([Buffer.from([CLASS[sp.cls], follow ? 1 : 0, mode]), Buffer.from(raw)]);
  }
}
