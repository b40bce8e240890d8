// Changes to host files by path or fd: made by the host (the client); then what the run
// remembers about the paths changed is dropped.
import { AT, RENAME } from '../../arch/fcntl.ts';
import type { TimeSpec } from '../../transport/view.ts';
import { umaskOf } from '../procfs.ts';
import { type Action, fail, pass, ret, type SyscallStop } from '../syscall-stop.ts';
import type { ViewRequestBody } from '../view-client.ts';
import { E, type Handler, s32 } from './handler.ts';
import type { Redirector } from './redirector.ts';

export async function doSimple(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  body: (path: string) => ViewRequestBody,
  /** Whether the op follows a final symlink (chmod does, unlink does not). */
  follow = false,
): Promise<Action> {
  const { at } = r.placeArg(s, dirfd, pathIdx, follow);
  if (at.kind !== 'view') return pass;
  const b = body(at.path);
  const res = await r.run.client.change(b);
  if (!Array.isArray(res)) return r.rewrite(s, [[pathIdx, res.device]]);
  r.work.afterChange(b, res);
  r.changed(b, res);
  if (b.op === 'rmdir') for (const p of res) r.dirRemoved(p);
  return ret(0);
}

export async function doTwo(
  r: Redirector,
  s: SyscallStop,
  from: [number, number],
  to: [number, number],
  body: (from: string, to: string) => ViewRequestBody,
): Promise<Action> {
  const rawFrom = r.readPath(s, from[1]);
  const rawTo = r.readPath(s, to[1]);
  if (rawFrom === '' || rawTo === '') return fail(E.ENOENT);
  const pa = r.place(s, from[0], rawFrom, false);
  const pb = r.place(s, to[0], rawTo, false);
  if (pa.kind !== 'view' && pb.kind !== 'view') return pass;
  if (pa.kind !== 'view' || pb.kind !== 'view') return fail(E.EXDEV);
  const req = body(pa.path, pb.path);
  const res = await r.run.client.change(req);
  if (!Array.isArray(res)) return fail(E.EXDEV);
  r.work.afterChange(req, res);
  r.changed(req, res);
  return ret(0);
}

export const mkdirH =
  (at: boolean): Handler =>
  (r, s) => {
    const o = at ? 1 : 0;
    const mode = s32(s.args[o + 1]!) & 0o7777 & ~umaskOf(s.tid);
    return doSimple(r, s, at ? s32(s.args[0]!) : AT.FDCWD, o, (path) => ({
      op: 'mkdir',
      path,
      mode,
    }));
  };

export const mknodH =
  (at: boolean): Handler =>
  (r, s) => {
    const o = at ? 1 : 0;
    const mode = s32(s.args[o + 1]!) & ~umaskOf(s.tid);
    return doSimple(r, s, at ? s32(s.args[0]!) : AT.FDCWD, o, (path) => ({
      op: 'mknod',
      path,
      mode,
    }));
  };

export const unlinkH =
  (kind: 'unlink' | 'rmdir' | 'at'): Handler =>
  (r, s) => {
    const at = kind === 'at';
    const op = at ? (s32(s.args[2]!) & AT.REMOVEDIR ? 'rmdir' : 'unlink') : kind;
    const dirfd = at ? s32(s.args[0]!) : AT.FDCWD;
    const idx = at ? 1 : 0;
    if (op === 'unlink') {
      // A socket this run bound at a host path lives on the device: remove that.
      const standIn = r.boundSocket(r.absPath(s, dirfd, r.readPath(s, idx)));
      if (standIn !== null) return r.rewrite(s, [[idx, standIn]]);
    }
    return doSimple(r, s, dirfd, idx, (path) => ({ op, path }));
  };

export const renameH =
  (kind: 'rename' | 'renameat' | 'renameat2'): Handler =>
  (r, s) => {
    const flags = kind === 'renameat2' ? s32(s.args[4]!) : 0;
    if (flags & ~(RENAME.NOREPLACE | RENAME.EXCHANGE)) return fail(E.EINVAL);
    const at = kind !== 'rename';
    const from: [number, number] = at ? [s32(s.args[0]!), 1] : [AT.FDCWD, 0];
    const to: [number, number] = at ? [s32(s.args[2]!), 3] : [AT.FDCWD, 1];
    return doTwo(r, s, from, to, (a, b) => ({
      op: 'rename',
      from: a,
      to: b,
      noreplace: !!(flags & RENAME.NOREPLACE),
      exchange: !!(flags & RENAME.EXCHANGE),
    }));
  };

export const linkH =
  (at: boolean): Handler =>
  (r, s) => {
    const flags = at ? s32(s.args[4]!) : 0;
    const from: [number, number] = at ? [s32(s.args[0]!), 1] : [AT.FDCWD, 0];
    const to: [number, number] = at ? [s32(s.args[2]!), 3] : [AT.FDCWD, 1];
    return doTwo(r, s, from, to, (a, b) => ({
      op: 'link',
      from: a,
      to: b,
      follow: !!(flags & AT.SYMLINK_FOLLOW),
    }));
  };

export const symlinkH =
  (at: boolean): Handler =>
  (r, s) => {
    const target = s.readString(s.args[0]!, 4097);
    if (target === null) return fail(E.EFAULT);
    if (target.length === 0) return fail(E.ENOENT);
    const t = target.toString('utf8');
    return doSimple(r, s, at ? s32(s.args[1]!) : AT.FDCWD, at ? 2 : 1, (path) => ({
      op: 'symlink',
      target: t,
      path,
    }));
  };

export const chmodH =
  (kind: 'chmod' | 'fchmodat' | 'fchmodat2'): Handler =>
  (r, s) => {
    const at = kind !== 'chmod';
    const mode = s32(s.args[at ? 2 : 1]!) & 0o7777;
    const flags = kind === 'fchmodat2' ? s32(s.args[3]!) : 0;
    const follow = !(flags & AT.SYMLINK_NOFOLLOW);
    return doSimple(
      r,
      s,
      at ? s32(s.args[0]!) : AT.FDCWD,
      at ? 1 : 0,
      (path) => ({ op: 'chmod', path, mode, follow }),
      follow,
    );
  };

export const chownH =
  (kind: 'chown' | 'lchown' | 'fchownat'): Handler =>
  (r, s) => {
    const at = kind === 'fchownat';
    const o = at ? 1 : 0;
    const flags = at ? s32(s.args[4]!) : 0;
    const follow = kind === 'chown' || (at && !(flags & AT.SYMLINK_NOFOLLOW));
    return doSimple(
      r,
      s,
      at ? s32(s.args[0]!) : AT.FDCWD,
      o,
      (path) => ({
        op: 'chown',
        path,
        uid: s32(s.args[o + 1]!),
        gid: s32(s.args[o + 2]!),
        follow,
      }),
      follow,
    );
  };

export const UTIME_NOW = (1 << 30) - 1;

export const UTIME_OMIT = (1 << 30) - 2;

/**
 * utimensat, and utimensat_time64 (32-bit ABIs; glibc uses it for times past 2038): its
 * struct __kernel_timespec has 64-bit seconds, and a 32-bit kernel reads only the low half of
 * its 64-bit tv_nsec.
 */
export const utimensatH =
  (time64: boolean): Handler =>
  (r, s) => {
    const flags = s32(s.args[3]!);
    const ptr = s.args[2]!;
    const field = time64 ? 8 : s.abi.wordSize;
    let times: [TimeSpec, TimeSpec] = ['now', 'now'];
    if (ptr !== 0n) {
      const b = s.readMem(ptr, 4 * field);
      if (b.length < 4 * field) return fail(E.EFAULT);
      const sec = (i: number) =>
        field === 8 ? Number(b.readBigInt64LE(16 * i)) : b.readInt32LE(8 * i);
      const nsec = (i: number) =>
        field === 8 && s.abi.wordSize === 8
          ? Number(b.readBigInt64LE(16 * i + 8))
          : b.readInt32LE(2 * field * i + field);
      times = [timeOf(sec(0), nsec(0)), timeOf(sec(1), nsec(1))];
    }
    return setTimes(r, s, s32(s.args[0]!), 1, times, !(flags & AT.SYMLINK_NOFOLLOW));
  };

/**
 * utimes, futimesat and utime, the calls before utimensat (x86_64, i386, arm): two struct
 * timeval (word-sized seconds and microseconds) or one struct utimbuf (two word-sized seconds);
 * NULL sets both times to now. Done as utimensat with the same times, following symlinks.
 */
export const oldTimesH =
  (kind: 'utimes' | 'futimesat' | 'utime'): Handler =>
  (r, s) => {
    const pathIdx = kind === 'futimesat' ? 1 : 0;
    const ptr = s.args[pathIdx + 1]!;
    const w = s.abi.wordSize;
    let times: [TimeSpec, TimeSpec] = ['now', 'now'];
    if (ptr !== 0n) {
      const words = kind === 'utime' ? 2 : 4;
      const b = s.readMem(ptr, words * w);
      if (b.length < words * w) return fail(E.EFAULT);
      const word = (i: number) =>
        w === 8 ? Number(b.readBigInt64LE(8 * i)) : b.readInt32LE(4 * i);
      if (kind === 'utime')
        times = [
          [word(0), 0],
          [word(1), 0],
        ];
      else {
        if ([word(1), word(3)].some((us) => us < 0 || us > 999_999)) return fail(E.EINVAL);
        times = [
          [word(0), word(1) * 1000],
          [word(2), word(3) * 1000],
        ];
      }
    }
    const dirfd = kind === 'futimesat' ? s32(s.args[0]!) : AT.FDCWD;
    return setTimes(r, s, dirfd, pathIdx, times, true);
  };

/**
 * The times of the file at (dirfd, path argument `pathIdx`) go to the host. A NULL path of the
 * *at forms (utimensat, futimesat) names the file of fd `dirfd` instead, as futimens does.
 */
export function setTimes(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  times: [TimeSpec, TimeSpec],
  follow: boolean,
): Action | Promise<Action> {
  const body = (path: string, follow: boolean): ViewRequestBody => ({
    op: 'utimens',
    path,
    atime: times[0],
    mtime: times[1],
    follow,
  });
  if (pathIdx === 1 && s.args[1] === 0n) return fdMeta(r, s, (path) => body(path, true));
  return doSimple(r, s, dirfd, pathIdx, (path) => body(path, follow), follow);
}

export function timeOf(sec: number, nsec: number): TimeSpec {
  if (nsec === UTIME_NOW) return 'now';
  if (nsec === UTIME_OMIT) return 'omit';
  return [sec, nsec];
}

/**
 * truncate's length is a long; truncate64's (32-bit ABIs) is 64 bits in a register pair, low
 * word first: arguments 1–2 on i386, 2–3 on arm (EABI starts a pair at an even register).
 */
export const truncateH =
  (pair: boolean): Handler =>
  (r, s) => {
    const lo = s.abi.name === 'arm' ? 2 : 1;
    const len = pair
      ? BigInt.asIntN(64, (s.args[lo + 1]! << 32n) | s.args[lo]!)
      : BigInt.asIntN(8 * s.abi.wordSize, s.args[1]!);
    const size = Number(len);
    if (size < 0) return fail(E.EINVAL);
    return doSimple(r, s, AT.FDCWD, 0, (path) => ({ op: 'truncate', path, size }), true);
  };

/**
 * fchmod/fchown/futimens on a view file: the host file changes (after pending writes are
 * written back, so its times stay as set); a copy's own metadata does not matter.
 */
export function fdMeta(
  r: Redirector,
  s: SyscallStop,
  body: (path: string) => ViewRequestBody,
): Action | Promise<Action> {
  const fd = s32(s.args[0]!);
  const f = r.fdStat(s.proc.pid, fd);
  if (f === null) return pass;
  const path = 'path' in f ? f.path : r.fdView(s.proc.pid, fd);
  if (path === null) return pass;
  return (async () => {
    await r.work.flushFd(s.proc.pid, fd);
    const req = body(path);
    const res = await r.run.client.change(req);
    r.changed(req, Array.isArray(res) ? res : []);
    r.work.afterFdChange(s.proc.pid, fd, req);
    return ret(0);
  })();
}

export const fchmod: Handler = (r, s) => {
  const mode = s32(s.args[1]!) & 0o7777;
  return fdMeta(r, s, (path) => ({ op: 'chmod', path, mode, follow: true }));
};

export const fchown: Handler = (r, s) =>
  fdMeta(r, s, (path) => ({
    op: 'chown',
    path,
    uid: s32(s.args[1]!),
    gid: s32(s.args[2]!),
    follow: true,
  }));

export const fsync: Handler = async (r, s) => {
  await r.work.flushFd(s.proc.pid, s32(s.args[0]!));
  return pass;
};
