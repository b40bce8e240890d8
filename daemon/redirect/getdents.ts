// Listings of host directories, served into the program's buffer from the client's answer.
import { fdPos } from '../procfs.ts';
import { fail, pass } from '../syscall-stop.ts';
import { E, type Handler, s32 } from './handler.ts';

export const SEEK_SET = 0;

export const getdents64: Handler = async (r, s) => {
  const fd = s32(s.args[0]!);
  const dir = r.fdDir(s.proc.pid, fd);
  if (dir === null) return pass;
  const list = await r.listing(s, fd, dir);
  const count = s32(s.args[2]!);
  let pos = fdPos(s.proc.pid, fd);
  const out: Buffer[] = [];
  let used = 0;
  while (pos < list.length && used + list[pos]!.length <= count) {
    out.push(list[pos]!);
    used += list[pos]!.length;
    pos++;
  }
  if (out.length === 0 && pos < list.length) return fail(E.EINVAL);
  if (used > 0) s.writeMem(s.args[1]!, Buffer.concat(out));
  else r.listingDone(s.proc.pid, fd);
  // The kernel keeps our place: the placeholder's own offset counts the entries returned.
  const lseek = s.abi.syscallNumber('lseek')!;
  return {
    kind: 'replace',
    nr: lseek,
    args: new Map([
      [1, BigInt(pos)],
      [2, BigInt(SEEK_SET)],
    ]),
    result: BigInt(used),
  };
};
