// Opens: a host file's cached copy or working copy, a placeholder directory, a FIFO or socket
// stand-in, or the host's refusal.
import { OPEN_FLAGS } from '../../arch/fcntl.ts';
import type { Abi as AbiName } from '../../arch/syscalls.ts';
import type { OpenFlag } from '../../transport/view.ts';
import { plainOpenMask } from '../fast-answers.ts';
import { umaskOf } from '../procfs.ts';
import { type Action, fail, pass, type SyscallStop } from '../syscall-stop.ts';
import { E } from './handler.ts';
import type { Redirector } from './redirector.ts';

export function flagNames(abi: AbiName, flags: number): OpenFlag[] {
  const F = OPEN_FLAGS[abi];
  const acc = flags & F.O_ACCMODE;
  const out: OpenFlag[] = [];
  if (acc !== F.O_WRONLY) out.push('read');
  if (acc === F.O_WRONLY || acc === F.O_RDWR) out.push('write');
  if (flags & F.O_CREAT) out.push('creat');
  if (flags & F.O_EXCL) out.push('excl');
  if (flags & F.O_TRUNC) out.push('trunc');
  if (flags & F.O_APPEND) out.push('append');
  if (flags & F.O_DIRECTORY) out.push('directory');
  if (flags & F.O_NOFOLLOW) out.push('nofollow');
  return out;
}

export const S_IFIFO = 0o010000;

export function doOpen(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  flags: number,
  mode: number,
  flagsIdx: number | null,
): Action | Promise<Action> {
  const F = OPEN_FLAGS[s.abi.name];
  const raw = r.readPath(s, pathIdx);
  if (raw === '') return fail(E.ENOENT);
  // O_CREAT|O_EXCL never follows a final symlink: it fails on one.
  const excl = F.O_CREAT | F.O_EXCL;
  const at = r.place(s, dirfd, raw, !(flags & F.O_NOFOLLOW) && (flags & excl) !== excl);
  if (at.kind !== 'view') return pass;
  const path = at.path;
  // The loader's and the compiler's opens of a sysroot's files: known without a round trip.
  if ((flags & plainOpenMask(s.abi)) === 0 && r.work.existing(path) === null) {
    const hit = r.cachedHit(path);
    if (hit?.file) {
      r.fastFits(s, raw, at);
      return r.rewrite(s, [[pathIdx, hit.file]]);
    }
  }
  return doOpenAsync(r, s, path, pathIdx, flags, mode, flagsIdx);
}

export async function doOpenAsync(
  r: Redirector,
  s: SyscallStop,
  path: string,
  pathIdx: number,
  flags: number,
  mode: number,
  flagsIdx: number | null,
): Promise<Action> {
  const F = OPEN_FLAGS[s.abi.name];
  if ((flags & F.O_TMPFILE) === F.O_TMPFILE) return fail(E.EOPNOTSUPP);
  const names = flagNames(s.abi.name, flags);
  const writing = names.includes('write');
  // The copy on the device is opened without creating or truncating: the host did that.
  const localFlags = BigInt(flags & ~(F.O_CREAT | F.O_EXCL | (writing ? 0 : F.O_TRUNC)));
  const extra = flagsIdx === null ? undefined : new Map([[flagsIdx, localFlags]]);
  if (writing || names.includes('creat') || names.includes('trunc')) {
    const req = {
      op: 'open',
      path,
      flags: names,
      mode: mode & 0o7777 & ~umaskOf(s.tid),
      have: null,
    } as const;
    r.changed(req);
    const res = await r.run.client.open(req);
    if ('device' in res) return r.rewrite(s, [[pathIdx, res.device]]);
    const { node } = res;
    if (node.where === 'device') return r.rewrite(s, [[pathIdx, node.path]]);
    if ((node.st.mode & 0o170000) === S_IFIFO)
      return r.rewrite(s, [[pathIdx, r.fifoStandIn(node.path, node.st.mode)]]);
    r.opened(path, !(flags & F.O_NOFOLLOW), node);
    if ((node.st.mode & 0o170000) === 0o040000)
      return r.rewrite(s, [[pathIdx, r.placeholder(node.path)]], extra);
    if (!writing) {
      // creat/trunc without write access: the host did it; the content is what it is now.
      const c = await r.cached(node.path);
      return c.file ? r.rewrite(s, [[pathIdx, c.file]], extra) : fail(E.ENXIO);
    }
    const content = names.includes('trunc')
      ? Buffer.alloc(0)
      : res.content
        ? await res.content
        : null;
    const copy = await r.work.open(node, content, r.run.cache, res.key, names.includes('trunc'));
    const action = r.rewrite(s, [[pathIdx, copy]], extra);
    // creat(2) has no flags argument: it opens O_CREAT|O_WRONLY|O_TRUNC, fine for a copy.
    return action;
  }
  if (flags & F.O_PATH) {
    // Only a handle to the entry: nothing is read, so nothing is fetched.
    const node = await r.lookup(path, !(flags & F.O_NOFOLLOW));
    if (node.where === 'device') return r.rewrite(s, [[pathIdx, node.path]]);
    const type = node.st.mode & 0o170000;
    if (type === 0o040000) return r.rewrite(s, [[pathIdx, r.placeholder(node.path)]]);
    if (flags & F.O_DIRECTORY) return fail(E.ENOTDIR);
    return r.rewrite(s, [[pathIdx, r.pathStandIn(node.path, type === 0o120000)]]);
  }
  const copy = r.work.existing(path);
  if (copy !== null) return r.rewrite(s, [[pathIdx, copy]], extra);
  const { node, file } = await r.cached(
    path,
    names.filter((n) => n === 'directory' || n === 'nofollow'),
  );
  if (node.where === 'device') return r.rewrite(s, [[pathIdx, node.path]]);
  const type = node.st.mode & 0o170000;
  if (type === 0o040000) return r.rewrite(s, [[pathIdx, r.placeholder(node.path)]], extra);
  if (type === S_IFIFO) return r.rewrite(s, [[pathIdx, r.fifoStandIn(node.path, node.st.mode)]]);
  if (file === null) return fail(type === 0o120000 ? E.ELOOP : E.ENXIO);
  const w = r.work.existing(node.path);
  return r.rewrite(s, [[pathIdx, w ?? file]], extra);
}
