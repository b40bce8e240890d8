// One run's view state, shared by the handlers of ./index.ts: where a path leads (device walk,
// mounts, placeholders and stand-ins), what the run remembers about host paths (read-only
// memory, recent answers, the fast path's table), listings, and the dispatch of each stop.
import {
  chownSync,
  constants as fsConstants,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  rmdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { AT } from '../../arch/fcntl.ts';
import { encodeDirent64, encodeStat, type StatKind } from '../../arch/structs.ts';
import type { FdFile, FdMode } from '../../transport/protocol.ts';
import type { OpenFlag, ViewMount, ViewNode, ViewStat } from '../../transport/view.ts';
import type { ContentCache } from '../cache.ts';
import { type Walked, walkDevice } from '../device-walk.ts';
import type { ExecLinks } from '../exec-links.ts';
import { FastAnswers, relativeKey } from '../fast-answers.ts';
import type { Logger } from '../log.ts';
import * as native from '../native.ts';
import { cwdTarget, fdPos, fdTarget } from '../procfs.ts';
import { RECENT_MS, RecentAnswers, sameVersion } from '../recent-answers.ts';
import { type Action, fail, type Proc, pass, ret, type SyscallStop } from '../syscall-stop.ts';
import { type ViewClient, ViewError, type ViewRequestBody } from '../view-client.ts';
import type { ViewMemory } from '../view-memory.ts';
import { WorkingCopies } from '../working-copies.ts';
import { E, type Handler } from './handler.ts';
import { HANDLERS } from './index.ts';

/** Open directory listings kept per run (the oldest goes first; it is fetched again if read). */
const MAX_LISTINGS = 256;

/** A listing's entries, to be answered ahead by the fast path (Redirector.fillListed). */
interface PendingFill {
  prefixes: string[];
  at: number;
  entries: { name: string; st: ViewStat; ro: boolean }[];
}

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
  /** Listed directories whose entries go to the fast path once one is asked about. */
  private readonly pendingFills = new Map<string, PendingFill>();
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
    if (fit) this.fillListed(fit.view);
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
      // `..`, `.` and `//` are handed to the host as written: not keys the table keeps.
      if (at.path !== raw || (raw !== '/' && relativeKey(raw.slice(1)) !== raw.slice(1))) return;
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

  /** A read-only mount's remembered lookup (throws its errno), or undefined. */
  private roHit(path: string, follow: boolean): ViewNode | undefined {
    if (!this.mountOf(path).readonly) return undefined;
    const hit = this.mem.roLookups(follow).get(path);
    if (typeof hit === 'string') throw new ViewError(hit);
    return hit;
  }

  lookup(path: string, follow: boolean): ViewNode | Promise<ViewNode> {
    const kind = follow ? 'f' : 'n';
    const hit = this.roHit(path, follow);
    if (hit) return hit;
    const recent = this.recent.get(path, kind);
    // A miss is remembered as briefly as a hit (make and configure probe many names).
    if (typeof recent === 'string') throw new ViewError(recent);
    if (typeof recent === 'object') return this.work.overlay(recent);
    if (this.roAbsent(path)) {
      this.mem.roLookups(follow).set(path, 'ENOENT');
      throw new ViewError('ENOENT');
    }
    return this.fetchLookup(path, follow);
  }

  /**
   * Whether a read-only mount's directory, listed whole in this connection, shows that
   * `path` is not in it: ENOENT without asking the host.
   */
  private roAbsent(path: string): boolean {
    // Only a plain name: `d/`, `d/.` and `d/..` are handed over as written and name `d`.
    if (path !== '/' && relativeKey(path.slice(1)) !== path.slice(1)) return false;
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

  private async fetchLookup(path: string, follow: boolean): Promise<ViewNode> {
    const ro = this.mountOf(path).readonly;
    try {
      const node = await this.run.client.lookup(path, follow);
      if (ro && (node.where === 'device' || this.mountOf(node.path).readonly))
        this.mem.roLookups(follow).set(path, node);
      else this.recent.setNode(path, follow, node);
      return this.work.overlay(node);
    } catch (e) {
      if (e instanceof ViewError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) {
        if (ro) this.mem.roLookups(follow).set(path, e.code);
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
    const how = `${mode}${follow ? 'f' : 'n'}`;
    const kind = `a${how}`;
    const ro = this.mountOf(path).readonly;
    const keep = (answer: 0 | { device: string } | string) => {
      const byPath = this.mem.roAccess.get(path);
      if (byPath) byPath.set(how, answer);
      else this.mem.roAccess.set(path, new Map([[how, answer]]));
    };
    const hit = ro ? this.mem.roAccess.get(path)?.get(how) : this.recent.get(path, kind);
    if (typeof hit === 'string') throw new ViewError(hit);
    if (hit === 0 || (ro && hit !== undefined)) return hit as 0 | { device: string };
    return this.run.client.simple({ op: 'access', path, mode, follow }).then(
      (res) => {
        const answer = res ?? 0;
        if (ro) keep(answer);
        else if (answer === 0) this.recent.set(path, kind, 0);
        return answer;
      },
      (e: unknown) => {
        if (e instanceof ViewError) {
          if (ro) keep(e.code);
          else this.recent.set(path, kind, e.code);
        }
        throw e;
      },
    );
  }

  /** A remembered readlink target of a read-only mount, or the host's answer. */
  readlink(path: string): string | { device: string } | Promise<string | { device: string }> {
    const ro = this.mountOf(path).readonly;
    if (ro) {
      const hit = this.mem.roTargets.get(path);
      if (typeof hit === 'object' && 'errno' in hit) throw new ViewError(hit.errno);
      if (hit !== undefined) return hit;
    }
    return this.run.client.readlink(path).then(
      (t) => {
        if (ro) this.mem.roTargets.set(path, t);
        return t;
      },
      (e: unknown) => {
        if (ro && e instanceof ViewError) this.mem.roTargets.set(path, { errno: e.code });
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
    const hit = this.mem.roOpens.get(path);
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
    if (ro && extraFlags.length === 0) {
      const hit = this.mem.roOpens.get(path);
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
        this.mem.roOpens.set(path, e.code);
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
    if (ro && extraFlags.length === 0) this.mem.roOpens.set(path, node);
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
      const fill: PendingFill = { prefixes: this.fastPrefixes(path, s.proc), at, entries: [] };
      for (const e of entries) {
        if (!e.st) continue;
        const child = path === '/' ? `/${e.name}` : `${path}/${e.name}`;
        const node: ViewNode = { where: 'host', path: child, st: e.st };
        // A read-only mount's entry is what a lookup would say for the rest of the run.
        if (ro ? this.roListed(child, node) : this.recentListed(child, node, at))
          fill.entries.push({ name: e.name, st: e.st, ro });
      }
      // Answered ahead only once the program asks about an entry: a walk that stats (ls -l)
      // then costs one stop per directory, one that does not (find) nothing.
      if (this.pendingFills.size >= MAX_LISTINGS)
        this.pendingFills.delete(this.pendingFills.keys().next().value!);
      this.pendingFills.set(path, fill);
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
   * Where the fast path may see the entries of host directory `dir` listed by `proc`: under
   * `dir/`, under its placeholder (`fstatat(dirfd, name)`, as find does) and under the
   * placeholder of the process's cwd when `dir` is below it (`ls -lR .`).
   */
  private fastPrefixes(dir: string, proc: Proc): string[] {
    const out = [dir === '/' ? '' : dir];
    const own = this.dirs.get(`d${dir}`);
    if (own !== undefined) out.push(own);
    const cwd = proc.cwd;
    const stand = this.dirs.get(`d${cwd}`);
    if (stand !== undefined && cwd !== dir && (cwd === '/' || dir.startsWith(`${cwd}/`)))
      out.push(`${stand}${cwd === '/' ? dir : dir.slice(cwd.length)}`);
    return out;
  }

  /** A writable directory's entry: a lookup's answer for a moment; whether the fast path may. */
  private recentListed(child: string, node: ViewNode, at: number): boolean {
    this.recent.setNode(child, false, node, at);
    return this.fastFill(child);
  }

  /** The first question about an entry of a listed directory: the rest go to the table. */
  private fillListed(view: string): void {
    const dir = view.slice(0, view.lastIndexOf('/')) || '/';
    const fill = this.pendingFills.get(dir);
    if (!fill) return;
    this.pendingFills.delete(dir);
    const ttl = Math.floor(fill.at + RECENT_MS - performance.now());
    for (const e of fill.entries)
      if (e.ro || ttl > 0) this.fast.prefill(fill.prefixes, e.name, e.st, e.ro ? 0 : ttl);
  }

  /** Whether a listed entry's answers may go to the fast path ahead of any call. */
  private fastFill(child: string): boolean {
    return !this.isDevice(child) && !this.isAnchor(child) && this.work.existing(child) === null;
  }

  /**
   * An entry of a read-only directory's listing: what a lookup would say for the rest of the
   * run. Whether the fast path may answer for it too.
   */
  private roListed(child: string, node: ViewNode & { where: 'host' }): boolean {
    if (!this.mountOf(child).readonly || !this.fastFill(child)) return false;
    const link = (node.st.mode & 0o170000) === 0o120000;
    if (!this.mem.roNoFollow.has(child)) this.mem.roNoFollow.set(child, node);
    if (!link && !this.mem.roFollow.has(child)) this.mem.roFollow.set(child, node);
    return true;
  }

  /** A listing read to its end: a reader that starts over gets a fresh one. */
  listingDone(pid: number, fd: number): void {
    this.listings.delete(`${pid}:${fd}`);
  }
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
