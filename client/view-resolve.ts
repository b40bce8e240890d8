// Path resolution inside the view: a path is walked one component at a time
// from the view's root, each host file lstat'ed under its mount, and every
// symlink and `..` is followed in the view, never by the host's kernel. So
// no answer can name a host file outside an exported root (the host mounts).
// The walk's host calls are synchronous: a few µs each on a local disk, six
// times cheaper than a trip through the thread pool, and a lookup is what
// most of a program's trapped syscalls wait for. What the walk checked can be
// changed by another process before it is used, so every use goes through a
// Pin: the entry's directory held open and checked to be the one walked.
import {
  type BigIntStats,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readlinkSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { posix } from 'node:path';
import type { ViewStat } from '../transport/view.ts';
import { TetherError } from './errors.ts';
import { openBeneath } from './native.ts';

/** A host directory (or file) shown at `path` in the view. */
export interface HostMount {
  path: string;
  /** Absolute host path: an exported root. */
  host: string;
  readonly: boolean;
}

/** A path whose files are the device's own (/proc, /dev, /tmp…). */
export interface DeviceMount {
  path: string;
  device: true;
}

export type Mount = HostMount | DeviceMount;

/** An error the view answers with: an errno name, as the kernel would give it. */
export class ViewError extends Error {
  readonly errno: string;
  constructor(errno: string) {
    super(errno);
    this.name = 'ViewError';
    this.errno = errno;
  }
}

/** A host file inside an exported root; `st` is its lstat (stat for a mount's root). */
export interface HostNode {
  where: 'host';
  path: string;
  host: string;
  mount: HostMount;
  st: BigIntStats;
}

/**
 * A directory on the way to a mount point that the host lacks (or has as a non-directory):
 * the view makes it up, holding only the mounts below it. No host file is behind it.
 */
export interface GlueNode {
  where: 'glue';
  path: string;
  mount: HostMount;
  st: ViewStat;
}

/** The path leads into a device mount: the device resolves `path` itself. */
export interface DeviceNode {
  where: 'device';
  path: string;
}

export type Resolved = HostNode | GlueNode | DeviceNode;

/** The last component of a path, named in its resolved directory, not looked up. */
export interface HostEntry {
  where: 'entry';
  /** Canonical view path of the entry. */
  path: string;
  name: string;
  /** The path ended with a slash (the entry must be a directory). */
  slash: boolean;
  host: string;
  mount: HostMount;
}

export type ResolvedEntry = HostEntry | DeviceNode;

/**
 * What an op answers, after its directory resolved, when the last component is `.`, `..`, the
 * root itself, or an entry the view holds (a mount point or a directory leading to one).
 */
export interface EntryErrors {
  dot: string;
  dotdot: string;
  root: string;
  busy: string;
}

/** A host call's failure as the view's: its errno name. */
function hostError(e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? new ViewError(code) : e;
}

/** open(2)'s O_PATH (the generic value, as on x86 and arm); Node's constants lack it. */
export const O_PATH = 0o10000000;

/**
 * A host entry reached through its directory held open, for one operation: `at` names the
 * entry, `dir` the directory, both through /proc/PID/fd (a child process may use them too), so
 * the kernel starts from the directory the walk checked, whatever is renamed or swapped on the
 * way meanwhile. The last component is looked up then: ops that follow it must not.
 */
export class Pin {
  readonly dir: string;
  readonly at: string;
  private readonly fd: number;

  constructor(fd: number, name: string | null) {
    this.fd = fd;
    this.dir = `/proc/${process.pid}/fd/${fd}`;
    this.at = `${this.dir}/${name ?? '.'}`;
  }

  /** The held directory's lstat. */
  stat(): BigIntStats {
    return fstatSync(this.fd, { bigint: true });
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** The kernel's MAXSYMLINKS: links followed in one resolution. */
const MAXSYMLINKS = 40;

const S_IFDIR = 0o040000;
/** The longest path a reply may carry (the protocol's, as the kernel's PATH_MAX). */
const PATH_MAX = 4096;

function components(path: string): string[] {
  const out = path.split('/').filter((c) => c !== '');
  // A trailing slash asks for a directory, as a trailing `.` does.
  if (out.length > 0 && path.endsWith('/')) out.push('.');
  return out;
}

const join = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);

function hostPath(m: HostMount, path: string): string {
  if (path === m.path) return m.host;
  const rest = m.path === '/' ? path : path.slice(m.path.length);
  return m.host === '/' ? rest : m.host + rest;
}

function normalise(path: string): string {
  if (!path.startsWith('/')) throw new TetherError(`view: ${path} is not an absolute path`);
  const p = posix.normalize(path);
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/**
 * A stable inode number for a directory the host cannot number (made-up ones, device mount
 * points in a listing): FNV-1a of the view path, 52 bits so it stays a safe integer.
 */
export function viewIno(path: string): number {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(path)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return Number(h >> 12n);
}

const isDir = (n: HostNode | GlueNode) => n.where === 'glue' || n.st.isDirectory();

interface Step {
  path: string;
  /** null for the root until it is needed. */
  node: HostNode | GlueNode | null;
}

export interface ViewOptions {
  openat2?: boolean;
}

/** A run's mount table and the resolution of view paths against it. */
export class ViewTable {
  /** Longest path first, so the first match is the longest prefix. */
  readonly mounts: readonly Mount[];
  /** Mount paths and every directory on the way to one: entries the view holds. */
  private readonly anchors = new Set<string>();
  /** Directory → names of the anchors in it. */
  private readonly children = new Map<string, Set<string>>();
  private readonly born: [number, number];

  /** Host paths never served (view-config.ts hiddenPaths): EACCES at them and below. */
  private readonly hidden: readonly string[];
  /** Real paths of the mounts' roots: a root may be reached through host symlinks. */
  private readonly realRoots = new Map<HostMount, string>();
  /** Each host mount's root, held open (O_PATH) while the table serves: openat2's anchor. */
  private readonly rootFds = new Map<HostMount, number>();
  /** Whether this kernel has openat2 (5.6+); found out on first use. */
  private beneath: boolean | null = null;

  /**
   * `openat2: false` takes the way kernels before 5.6 get (the open checked through
   * /proc/self/fd), for tests on kernels that have openat2.
   */
  constructor(mounts: readonly Mount[], hidden: readonly string[] = [], opts: ViewOptions = {}) {
    this.hidden = hidden;
    if (opts.openat2 === false) this.beneath = false;
    const seen = new Set<string>();
    const list: Mount[] = mounts.map((m) => {
      const path = normalise(m.path);
      if (seen.has(path)) throw new TetherError(`view: ${path} is mounted twice`);
      seen.add(path);
      if ('device' in m) return { path, device: true };
      if (!posix.isAbsolute(m.host)) throw new TetherError(`view: ${m.host} is not absolute`);
      return { path, host: normalise(m.host), readonly: m.readonly };
    });
    if (!seen.has('/')) throw new TetherError('view: nothing is mounted at /');
    this.mounts = list.sort((a, b) => b.path.length - a.path.length);
    for (const m of this.mounts) {
      for (let p = m.path; p !== '/'; p = posix.dirname(p)) {
        this.anchors.add(p);
        const dir = posix.dirname(p);
        const names = this.children.get(dir) ?? new Set();
        this.children.set(dir, names.add(posix.basename(p)));
      }
    }
    const now = Date.now();
    this.born = [Math.floor(now / 1000), (now % 1000) * 1e6];
  }

  private realOf(m: HostMount, host: string): string {
    let r = this.realRoots.get(m);
    if (r === undefined) {
      r = realpathSync(m.host);
      this.realRoots.set(m, r);
    }
    return host === m.host ? r : posix.join(r, host.slice(m.host.length));
  }

  private isHidden(host: string): boolean {
    return this.hidden.some((h) => host === h || host.startsWith(`${h}/`));
  }

  /** Lets go of the mount roots (a later request opens them again). */
  close(): void {
    for (const fd of this.rootFds.values()) closeSync(fd);
    this.rootFds.clear();
  }

  private rootFd(m: HostMount): number {
    let fd = this.rootFds.get(m);
    if (fd === undefined) {
      fd = openSync(m.host, O_PATH | constants.O_DIRECTORY);
      this.rootFds.set(m, fd);
    }
    return fd;
  }

  /**
   * Opens host path `host` of mount `m`, as a walk found it, without following any symlink on
   * the way (nor the last one: `flags` has O_NOFOLLOW) and never above the mount's root:
   * openat2 from the held root; where the kernel lacks it, an open checked afterwards through
   * /proc/self/fd to have reached that very path below the root's real path. Either way a
   * directory swapped for a symlink since the walk fails (ELOOP, ENOENT) instead of leading
   * outside the root.
   */
  openEntry(m: HostMount, host: string, flags: number, mode = 0): number {
    try {
      if (this.isHidden(this.realOf(m, host))) throw new ViewError('EACCES');
      if (this.beneath !== false) {
        const rel = host === m.host ? '.' : host.slice(m.host === '/' ? 1 : m.host.length + 1);
        try {
          const fd = openBeneath(this.rootFd(m), rel, flags, mode);
          this.beneath = true;
          return fd;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSYS') throw e;
          this.beneath = false;
        }
      }
      // Checked after the fact: only opens without side effects come this way (O_PATH ones).
      const fd = openSync(host, flags | O_PATH, mode);
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`) !== this.realOf(m, host)) {
          throw new ViewError('ENOENT');
        }
      } catch (e) {
        closeSync(fd);
        throw e;
      }
      if ((flags & O_PATH) !== 0) return fd;
      // Opened again through the checked one, with the flags asked for: as O_NOFOLLOW would,
      // a symlink there is ELOOP; the magic link itself must be followed.
      try {
        if (fstatSync(fd).isSymbolicLink()) throw new ViewError('ELOOP');
        return openSync(`/proc/self/fd/${fd}`, flags & ~constants.O_NOFOLLOW, mode);
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      throw hostError(e);
    }
  }

  private hold(m: HostMount, dir: string): number {
    return this.openEntry(m, dir, O_PATH | constants.O_DIRECTORY);
  }

  /** Pins the host entry `host` of mount `m`, as a walk found it, for one operation. */
  pin(m: HostMount, host: string): Pin {
    if (host === m.host) return new Pin(this.hold(m, host), null);
    return new Pin(this.hold(m, posix.dirname(host)), posix.basename(host));
  }

  /** Pins directory `n` itself; ENOENT if another directory is there now. */
  pinDir(n: HostNode): Pin {
    const pin = new Pin(this.hold(n.mount, n.host), null);
    const st = pin.stat();
    if (st.dev !== n.st.dev || st.ino !== n.st.ino) {
      pin.close();
      throw new ViewError('ENOENT');
    }
    return pin;
  }

  /**
   * Runs `fn` on the entry openEntry reaches, through /proc/self/fd of an O_PATH fd of it, so
   * a call that follows links (chmod, access) acts on that very inode. ENOENT if it is not
   * `st`'s inode (swapped since the walk), or, without `st`, if it is a symlink.
   */
  onEntry<T>(
    m: HostMount,
    host: string,
    st: BigIntStats | null,
    fn: (path: string, now: BigIntStats) => T,
  ): T {
    const fd = this.openEntry(m, host, O_PATH | constants.O_NOFOLLOW);
    try {
      const now = fstatSync(fd, { bigint: true });
      if (st ? now.dev !== st.dev || now.ino !== st.ino : now.isSymbolicLink())
        throw new ViewError('ENOENT');
      return fn(`/proc/self/fd/${fd}`, now);
    } finally {
      closeSync(fd);
    }
  }

  /** `n` with its lstat taken again from the file openEntry reaches: only one inside answers. */
  checked(n: HostNode): HostNode {
    return this.onEntry(n.mount, n.host, n.st, (_, st) => ({ ...n, st }));
  }

  mountOf(path: string): Mount {
    for (const m of this.mounts) {
      if (m.path === '/' || path === m.path || path.startsWith(`${m.path}/`)) return m;
    }
    throw new ViewError('ENOENT');
  }

  /** Names the view adds to the directory at `path` (mount points and the way to them). */
  anchorsIn(path: string): ReadonlySet<string> {
    return this.children.get(path) ?? new Set();
  }

  /** Resolves `path`; `follow` says whether a final symlink is followed. */
  async resolve(path: string, { follow }: { follow: boolean }): Promise<Resolved> {
    let n: Resolved;
    try {
      n = this.walk(path, follow);
    } catch (e) {
      throw hostError(e);
    }
    // Links can make a path longer than any reply may carry.
    if (n.path.length > PATH_MAX) throw new ViewError('ENAMETOOLONG');
    return n;
  }

  /**
   * Resolves the directory of `path` and names its last component without looking it up, for
   * ops on the entry itself (create, remove, rename). Throws `errs` for the names those ops
   * cannot act on.
   */
  async resolveParent(path: string, errs: EntryErrors): Promise<ResolvedEntry> {
    const comps = path.split('/').filter((c) => c !== '');
    const name = comps.pop() ?? '';
    const slash = name !== '' && path.endsWith('/');
    const dir = await this.resolve(`/${comps.join('/')}`, { follow: true });
    if (dir.where === 'device') {
      const device = join(dir.path, name) + (slash ? '/' : '');
      if (device.length > PATH_MAX) throw new ViewError('ENAMETOOLONG');
      return { where: 'device', path: device };
    }
    if (!isDir(dir)) throw new ViewError('ENOTDIR');
    if (name === '') throw new ViewError(errs.root);
    if (name === '.') throw new ViewError(errs.dot);
    if (name === '..') throw new ViewError(errs.dotdot);
    const p = join(dir.path, name);
    if (p.length > PATH_MAX) throw new ViewError('ENAMETOOLONG');
    const m = this.mountOf(p);
    if ('device' in m) return { where: 'device', path: p + (slash ? '/' : '') };
    if (this.anchors.has(p)) throw new ViewError(errs.busy);
    // A made-up directory holds nothing but its anchors.
    if (dir.where === 'glue') throw new ViewError('EROFS');
    return { where: 'entry', path: p, name, slash, host: hostPath(m, p), mount: m };
  }

  private glue(path: string, mount: HostMount): GlueNode {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const t = this.born;
    const st: ViewStat = {
      dev: 0,
      ino: viewIno(path),
      mode: S_IFDIR | 0o555,
      nlink: 2,
      uid,
      gid,
      rdev: 0,
      size: 0,
      blksize: 4096,
      blocks: 0,
      atime: t,
      mtime: t,
      ctime: t,
    };
    return { where: 'glue', path, mount, st };
  }

  /** The entry at canonical view path `path`, not following a final symlink. */
  private visit(path: string): Resolved {
    const m = this.mountOf(path);
    if ('device' in m) return { where: 'device', path };
    const host = hostPath(m, path);
    if (this.isHidden(host)) throw new ViewError('EACCES');
    // A mount's root is the exported directory itself: the host's own symlinks lead to it.
    const glue = this.anchors.has(path) && path !== m.path;
    try {
      const st = (path === m.path ? statSync : lstatSync)(host, { bigint: true });
      if (!glue || st.isDirectory()) return { where: 'host', path, host, mount: m, st };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (!glue || (code !== 'ENOENT' && code !== 'ENOTDIR')) throw e;
    }
    return this.glue(path, m);
  }

  private anyHostMount(): HostMount {
    const m = this.mounts.find((x) => !('device' in x));
    if (!m) throw new ViewError('ENOENT');
    return m as HostMount;
  }

  /** A host mount at or below `dir/name`, when `dir/name` is on the way to one. */
  private hostMountBelow(dir: string, name: string | undefined): HostMount | null {
    if (name === undefined || name === '.' || name === '..') return null;
    const p = join(dir, name);
    if (!this.anchors.has(p)) return null;
    for (const m of this.mounts) {
      if (!('device' in m) && (m.path === p || m.path.startsWith(`${p}/`))) return m;
    }
    return null;
  }

  private walk(path: string, follow: boolean): Resolved {
    // Components still to walk, the next one last.
    const todo = components(path).reverse();
    const steps: Step[] = [{ path: '/', node: null }];
    let links = 0;
    for (let c = todo.pop(); c !== undefined; c = todo.pop()) {
      const cur = steps[steps.length - 1]!;
      if (cur.node && !isDir(cur.node)) throw new ViewError('ENOTDIR');
      if (c === '.') continue;
      if (c === '..') {
        // `..` steps in the view: at the root it stays, out of a mount it goes to the view parent.
        if (steps.length > 1) steps.pop();
        continue;
      }
      const next = join(cur.path, c);
      if (cur.node?.where === 'glue' && !this.anchors.has(next)) {
        // Off the way to a host mount inside a device mount: the device's own file again.
        if ('device' in this.mountOf(cur.path)) {
          // `..` is taken lexically in the device's directories, so it cannot leave the view.
          if (todo.includes('..')) {
            steps.push({ path: next, node: this.glue(next, cur.node.mount) });
            continue;
          }
          return {
            where: 'device',
            path: [next, ...todo.filter((x) => x !== '.').reverse()].join('/'),
          };
        }
        throw new ViewError('ENOENT');
      }
      let node = this.visit(next);
      // A device directory on the way to a host mount (/tmp/b of a bind at /tmp/b/tree) is the
      // view's own, as a mount point's parents are: made up, holding the way on.
      if (node.where === 'device' && this.anchors.has(next) && this.mountOf(next).path !== next)
        node = this.glue(next, this.hostMountBelow(posix.dirname(next), posix.basename(next))!);
      if (node.where === 'device') {
        // A host mount deeper inside a device mount (a build tree under /tmp) is still the
        // host's: walk through the device directories on the way to it.
        const rest = todo.filter((x) => x !== '.');
        const below = this.hostMountBelow(next, rest[rest.length - 1]);
        // A `..` may climb back out of the device mount: keep walking in the view.
        if (below || rest.includes('..')) {
          steps.push({ path: next, node: this.glue(next, below ?? this.anyHostMount()) });
          continue;
        }
        return { where: 'device', path: [next, ...rest.reverse()].join('/') };
      }
      if (node.where === 'host' && node.st.isSymbolicLink() && (follow || todo.length > 0)) {
        if (++links > MAXSYMLINKS) throw new ViewError('ELOOP');
        const target = readlinkSync(node.host);
        if (target === '') throw new ViewError('ENOENT');
        // Absolute targets start again at the view's root, never the host's.
        if (target.startsWith('/')) steps.length = 1;
        todo.push(...components(target).reverse());
        continue;
      }
      steps.push({ path: next, node });
    }
    return steps[steps.length - 1]!.node ?? this.visit('/');
  }
}
