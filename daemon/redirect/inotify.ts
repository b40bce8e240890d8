// inotify watches of host files: refused, so tools fall back to polling.
import { AT } from '../../arch/fcntl.ts';
import { fail, pass } from '../syscall-stop.ts';
import { E, type Handler } from './handler.ts';

export const inotifyAdd: Handler = async (r, s) => {
  const { at } = r.placeArg(s, AT.FDCWD, 1, true);
  if (at.kind !== 'view') return pass;
  await r.lookup(at.path, true);
  // Host files cannot be watched from the device: the "no more watches" answer makes tools
  // such as tail -f fall back to polling.
  return fail(E.ENOSPC);
};
