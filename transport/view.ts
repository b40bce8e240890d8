// The view protocol: the device asks, the client answers from the host's files.
// One `view` stream per run (opened by the client right after the run's fd
// streams); the device sends ViewRequest messages and the client answers each
// with a ViewReply carrying the same id, in any order. Paths are absolute view
// paths; the client resolves them (symlinks, `..`) inside the view, so no
// answer ever names a host path outside an exported root. Field meanings:
// docs/protocol.md §13.
import { ErrorCode, TransportError } from './errors.ts';

/** One entry of a run's mount table; host directories behind `host` mounts stay on the client. */
export interface ViewMount {
  /** Absolute view path, normalised (no trailing slash except `/`). */
  path: string;
  /** Device-local (e.g. /proc, /dev, /tmp): the device's own files, never asked about. */
  device: boolean;
  readonly: boolean;
}

/** The view part of ExecStart. */
export interface ViewSpec {
  mounts: ViewMount[];
  /**
   * The client's name for this exact view (its mounts and the host directories behind them):
   * the device shares what it learned about read-only mounts among a connection's runs
   * with the same lease, for a while.
   */
  lease?: string;
}

/** [seconds, nanoseconds] since the epoch, as the host's clock sees them. */
export type Time = [number, number];

/** A host file's attributes as lstat/stat show them on the host. */
export interface ViewStat {
  dev: number;
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blksize: number;
  blocks: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
}

/** Open flags that matter to the host, by name (their numbers differ between ABIs). */
export type OpenFlag =
  | 'write'
  | 'read'
  | 'creat'
  | 'excl'
  | 'trunc'
  | 'append'
  | 'directory'
  | 'nofollow';

/** When a utimens time is not a value. */
export type TimeSpec = Time | 'now' | 'omit';

/** Requests; `lookup` resolves `path`, `follow` saying whether a final symlink is followed. */
export type ViewRequest = { id: number } & (
  | { op: 'lookup'; path: string; follow: boolean }
  | { op: 'readlink'; path: string }
  | { op: 'readdir'; path: string }
  /**
   * Open a host file: the host checks existence and permission and applies creat/excl/trunc.
   * `have` is the cache key the device already holds for this path: when it still matches,
   * no content follows.
   */
  | { op: 'open'; path: string; flags: OpenFlag[]; mode: number; have: string | null }
  /** Write back: data at offset in place (the file keeps its inode); `truncate` sets the size first. */
  | { op: 'write'; path: string; offset: number; data: Uint8Array; truncate: number | null }
  | { op: 'access'; path: string; mode: number; follow: boolean }
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'mknod'; path: string; mode: number }
  | { op: 'unlink'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'rename'; from: string; to: string; noreplace: boolean; exchange: boolean }
  | { op: 'link'; from: string; to: string; follow: boolean }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'chmod'; path: string; mode: number; follow: boolean }
  | { op: 'chown'; path: string; uid: number; gid: number; follow: boolean }
  | { op: 'utimens'; path: string; atime: TimeSpec; mtime: TimeSpec; follow: boolean }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'statfs'; path: string }
);

export type ViewOp = ViewRequest['op'];

/** Where a resolved path lives. */
export type ViewNode =
  /** `path` is the canonical view path (symlinks resolved). */
  | { where: 'host'; path: string; st: ViewStat }
  /** The path leads into a device-local mount: the device resolves `path` itself. */
  | { where: 'device'; path: string };

export interface DirEntry {
  name: string;
  ino: number;
  /** DT_* value: 1 FIFO, 2 CHR, 4 DIR, 6 BLK, 8 REG, 10 LNK, 12 SOCK, 0 unknown. */
  type: number;
  /** The entry's lstat, when it is the host file at that name (not a mount point): a walk
   *  (find, ls -l) then needs no lookup per file. */
  st?: ViewStat;
}

export interface StatFs {
  type: number;
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namelen: number;
  frsize: number;
  flags: number;
}

/**
 * Replies. Every op that takes a path can answer `device` instead (the path is device-local:
 * do the syscall on the device with that path). Errors carry the errno name the host's kernel
 * gave (or the view's own: EROFS for a read-only mount, EXDEV across mounts).
 */
export type ViewReply = { id: number } & (
  | { ok: false; errno: string }
  | { ok: true; device: string }
  /** A change was made: the canonical view paths of the entries it changed (links resolved). */
  | { ok: true; changed: string[] }
  | { ok: true; node: ViewNode }
  | { ok: true; target: string }
  | { ok: true; entries: DirEntry[] }
  /**
   * open: `key` identifies this content (host dev, ino, size, mtime, ctime). `content` follows
   * as chunk messages of the same id unless `key` equals the request's `have`, the file is
   * empty or truncated, or it is a directory.
   */
  | { ok: true; node: ViewNode; key: string; content: boolean }
  | { ok: true; statfs: StatFs }
  | { ok: true }
);

/** One piece of an open's content; `end` marks the last (it may carry data too). */
export interface ViewChunk {
  id: number;
  data: Uint8Array;
  end: boolean;
}

/** Content is sent in pieces of at most this size. */
export const VIEW_CHUNK = 1024 * 1024;

function bad(what: string): TransportError {
  return new TransportError(ErrorCode.MESSAGE_ERROR, what);
}

const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
const isStr = (x: unknown): x is string => typeof x === 'string';
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const isUint = (x: unknown): x is number => isInt(x) && x >= 0;
const isBool = (x: unknown): x is boolean => typeof x === 'boolean';

/** An absolute path without NUL; the resolver handles `.`, `..` and repeated slashes. */
export function isViewPath(x: unknown): x is string {
  return isStr(x) && x.startsWith('/') && !x.includes('\0') && x.length <= 4096;
}

export function parseViewSpec(x: unknown): ViewSpec {
  if (!isObj(x) || !Array.isArray(x.mounts) || x.mounts.length === 0) throw bad('bad view');
  const mounts = x.mounts.map((m: unknown) => {
    if (!isObj(m) || !isViewPath(m.path) || !isBool(m.device) || !isBool(m.readonly))
      throw bad('bad view mount');
    return { path: m.path, device: m.device, readonly: m.readonly };
  });
  if (!mounts.some((m) => m.path === '/')) throw bad('view has no / mount');
  if (x.lease === undefined) return { mounts };
  if (!isStr(x.lease) || x.lease.length > 64) throw bad('bad view lease');
  return { mounts, lease: x.lease };
}

const FLAGS = new Set<OpenFlag>([
  'write',
  'read',
  'creat',
  'excl',
  'trunc',
  'append',
  'directory',
  'nofollow',
]);

function time(x: unknown): x is Time {
  return Array.isArray(x) && x.length === 2 && isInt(x[0]) && isUint(x[1]) && x[1] < 1e9;
}

function timeSpec(x: unknown): x is TimeSpec {
  return x === 'now' || x === 'omit' || time(x);
}

/** Validates a request from the device (run on the client). */
export function parseViewRequest(x: unknown): ViewRequest {
  if (!isObj(x) || !isUint(x.id)) throw bad('view request without id');
  const p = (k: string) => {
    if (!isViewPath(x[k])) throw bad(`view ${String(x.op)}: bad ${k}`);
    return x[k] as string;
  };
  const b = (k: string) => {
    if (!isBool(x[k])) throw bad(`view ${String(x.op)}: bad ${k}`);
    return x[k] as boolean;
  };
  const u = (k: string) => {
    if (!isUint(x[k])) throw bad(`view ${String(x.op)}: bad ${k}`);
    return x[k] as number;
  };
  const id = x.id;
  switch (x.op) {
    case 'lookup':
      return { id, op: 'lookup', path: p('path'), follow: b('follow') };
    case 'readlink':
    case 'readdir':
    case 'unlink':
    case 'rmdir':
    case 'statfs':
      return { id, op: x.op, path: p('path') };
    case 'open': {
      if (!Array.isArray(x.flags) || !x.flags.every((f) => FLAGS.has(f as OpenFlag)))
        throw bad('view open: bad flags');
      if (x.have !== null && !isStr(x.have)) throw bad('view open: bad have');
      return {
        id,
        op: 'open',
        path: p('path'),
        flags: x.flags as OpenFlag[],
        mode: u('mode'),
        have: x.have,
      };
    }
    case 'write':
      if (!(x.data instanceof Uint8Array)) throw bad('view write: bad data');
      if (x.truncate !== null && !isUint(x.truncate)) throw bad('view write: bad truncate');
      return {
        id,
        op: 'write',
        path: p('path'),
        offset: u('offset'),
        data: x.data,
        truncate: x.truncate,
      };
    case 'access':
      return { id, op: 'access', path: p('path'), mode: u('mode'), follow: b('follow') };
    case 'mkdir':
    case 'mknod':
      return { id, op: x.op, path: p('path'), mode: u('mode') };
    case 'rename':
      return {
        id,
        op: 'rename',
        from: p('from'),
        to: p('to'),
        noreplace: b('noreplace'),
        exchange: b('exchange'),
      };
    case 'link':
      return { id, op: 'link', from: p('from'), to: p('to'), follow: b('follow') };
    case 'symlink':
      if (!isStr(x.target) || x.target === '' || x.target.includes('\0'))
        throw bad('view symlink: bad target');
      return { id, op: 'symlink', target: x.target, path: p('path') };
    case 'chmod':
      return { id, op: 'chmod', path: p('path'), mode: u('mode'), follow: b('follow') };
    case 'chown':
      if (!isInt(x.uid) || !isInt(x.gid)) throw bad('view chown: bad ids');
      return { id, op: 'chown', path: p('path'), uid: x.uid, gid: x.gid, follow: b('follow') };
    case 'utimens':
      if (!timeSpec(x.atime) || !timeSpec(x.mtime)) throw bad('view utimens: bad times');
      return {
        id,
        op: 'utimens',
        path: p('path'),
        atime: x.atime,
        mtime: x.mtime,
        follow: b('follow'),
      };
    case 'truncate':
      return { id, op: 'truncate', path: p('path'), size: u('size') };
    default:
      throw bad(`unknown view op ${isStr(x.op) ? JSON.stringify(x.op.slice(0, 20)) : '?'}`);
  }
}

const STAT_KEYS = [
  'dev',
  'ino',
  'mode',
  'nlink',
  'uid',
  'gid',
  'rdev',
  'size',
  'blksize',
  'blocks',
] as const;

function viewStat(x: unknown): x is ViewStat {
  return (
    isObj(x) &&
    STAT_KEYS.every((k) => isUint(x[k])) &&
    time(x.atime) &&
    time(x.mtime) &&
    time(x.ctime)
  );
}

function viewNode(x: unknown): x is ViewNode {
  if (!isObj(x) || !isViewPath(x.path)) return false;
  return x.where === 'device' || (x.where === 'host' && viewStat(x.st));
}

const STATFS_KEYS = [
  'type',
  'bsize',
  'blocks',
  'bfree',
  'bavail',
  'files',
  'ffree',
  'namelen',
  'frsize',
  'flags',
] as const;

/** Validates a reply or chunk from the client (run on the device). */
export function parseViewReply(x: unknown): ViewReply | ViewChunk {
  if (!isObj(x) || !isUint(x.id)) throw bad('view reply without id');
  const id = x.id;
  if (x.data instanceof Uint8Array && isBool(x.end)) return { id, data: x.data, end: x.end };
  if (x.ok === false && isStr(x.errno)) return { id, ok: false, errno: x.errno };
  if (x.ok !== true) throw bad('bad view reply');
  if ('device' in x) {
    if (!isViewPath(x.device)) throw bad('view reply: bad device path');
    return { id, ok: true, device: x.device };
  }
  if ('changed' in x) {
    if (!Array.isArray(x.changed) || !x.changed.every(isViewPath))
      throw bad('view reply: bad changed paths');
    return { id, ok: true, changed: x.changed as string[] };
  }
  if ('key' in x) {
    if (!viewNode(x.node) || !isStr(x.key) || !isBool(x.content)) throw bad('bad open reply');
    return { id, ok: true, node: x.node, key: x.key, content: x.content };
  }
  if ('node' in x) {
    if (!viewNode(x.node)) throw bad('view reply: bad node');
    return { id, ok: true, node: x.node };
  }
  if ('target' in x) {
    if (!isStr(x.target)) throw bad('view reply: bad target');
    return { id, ok: true, target: x.target };
  }
  if ('entries' in x) {
    if (
      !Array.isArray(x.entries) ||
      !x.entries.every(
        (e) =>
          isObj(e) &&
          isStr(e.name) &&
          e.name !== '' &&
          !e.name.includes('/') &&
          !e.name.includes('\0') &&
          isUint(e.ino) &&
          isUint(e.type) &&
          (e.st === undefined || viewStat(e.st)),
      )
    )
      throw bad('view reply: bad entries');
    return { id, ok: true, entries: x.entries as DirEntry[] };
  }
  if ('statfs' in x) {
    const s = x.statfs;
    if (!isObj(s) || !STATFS_KEYS.every((k) => isUint(s[k]))) throw bad('view reply: bad statfs');
    return { id, ok: true, statfs: s as unknown as StatFs };
  }
  return { id, ok: true };
}
