// The host side of the view: answers a run's ViewRequests from the host's
// files, every path resolved inside the view (view-resolve.ts). New files get
// exactly the mode asked for: the device has applied the program's umask.
// The hot ops (lookup, open, access, readlink) make synchronous host calls:
// an open whose content the device already has costs 40 µs instead of 130.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  type BigIntStats,
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  lstatSync,
  openSync,
  read,
  readlinkSync,
  rmSync,
} from 'node:fs';
import {
  type FileHandle,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  rename,
  rmdir,
  statfs,
  symlink,
  unlink,
} from 'node:fs/promises';
import { basename } from 'node:path';
import type { Duplex } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ErrorCode, TransportError } from '../transport/errors.ts';
import { MessageReader, writeMessage } from '../transport/messages.ts';
import {
  type DirEntry,
  parseViewRequest,
  type Time,
  type TimeSpec,
  VIEW_CHUNK,
  type ViewChunk,
  type ViewNode,
  type ViewReply,
  type ViewRequest,
  type ViewStat,
} from '../transport/view.ts';
import { setXattr, xattrs } from './native.ts';
import {
  type EntryErrors,
  type HostEntry,
  type HostNode,
  type Mount,
  type Pin,
  type Resolved,
  ViewError,
  type ViewOptions,
  ViewTable,
  viewIno,
} from './view-resolve.ts';

type Body<T> = T extends unknown ? Omit<T, 'id'> : never;
/** A reply without its id. */
type Answer = Body<ViewReply>;

type Req<K extends ViewRequest['op']> = Extract<ViewRequest, { op: K }>;

const {
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  O_CREAT,
  O_EXCL,
  O_TRUNC,
  O_APPEND,
  O_DIRECTORY,
  O_NOFOLLOW,
  S_IFMT,
  S_IFREG,
  S_IFIFO,
  S_IFDIR,
  S_IFCHR,
  S_IFBLK,
  S_IFSOCK,
  R_OK,
  W_OK,
} = constants;

/** Requests answered at once; beyond it the stream stops being read (flow control holds the device). */
const MAX_IN_FLIGHT = 64;
/** Entries lstat'ed between two turns of the event loop while listing a directory. */
const LIST_SLICE = 1024;
const NS = 1_000_000_000n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** statfs f_flags: ST_VALID says the flags mean something, ST_RDONLY a read-only mount. */
const ST_RDONLY = 1;
const ST_VALID = 0x20;

const EEXIST: EntryErrors = { dot: 'EEXIST', dotdot: 'EEXIST', root: 'EEXIST', busy: 'EEXIST' };
const EBUSY: EntryErrors = { dot: 'EBUSY', dotdot: 'EBUSY', root: 'EBUSY', busy: 'EBUSY' };
const EISDIR: EntryErrors = { dot: 'EISDIR', dotdot: 'EISDIR', root: 'EISDIR', busy: 'EISDIR' };
const RMDIR: EntryErrors = { dot: 'EINVAL', dotdot: 'ENOTEMPTY', root: 'EBUSY', busy: 'EBUSY' };

/** Ops that remove or move names: they run alone, so no other request's walk sees a name change. */
const EXCLUSIVE = new Set<ViewRequest['op']>(['rename', 'unlink', 'rmdir']);

/**
 * A readers–writer lock over the host namespace, shared by every ViewServer of this process.
 * A request's walk checks each component is not a symlink and then hands the host path to the
 * kernel; a rename or unlink in between could put a symlink there and send the kernel outside
 * the exported roots. Only removals and renames can swap a checked directory, so they run alone.
 */
class NamespaceLock {
  private readers = 0;
  private writer = false;
  private readonly waiting: { exclusive: boolean; go: () => void }[] = [];

  async run<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    if (this.waiting.length > 0 || this.writer || (exclusive && this.readers > 0)) {
      await new Promise<void>((go) => this.waiting.push({ exclusive, go }));
    } else if (exclusive) this.writer = true;
    else this.readers++;
    try {
      return await fn();
    } finally {
      if (exclusive) this.writer = false;
      else this.readers--;
      this.pump();
    }
  }

  /** Lets waiters in, in order: readers together, a writer alone. */
  private pump(): void {
    while (this.waiting.length > 0 && !this.writer) {
      const next = this.waiting[0]!;
      if (next.exclusive) {
        if (this.readers > 0) return;
        this.writer = true;
      } else this.readers++;
      this.waiting.shift();
      next.go();
    }
  }
}

const namespace = new NamespaceLock();

/** 64-bit host numbers folded into a safe integer (ino, dev beyond 2^53 are rare but real). */
function safe(n: bigint): number {
  return n <= MAX_SAFE ? Number(n) : Number(BigInt.asUintN(53, n ^ (n >> 53n)));
}

function time(ns: bigint): Time {
  const s = ns / NS;
  const r = ns % NS;
  return r < 0n ? [Number(s - 1n), Number(r + NS)] : [Number(s), Number(r)];
}

export function viewStat(st: BigIntStats): ViewStat {
  return {
    dev: safe(st.dev),
    ino: safe(st.ino),
    mode: Number(st.mode),
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    rdev: safe(st.rdev),
    size: Number(st.size),
    blksize: Number(st.blksize),
    blocks: Number(st.blocks),
    atime: time(st.atimeNs),
    mtime: time(st.mtimeNs),
    ctime: time(st.ctimeNs),
  };
}

/** The content's identity: the device's cache keeps content under it. */
export function contentKey(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function glueKey(st: ViewStat): string {
  const ns = (t: Time) => BigInt(t[0]) * NS + BigInt(t[1]);
  return `${st.dev}:${st.ino}:${st.size}:${ns(st.mtime)}:${ns(st.ctime)}`;
}

function viewNode(n: Resolved): ViewNode {
  if (n.where === 'device') return n;
  return { where: 'host', path: n.path, st: n.where === 'glue' ? n.st : viewStat(n.st) };
}

/** The errno name an error stands for; anything else is a fault of ours, reported as EIO. */
function errnoOf(e: unknown): string {
  if (e instanceof ViewError) return e.errno;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  // Node's own argument checks (an out-of-range uid, access mode…) are the kernel's EINVAL.
  if (typeof code === 'string' && code.startsWith('ERR_')) return 'EINVAL';
  return 'EIO';
}

/** DT_* from a mode: the file type bits shifted down are exactly the dirent types. */
const direntType = (mode: number) => (mode >> 12) & 0o17;

async function lstatOrNull(host: string): Promise<BigIntStats | null> {
  try {
    return await lstat(host, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** The error for creating over `e` when the mount is read-only: an existing name wins. */
async function readOnlyCreate(table: ViewTable, e: HostEntry): Promise<never> {
  const there = await withPin(table.pin(e.mount, e.host), (p) => lstatOrNull(p.at));
  throw new ViewError(there ? 'EEXIST' : 'EROFS');
}

/** A trailing slash on a name to create: only a directory may carry one. */
async function slashCreate(table: ViewTable, e: HostEntry): Promise<never> {
  const there = await withPin(table.pin(e.mount, e.host), (p) => lstatOrNull(p.at));
  throw new ViewError(there ? 'EEXIST' : 'ENOENT');
}

/** Runs `fn` on `pin`'s paths and releases it after. */
async function withPin<T>(pin: Pin, fn: (pin: Pin) => T | Promise<T>): Promise<T> {
  try {
    return await fn(pin);
  } finally {
    pin.close();
  }
}

const STRERROR: Record<string, string> = {
  'No such file or directory': 'ENOENT',
  'Permission denied': 'EACCES',
  'Operation not permitted': 'EPERM',
  'File exists': 'EEXIST',
  'Not a directory': 'ENOTDIR',
  'Read-only file system': 'EROFS',
  'No space left on device': 'ENOSPC',
  'Disk quota exceeded': 'EDQUOT',
  'Too many levels of symbolic links': 'ELOOP',
  'File name too long': 'ENAMETOOLONG',
  'Invalid argument': 'EINVAL',
};

/**
 * Runs a coreutils tool for a syscall Node lacks (utimensat with ns, UTIME_NOW and UTIME_OMIT;
 * mkfifo); its C-locale message names the errno.
 */
function tool(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { ...process.env, LC_ALL: 'C' } }, (err, _out, stderr) => {
      if (!err) return resolve();
      const reason = /: ([^:\n]+)\n?$/.exec(stderr)?.[1] ?? '';
      reject(new ViewError(STRERROR[reason] ?? 'EIO'));
    });
  });
}

/** `touch -d` form of a time, exact to the ns (negative times included). */
function stamp([s, ns]: Time): string {
  if (s < 0 && ns > 0) return `@-${-(s + 1)}.${String(1e9 - ns).padStart(9, '0')}`;
  return `@${s}.${String(ns).padStart(9, '0')}`;
}

const sameTime = (a: TimeSpec, b: TimeSpec) =>
  a === b || (Array.isArray(a) && Array.isArray(b) && a[0] === b[0] && a[1] === b[1]);

async function setTimes(host: string, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
  // Whole seconds go through Node exactly; Node's float seconds cannot carry every ns.
  if (Array.isArray(atime) && Array.isArray(mtime) && atime[1] === 0 && mtime[1] === 0) {
    if (atime[0] >= 0 && mtime[0] >= 0) return lutimes(host, atime[0], mtime[0]);
  }
  const touch = (which: string[], t: TimeSpec) =>
    tool('touch', [
      '-c',
      '-h',
      ...which,
      ...(t === 'now' ? [] : ['-d', stamp(t as Time)]),
      '--',
      host,
    ]);
  if (sameTime(atime, mtime)) return touch([], atime);
  if (atime !== 'omit') await touch(['-a'], atime);
  if (mtime !== 'omit') await touch(['-m'], mtime);
}

function hostFlags(flags: readonly string[]): number {
  const write = flags.includes('write');
  let f = O_NOFOLLOW | (write ? (flags.includes('read') ? O_RDWR : O_WRONLY) : O_RDONLY);
  // A writer's O_TRUNC happens with its write-back (the device starts from an empty copy): until
  // then the host file keeps its content, so a run that dies first leaves it as it was.
  if (flags.includes('trunc') && !write) f |= O_TRUNC;
  if (flags.includes('append')) f |= O_APPEND;
  if (flags.includes('directory')) f |= O_DIRECTORY;
  return f;
}

/**
 * A read-only mount (the host's own root, a sysroot) serves the contents of what everybody on
 * the host may read, not what only the client's user may: a client run as root does not hand
 * the device /etc/shadow or another user's 0600 files. Writable trees are the user's own.
 */
function othersMayRead(n: HostNode): boolean {
  return !n.mount.readonly || (n.st.mode & 0o004n) !== 0n;
}

/** What an op yields besides its reply: an open file whose content follows. */
interface Outcome {
  answer: Answer;
  content: { fd: number; size: number } | null;
}

const done = (answer: Answer): Outcome => ({ answer, content: null });

/** Answers view requests for one run from the host's files. */
/** A write-back under way: the new file (null: in place), its final size, bytes written. */
interface Replacement {
  /** The host file's directory, held from the first piece to the rename. */
  pin: Pin;
  tmp: string | null;
  fh: FileHandle;
  size: number;
  written: number;
}

/**
 * New files of write-backs under way in this process: removed at exit too, as the CLI exits at
 * once when its connection is lost.
 */
const unfinished = new Set<string>();
process.once('exit', () => {
  for (const f of unfinished) rmSync(f, { force: true });
});

/**
 * The old file's extended attributes (its ACLs among them) onto its replacement, each one this
 * process may set: a user's own file keeps its user.* ones and ACLs; security.* and trusted.*
 * ones need privileges a client seldom has, and stay behind.
 */
function copyXattrs(from: string, fd: number): void {
  let list: [string, Buffer][];
  try {
    list = xattrs(from);
  } catch {
    // A filesystem without them.
    return;
  }
  for (const [name, value] of list) {
    try {
      setXattr(fd, name, value);
    } catch {
      // Not this process's to set.
    }
  }
}

/**
 * Opens what a write-back of the pinned file (attributes `st`) writes to: a new file beside it,
 * if it may. The pin is the replacement's until it is done or dropped.
 */
async function startReplacement(
  pin: Pin,
  name: string,
  st: BigIntStats,
  size: number,
): Promise<Replacement> {
  const host = pin.at;
  if (st.nlink === 1n) {
    const tmp = `${pin.dir}/.${name}.tether-${randomBytes(6).toString('hex')}`;
    const fh = await open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    unfinished.add(tmp);
    try {
      await fh.chown(Number(st.uid), Number(st.gid));
      await fh.chmod(Number(st.mode & 0o7777n));
      copyXattrs(host, fh.fd);
      return { pin, tmp, fh, size, written: 0 };
    } catch {
      // Not ours to give away (a file of another user we may write): in place after all.
      await fh.close();
      await unlink(tmp);
      unfinished.delete(tmp);
    }
  }
  const fh = await open(host, O_WRONLY | O_NOFOLLOW);
  await fh.truncate(size);
  return { pin, tmp: null, fh, size, written: 0 };
}

export class ViewServer {
  readonly table: ViewTable;
  /** Write-backs under way, by host path. */
  private readonly replacing = new Map<string, Replacement>();

  constructor(mounts: readonly Mount[], hidden: readonly string[] = [], opts: ViewOptions = {}) {
    this.table = new ViewTable(mounts, hidden, opts);
  }

  /**
   * Answers one request: its reply, then for an open with content the chunks. Never throws;
   * a failure is the reply's errno. Stopping the iteration early releases the open file.
   */
  async *handle(req: ViewRequest): AsyncGenerator<ViewReply | ViewChunk, void, undefined> {
    let out: Outcome;
    try {
      out = await namespace.run(EXCLUSIVE.has(req.op), () => this.op(req));
    } catch (e) {
      yield { id: req.id, ok: false, errno: errnoOf(e) };
      return;
    }
    const { answer, content } = out;
    try {
      yield { id: req.id, ...answer };
      if (content) yield* chunks(req.id, content.fd, content.size);
    } finally {
      if (content) closeSync(content.fd);
    }
  }

  /**
   * Serves a run's view stream: reads requests, answers them concurrently, and ends the stream
   * once the device has ended its side and every answer is out. A malformed request or a
   * failed stream rejects, with the stream destroyed.
   */
  async serve(stream: Duplex): Promise<void> {
    try {
      await this.serveRequests(stream);
    } finally {
      // The run is over or its link gone: write-backs cut short leave their files as they were.
      for (const [host, r] of this.replacing) await this.abandon(host, r);
      this.table.close();
    }
  }

  private async serveRequests(stream: Duplex): Promise<void> {
    let drain: Promise<void> | null = null;
    // One listener pair however many answers wait, so no listener limit is reached.
    const drained = () =>
      (drain ??= new Promise<void>((resolve) => {
        const go = () => {
          stream.off('drain', go).off('close', go);
          drain = null;
          resolve();
        };
        stream.on('drain', go).on('close', go);
      }));
    const answer = async (req: ViewRequest) => {
      try {
        for await (const m of this.handle(req)) {
          if (stream.destroyed) return;
          if (!writeMessage(stream, m)) await drained();
        }
      } catch (e) {
        // Content already promised cannot be completed: the device must not cache a torn file.
        stream.destroy(
          new TransportError(ErrorCode.INTERNAL_ERROR, `view ${req.op}: ${(e as Error).message}`),
        );
      }
    };
    const inFlight = new Set<Promise<void>>();
    try {
      for await (const m of new MessageReader(stream)) {
        const req = parseViewRequest(m);
        const task: Promise<void> = answer(req).finally(() => inFlight.delete(task));
        inFlight.add(task);
        if (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      }
    } catch (e) {
      stream.destroy(e as Error);
      await Promise.all(inFlight);
      throw e;
    }
    await Promise.all(inFlight);
    if (!stream.destroyed) stream.end();
  }

  private op(req: ViewRequest): Promise<Outcome> {
    switch (req.op) {
      case 'lookup':
        return this.lookup(req);
      case 'readlink':
        return this.readlink(req);
      case 'readdir':
        return this.readdir(req);
      case 'open':
        return this.open(req);
      case 'write':
        return this.write(req);
      case 'access':
        return this.access(req);
      case 'mkdir':
        return this.mkdir(req);
      case 'mknod':
        return this.mknod(req);
      case 'unlink':
        return this.unlink(req);
      case 'rmdir':
        return this.rmdir(req);
      case 'rename':
        return this.rename(req);
      case 'link':
        return this.link(req);
      case 'symlink':
        return this.symlink(req);
      case 'chmod':
        return this.chmod(req);
      case 'chown':
        return this.chown(req);
      case 'utimens':
        return this.utimens(req);
      case 'truncate':
        return this.truncate(req);
      case 'statfs':
        return this.statfs(req);
    }
  }

  /** A path's node for an op that changes it: read-only mounts and made-up dirs refuse. */
  private async writable(path: string, follow: boolean): Promise<HostNode | string> {
    const n = await this.table.resolve(path, { follow });
    if (n.where === 'device') return n.path;
    if (n.where === 'glue' || n.mount.readonly) throw new ViewError('EROFS');
    return n;
  }

  private async lookup(req: Req<'lookup'>): Promise<Outcome> {
    const n = await this.table.resolve(req.path, req);
    return done({ ok: true, node: viewNode(n.where === 'host' ? this.table.checked(n) : n) });
  }

  private async readlink(req: Req<'readlink'>): Promise<Outcome> {
    const n = await this.table.resolve(req.path, { follow: false });
    if (n.where === 'device') return done({ ok: true, device: n.path });
    if (n.where === 'glue' || !n.st.isSymbolicLink()) throw new ViewError('EINVAL');
    return done({
      ok: true,
      target: await withPin(this.table.pin(n.mount, n.host), (p) => readlinkSync(p.at)),
    });
  }

  private async readdir(req: Req<'readdir'>): Promise<Outcome> {
    const n = await this.table.resolve(req.path, { follow: true });
    if (n.where === 'device') return done({ ok: true, device: n.path });
    if (n.where === 'host' && !othersMayRead(n)) throw new ViewError('EACCES');
    const anchors = this.table.anchorsIn(n.path);
    const entries = n.where === 'glue' ? [] : await listHost(this.table, n, anchors);
    // Mount points show in their directory even where the host has no such name.
    const listed = new Set(entries.map((e) => e.name));
    for (const name of anchors) {
      if (listed.has(name)) continue;
      const path = n.path === '/' ? `/${name}` : `${n.path}/${name}`;
      let node: ViewNode;
      try {
        node = viewNode(await this.table.resolve(path, { follow: false }));
      } catch {
        // A host mount whose directory is gone: nothing to show.
        continue;
      }
      entries.push(
        node.where === 'host'
          ? { name, ino: node.st.ino, type: direntType(node.st.mode) }
          : { name, ino: viewIno(path), type: direntType(S_IFDIR) },
      );
    }
    return done({ ok: true, entries });
  }

  private async open(req: Req<'open'>): Promise<Outcome> {
    const flags = req.flags;
    const write = flags.includes('write');
    const trunc = flags.includes('trunc');
    let n: Resolved;
    if (flags.includes('creat')) {
      if (flags.includes('directory')) throw new ViewError('EINVAL');
      const made = await this.create(req.path, req);
      if (typeof made === 'string') return done({ ok: true, device: made });
      if ('fd' in made) return this.opened(made.path, made.fd, req);
      n = made;
    } else {
      n = await this.table.resolve(req.path, { follow: !flags.includes('nofollow') });
    }
    if (n.where === 'device') return done({ ok: true, device: n.path });
    if (n.where === 'glue') {
      if (write) throw new ViewError('EISDIR');
      return done({ ok: true, node: viewNode(n), key: glueKey(n.st), content: false });
    }
    if (n.st.isSymbolicLink()) {
      throw new ViewError(flags.includes('directory') ? 'ENOTDIR' : 'ELOOP');
    }
    if (n.st.isDirectory() && write) throw new ViewError('EISDIR');
    if (n.mount.readonly && n.st.isFile() && (write || trunc)) throw new ViewError('EROFS');
    if (!othersMayRead(n)) throw new ViewError('EACCES');
    if (!n.st.isFile() && !n.st.isDirectory()) {
      // Fifos, sockets and devices are never opened on the host (a fifo would block, a device
      // is the host's own): permission is all the host can vouch for.
      if (flags.includes('directory')) throw new ViewError('ENOTDIR');
      const read = !write || flags.includes('read');
      const mode = (write ? W_OK : 0) | (read ? R_OK : 0);
      this.table.onEntry(n.mount, n.host, n.st, (path) => accessSync(path, mode));
      return done({ ok: true, node: viewNode(n), key: contentKey(n.st), content: false });
    }
    const fd = this.table.openEntry(n.mount, n.host, hostFlags(flags));
    const st = fstatSync(fd, { bigint: true });
    if (st.dev !== n.st.dev || st.ino !== n.st.ino) {
      // Another file is there than the walk found (swapped meanwhile): as if it had gone.
      closeSync(fd);
      throw new ViewError('ENOENT');
    }
    return this.opened(n.path, fd, req);
  }

  /**
   * Opens `path` with O_CREAT: creates the file (through a dangling symlink too, as the kernel
   * does) or finds what is there. Returns a created file open, an existing node, or a device path.
   */
  private async create(
    path: string,
    req: Req<'open'>,
  ): Promise<{ path: string; fd: number } | Resolved | string> {
    let target = path;
    let to: string;
    for (let links = 0; ; links++) {
      const e = await this.table.resolveParent(target, EISDIR);
      if (e.where === 'device') return e.path;
      if (e.slash) throw new ViewError('EISDIR');
      const pin = this.table.pin(e.mount, e.host);
      try {
        const st = await lstatOrNull(pin.at);
        if (st === null) {
          if (e.mount.readonly) throw new ViewError('EROFS');
          try {
            const flags = hostFlags(req.flags) | O_CREAT | O_EXCL;
            const fd = openSync(pin.at, flags, req.mode & 0o7777);
            // The device applied the program's umask; this process's own must not apply too.
            fchmodSync(fd, req.mode & 0o7777);
            return { path: e.path, fd };
          } catch (err) {
            // Created meanwhile by another request: look again (O_EXCL kept it from being
            // followed).
            if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || req.flags.includes('excl')) {
              throw err;
            }
            continue;
          }
        }
        if (req.flags.includes('excl')) throw new ViewError('EEXIST');
        if (!st.isSymbolicLink()) {
          if (st.isDirectory()) throw new ViewError('EISDIR');
          return { where: 'host', path: e.path, host: e.host, mount: e.mount, st };
        }
        if (req.flags.includes('nofollow')) throw new ViewError('ELOOP');
        if (links >= 40) throw new ViewError('ELOOP');
        to = readlinkSync(pin.at);
      } finally {
        pin.close();
      }
      if (to === '') throw new ViewError('ENOENT');
      target = to.startsWith('/') ? to : `${e.path.slice(0, -e.name.length)}${to}`;
    }
  }

  /** The open reply for a host file now open as `fd`; content follows unless the device has it. */
  private opened(path: string, fd: number, req: Req<'open'>): Outcome {
    try {
      const st = fstatSync(fd, { bigint: true });
      const key = contentKey(st);
      const answer = (content: boolean): Answer => ({
        ok: true,
        node: { where: 'host', path, st: viewStat(st) },
        key,
        content,
      });
      if (!st.isFile() || st.size === 0n || key === req.have || req.flags.includes('trunc')) {
        closeSync(fd);
        return done(answer(false));
      }
      const readable = !req.flags.includes('write') || req.flags.includes('read');
      if (readable) return { answer: answer(true), content: { fd, size: Number(st.size) } };
      // A write-only open reads through a second open of the same file, if the host may read it.
      let src: number;
      try {
        src = openSync(`/proc/self/fd/${fd}`, O_RDONLY);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
        closeSync(fd);
        return done(answer(false));
      }
      closeSync(fd);
      return { answer: answer(true), content: { fd: src, size: Number(st.size) } };
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /**
   * A piece of a write-back: the device sends a file's whole content in order, the first piece
   * with its length as `truncate`. The pieces go to a new file beside the host file, renamed
   * over it after the last one (with its mode and owner), so a write-back that stops half-way
   * (a dropped link, a killed device) leaves the file as it was: never a torn one. A file with
   * other hard links, or one whose owner this client cannot give the new file, is written in
   * place instead (its inode is what other names and open fds share).
   */
  private async write(req: Req<'write'>): Promise<Outcome> {
    const n = await this.writable(req.path, true);
    if (typeof n === 'string') return done({ ok: true, device: n });
    if (n.st.isDirectory()) throw new ViewError('EISDIR');
    if (!n.st.isFile()) throw new ViewError('EINVAL');
    let r = this.replacing.get(n.host);
    if (req.truncate !== null) {
      // A new write-back of the file: one that stopped before is dropped.
      if (r) await this.abandon(n.host, r);
      const pin = this.table.pin(n.mount, n.host);
      try {
        r = await startReplacement(pin, basename(n.host), n.st, req.truncate);
      } catch (e) {
        pin.close();
        throw e;
      }
      this.replacing.set(n.host, r);
    } else if (!r || r.written !== req.offset) {
      // A piece out of order: no write-back of this file is under way from that offset.
      throw new ViewError('EINVAL');
    }
    for (let off = 0; off < req.data.length; ) {
      const at = req.offset + off;
      const { bytesWritten } = await r.fh.write(req.data, off, req.data.length - off, at);
      off += bytesWritten;
    }
    r.written = req.offset + req.data.length;
    if (r.written < r.size) return done({ ok: true });
    this.replacing.delete(n.host);
    const st = await withPin(r.pin, async (pin) => {
      await r.fh.close();
      if (r.tmp !== null) {
        await rename(r.tmp, pin.at);
        unfinished.delete(r.tmp);
      }
      return lstat(pin.at, { bigint: true });
    });
    // The new key lets the device keep its copy as the cached content.
    return done({
      ok: true,
      node: { where: 'host', path: n.path, st: viewStat(st) },
      key: contentKey(st),
      content: false,
    });
  }

  /** Drops a write-back that will not be finished: its new file goes, the host file stays. */
  private async abandon(host: string, r: Replacement): Promise<void> {
    this.replacing.delete(host);
    if (r.tmp !== null) {
      rmSync(r.tmp, { force: true });
      unfinished.delete(r.tmp);
    }
    await r.fh.close().catch(() => {});
    r.pin.close();
  }

  private async access(req: Req<'access'>): Promise<Outcome> {
    const n = await this.table.resolve(req.path, req);
    if (n.where === 'device') return done({ ok: true, device: n.path });
    const w = (req.mode & W_OK) !== 0;
    if (n.where === 'glue') {
      if (w) throw new ViewError('EROFS');
      return done({ ok: true });
    }
    const st = n.st;
    if (w && n.mount.readonly && (st.isFile() || st.isDirectory() || st.isSymbolicLink())) {
      throw new ViewError('EROFS');
    }
    // A symlink itself (not followed) is 0777: the host's access() would follow it instead.
    if (st.isSymbolicLink()) {
      if (req.mode > 7) throw new ViewError('EINVAL');
      return done({ ok: true });
    }
    this.table.onEntry(n.mount, n.host, st, (path) => accessSync(path, req.mode));
    return done({ ok: true });
  }

  private async mkdir(req: Req<'mkdir'>): Promise<Outcome> {
    const e = await this.table.resolveParent(req.path, EEXIST);
    if (e.where === 'device') return done({ ok: true, device: e.path });
    if (e.mount.readonly) return readOnlyCreate(this.table, e);
    await withPin(this.table.pin(e.mount, e.host), (p) => mkdir(p.at, { mode: req.mode & 0o7777 }));
    // The device applied the program's umask; this process's own must not apply too.
    this.table.onEntry(e.mount, e.host, null, (path) => chmodSync(path, req.mode & 0o7777));
    return done({ ok: true, changed: [e.path] });
  }

  private async mknod(req: Req<'mknod'>): Promise<Outcome> {
    // The kernel checks the type before the path.
    const type = req.mode & S_IFMT;
    if (type === S_IFDIR || type === S_IFCHR || type === S_IFBLK || type === S_IFSOCK) {
      throw new ViewError('EPERM');
    }
    if (type !== 0 && type !== S_IFREG && type !== S_IFIFO) throw new ViewError('EINVAL');
    const e = await this.table.resolveParent(req.path, EEXIST);
    if (e.where === 'device') return done({ ok: true, device: e.path });
    if (e.slash) return slashCreate(this.table, e);
    if (e.mount.readonly) return readOnlyCreate(this.table, e);
    const perm = req.mode & 0o7777;
    await withPin(this.table.pin(e.mount, e.host), async (p) => {
      if (type === S_IFIFO) {
        if (await lstatOrNull(p.at)) throw new ViewError('EEXIST');
        // The mode comes with the program's umask applied; mkfifo -m takes it as it is.
        await tool('mkfifo', ['-m', perm.toString(8), '--', p.at]);
        return;
      }
      const fh = await open(p.at, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, perm);
      await fh.chmod(perm);
      await fh.close();
    });
    return done({ ok: true, changed: [e.path] });
  }

  private async unlink(req: Req<'unlink'>): Promise<Outcome> {
    const e = await this.table.resolveParent(req.path, EISDIR);
    if (e.where === 'device') return done({ ok: true, device: e.path });
    if (e.mount.readonly) throw new ViewError('EROFS');
    await withPin(this.table.pin(e.mount, e.host), async (p) => {
      if (e.slash) {
        const st = await lstat(p.at);
        throw new ViewError(st.isDirectory() ? 'EISDIR' : 'ENOTDIR');
      }
      await unlink(p.at);
    });
    return done({ ok: true, changed: [e.path] });
  }

  private async rmdir(req: Req<'rmdir'>): Promise<Outcome> {
    const e = await this.table.resolveParent(req.path, RMDIR);
    if (e.where === 'device') return done({ ok: true, device: e.path });
    if (e.mount.readonly) throw new ViewError('EROFS');
    await withPin(this.table.pin(e.mount, e.host), (p) => rmdir(p.at));
    return done({ ok: true, changed: [e.path] });
  }

  private async rename(req: Req<'rename'>): Promise<Outcome> {
    if (req.noreplace && req.exchange) throw new ViewError('EINVAL');
    const a = await this.table.resolveParent(req.from, EBUSY);
    const b = await this.table.resolveParent(req.to, EBUSY);
    // The reply names one device path; a rename with a side on the device cannot be described.
    if (a.where === 'device' || b.where === 'device' || a.mount !== b.mount) {
      throw new ViewError('EXDEV');
    }
    if (a.mount.readonly) throw new ViewError('EROFS');
    // Node has no renameat2: the exchange cannot be atomic, so it is refused as by a filesystem
    // without RENAME_EXCHANGE.
    if (req.exchange) throw new ViewError('EINVAL');
    await withPin(this.table.pin(a.mount, a.host), (pa) =>
      withPin(this.table.pin(b.mount, b.host), async (pb) => {
        const st = await lstat(pa.at);
        if (!st.isDirectory() && (a.slash || b.slash)) throw new ViewError('ENOTDIR');
        // Under the exclusive lock no other request can create `to` in between.
        if (req.noreplace && (await lstatOrNull(pb.at))) throw new ViewError('EEXIST');
        await rename(pa.at, pb.at);
      }),
    );
    return done({ ok: true, changed: [a.path, b.path] });
  }

  private async link(req: Req<'link'>): Promise<Outcome> {
    const from = await this.table.resolve(req.from, req);
    const to = await this.table.resolveParent(req.to, EEXIST);
    if (from.where === 'device' || to.where === 'device') throw new ViewError('EXDEV');
    if (from.where === 'glue') throw new ViewError('EPERM');
    if (from.mount !== to.mount) throw new ViewError('EXDEV');
    if (to.slash) return slashCreate(this.table, to);
    if (to.mount.readonly) return readOnlyCreate(this.table, to);
    // link(2) does not follow a symlink it is given: the walk's node is what gets the new name.
    await withPin(this.table.pin(from.mount, from.host), (pf) =>
      withPin(this.table.pin(to.mount, to.host), (pt) => link(pf.at, pt.at)),
    );
    return done({ ok: true, changed: [from.path, to.path] });
  }

  private async symlink(req: Req<'symlink'>): Promise<Outcome> {
    const e = await this.table.resolveParent(req.path, EEXIST);
    if (e.where === 'device') return done({ ok: true, device: e.path });
    if (e.slash) return slashCreate(this.table, e);
    if (e.mount.readonly) return readOnlyCreate(this.table, e);
    // The target is kept as given: it is a view path, resolved in the view when followed.
    await withPin(this.table.pin(e.mount, e.host), (p) => symlink(req.target, p.at));
    return done({ ok: true, changed: [e.path] });
  }

  private async chmod(req: Req<'chmod'>): Promise<Outcome> {
    const n = await this.writable(req.path, req.follow);
    if (typeof n === 'string') return done({ ok: true, device: n });
    // Linux cannot change a symlink's mode (fchmodat2 with AT_SYMLINK_NOFOLLOW says so).
    if (n.st.isSymbolicLink()) throw new ViewError('EOPNOTSUPP');
    this.table.onEntry(n.mount, n.host, n.st, (path) => chmodSync(path, req.mode & 0o7777));
    return done({ ok: true, changed: [n.path] });
  }

  private async chown(req: Req<'chown'>): Promise<Outcome> {
    const n = await this.writable(req.path, req.follow);
    if (typeof n === 'string') return done({ ok: true, device: n });
    // lchown: the walk left either a non-link or the link itself to change.
    await withPin(this.table.pin(n.mount, n.host), (p) => lchown(p.at, req.uid, req.gid));
    return done({ ok: true, changed: [n.path] });
  }

  private async utimens(req: Req<'utimens'>): Promise<Outcome> {
    if (req.atime === 'omit' && req.mtime === 'omit') {
      const n = await this.table.resolve(req.path, req);
      return done(n.where === 'device' ? { ok: true, device: n.path } : { ok: true });
    }
    const n = await this.writable(req.path, req.follow);
    if (typeof n === 'string') return done({ ok: true, device: n });
    // lutimes and touch -h: the pinned name is changed, never followed.
    await withPin(this.table.pin(n.mount, n.host), (p) => setTimes(p.at, req.atime, req.mtime));
    return done({ ok: true, changed: [n.path] });
  }

  private async truncate(req: Req<'truncate'>): Promise<Outcome> {
    const n = await this.table.resolve(req.path, { follow: true });
    if (n.where === 'device') return done({ ok: true, device: n.path });
    if (n.where === 'glue' || n.st.isDirectory()) throw new ViewError('EISDIR');
    if (n.mount.readonly) throw new ViewError('EROFS');
    if (!n.st.isFile()) throw new ViewError('EINVAL');
    // truncate(2) needs write permission only; Node's truncate() would open for reading too.
    const fh = await withPin(this.table.pin(n.mount, n.host), (p) =>
      open(p.at, O_WRONLY | O_NOFOLLOW),
    );
    try {
      await fh.truncate(req.size);
    } finally {
      await fh.close();
    }
    return done({ ok: true, changed: [n.path] });
  }

  private async statfs(req: Req<'statfs'>): Promise<Outcome> {
    const n = await this.table.resolve(req.path, { follow: true });
    if (n.where === 'device') return done({ ok: true, device: n.path });
    const host = n.where === 'glue' ? n.mount.host : n.host;
    const s = await withPin(this.table.pin(n.mount, host), (p) => statfs(p.at, { bigint: true }));
    const bsize = Number(s.bsize);
    return done({
      ok: true,
      statfs: {
        type: Number(s.type),
        bsize,
        blocks: Number(s.blocks),
        bfree: Number(s.bfree),
        bavail: Number(s.bavail),
        files: Number(s.files),
        ffree: Number(s.ffree),
        // Node's statfs leaves these out; Linux filesystems use these values.
        namelen: 255,
        frsize: bsize,
        flags: ST_VALID | (n.mount.readonly ? ST_RDONLY : 0),
      },
    });
  }
}

/**
 * A host directory's entries with host inode numbers and their lstat (not for `skip`, the
 * names a mount shows something else at), `.` and `..` left to the device.
 */
async function listHost(
  table: ViewTable,
  n: HostNode,
  skip: ReadonlySet<string>,
): Promise<DirEntry[]> {
  if (!n.st.isDirectory()) throw new ViewError('ENOTDIR');
  return withPin(table.pinDir(n), (pin) => listPinned(pin.dir, skip));
}

async function listPinned(dir: string, skip: ReadonlySet<string>): Promise<DirEntry[]> {
  const names = await readdir(dir);
  const out: DirEntry[] = [];
  // lstat one by one, synchronously: twice the speed of the thread pool for big directories;
  // slices keep the event loop turning for other requests.
  for (let i = 0; i < names.length; i += LIST_SLICE) {
    if (i > 0) await nextTurn();
    for (const name of names.slice(i, i + LIST_SLICE)) {
      let st: BigIntStats | undefined;
      try {
        // Exact times: the device answers stat from these (make compares them).
        st = lstatSync(`${dir}/${name}`, { bigint: true });
      } catch {
        // Removed since the listing: the kernel's listing would not show it either.
        continue;
      }
      if (!st) continue;
      const entry: DirEntry = { name, ino: safe(st.ino), type: direntType(Number(st.mode)) };
      if (!skip.has(name)) entry.st = viewStat(st);
      out.push(entry);
    }
  }
  return out;
}

const readAt = promisify(read);

async function* chunks(id: number, fd: number, size: number): AsyncGenerator<ViewChunk> {
  for (let pos = 0; ; ) {
    // One byte past the expected end: a short read then proves the end without another read.
    const want = Math.min(VIEW_CHUNK, Math.max(size - pos, 0) + 1);
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await readAt(fd, buf, 0, want, pos);
    pos += bytesRead;
    const end = bytesRead < want;
    yield { id, data: buf.subarray(0, bytesRead), end };
    if (end) return;
  }
}
