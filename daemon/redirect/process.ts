// A process's program and directories: execve of view programs, chdir/fchdir into host
// directories (placeholders) and getcwd's view path.
import { statSync } from 'node:fs';
import { AT } from '../../arch/fcntl.ts';
import { prepareExec } from '../exec-view.ts';
import { fdTarget } from '../procfs.ts';
import { type Action, fail, pass, ret, type SyscallStop } from '../syscall-stop.ts';
import { E, type Handler, s32 } from './handler.ts';
import type { Redirector } from './redirector.ts';

export const X_OK = 1;

export const execHandler =
  (at: boolean): Handler =>
  async (r, s) => {
    const o = at ? 1 : 0;
    const flags = at ? s32(s.args[4]!) : 0;
    const raw = r.readPath(s, o);
    let path: string;
    if (raw === '' && at && flags & AT.EMPTY_PATH) {
      const v = r.fdView(s.proc.pid, s32(s.args[0]!));
      if (v === null) return pass;
      path = v;
    } else {
      if (raw === '') return fail(E.ENOENT);
      path = r.absPath(s, at ? s32(s.args[0]!) : AT.FDCWD, raw);
    }
    const dirfd = at ? s32(s.args[0]!) : AT.FDCWD;
    // The kernel names the file to a #! interpreter as given, or via /dev/fd for execveat.
    const name =
      raw.startsWith('/') || dirfd === AT.FDCWD ? raw : `/dev/fd/${dirfd}${raw ? `/${raw}` : ''}`;
    const plan = await prepareExec(r, s, path, name, s.args[o + 1]!, r.takeSpawnExec(s.proc.pid));
    if ('errno' in plan) return fail(plan.errno);
    s.proc.pendingExe = plan.exe;
    const args = new Map<number, bigint>([[o + 1, plan.argv]]);
    if (at) {
      args.set(0, BigInt(AT.FDCWD));
      args.set(4, 0n);
    }
    return r.rewrite(s, [[o, plan.file]], args);
  };

export async function doChdir(r: Redirector, s: SyscallStop): Promise<Action> {
  const { at } = r.placeArg(s, AT.FDCWD, 0, true);
  if (at.kind !== 'view') {
    // Where the kernel will be: the walk's end, when it is a directory there.
    if (at.kind === 'device' && at.at !== null && safeStat(at.at)?.isDirectory())
      s.proc.cwd = at.at;
    s.proc.cwdStandIn = undefined;
    return pass;
  }
  const node = await r.lookup(at.path, true);
  if (node.where === 'device') {
    const st = safeStat(node.path);
    if (st?.isDirectory()) {
      s.proc.cwd = node.path;
      s.proc.cwdStandIn = undefined;
    }
    return r.rewrite(s, [[0, node.path]]);
  }
  if ((node.st.mode & 0o170000) !== 0o040000) return fail(E.ENOTDIR);
  await r.access(node.path, X_OK, true);
  s.proc.cwd = node.path;
  s.proc.cwdStandIn = r.placeholder(node.path);
  return r.rewrite(s, [[0, s.proc.cwdStandIn]]);
}

export function safeStat(p: string) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

export const getcwd: Handler = (r, s) => {
  // A device directory is the kernel's cwd too: it answers (a removed one with ENOENT).
  if (r.onDevice(s.proc.cwd) || r.cwdRemoved(s.proc)) return pass;
  const b = Buffer.from(`${s.proc.cwd}\0`);
  const size = Number(s.args[1]!);
  if (size < b.length) return fail(E.ERANGE);
  s.writeMem(s.args[0]!, b);
  return ret(b.length);
};

export const fchdir: Handler = (r, s) => {
  const v = r.fdView(s.proc.pid, s32(s.args[0]!));
  if (v !== null) {
    s.proc.cwd = v;
    const target = fdTarget(s.proc.pid, s32(s.args[0]!));
    s.proc.cwdStandIn = target !== null && target !== v ? target : undefined;
  }
  return pass;
};
