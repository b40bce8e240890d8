// Unix sockets at view paths: bound and connected on the device, at stand-ins.
import { AT } from '../../arch/fcntl.ts';
import { fail, pass } from '../syscall-stop.ts';
import { E, type Handler, s32 } from './handler.ts';

export const AF_UNIX = 1;

/** sizeof(sockaddr_un.sun_path). */
export const SUN_PATH = 108;

/**
 * bind/connect on a unix socket path. A socket file can only live on the device, so a view
 * path that is the host's gets a device stand-in, the same for every bind and connect of the
 * run; device paths go to the kernel as written (a relative name near sun_path's 108 bytes
 * still fits).
 */
export const unixSocket: Handler = (r, s) => {
  const len = s32(s.args[2]!);
  if (len <= 2 || len > 2 + SUN_PATH) return pass;
  const addr = s.readMem(s.args[1]!, len);
  if (addr.length < len || addr.readUInt16LE(0) !== AF_UNIX || addr[2] === 0) return pass;
  const end = addr.indexOf(0, 2);
  const raw = addr.subarray(2, end < 0 ? len : end).toString('utf8');
  // bind makes the final name (a symlink there is in the way); connect follows it.
  const at = r.place(s, AT.FDCWD, raw, s.name === 'connect');
  if (at.kind !== 'view') return pass;
  const target = r.socketStandIn(at.path);
  const b = Buffer.alloc(2 + Buffer.byteLength(target) + 1);
  b.writeUInt16LE(AF_UNIX, 0);
  b.write(target, 2);
  if (b.length > 2 + SUN_PATH) return fail(E.ENAMETOOLONG);
  return {
    kind: 'rewrite',
    args: new Map([
      [1, s.scratch(b)],
      [2, BigInt(b.length)],
    ]),
  };
};
