// Loader of the client's addon (client/native/: receiving fds, openat2, xattrs), built by npm ci
// or carried by the single executable.
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

export interface Received {
  data: Buffer;
  fds: number[];
  /** The sender passed more fds than fit: some were dropped. */
  truncated: boolean;
}

interface Addon {
  recvFds(fd: number, maxBytes: number): Received | null;
  openBeneath(dirfd: number, path: string, flags: number, mode: number): number;
  xattrs(path: string): [string, Buffer][] | number;
  setXattr(fd: number, name: string, value: Buffer): number;
}

// Same depth from client/ (sources) and dist/ (bundle).
let addonPath = () =>
  fileURLToPath(new URL(`../build/${process.arch}/tether-client.node`, import.meta.url));

let addon: Addon | null = null;

/** Where the single executable (client/sea-main.ts) puts the addon it carries. */
export function useAddon(path: () => string): void {
  addonPath = path;
}

function load(): Addon {
  addon ??= createRequire(import.meta.url)(addonPath()) as Addon;
  return addon;
}

/** Bytes and fds waiting on a unix socket: null if nothing is there yet, empty data at EOF. */
export function recvFds(fd: number, maxBytes: number): Received | null {
  return load().recvFds(fd, maxBytes);
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));

/**
 * openat2(dirfd, path, flags, mode) with RESOLVE_BENEATH and no symlinks on the way (the last
 * component too, unless O_PATH|O_NOFOLLOW): the new fd, or an error whose `code` is the errno
 * name (ENOSYS before Linux 5.6).
 */
export function openBeneath(dirfd: number, path: string, flags: number, mode = 0): number {
  const r = load().openBeneath(dirfd, path, flags, mode);
  if (r >= 0) return r;
  throw errnoError(`openat2 ${path}`, r);
}

function errnoError(what: string, r: number): Error {
  const code = ERRNO_NAMES.get(-r) ?? 'EIO';
  return Object.assign(new Error(`${what}: ${code}`), { code, errno: r });
}

/** The extended attributes of `path` itself (not followed if a symlink), names and values. */
export function xattrs(path: string): [string, Buffer][] {
  const r = load().xattrs(path);
  if (typeof r === 'number') throw errnoError(`listxattr ${path}`, r);
  return r;
}

/** fsetxattr(fd, name, value); throws with the errno name as `code`. */
export function setXattr(fd: number, name: string, value: Buffer): void {
  const r = load().setXattr(fd, name, value);
  if (r < 0) throw errnoError(`setxattr ${name}`, r);
}
