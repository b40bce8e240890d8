// Questions about a path or fd: stat, statx, access, readlink, statfs, answered from the
// host's attributes or by the kernel on a device path.
import { AT } from '../../arch/fcntl.ts';
import { encodeStatfs, encodeStatx } from '../../arch/structs.ts';
import type { ViewStat } from '../../transport/view.ts';
import { type Action, fail, pass, ret, type SyscallStop } from '../syscall-stop.ts';
import { E, type Handler, s32, then } from './handler.ts';
import type { Redirector } from './redirector.ts';

export function doStat(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  follow: boolean,
  emptyPath: boolean,
  write: (st: ViewStat) => Action,
): Action | Promise<Action> {
  const raw = r.readPath(s, pathIdx);
  if (raw === '') {
    if (!emptyPath) return fail(E.ENOENT);
    return fdStatAction(r, s, dirfd, write);
  }
  const at = r.place(s, dirfd, raw, follow);
  if (at.kind !== 'view') return pass;
  // A socket this run bound at a host path is on the device only.
  const socket = r.boundSocket(at.path);
  if (socket !== null) return r.rewrite(s, [[pathIdx, socket]]);
  r.fastFits(s, raw, at);
  return then(r.lookup(at.path, follow), (node) => {
    if (node.where === 'device') return r.rewrite(s, [[pathIdx, node.path]]);
    r.fastFound(s, node);
    return write(node.st);
  });
}

export function fdStatAction(
  r: Redirector,
  s: SyscallStop,
  fd: number,
  write: (st: ViewStat) => Action,
): Action | Promise<Action> {
  const f = r.fdStat(s.proc.pid, fd);
  if (f === null) return pass;
  if ('st' in f) return write(f.st);
  return then(r.lookup(f.path, false), (node) => (node.where === 'host' ? write(node.st) : pass));
}

export function statHandler(kind: 'path' | 'lpath' | 'at' | 'fd'): Handler {
  return (r, s) => {
    const k = r.stKind(s);
    const bufIdx = kind === 'at' ? 2 : 1;
    const write = (st: ViewStat) => r.writeStat(s, s.args[bufIdx]!, st, k);
    if (kind === 'fd') return fdStatAction(r, s, s32(s.args[0]!), write);
    if (kind === 'at') {
      const flags = s32(s.args[3]!);
      return doStat(
        r,
        s,
        s32(s.args[0]!),
        1,
        !(flags & AT.SYMLINK_NOFOLLOW),
        !!(flags & AT.EMPTY_PATH),
        write,
      );
    }
    return doStat(r, s, AT.FDCWD, 0, kind === 'path', false, write);
  };
}

export const statx: Handler = (r, s) => {
  const flags = s32(s.args[2]!);
  const write = (st: ViewStat) => {
    s.writeMem(s.args[4]!, encodeStatx(st));
    return ret(0);
  };
  return doStat(
    r,
    s,
    s32(s.args[0]!),
    1,
    !(flags & AT.SYMLINK_NOFOLLOW),
    !!(flags & AT.EMPTY_PATH),
    write,
  );
};

export function accessHandler(at: boolean, withFlags: boolean): Handler {
  return (r, s) => {
    const o = at ? 1 : 0;
    const mode = s32(s.args[o + 1]!) & 7;
    const flags = withFlags ? s32(s.args[3]!) : 0;
    const follow = !(flags & AT.SYMLINK_NOFOLLOW);
    const { raw, at: where } = r.placeArg(s, at ? s32(s.args[0]!) : AT.FDCWD, o, follow);
    if (where.kind !== 'view') return pass;
    r.fastFits(s, raw, where);
    return then(r.access(where.path, mode, follow), (res) =>
      res === 0 ? ret(0) : r.rewrite(s, [[o, res.device]]),
    );
  };
}

export function doReadlink(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  bufIdx: number,
): Action | Promise<Action> {
  const raw = r.readPath(s, pathIdx);
  if (raw === '') return fail(E.ENOENT);
  const size = s32(s.args[bufIdx + 1]!);
  if (size <= 0) return fail(E.EINVAL);
  const at = r.place(s, dirfd, raw, false);
  let target: string | { device: string } | Promise<string | { device: string }>;
  if (at.kind === 'device') return pass;
  if (at.kind === 'magic') {
    // A /proc link of a traced process says the view path it stands for.
    const t = r.procLinkTarget(s.proc, at.pid, at.which);
    if (t === null) return pass;
    target = t;
  } else {
    r.fastFits(s, raw, at);
    target = r.readlink(at.path);
  }
  return then(target, (t) => {
    if (typeof t !== 'string') return r.rewrite(s, [[pathIdx, t.device]]);
    const bytes = Buffer.from(t).subarray(0, size);
    s.writeMem(s.args[bufIdx]!, bytes);
    return ret(bytes.length);
  });
}

export const statfs: Handler = async (r, s) => {
  const { at } = r.placeArg(s, AT.FDCWD, 0, true);
  if (at.kind !== 'view') return pass;
  const res = await r.run.client.statfs(at.path);
  if ('device' in res) return r.rewrite(s, [[0, res.device]]);
  const is64 = s.name === 'statfs64';
  const b = encodeStatfs(s.abi.name, is64 ? 'statfs64' : 'statfs', res);
  if (b === 'EOVERFLOW') return fail(E.EOVERFLOW);
  s.writeMem(s.args[is64 ? 2 : 1]!, b);
  return ret(0);
};
