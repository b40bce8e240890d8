// The view, applied to syscalls: for each trapped call, resolve its paths in the view through
// the client, then either let the kernel run it on a device path (a cached copy, a working
// copy, a placeholder directory, or a device-local mount) or answer it from the host's reply.
import {
  chownSync,
  constants as fsConstants,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  rmdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { AT, OPEN_FLAGS, RENAME } from '../arch/fcntl.ts';
import {
  encodeDirent64,
  encodeStat,
  encodeStatfs,
  encodeStatx,
  type StatKind,
} from '../arch/structs.ts';
import type { Abi as AbiName } from '../arch/syscalls.ts';
import type { FdFile, FdMode } from '../transport/protocol.ts';
import type { OpenFlag, TimeSpec, ViewMount, ViewNode, ViewStat } from '../transport/view.ts';
import type { ContentCache } from './cache.ts';
import { type Walked, walkDevice } from './device-walk.ts';
import type { ExecLinks } from './exec-links.ts';
import { prepareExec } from './exec-view.ts';
import { FastAnswers, plainOpenMask, relativeKey } from './fast-answers.ts';
import type { Logger } from './log.ts';
import * as native from './native.ts';
import { cwdTarget, fdPos, fdTarget, umaskOf } from './procfs.ts';
import { RECENT_MS, RecentAnswers } from './recent-answers.ts';
import { type Action, fail, type Proc, pass, ret, type SyscallStop } from './tracer.ts';
import { type ViewClient, ViewError, type ViewRequestBody } from './view-client.ts';
import type { ViewMemory } from './view-memory.ts';
import { WorkingCopies } from './working-copies.ts';

const E = constants.errno;
const SEEK_SET = 0;
/** Open directory listings kept per run (the oldest goes first; it is fetched again if read). */
const MAX_LISTINGS = 256;
const X_OK = 1;
const S_IFIFO = 0o010000;

/** Syscalls that could reach files behind the view's back and that tether does not redirect. */
export const ENOSYS_CALLS = [
  'openat2',
  'name_to_handle_at',
  'open_by_handle_at',
  'io_uring_setup',
  'chroot',
  'pivot_root',
  'mount',
  'umount2',
  'umount',
  'fanotify_mark',
  'uselib',
  'swapon',
  'swapoff',
  'acct',
  'quotactl',
  'quotactl_fd',
  'open_tree',
  'move_mount',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'mount_setattr',
  'getdents',
  'readdir',
  'oldstat',
  'oldlstat',
  'oldfstat',
  'lookup_dcookie',
] as const;

type Handler = (r: Redirector, s: SyscallStop) => Action | Promise<Action>;

const s32 = (x: bigint) => Number(BigInt.asIntN(32, x));

/** The view state of one run: its client, mounts, caches and device-side files. */
export interface ViewRun {
  client: ViewClient;
  mounts: ViewMount[];
  cache: ContentCache;
  /** A per-run directory on the device for placeholders and working copies. */
  scratch: string;
  /** What the kernel executes for the view's programs. */
  links: ExecLinks;
  memory: ViewMemory;
  /** The run's user: device files the program writes are theirs (-1: the daemon's). */
  owner: { uid: number; gid: number };
  log: Logger;
}

export class Redirector {
  readonly run: ViewRun;
  private readonly dirs = new Map<string, string>();
  private readonly dirPaths = new Map<string, string>();
  private readonly dirRoot: string;
  private standIns = 0;
  /** Placeholders of host directories this run removed: a cwd there is a dead directory. */
  private readonly removed = new Set<string>();
  /**
   * getdents64 listings of placeholder dirs, by pid:fd, fetched when the offset is 0 (or when
   * one read past its start is not here any more) and dropped when read to the end.
   */
  private readonly listings = new Map<string, Buffer[]>();
  readonly work: WorkingCopies;
  /** Unix sockets at host view paths, by view path. */
  private readonly sockets = new Map<string, string>();
  /** FIFOs at host view paths, by view path. */
  private readonly fifos = new Map<string, string>();
  /**
   * Lookups and access checks in writable mounts from the last moment: `ls -l` asks statx,
   * lgetxattr and getxattr about each file, a loop of programs opens the same inputs.
   */
  private readonly recent = new RecentAnswers();
  /** Answers the tracer's wait repeats without JavaScript (daemon/fast-answers.ts). */
  readonly fast = new FastAnswers();
  /** Stops whose answer the fast path may repeat: their key path, view path, mount's kind. */
  private readonly fastFit = new WeakMap<SyscallStop, { key: string; view: string; ro: boolean }>();
  /** Path arguments per stop, for trace logs. */
  private readonly pathsRead = new WeakMap<SyscallStop, string[]>();
  /** The run's process whose first execve starts the program: `tether run` searches as execvp. */
  spawnExec: number | null = null;

  /** Whether this execve is the run's start (once). */
  takeSpawnExec(pid: number): boolean {
    if (this.spawnExec !== pid) return false;
    this.spawnExec = null;
    return true;
  }

  /** The traced process with this pid, if any (set by the session that owns the tracer). */
  procs: (pid: number) => Proc | null = () => null;

  /** What this connection's runs of the same view learned (read-only answers, content keys). */
  private readonly mem: ViewMemory;

  constructor(run: ViewRun) {
    this.run = run;
    this.mem = run.memory;
    this.dirRoot = join(run.scratch, 'dirs');
    mkdirSync(this.dirRoot, { recursive: true });
    this.work = new WorkingCopies(join(run.scratch, 'work'), run.client, run.owner, run.log);
    run.client.gate = () => this.work.inFlight;
    // A write-back renames a new file over the host's: what was learned of the old one is stale
    // (its inode number may come back as another file's).
    // What the C table repeats goes with what it was learned from.
    run.cache.onDrop.add(this.cacheDropped);
    this.recent.onForget = () => this.fast.forgetPassing();
    this.work.onCopy = () => this.fast.forgetPassing();
    this.work.onWrittenBack = (path) => {
      this.recent.forget(path);
      this.mem.haveKey.delete(path);
    };
  }

  private readonly cacheDropped = () => this.fast.clear();

  /** The run is over. */
  close(): void {
    this.run.cache.onDrop.delete(this.cacheDropped);
    this.fast.close();
    this.work.close();
  }

  /** Syscall names to trap per ABI (those with a handler). */
  static traced(): string[] {
    return Object.keys(HANDLERS);
  }

  /**
   * Decides one trapped call. Synchronous whenever the answer is known on the device (a
   * device path, a read-only mount's cached answer), so the tracee is resumed at once.
   */
  onSyscall(s: SyscallStop): Action | Promise<Action> {
    const h = HANDLERS[s.name];
    if (!h) return pass;
    // Write-backs start now; the host gets them before any request this call makes.
    this.work.settleClosed();
    return this.decide(h, s);
  }

  private decide(h: Handler, s: SyscallStop): Action | Promise<Action> {
    let action: Action | Promise<Action>;
    try {
      action = h(this, s);
    } catch (e) {
      action = this.failed(s, e);
    }
    if (action instanceof Promise) {
      return action.then(
        (a) => this.traced(s, a, true),
        (e: unknown) => this.traced(s, this.failed(s, e), true),
      );
    }
    return this.traced(s, action, false);
  }

  /** A ViewError is the program's errno; anything else is a tracer bug, rethrown. */
  private failed(_s: SyscallStop, e: unknown): Action {
    if (!(e instanceof ViewError)) throw e;
    return fail(e.errno);
  }

  private traced(s: SyscallStop, action: Action, waited: boolean): Action {
    const fit = this.fastFit.get(s);
    if (fit?.ro) this.fast.remember(s, fit.key, action, 0);
    else if (fit) {
      // A writable mount's answer holds as long as the one it came from.
      const kind = this.fast.recentKind(s);
      const ttl = kind === null ? 0 : this.recent.left(fit.view, kind);
      if (ttl > 0) this.fast.remember(s, fit.key, action, ttl);
    }
    if (this.run.log.isLevelEnabled('trace')) {
      const a = action.kind === 'return' ? String(action.value) : action.kind;
      const paths = this.pathsRead.get(s);
      this.run.log.trace(
        { pid: s.proc.pid, tid: s.tid, syscall: s.name, paths, action: a, waited },
        'syscall',
      );
    }
    return action;
  }

  /**
   * Marks a stop whose answer only depends on its path as written, so the fast path may
   * repeat it: a path that the walk took as it is (no device directory, no /proc link, no
   * `..` on the way), absolute or relative to a host directory (keyed by the placeholder the
   * kernel has for it); for the rest of the run in a read-only mount, for as long as the
   * answer it came from holds in a writable one.
   */
  fastFits(s: SyscallStop, raw: string, at: Walked): void {
    if (at.kind !== 'view' || !this.fast.covers(s)) return;
    let key: string;
    if (raw.startsWith('/')) {
      if (at.path !== raw) return;
      key = raw;
    } else {
      const rel = relativeKey(raw);
      if (rel === null) return;
      const dirfd = this.fast.dirfd(s);
      const base = dirfd === AT.FDCWD ? s.proc.cwd : this.fdView(s.proc.pid, dirfd);
      if (base === null || at.path !== (base === '/' ? `/${rel}` : `${base}/${rel}`)) return;
      const kernel = dirfd === AT.FDCWD ? cwdTarget(s.tid) : fdTarget(s.proc.pid, dirfd);
      if (kernel === null || !this.dirPaths.has(kernel)) return;
      key = `${kernel}/${rel}`;
    }
    this.fastFit.set(s, { key, view: at.path, ro: this.mountOf(at.path).readonly });
  }

  /**
   * What the lookup found decides the rest: not a symlink from a read-only mount into a
   * writable one (kept only for a moment), not a file this run is writing (its copy's size
   * and times change under it).
   */
  fastFound(s: SyscallStop, node: ViewNode): void {
    const fit = this.fastFit.get(s);
    if (!fit || node.where !== 'host') return;
    const ro = this.mountOf(node.path).readonly;
    if ((fit.ro && !ro) || (!ro && this.work.existing(node.path) !== null)) this.fastFit.delete(s);
  }

  // ---- paths ----

  mountOf(path: string): ViewMount {
    let best: ViewMount | undefined;
    for (const m of this.run.mounts) {
      if (path === m.path || path.startsWith(m.path === '/' ? '/' : `${m.path}/`)) {
        if (!best || m.path.length > best.path.length) best = m;
      }
    }
    return best!;
  }

  /** Whether view path `path` lies in a device mount. */
  private isDevice(path: string): boolean {
    return this.mountOf(path).device;
  }

  /** Whether view path `path` is the device's own (in a device mount, not on a host mount's way). */
  onDevice(path: string): boolean {
    return this.isDevice(path) && !this.isAnchor(path);
  }

  /** Whether `path` is a host mount or a directory the view makes up on the way to one. */
  private isAnchor(path: string): boolean {
    const below = `${path}/`;
    return this.run.mounts.some(
      (m) => !m.device && m.path !== '/' && (m.path === path || m.path.startsWith(below)),
    );
  }

  /**
   * Where (dirfd, raw) of a stop leads (daemon/device-walk.ts): the device's own file, which
   * the kernel resolves from the path as written; a /proc link of a traced process; or a view
   * path. `follow`: whether a final symlink is followed.
   */
  place(s: SyscallStop, dirfd: number, raw: string, follow: boolean): Walked {
    if (dirfd === AT.FDCWD && !raw.startsWith('/') && this.cwdRemoved(s.proc)) {
      // A removed cwd holds nothing, and only `..` leads out of it (to the view parent); the
      // kernel's cwd, the removed placeholder, answers the rest as it would natively.
      const rest = raw.split('/').filter((c) => c !== '' && c !== '.');
      if (rest[0] !== '..') return { kind: 'device', at: null };
      const parent = s.proc.cwd.slice(0, s.proc.cwd.lastIndexOf('/')) || '/';
      return this.walk(`${parent}/${rest.slice(1).join('/')}`, follow, s.proc, s.tid);
    }
    return this.walk(this.absPath(s, dirfd, raw), follow, s.proc, s.tid);
  }

  /** Whether `proc`'s cwd is a host directory this run removed. */
  cwdRemoved(proc: Proc): boolean {
    return proc.cwdStandIn !== undefined && this.removed.has(proc.cwdStandIn);
  }

  /**
   * A host directory this run removed: its placeholder goes too, so the kernel sees a process
   * whose cwd it was in a removed directory (getcwd ENOENT, no name found, `.` still there).
   */
  dirRemoved(path: string): void {
    const key = `d${path}`;
    const d = this.dirs.get(key);
    if (d === undefined) return;
    this.dirs.delete(key);
    this.dirPaths.delete(d);
    try {
      rmdirSync(d);
      this.removed.add(d);
    } catch {
      // Not empty (it never holds anything) or gone: nothing stands in for it any more.
    }
  }

  /** The same for absolute view path `path`, on behalf of traced process `self`. */
  walk(path: string, follow: boolean, self: Proc, tid = self.pid): Walked {
    return walkDevice(path, follow, {
      isDevice: (p) => this.isDevice(p),
      isAnchor: (p) => this.isAnchor(p),
      lstat: deviceType,
      readlink: (p) => readlinkSync(p, 'utf8'),
      pid: self.pid,
      tid,
      procLink: (p, which) => this.procLinkTarget(self, p, which),
    });
  }

  /**
   * The view path /proc/PID/{exe,cwd,root,fd/N} of a traced process stands for, or null when
   * the kernel's link says it (not traced, not a view file).
   */
  procLinkTarget(self: Proc, pid: number, which: string): string | null {
    const proc = pid === self.pid ? self : this.procs(pid);
    if (!proc) return null;
    if (which === 'exe') return proc.exe || null;
    if (which === 'cwd') return proc.cwd;
    if (which === 'root') return '/';
    return this.fdView(pid, Number(which.slice(3)));
  }

  /** The view path a stop's (dirfd, path) names, as written; ViewError for a bad fd. */
  absPath(s: SyscallStop, dirfd: number, p: string): string {
    if (p.startsWith('/')) return p;
    let base: string | null;
    if (dirfd === AT.FDCWD) base = s.proc.cwd;
    else {
      base = this.fdView(s.proc.pid, dirfd);
      if (base === null)
        throw new ViewError(fdTarget(s.proc.pid, dirfd) !== null ? 'ENOTDIR' : 'EBADF');
    }
    return base === '/' ? `/${p}` : `${base}/${p}`;
  }

  /**
   * The preamble of a call with a path argument: path argument `i` as written (ViewError
   * ENOENT when empty, as the kernel says for every call without AT_EMPTY_PATH) and where it
   * leads from `dirfd`.
   */
  placeArg(s: SyscallStop, dirfd: number, i: number, follow: boolean): { raw: string; at: Walked } {
    const raw = this.readPath(s, i);
    if (raw === '') throw new ViewError('ENOENT');
    return { raw, at: this.place(s, dirfd, raw, follow) };
  }

  readPath(s: SyscallStop, i: number): string {
    const b = s.readString(s.args[i]!, 4097);
    if (b === null) throw new ViewError('EFAULT');
    if (b.length > 4096) throw new ViewError('ENAMETOOLONG');
    const p = b.toString('utf8');
    if (this.run.log.isLevelEnabled('trace'))
      this.pathsRead.set(s, [...(this.pathsRead.get(s) ?? []), p]);
    return p;
  }

  /** Replaces path argument i with `path` (written on the tracee's stack). */
  rewrite(
    s: SyscallStop,
    changes: [number, string | bigint][],
    extra?: Map<number, bigint>,
  ): Action {
    const args = extra ?? new Map<number, bigint>();
    for (const [i, v] of changes) {
      args.set(i, typeof v === 'bigint' ? v : s.scratch(Buffer.from(`${v}\0`)));
    }
    return { kind: 'rewrite', args };
  }

  /** The placeholder directory standing for host directory `path` in the kernel. */
  placeholder(path: string): string {
    return this.stand(path, 'd', (d) => mkdirSync(d, { recursive: true, mode: 0o755 }));
  }

  /**
   * An O_PATH stand-in for a view entry that is not a directory: a symlink for a symlink (so
   * O_NOFOLLOW opens it), an empty file otherwise. fstat and exec through its fd reach the
   * view path.
   */
  pathStandIn(path: string, symlink: boolean): string {
    return this.stand(path, symlink ? 'l' : 'f', (d) =>
      symlink ? symlinkSync('/', d) : writeFileSync(d, '', { mode: 0o444 }),
    );
  }

  /** The device file standing for a unix socket at host view path `path`. */
  socketStandIn(path: string): string {
    let d = this.sockets.get(path);
    if (!d) {
      // sun_path is 108 bytes: a short name in the run's own directory of the scratch.
      d = join(this.run.scratch, 'sock', `s${this.sockets.size + 1}`);
      this.sockets.set(path, d);
    }
    return d;
  }

  /**
   * The device FIFO standing for a host FIFO at view path `path`: the run's processes that
   * open it meet there (a host process cannot: the host's FIFO never opens on the device).
   */
  fifoStandIn(path: string, mode: number): string {
    let d = this.fifos.get(path);
    if (!d) {
      d = join(this.run.scratch, `f${this.fifos.size + 1}`);
      native.mkfifo(d, mode & 0o777);
      if (this.run.owner.uid >= 0) chownSync(d, this.run.owner.uid, this.run.owner.gid);
      this.fifos.set(path, d);
    }
    return d;
  }

  /** The stand-in of a socket bound at `path` that still exists, or null. */
  boundSocket(path: string): string | null {
    const d = this.sockets.get(path);
    // lstat: the run user owns sock/ and may have put anything there.
    return d && lstatSync(d, { throwIfNoEntry: false })?.isSocket() ? d : null;
  }

  private stand(path: string, kind: string, make: (d: string) => void): string {
    const key = `${kind}${path}`;
    let d = this.dirs.get(key);
    if (!d) {
      d = join(this.dirRoot, `${kind}${++this.standIns}`);
      make(d);
      this.dirs.set(key, d);
      this.dirPaths.set(d, path);
    }
    return d;
  }

  /** The view path an fd of `pid` refers to, or null when it is not a file of the view. */
  fdView(pid: number, fd: number): string | null {
    const target = fdTarget(pid, fd);
    return target === null ? null : this.deviceToView(target);
  }

  /** Maps a device path the kernel shows back to the view path it stands for. */
  deviceToView(target: string): string | null {
    const dir = this.dirPaths.get(target);
    if (dir !== undefined) return dir;
    const key = this.run.cache.keyOf(target);
    if (key !== null) return this.mem.keyInfo.get(key)?.path ?? null;
    const w = this.work.pathOfCopy(target);
    if (w !== null) return w;
    if (target.startsWith('/') && this.mountOf(target).device) return target;
    return null;
  }

  /** The view directory an fd's placeholder stands for, or null. */
  fdDir(pid: number, fd: number): string | null {
    const target = fdTarget(pid, fd);
    if (target === null) return null;
    return this.dirs.get(`d${this.dirPaths.get(target)}`) === target
      ? this.dirPaths.get(target)!
      : null;
  }

  /** Host attributes for an fd, when it is a view file the device holds a copy of. */
  fdStat(pid: number, fd: number): { st: ViewStat } | { path: string } | null {
    const target = fdTarget(pid, fd);
    if (target === null) return null;
    const key = this.run.cache.keyOf(target);
    if (key !== null) {
      const info = this.mem.keyInfo.get(key);
      return info ? { st: info.st } : null;
    }
    const dir = this.dirPaths.get(target);
    if (dir !== undefined) return { path: dir };
    const w = this.work.pathOfCopy(target);
    if (w !== null) return { path: w };
    return null;
  }

  /** A read-only mount's remembered answer for key `k` (throws its errno), or undefined. */
  private roHit(path: string, k: string): ViewNode | undefined {
    if (!this.mountOf(path).readonly) return undefined;
    const hit = this.mem.roLookups.get(k);
    if (typeof hit === 'string') throw new ViewError(hit);
    return hit;
  }

  lookup(path: string, follow: boolean): ViewNode | Promise<ViewNode> {
    const kind = follow ? 'f' : 'n';
    const k = `${kind}${path}`;
    const hit = this.roHit(path, k);
    if (hit) return hit;
    const recent = this.recent.get(path, kind);
    // A miss is remembered as briefly as a hit (make and configure probe many names).
    if (typeof recent === 'string') throw new ViewError(recent);
    if (typeof recent === 'object') return this.work.overlay(recent);
    if (this.roAbsent(path)) {
      this.mem.roLookups.set(k, 'ENOENT');
      throw new ViewError('ENOENT');
    }
    return this.fetchLookup(path, follow, k);
  }

  /**
   * Whether a read-only mount's directory, listed whole in this connection, shows that
   * `path` is not in it: ENOENT without asking the host.
   */
  private roAbsent(path: string): boolean {
    const i = path.lastIndexOf('/');
    const dir = path.slice(0, i) || '/';
    const names = this.mem.roListings.get(dir);
    if (!names || names.has(path.slice(i + 1))) return false;
    const m = this.mountOf(path);
    return m.readonly && m === this.mountOf(dir) && !this.isAnchor(path);
  }

  /** What an open told about `path` and the file it names: later lookups need no round trip. */
  opened(path: string, follow: boolean, node: ViewNode): void {
    if (node.where !== 'host' || this.mountOf(node.path).readonly) return;
    if (node.path !== path) this.recent.forget(node.path);
    this.recent.setNode(path, follow, node);
    if (node.path !== path) this.recent.setNode(node.path, false, node);
  }

  /**
   * A change this run makes through the view: what it may have made stale is forgotten, under
   * the paths the program named and the canonical paths the host changed (`rm link/x` changes
   * dir/x when link points to dir).
   */
  changed(req: ViewRequestBody, canonical: string[] = []): void {
    // A rename moves, a mode or owner change guards, everything below a directory.
    const subtree = req.op === 'rename' || req.op === 'chmod' || req.op === 'chown';
    const named =
      req.op === 'rename' || req.op === 'link'
        ? [req.from, req.to]
        : 'path' in req
          ? [req.path]
          : [];
    for (const p of [...named, ...canonical]) this.recent.forget(p, subtree);
  }

  private async fetchLookup(path: string, follow: boolean, k: string): Promise<ViewNode> {
    const ro = this.mountOf(path).readonly;
    try {
      const node = await this.run.client.lookup(path, follow);
      if (ro && (node.where === 'device' || this.mountOf(node.path).readonly))
        this.mem.roLookups.set(k, node);
      else this.recent.setNode(path, follow, node);
      return this.work.overlay(node);
    } catch (e) {
      if (e instanceof ViewError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) {
        if (ro) this.mem.roLookups.set(k, e.code);
        else this.recent.set(path, follow ? 'f' : 'n', e.code);
      }
      throw e;
    }
  }

  /**
   * access(2) on a view path: the host decides; a read-only mount's answers are kept for the
   * run, as its lookups are (a dynamic loader probes the same paths in every program).
   */
  access(
    path: string,
    mode: number,
    follow: boolean,
  ): 0 | { device: string } | Promise<0 | { device: string }> {
    const kind = `a${mode}${follow ? 'f' : 'n'}`;
    const k = `${mode}${follow ? 'f' : 'n'}${path}`;
    const ro = this.mountOf(path).readonly;
    const hit = ro ? this.mem.roAccess.get(k) : this.recent.get(path, kind);
    if (typeof hit === 'string') throw new ViewError(hit);
    if (hit === 0 || (ro && hit !== undefined)) return hit as 0 | { device: string };
    return this.run.client.simple({ op: 'access', path, mode, follow }).then(
      (res) => {
        const answer = res ?? 0;
        if (ro) this.mem.roAccess.set(k, answer);
        else if (answer === 0) this.recent.set(path, kind, 0);
        return answer;
      },
      (e: unknown) => {
        if (e instanceof ViewError) {
          if (ro) this.mem.roAccess.set(k, e.code);
          else this.recent.set(path, kind, e.code);
        }
        throw e;
      },
    );
  }

  /** A remembered readlink target of a read-only mount, or the host's answer. */
  readlink(path: string): string | { device: string } | Promise<string | { device: string }> {
    const k = `l${path}`;
    const ro = this.mountOf(path).readonly;
    if (ro) {
      const hit = this.mem.roTargets.get(k);
      if (hit !== undefined) return hit;
      const err = this.mem.roLookups.get(k);
      if (typeof err === 'string') throw new ViewError(err);
    }
    return this.run.client.readlink(path).then(
      (t) => {
        if (ro) this.mem.roTargets.set(k, t);
        return t;
      },
      (e: unknown) => {
        if (ro && e instanceof ViewError) this.mem.roLookups.set(k, e.code);
        throw e;
      },
    );
  }

  /**
   * Opens view file `file` for a program fd the client handed over (`5>>log`): its device
   * copy, opened by the daemon with the fd's direction and offset, for the child to inherit.
   */
  async openFdFile(file: FdFile, mode: FdMode): Promise<number> {
    const names: OpenFlag[] =
      mode === 'r' ? ['read'] : mode === 'w' ? ['write'] : ['read', 'write'];
    if (file.append) names.push('append');
    let device: string;
    if (mode === 'r') {
      const c = await this.cached(file.path);
      if (c.node.where === 'device') device = c.node.path;
      else if (c.file === null) throw new ViewError('ENXIO');
      else device = this.work.existing(c.node.path) ?? c.file;
    } else {
      const res = await this.run.client.open({
        op: 'open',
        path: file.path,
        flags: names,
        mode: 0,
        have: null,
      });
      if ('device' in res) device = res.device;
      else if (res.node.where === 'device') device = res.node.path;
      else {
        const content = res.content ? await res.content : null;
        device = await this.work.open(res.node, content, this.run.cache, res.key);
      }
    }
    const F = fsConstants;
    const acc = mode === 'r' ? F.O_RDONLY : mode === 'w' ? F.O_WRONLY : F.O_RDWR;
    // Node opens close-on-exec; spawn's dup2 into the child's fd map clears that there.
    const fd = openSync(device, acc | (file.append ? F.O_APPEND : 0));
    if (!file.append) native.lseek(fd, file.offset);
    return fd;
  }

  /** A read-only mount's cached open of `path`, without asking the host; undefined if none. */
  cachedHit(path: string): { node: ViewNode; file: string | null } | undefined {
    if (!this.mountOf(path).readonly) return undefined;
    const hit = this.mem.roLookups.get(`o${path}`);
    if (typeof hit === 'string') throw new ViewError(hit);
    if (!hit) return undefined;
    if (hit.where !== 'host') return { node: hit, file: null };
    const key = this.mem.haveKey.get(hit.path);
    const file = key ? this.run.cache.get(key) : null;
    if (!file) return undefined;
    this.run.cache.served(true);
    return { node: hit, file };
  }

  /** Opens a host file for reading through the cache: the device path of its content. */
  async cached(
    path: string,
    extraFlags: OpenFlag[] = [],
  ): Promise<{ node: ViewNode; file: string | null }> {
    const ro = this.mountOf(path).readonly;
    const k = `o${path}`;
    if (ro && extraFlags.length === 0) {
      const hit = this.mem.roLookups.get(k);
      if (typeof hit === 'string') throw new ViewError(hit);
      if (hit && hit.where === 'host') {
        const key = this.mem.haveKey.get(hit.path);
        const file = key ? this.run.cache.get(key) : null;
        if (file) {
          this.run.cache.served(true);
          return { node: hit, file };
        }
      }
    }
    if (!ro && extraFlags.length === 0) {
      const known = this.knownContent(path);
      if (known) {
        this.run.cache.served(true);
        return known;
      }
    }
    let have = this.mem.haveKey.get(path) ?? null;
    if (have && !this.run.cache.get(have)) have = null;
    let r: Awaited<ReturnType<ViewClient['open']>>;
    try {
      r = await this.run.client.open({
        op: 'open',
        path,
        flags: ['read', ...extraFlags],
        mode: 0,
        have,
      });
    } catch (e) {
      // Only a plain open's answer stands for the path (O_DIRECTORY makes a file ENOTDIR).
      const plain = extraFlags.length === 0;
      if (ro && plain && e instanceof ViewError && (e.code === 'ENOENT' || e.code === 'ENOTDIR'))
        this.mem.roLookups.set(k, e.code);
      throw e;
    }
    if ('device' in r) return { node: { where: 'device', path: r.device }, file: null };
    const { node, key } = r;
    if (node.where !== 'host' || (node.st.mode & 0o170000) !== 0o100000)
      return { node, file: null };
    let file = this.run.cache.get(key);
    if (!file) {
      const content = r.content ? await r.content : node.st.size === 0 ? Buffer.alloc(0) : null;
      if (content === null) {
        // We offered a key the cache has since lost: ask again without it.
        this.mem.haveKey.delete(path);
        return this.cached(path, extraFlags);
      }
      file = this.run.cache.put(key, content);
      this.run.cache.served(false);
    } else this.run.cache.served(true);
    this.mem.haveKey.set(path, key);
    this.mem.haveKey.set(node.path, key);
    this.mem.keyInfo.set(key, { path: node.path, st: node.st });
    if (ro && extraFlags.length === 0) this.mem.roLookups.set(k, node);
    else if (extraFlags.length === 0) this.opened(path, true, node);
    return { node, file };
  }

  /**
   * The cached content of a writable mount's file, when a recent lookup shows the host file
   * as it was when that content was fetched (same inode, size, mtime and ctime).
   */
  private knownContent(path: string): { node: ViewNode; file: string } | null {
    const node = this.recent.node(path, true);
    if (node?.where !== 'host' || (node.st.mode & 0o170000) !== 0o100000) return null;
    const key = this.mem.haveKey.get(node.path);
    const info = key === undefined ? undefined : this.mem.keyInfo.get(key);
    if (!info || !sameVersion(info.st, node.st)) return null;
    const file = this.run.cache.get(key!);
    return file ? { node, file } : null;
  }

  stKind(s: SyscallStop): StatKind {
    return s.name.endsWith('64') ? 'stat64' : 'stat';
  }

  writeStat(s: SyscallStop, buf: bigint, st: ViewStat, kind: StatKind): Action {
    const b = encodeStat(s.abi.name, kind, st);
    if (b === 'EOVERFLOW') return fail(E.EOVERFLOW);
    s.writeMem(buf, b);
    return ret(0);
  }

  async listing(s: SyscallStop, fd: number, path: string): Promise<Buffer[]> {
    const k = `${s.proc.pid}:${fd}`;
    const pos = fdPos(s.proc.pid, fd);
    let list = this.listings.get(k);
    if (pos === 0 || !list) {
      const node = await this.lookup(path, true);
      const entries = await this.run.client.readdir(path);
      if (!Array.isArray(entries)) throw new ViewError('EIO');
      const ino = node.where === 'host' ? node.st.ino : 0;
      // The walk that listed it stats every entry next: it has the answers already.
      const at = performance.now();
      const ro = this.mountOf(path).readonly;
      if (ro) this.mem.roListings.set(path, new Set(entries.map((e) => e.name)));
      for (const e of entries) {
        if (!e.st) continue;
        const child = path === '/' ? `/${e.name}` : `${path}/${e.name}`;
        const node: ViewNode = { where: 'host', path: child, st: e.st };
        // A read-only mount's entry is what a lookup would say for the rest of the run.
        if (ro) this.roListed(child, node);
        else {
          this.recent.setNode(child, false, node, at);
          if (this.fastFill(child)) {
            const ttl = Math.floor(at + RECENT_MS - performance.now());
            for (const k of this.fastKeys(path, e.name)) this.fast.prefill(k, e.st, ttl);
          }
        }
      }
      list = [
        encodeDirent64(ino, 1, 4, '.'),
        encodeDirent64(ino, 2, 4, '..'),
        ...entries.map((e, i) => encodeDirent64(e.ino, i + 3, e.type, e.name)),
      ];
      if (this.listings.size >= MAX_LISTINGS)
        this.listings.delete(this.listings.keys().next().value!);
      this.listings.set(k, list);
    }
    return list;
  }

  /**
   * The keys the fast path may see entry `name` of host directory `dir` under: its view path,
   * and its path relative to every directory on the way that has a placeholder (a program's
   * cwd or an open directory fd).
   */
  private fastKeys(dir: string, name: string): string[] {
    const keys = [dir === '/' ? `/${name}` : `${dir}/${name}`];
    for (let a = dir; ; a = a.slice(0, a.lastIndexOf('/')) || '/') {
      const p = this.dirs.get(`d${a}`);
      const below = a === '/' ? (dir === '/' ? '' : dir) : dir.slice(a.length);
      if (p !== undefined) keys.push(`${p}${below}/${name}`);
      if (a === '/') break;
    }
    return keys;
  }

  /** Whether a listed entry's answers may go to the fast path ahead of any call. */
  private fastFill(child: string): boolean {
    return !this.isDevice(child) && !this.isAnchor(child) && this.work.existing(child) === null;
  }

  /** An entry of a read-only directory's listing: a lookup's answer, and the fast path's. */
  private roListed(child: string, node: ViewNode & { where: 'host' }): void {
    if (!this.mountOf(child).readonly || !this.fastFill(child)) return;
    const link = (node.st.mode & 0o170000) === 0o120000;
    if (!this.mem.roLookups.has(`n${child}`)) this.mem.roLookups.set(`n${child}`, node);
    if (!link && !this.mem.roLookups.has(`f${child}`)) this.mem.roLookups.set(`f${child}`, node);
    const name = child.slice(child.lastIndexOf('/') + 1);
    for (const k of this.fastKeys(child.slice(0, child.lastIndexOf('/')) || '/', name))
      this.fast.prefill(k, node.st, 0);
  }

  /** A listing read to its end: a reader that starts over gets a fresh one. */
  listingDone(pid: number, fd: number): void {
    this.listings.delete(`${pid}:${fd}`);
  }
}

function flagNames(abi: AbiName, flags: number): OpenFlag[] {
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

// ---- handlers ----

function doOpen(
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

async function doOpenAsync(
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

/** Whether two host attributes describe the same version of the same file. */
function sameVersion(a: ViewStat, b: ViewStat): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtime[0] === b.mtime[0] &&
    a.mtime[1] === b.mtime[1] &&
    a.ctime[0] === b.ctime[0] &&
    a.ctime[1] === b.ctime[1]
  );
}

/** f(v) now when v is known, else when it arrives. */
function then<T>(
  v: T | Promise<T>,
  f: (v: T) => Action | Promise<Action>,
): Action | Promise<Action> {
  return v instanceof Promise ? v.then(f) : f(v);
}

function doStat(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  follow: boolean,
  emptyPath: boolean,
  write: (st: ViewStat) => Action,
): Action | Promise<Action> {
  const raw = r.readPath(s, pathIdx);
  if (raw === '') {
    if (!emptyPath) return fail(E.ENOENT);
    return fdStatAction(r, s, dirfd, write);
  }
  const at = r.place(s, dirfd, raw, follow);
  if (at.kind !== 'view') return pass;
  // A socket this run bound at a host path is on the device only.
  const socket = r.boundSocket(at.path);
  if (socket !== null) return r.rewrite(s, [[pathIdx, socket]]);
  r.fastFits(s, raw, at);
  return then(r.lookup(at.path, follow), (node) => {
    if (node.where === 'device') return r.rewrite(s, [[pathIdx, node.path]]);
    r.fastFound(s, node);
    return write(node.st);
  });
}

function fdStatAction(
  r: Redirector,
  s: SyscallStop,
  fd: number,
  write: (st: ViewStat) => Action,
): Action | Promise<Action> {
  const f = r.fdStat(s.proc.pid, fd);
  if (f === null) return pass;
  if ('st' in f) return write(f.st);
  return then(r.lookup(f.path, false), (node) => (node.where === 'host' ? write(node.st) : pass));
}

async function doSimple(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  body: (path: string) => ViewRequestBody,
  /** Whether the op follows a final symlink (chmod does, unlink does not). */
  follow = false,
): Promise<Action> {
  const { at } = r.placeArg(s, dirfd, pathIdx, follow);
  if (at.kind !== 'view') return pass;
  const b = body(at.path);
  const res = await r.run.client.change(b);
  if (!Array.isArray(res)) return r.rewrite(s, [[pathIdx, res.device]]);
  r.work.afterChange(b, res);
  r.changed(b, res);
  if (b.op === 'rmdir') for (const p of res) r.dirRemoved(p);
  return ret(0);
}

async function doTwo(
  r: Redirector,
  s: SyscallStop,
  from: [number, number],
  to: [number, number],
  body: (from: string, to: string) => ViewRequestBody,
): Promise<Action> {
  const rawFrom = r.readPath(s, from[1]);
  const rawTo = r.readPath(s, to[1]);
  if (rawFrom === '' || rawTo === '') return fail(E.ENOENT);
  const pa = r.place(s, from[0], rawFrom, false);
  const pb = r.place(s, to[0], rawTo, false);
  if (pa.kind !== 'view' && pb.kind !== 'view') return pass;
  if (pa.kind !== 'view' || pb.kind !== 'view') return fail(E.EXDEV);
  const req = body(pa.path, pb.path);
  const res = await r.run.client.change(req);
  if (!Array.isArray(res)) return fail(E.EXDEV);
  r.work.afterChange(req, res);
  r.changed(req, res);
  return ret(0);
}

function doReadlink(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  bufIdx: number,
): Action | Promise<Action> {
  const raw = r.readPath(s, pathIdx);
  if (raw === '') return fail(E.ENOENT);
  const size = s32(s.args[bufIdx + 1]!);
  if (size <= 0) return fail(E.EINVAL);
  const at = r.place(s, dirfd, raw, false);
  let target: string | { device: string } | Promise<string | { device: string }>;
  if (at.kind === 'device') return pass;
  if (at.kind === 'magic') {
    // A /proc link of a traced process says the view path it stands for.
    const t = r.procLinkTarget(s.proc, at.pid, at.which);
    if (t === null) return pass;
    target = t;
  } else {
    r.fastFits(s, raw, at);
    target = r.readlink(at.path);
  }
  return then(target, (t) => {
    if (typeof t !== 'string') return r.rewrite(s, [[pathIdx, t.device]]);
    const bytes = Buffer.from(t).subarray(0, size);
    s.writeMem(s.args[bufIdx]!, bytes);
    return ret(bytes.length);
  });
}

async function doChdir(r: Redirector, s: SyscallStop): Promise<Action> {
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

/** What the device has at `path`, not following a final symlink; null when nothing (or no way). */
function deviceType(p: string): 'dir' | 'link' | 'other' | null {
  try {
    const st = lstatSync(p);
    return st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : 'other';
  } catch {
    return null;
  }
}

function safeStat(p: string) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

function statHandler(kind: 'path' | 'lpath' | 'at' | 'fd'): Handler {
  return (r, s) => {
    const k = r.stKind(s);
    const bufIdx = kind === 'at' ? 2 : 1;
    const write = (st: ViewStat) => r.writeStat(s, s.args[bufIdx]!, st, k);
    if (kind === 'fd') return fdStatAction(r, s, s32(s.args[0]!), write);
    if (kind === 'at') {
      const flags = s32(s.args[3]!);
      return doStat(
        r,
        s,
        s32(s.args[0]!),
        1,
        !(flags & AT.SYMLINK_NOFOLLOW),
        !!(flags & AT.EMPTY_PATH),
        write,
      );
    }
    return doStat(r, s, AT.FDCWD, 0, kind === 'path', false, write);
  };
}

const statx: Handler = (r, s) => {
  const flags = s32(s.args[2]!);
  const write = (st: ViewStat) => {
    s.writeMem(s.args[4]!, encodeStatx(st));
    return ret(0);
  };
  return doStat(
    r,
    s,
    s32(s.args[0]!),
    1,
    !(flags & AT.SYMLINK_NOFOLLOW),
    !!(flags & AT.EMPTY_PATH),
    write,
  );
};

function accessHandler(at: boolean, withFlags: boolean): Handler {
  return (r, s) => {
    const o = at ? 1 : 0;
    const mode = s32(s.args[o + 1]!) & 7;
    const flags = withFlags ? s32(s.args[3]!) : 0;
    const follow = !(flags & AT.SYMLINK_NOFOLLOW);
    const { raw, at: where } = r.placeArg(s, at ? s32(s.args[0]!) : AT.FDCWD, o, follow);
    if (where.kind !== 'view') return pass;
    r.fastFits(s, raw, where);
    return then(r.access(where.path, mode, follow), (res) =>
      res === 0 ? ret(0) : r.rewrite(s, [[o, res.device]]),
    );
  };
}

function xattrPath(follow: boolean, kind: 'get' | 'list' | 'set' | 'remove'): Handler {
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

const execHandler =
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

const getdents64: Handler = async (r, s) => {
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

const getcwd: Handler = (r, s) => {
  // A device directory is the kernel's cwd too: it answers (a removed one with ENOENT).
  if (r.onDevice(s.proc.cwd) || r.cwdRemoved(s.proc)) return pass;
  const b = Buffer.from(`${s.proc.cwd}\0`);
  const size = Number(s.args[1]!);
  if (size < b.length) return fail(E.ERANGE);
  s.writeMem(s.args[0]!, b);
  return ret(b.length);
};

const fchdir: Handler = (r, s) => {
  const v = r.fdView(s.proc.pid, s32(s.args[0]!));
  if (v !== null) {
    s.proc.cwd = v;
    const target = fdTarget(s.proc.pid, s32(s.args[0]!));
    s.proc.cwdStandIn = target !== null && target !== v ? target : undefined;
  }
  return pass;
};

const statfs: Handler = async (r, s) => {
  const { at } = r.placeArg(s, AT.FDCWD, 0, true);
  if (at.kind !== 'view') return pass;
  const res = await r.run.client.statfs(at.path);
  if ('device' in res) return r.rewrite(s, [[0, res.device]]);
  const is64 = s.name === 'statfs64';
  const b = encodeStatfs(s.abi.name, is64 ? 'statfs64' : 'statfs', res);
  if (b === 'EOVERFLOW') return fail(E.EOVERFLOW);
  s.writeMem(s.args[is64 ? 2 : 1]!, b);
  return ret(0);
};

const AF_UNIX = 1;
/** sizeof(sockaddr_un.sun_path). */
const SUN_PATH = 108;

/**
 * bind/connect on a unix socket path. A socket file can only live on the device, so a view
 * path that is the host's gets a device stand-in, the same for every bind and connect of the
 * run; device paths go to the kernel as written (a relative name near sun_path's 108 bytes
 * still fits).
 */
const unixSocket: Handler = (r, s) => {
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

const inotifyAdd: Handler = async (r, s) => {
  const { at } = r.placeArg(s, AT.FDCWD, 1, true);
  if (at.kind !== 'view') return pass;
  await r.lookup(at.path, true);
  // Host files cannot be watched from the device: the "no more watches" answer makes tools
  // such as tail -f fall back to polling.
  return fail(E.ENOSPC);
};

const mkdirH =
  (at: boolean): Handler =>
  (r, s) => {
    const o = at ? 1 : 0;
    const mode = s32(s.args[o + 1]!) & 0o7777 & ~umaskOf(s.tid);
    return doSimple(r, s, at ? s32(s.args[0]!) : AT.FDCWD, o, (path) => ({
      op: 'mkdir',
      path,
      mode,
    }));
  };

const mknodH =
  (at: boolean): Handler =>
  (r, s) => {
    const o = at ? 1 : 0;
    const mode = s32(s.args[o + 1]!) & ~umaskOf(s.tid);
    return doSimple(r, s, at ? s32(s.args[0]!) : AT.FDCWD, o, (path) => ({
      op: 'mknod',
      path,
      mode,
    }));
  };

const unlinkH =
  (kind: 'unlink' | 'rmdir' | 'at'): Handler =>
  (r, s) => {
    const at = kind === 'at';
    const op = at ? (s32(s.args[2]!) & AT.REMOVEDIR ? 'rmdir' : 'unlink') : kind;
    const dirfd = at ? s32(s.args[0]!) : AT.FDCWD;
    const idx = at ? 1 : 0;
    if (op === 'unlink') {
      // A socket this run bound at a host path lives on the device: remove that.
      const standIn = r.boundSocket(r.absPath(s, dirfd, r.readPath(s, idx)));
      if (standIn !== null) return r.rewrite(s, [[idx, standIn]]);
    }
    return doSimple(r, s, dirfd, idx, (path) => ({ op, path }));
  };

const renameH =
  (kind: 'rename' | 'renameat' | 'renameat2'): Handler =>
  (r, s) => {
    const flags = kind === 'renameat2' ? s32(s.args[4]!) : 0;
    if (flags & ~(RENAME.NOREPLACE | RENAME.EXCHANGE)) return fail(E.EINVAL);
    const at = kind !== 'rename';
    const from: [number, number] = at ? [s32(s.args[0]!), 1] : [AT.FDCWD, 0];
    const to: [number, number] = at ? [s32(s.args[2]!), 3] : [AT.FDCWD, 1];
    return doTwo(r, s, from, to, (a, b) => ({
      op: 'rename',
      from: a,
      to: b,
      noreplace: !!(flags & RENAME.NOREPLACE),
      exchange: !!(flags & RENAME.EXCHANGE),
    }));
  };

const linkH =
  (at: boolean): Handler =>
  (r, s) => {
    const flags = at ? s32(s.args[4]!) : 0;
    const from: [number, number] = at ? [s32(s.args[0]!), 1] : [AT.FDCWD, 0];
    const to: [number, number] = at ? [s32(s.args[2]!), 3] : [AT.FDCWD, 1];
    return doTwo(r, s, from, to, (a, b) => ({
      op: 'link',
      from: a,
      to: b,
      follow: !!(flags & AT.SYMLINK_FOLLOW),
    }));
  };

const symlinkH =
  (at: boolean): Handler =>
  (r, s) => {
    const target = s.readString(s.args[0]!, 4097);
    if (target === null) return fail(E.EFAULT);
    if (target.length === 0) return fail(E.ENOENT);
    const t = target.toString('utf8');
    return doSimple(r, s, at ? s32(s.args[1]!) : AT.FDCWD, at ? 2 : 1, (path) => ({
      op: 'symlink',
      target: t,
      path,
    }));
  };

const chmodH =
  (kind: 'chmod' | 'fchmodat' | 'fchmodat2'): Handler =>
  (r, s) => {
    const at = kind !== 'chmod';
    const mode = s32(s.args[at ? 2 : 1]!) & 0o7777;
    const flags = kind === 'fchmodat2' ? s32(s.args[3]!) : 0;
    const follow = !(flags & AT.SYMLINK_NOFOLLOW);
    return doSimple(
      r,
      s,
      at ? s32(s.args[0]!) : AT.FDCWD,
      at ? 1 : 0,
      (path) => ({ op: 'chmod', path, mode, follow }),
      follow,
    );
  };

const chownH =
  (kind: 'chown' | 'lchown' | 'fchownat'): Handler =>
  (r, s) => {
    const at = kind === 'fchownat';
    const o = at ? 1 : 0;
    const flags = at ? s32(s.args[4]!) : 0;
    const follow = kind === 'chown' || (at && !(flags & AT.SYMLINK_NOFOLLOW));
    return doSimple(
      r,
      s,
      at ? s32(s.args[0]!) : AT.FDCWD,
      o,
      (path) => ({
        op: 'chown',
        path,
        uid: s32(s.args[o + 1]!),
        gid: s32(s.args[o + 2]!),
        follow,
      }),
      follow,
    );
  };

const UTIME_NOW = (1 << 30) - 1;
const UTIME_OMIT = (1 << 30) - 2;

/**
 * utimensat, and utimensat_time64 (32-bit ABIs; glibc uses it for times past 2038): its
 * struct __kernel_timespec has 64-bit seconds, and a 32-bit kernel reads only the low half of
 * its 64-bit tv_nsec.
 */
const utimensatH =
  (time64: boolean): Handler =>
  (r, s) => {
    const flags = s32(s.args[3]!);
    const ptr = s.args[2]!;
    const field = time64 ? 8 : s.abi.wordSize;
    let times: [TimeSpec, TimeSpec] = ['now', 'now'];
    if (ptr !== 0n) {
      const b = s.readMem(ptr, 4 * field);
      if (b.length < 4 * field) return fail(E.EFAULT);
      const sec = (i: number) =>
        field === 8 ? Number(b.readBigInt64LE(16 * i)) : b.readInt32LE(8 * i);
      const nsec = (i: number) =>
        field === 8 && s.abi.wordSize === 8
          ? Number(b.readBigInt64LE(16 * i + 8))
          : b.readInt32LE(2 * field * i + field);
      times = [timeOf(sec(0), nsec(0)), timeOf(sec(1), nsec(1))];
    }
    return setTimes(r, s, s32(s.args[0]!), 1, times, !(flags & AT.SYMLINK_NOFOLLOW));
  };

/**
 * utimes, futimesat and utime, the calls before utimensat (x86_64, i386, arm): two struct
 * timeval (word-sized seconds and microseconds) or one struct utimbuf (two word-sized seconds);
 * NULL sets both times to now. Done as utimensat with the same times, following symlinks.
 */
const oldTimesH =
  (kind: 'utimes' | 'futimesat' | 'utime'): Handler =>
  (r, s) => {
    const pathIdx = kind === 'futimesat' ? 1 : 0;
    const ptr = s.args[pathIdx + 1]!;
    const w = s.abi.wordSize;
    let times: [TimeSpec, TimeSpec] = ['now', 'now'];
    if (ptr !== 0n) {
      const words = kind === 'utime' ? 2 : 4;
      const b = s.readMem(ptr, words * w);
      if (b.length < words * w) return fail(E.EFAULT);
      const word = (i: number) =>
        w === 8 ? Number(b.readBigInt64LE(8 * i)) : b.readInt32LE(4 * i);
      if (kind === 'utime')
        times = [
          [word(0), 0],
          [word(1), 0],
        ];
      else {
        if ([word(1), word(3)].some((us) => us < 0 || us > 999_999)) return fail(E.EINVAL);
        times = [
          [word(0), word(1) * 1000],
          [word(2), word(3) * 1000],
        ];
      }
    }
    const dirfd = kind === 'futimesat' ? s32(s.args[0]!) : AT.FDCWD;
    return setTimes(r, s, dirfd, pathIdx, times, true);
  };

/**
 * The times of the file at (dirfd, path argument `pathIdx`) go to the host. A NULL path of the
 * *at forms (utimensat, futimesat) names the file of fd `dirfd` instead, as futimens does.
 */
function setTimes(
  r: Redirector,
  s: SyscallStop,
  dirfd: number,
  pathIdx: number,
  times: [TimeSpec, TimeSpec],
  follow: boolean,
): Action | Promise<Action> {
  const body = (path: string, follow: boolean): ViewRequestBody => ({
    op: 'utimens',
    path,
    atime: times[0],
    mtime: times[1],
    follow,
  });
  if (pathIdx === 1 && s.args[1] === 0n) return fdMeta(r, s, (path) => body(path, true));
  return doSimple(r, s, dirfd, pathIdx, (path) => body(path, follow), follow);
}

function timeOf(sec: number, nsec: number): TimeSpec {
  if (nsec === UTIME_NOW) return 'now';
  if (nsec === UTIME_OMIT) return 'omit';
  return [sec, nsec];
}

/**
 * truncate's length is a long; truncate64's (32-bit ABIs) is 64 bits in a register pair, low
 * word first: arguments 1–2 on i386, 2–3 on arm (EABI starts a pair at an even register).
 */
const truncateH =
  (pair: boolean): Handler =>
  (r, s) => {
    const lo = s.abi.name === 'arm' ? 2 : 1;
    const len = pair
      ? BigInt.asIntN(64, (s.args[lo + 1]! << 32n) | s.args[lo]!)
      : BigInt.asIntN(8 * s.abi.wordSize, s.args[1]!);
    const size = Number(len);
    if (size < 0) return fail(E.EINVAL);
    return doSimple(r, s, AT.FDCWD, 0, (path) => ({ op: 'truncate', path, size }), true);
  };

/**
 * fchmod/fchown/futimens on a view file: the host file changes (after pending writes are
 * written back, so its times stay as set); a copy's own metadata does not matter.
 */
function fdMeta(
  r: Redirector,
  s: SyscallStop,
  body: (path: string) => ViewRequestBody,
): Action | Promise<Action> {
  const fd = s32(s.args[0]!);
  const f = r.fdStat(s.proc.pid, fd);
  if (f === null) return pass;
  const path = 'path' in f ? f.path : r.fdView(s.proc.pid, fd);
  if (path === null) return pass;
  return (async () => {
    await r.work.flushFd(s.proc.pid, fd);
    const req = body(path);
    const res = await r.run.client.change(req);
    r.changed(req, Array.isArray(res) ? res : []);
    r.work.afterFdChange(s.proc.pid, fd, req);
    return ret(0);
  })();
}

/** Extended attributes of a view file through its fd: as for paths, there are none. */
function xattrFd(kind: 'get' | 'list' | 'set' | 'remove'): Handler {
  return (r, s) => {
    if (r.fdStat(s.proc.pid, s32(s.args[0]!)) === null) return pass;
    if (kind === 'list') return ret(0);
    return fail(kind === 'get' ? E.ENODATA : E.EOPNOTSUPP);
  };
}

const fchmod: Handler = (r, s) => {
  const mode = s32(s.args[1]!) & 0o7777;
  return fdMeta(r, s, (path) => ({ op: 'chmod', path, mode, follow: true }));
};

const fchown: Handler = (r, s) =>
  fdMeta(r, s, (path) => ({
    op: 'chown',
    path,
    uid: s32(s.args[1]!),
    gid: s32(s.args[2]!),
    follow: true,
  }));

const fsync: Handler = async (r, s) => {
  await r.work.flushFd(s.proc.pid, s32(s.args[0]!));
  return pass;
};

const HANDLERS: Record<string, Handler> = {
  open: (r, s) => doOpen(r, s, AT.FDCWD, 0, s32(s.args[1]!), s32(s.args[2]!), 1),
  openat: (r, s) => doOpen(r, s, s32(s.args[0]!), 1, s32(s.args[2]!), s32(s.args[3]!), 2),
  creat: (r, s) => {
    const F = OPEN_FLAGS[s.abi.name];
    return doOpen(r, s, AT.FDCWD, 0, F.O_CREAT | F.O_WRONLY | F.O_TRUNC, s32(s.args[1]!), null);
  },
  stat: statHandler('path'),
  lstat: statHandler('lpath'),
  fstat: statHandler('fd'),
  stat64: statHandler('path'),
  lstat64: statHandler('lpath'),
  fstat64: statHandler('fd'),
  newfstatat: statHandler('at'),
  fstatat64: statHandler('at'),
  statx,
  access: accessHandler(false, false),
  faccessat: accessHandler(true, false),
  faccessat2: accessHandler(true, true),
  readlink: (r, s) => doReadlink(r, s, AT.FDCWD, 0, 1),
  readlinkat: (r, s) => doReadlink(r, s, s32(s.args[0]!), 1, 2),
  getdents64,
  chdir: doChdir,
  fchdir,
  getcwd,
  execve: execHandler(false),
  execveat: execHandler(true),
  mkdir: mkdirH(false),
  mkdirat: mkdirH(true),
  mknod: mknodH(false),
  mknodat: mknodH(true),
  unlink: unlinkH('unlink'),
  rmdir: unlinkH('rmdir'),
  unlinkat: unlinkH('at'),
  rename: renameH('rename'),
  renameat: renameH('renameat'),
  renameat2: renameH('renameat2'),
  link: linkH(false),
  linkat: linkH(true),
  symlink: symlinkH(false),
  symlinkat: symlinkH(true),
  chmod: chmodH('chmod'),
  fchmodat: chmodH('fchmodat'),
  fchmodat2: chmodH('fchmodat2'),
  chown: chownH('chown'),
  lchown: chownH('lchown'),
  chown32: chownH('chown'),
  lchown32: chownH('lchown'),
  fchownat: chownH('fchownat'),
  utimensat: utimensatH(false),
  utimensat_time64: utimensatH(true),
  utimes: oldTimesH('utimes'),
  futimesat: oldTimesH('futimesat'),
  utime: oldTimesH('utime'),
  truncate: truncateH(false),
  truncate64: truncateH(true),
  statfs,
  statfs64: statfs,
  getxattr: xattrPath(true, 'get'),
  lgetxattr: xattrPath(false, 'get'),
  listxattr: xattrPath(true, 'list'),
  llistxattr: xattrPath(false, 'list'),
  setxattr: xattrPath(true, 'set'),
  lsetxattr: xattrPath(false, 'set'),
  removexattr: xattrPath(true, 'remove'),
  lremovexattr: xattrPath(false, 'remove'),
  inotify_add_watch: inotifyAdd,
  bind: unixSocket,
  connect: unixSocket,
  fsync,
  fdatasync: fsync,
  fchmod,
  fchown,
  fgetxattr: xattrFd('get'),
  flistxattr: xattrFd('list'),
  fsetxattr: xattrFd('set'),
  fremovexattr: xattrFd('remove'),
  fchown32: fchown,
};
