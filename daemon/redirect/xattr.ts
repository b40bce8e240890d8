// Extended attributes: host files show none, and none can be set.
import { AT } from '../../arch/fcntl.ts';
import { fail, pass, ret } from '../syscall-stop.ts';
import { E, type Handler, s32, then } from './handler.ts';

export function xattrPath(follow: boolean, kind: 'get' | 'list' | 'set' | 'remove'): Handler {
  return (r, s) => {
    const { raw, at } = r.placeArg(s, AT.FDCWD, 0, follow);
    if (at.kind !== 'view') return pass;
    r.fastFits(s, raw, at);
    // Host extended attributes are not part of the view: none to read, none to set.
    return then(r.lookup(at.path, follow), (node) => {
      r.fastFound(s, node);
      return kind === 'list' ? ret(0) : fail(kind === 'get' ? E.ENODATA : E.EOPNOTSUPP);
    });
  };
}

/** Extended attributes of a view file through its fd: as for paths, there are none. */
export function xattrFd(kind: 'get' | 'list' | 'set' | 'remove'): Handler {
  return (r, s) => {
    if (r.fdStat(s.proc.pid, s32(s.args[0]!)) === null) return pass;
    if (kind === 'list') return ret(0);
    return fail(kind === 'get' ? E.ENODATA : E.EOPNOTSUPP);
  };
}
