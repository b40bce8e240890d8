// Host files opened for writing get a local working copy on the device; the program's writes
// (and writable shared mappings) land there at local speed, and the copy is written back to
// the host file in place when its last writer closes it (inotify IN_CLOSE_WRITE, which fires
// only after a shared mapping is gone too), at fsync, and when a process exits. Later opens
// of the same path in the run use the copy, so readers on the device see the writes at once;
// the host sees them at those points, with its own clock on the timestamps, and always before
// any later request of the run reaches it (the view client holds requests behind write-backs).
import {
  chownSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { TimeSpec, ViewNode } from '../transport/view.ts';
import type { ContentCache } from './cache.ts';
import type { Logger } from './log.ts';
import * as native from './native.ts';
import { fdTarget } from './procfs.ts';
import type { ViewClient, ViewRequestBody } from './view-client.ts';

const IN_MODIFY = 0x2;
const IN_CLOSE_WRITE = 0x8;
/** Write-back messages stay well under the transport's message limit. */
const PIECE = 1024 * 1024;

interface Copy {
  /** View path of the host file. */
  path: string;
  file: string;
  wd: number;
  /** Size and mtime when last written back (or created). */
  synced: string;
  /** Unlinked or renamed over on the host: never written back again. */
  detached: boolean;
  /** Open file descriptions writing it: each open adds one, each IN_CLOSE_WRITE takes one. */
  writers: number;
}

export class WorkingCopies {
  private readonly dir: string;
  private readonly client: ViewClient;
  private readonly log: Logger;
  private readonly owner: { uid: number; gid: number };
  private readonly byPath = new Map<string, Copy>();
  private readonly byFile = new Map<string, Copy>();
  private readonly byWd = new Map<number, Copy>();
  /**
   * Copies that may differ from the host: open for writing, written (IN_MODIFY) or closed since
   * their last write-back. Only these are looked at when a process exits.
   */
  private readonly active = new Set<Copy>();
  private readonly events = Buffer.alloc(64 * 1024);
  private inotify = -1;
  private next = 1;
  private flushing: Promise<void> = Promise.resolve();
  /** Queued write-back batches not finished yet. */
  private pending = 0;
  /** Called when a new copy makes a host file's attributes the copy's (overlay()). */
  onCopy: () => void = () => {};

  constructor(dir: string, client: ViewClient, owner: { uid: number; gid: number }, log: Logger) {
    this.dir = dir;
    this.client = client;
    this.owner = owner;
    this.log = log;
    mkdirSync(dir, { recursive: true });
  }

  /**
   * The copy for host file `node`, made from `content` (or the cached key) the first time.
   * `truncated`: an O_TRUNC open, which the host does with the write-back: written back at
   * close even if nothing is written.
   */
  async open(
    node: Extract<ViewNode, { where: 'host' }>,
    content: Buffer | null,
    cache: ContentCache,
    key: string,
    truncated = false,
  ): Promise<string> {
    const have = this.byPath.get(node.path);
    if (have) {
      have.writers++;
      this.active.add(have);
      return have.file;
    }
    this.onCopy();
    const file = join(this.dir, String(this.next++));
    const cached = cache.get(key);
    if (content) writeFileSync(file, content, { mode: 0o600 });
    else if (cached && node.st.size > 0) copyFileSync(cached, file);
    else writeFileSync(file, '', { mode: 0o600 });
    // The program opens it with its own ids.
    chownSync(file, this.owner.uid, this.owner.gid);
    if (this.inotify < 0) this.inotify = native.inotifyInit();
    const wd = native.inotifyAddWatch(this.inotify, file, IN_CLOSE_WRITE | IN_MODIFY);
    const copy: Copy = { path: node.path, file, wd, synced: '', detached: false, writers: 1 };
    // A new copy of a truncated or new file differs from the host only once written.
    copy.synced = !truncated && (content || cached) ? stamp(file) : '';
    this.byPath.set(node.path, copy);
    this.byFile.set(file, copy);
    this.byWd.set(wd, copy);
    this.active.add(copy);
    return file;
  }

  /** Whether a program has the file open for writing (exec then fails with ETXTBSY). */
  busy(path: string): boolean {
    const c = this.byPath.get(path);
    return c !== undefined && !c.detached && c.writers > 0;
  }

  existing(path: string): string | null {
    const c = this.byPath.get(path);
    return c && !c.detached ? c.file : null;
  }

  /** The view path a device path of a copy stands for. */
  pathOfCopy(file: string): string | null {
    const c = this.byFile.get(file);
    return c ? c.path : null;
  }

  /** A host node's attributes with the local copy's size and times, while one exists. */
  overlay(node: ViewNode): ViewNode {
    if (node.where !== 'host') return node;
    const c = this.byPath.get(node.path);
    if (!c || c.detached) return node;
    try {
      const st = statSync(c.file, { bigint: true });
      const t = (ns: bigint): [number, number] => [
        Number(ns / 1_000_000_000n),
        Number(ns % 1_000_000_000n),
      ];
      return {
        ...node,
        st: {
          ...node.st,
          size: Number(st.size),
          blocks: Number(st.blocks),
          mtime: t(st.mtimeNs),
          ctime: t(st.ctimeNs),
        },
      };
    } catch {
      return node;
    }
  }

  /**
   * Keeps the table true after a host change made through the view; `canonical`: the view
   * paths the host changed, links resolved (copies are kept under those).
   */
  afterChange(req: ViewRequestBody, canonical: string[]): void {
    if (req.op === 'truncate' || req.op === 'utimens') {
      // The host file and its copy are one file to the program: both get the new length or
      // times, and a copy that matched the host still does.
      const c = this.byPath.get(canonical[0] ?? req.path);
      if (!c || c.detached) return;
      const synced = stamp(c.file) === c.synced;
      if (req.op === 'truncate') truncateSync(c.file, req.size);
      else setTimes(c.file, req);
      if (synced) c.synced = stamp(c.file);
    } else if (req.op === 'unlink') {
      this.detach(req.path);
      for (const p of canonical) this.detach(p);
    } else if (req.op === 'rename') {
      const [from, to] = canonical.length === 2 ? canonical : [req.from, req.to];
      if (from === undefined || to === undefined || from === to || req.exchange) return;
      // A directory's rename moves the copies below it too; what `to` named is gone.
      const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);
      for (const c of [...this.byPath.values()]) if (under(c.path, to)) this.detach(c.path);
      for (const c of [...this.byPath.values()]) {
        if (!under(c.path, from)) continue;
        this.byPath.delete(c.path);
        c.path = to + c.path.slice(from.length);
        this.byPath.set(c.path, c);
      }
    }
  }

  private detach(path: string): void {
    const c = this.byPath.get(path);
    if (!c) return;
    c.detached = true;
    this.byPath.delete(path);
    this.active.delete(c);
  }

  /** Starts the write-back of every copy closed by a writer since the last call. */
  settleClosed(): void {
    if (this.inotify < 0) return;
    const closed = new Set<Copy>();
    const buf = this.events;
    for (;;) {
      const n = native.inotifyRead(this.inotify, buf);
      if (n === 0) break;
      for (let off = 0; off + 16 <= n; ) {
        const wd = buf.readInt32LE(off);
        const mask = buf.readUInt32LE(off + 4);
        const len = buf.readUInt32LE(off + 12);
        off += 16 + len;
        const c = this.byWd.get(wd);
        if (!c || c.detached) continue;
        // A writer the view did not open (a reopened /proc/self/fd link) shows by its writes.
        if (mask & IN_MODIFY) this.active.add(c);
        if (mask & IN_CLOSE_WRITE) {
          c.writers = Math.max(0, c.writers - 1);
          closed.add(c);
        }
      }
    }
    if (closed.size > 0) this.queue([...closed]);
  }

  /** Writes back every changed copy (a process exits: its writes go to the host). */
  flushAll(): Promise<void> {
    this.settleClosed();
    this.queue([...this.active]);
    return this.flushing;
  }

  /** The write-backs in flight, or null: a request to the host waits for them. */
  get inFlight(): Promise<void> | null {
    return this.pending > 0 ? this.flushing : null;
  }

  async flushFd(pid: number, fd: number): Promise<void> {
    const c = this.copyOf(pid, fd);
    if (c) {
      this.queue([c]);
      await this.flushing;
    }
  }

  /**
   * An fd metadata call (fchmod, futimens…) changed the host file: the copy behind the fd takes
   * the new times too, and now matches the host as it is.
   */
  afterFdChange(pid: number, fd: number, req: ViewRequestBody): void {
    const c = this.copyOf(pid, fd);
    if (!c) return;
    if (req.op === 'utimens') setTimes(c.file, req);
    c.synced = stamp(c.file);
  }

  private copyOf(pid: number, fd: number): Copy | undefined {
    const target = fdTarget(pid, fd);
    return target === null ? undefined : this.byFile.get(target);
  }

  /** Flushes run one after another, so the host sees writes in the order they happened. */
  private queue(copies: Copy[]): void {
    if (copies.length === 0) return;
    this.pending++;
    this.flushing = this.flushing.then(async () => {
      for (const c of copies) {
        try {
          await this.writeBack(c);
        } catch (e) {
          this.log.warn({ path: c.path, err: (e as Error).message }, 'write-back failed');
        }
        // Nobody can write it now without opening it through the view, or without IN_MODIFY.
        if (c.writers === 0 && stamp(c.file) === c.synced) this.active.delete(c);
      }
      this.pending--;
    });
  }

  /** Called after a file's write-back: the host file is a new one (another inode, new times). */
  onWrittenBack: (path: string) => void = () => {};

  private async writeBack(c: Copy): Promise<void> {
    if (c.detached) return;
    const now = stamp(c.file);
    if (now === c.synced) return;
    const data = readFileSync(c.file);
    c.synced = now;
    for (let off = 0; off === 0 || off < data.length; off += PIECE) {
      await this.client.writeBack({
        op: 'write',
        path: c.path,
        offset: off,
        data: data.subarray(off, off + PIECE),
        truncate: off === 0 ? data.length : null,
      });
    }
    this.onWrittenBack(c.path);
  }

  close(): void {
    if (this.inotify >= 0) closeSync(this.inotify);
    this.inotify = -1;
  }
}

/** The times a utimensat gave a host file, on its copy (which stat shows while it exists). */
function setTimes(file: string, req: Extract<ViewRequestBody, { op: 'utimens' }>): void {
  const st = statSync(file);
  const seconds = (t: TimeSpec, old: Date) =>
    t === 'omit' ? old : t === 'now' ? new Date() : t[0] + t[1] / 1e9;
  utimesSync(file, seconds(req.atime, st.atime), seconds(req.mtime, st.mtime));
}

function stamp(file: string): string {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return '';
  }
}
