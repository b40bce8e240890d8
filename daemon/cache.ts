// The device's content cache: host file contents kept under the state directory (which must
// allow exec: cached programs and loaders are executed from here), named by the host identity
// key (dev:ino:size:mtime:ctime), so a changed host file is a new entry. Entries are written
// to a temporary name and renamed, and their SHA-256 is kept in an index and checked the first
// time an entry is used after a daemon start. Least recently used entries go beyond the size
// bound.
// Daemons that share the state directory share the cache: each hands its runs its own hard
// link of an entry (under its instance directory), so another daemon's eviction never takes a
// file from under a run; the index is compacted, and files it does not list (for ten minutes
// at least) are removed, only by a daemon that starts alone.
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { runsOnlyDir } from './instance.ts';

interface Entry {
  sha: string;
  size: number;
  /** Checked against its hash since this daemon started. */
  verified: boolean;
}

const DEFAULT_LIMIT = 1024 * 1024 * 1024;
/** An unlisted file younger than this may be another daemon's entry in the making. */
const UNLISTED_GRACE_MS = 10 * 60_000;

export interface CacheOptions {
  /** This daemon's directory for its links to entries; entries are handed out directly without. */
  links?: string;
  /** The run user's group, who may read the links (see runsOnlyDir); -1: the daemon's own. */
  runGid?: number;
  /** Other daemons use the cache now: leave the index and unlisted files as they are. */
  shared?: boolean;
  /** Bytes kept before the least recently used entries go. */
  limit?: number;
}

export class ContentCache {
  readonly dir: string;
  private readonly files: string;
  private readonly indexPath: string;
  private readonly limit: number;
  private readonly links: string | null;
  /** Entries this daemon has a link to (by file name). */
  private readonly linked = new Set<string>();
  /** Insertion order is recency: a use moves the entry to the end. */
  private readonly entries = new Map<string, Entry>();
  private total = 0;
  /** Host file opens since the daemon started served from here (hits) or over the link. */
  hits = 0;
  misses = 0;

  constructor(dir: string, o: CacheOptions = {}) {
    this.dir = dir;
    this.files = join(dir, 'files');
    this.indexPath = join(dir, 'index');
    this.limit = o.limit ?? DEFAULT_LIMIT;
    this.links = o.links ?? null;
    // Root's alone: host files' contents, 0600 ones too. Runs reach entries through the links.
    mkdirSync(this.files, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    chmodSync(this.files, 0o700);
    if (this.links) runsOnlyDir(this.links, o.runGid ?? -1);
    this.load(o.shared ?? false);
  }

  private load(shared: boolean): void {
    let text = '';
    try {
      text = readFileSync(this.indexPath, 'utf8');
    } catch {
      // No index: nothing is known, and no file is an entry.
    }
    for (const line of text.split('\n')) {
      const [op, key, sha, size] = line.split(' ');
      if (op === '+' && key && sha && size) {
        this.entries.delete(key);
        this.entries.set(key, { sha, size: Number(size), verified: false });
      } else if (op === '-' && key) {
        this.entries.delete(key);
      }
    }
    this.total = 0;
    for (const e of this.entries.values()) this.total += e.size;
    if (shared) return;
    // Alone: the index compacted, and files it does not list (a killed daemon's temporary
    // files, entries whose lines a compaction beside another daemon lost) removed.
    const lines = [...this.entries].map(([k, e]) => `+ ${k} ${e.sha} ${e.size}\n`);
    writeFileSync(`${this.indexPath}.tmp`, lines.join(''));
    renameSync(`${this.indexPath}.tmp`, this.indexPath);
    // Only old ones: a daemon that started meanwhile may be writing or listing one right now.
    const before = Date.now() - UNLISTED_GRACE_MS;
    for (const name of readdirSync(this.files)) {
      if (this.entries.has(decodeKey(name))) continue;
      const file = join(this.files, name);
      const st = statSync(file, { throwIfNoEntry: false });
      if (st && st.mtimeMs < before) rmSync(file, { force: true });
    }
  }

  /** Where an entry's bytes live on the device, shared by the daemons. */
  private pathOf(key: string): string {
    return join(this.files, encodeKey(key));
  }

  /** The path this daemon's runs use for an entry: its own link, made on first use. */
  private handOut(key: string): string {
    if (!this.links) return this.pathOf(key);
    const name = encodeKey(key);
    const own = join(this.links, name);
    if (!this.linked.has(name)) {
      try {
        linkSync(this.pathOf(key), own);
      } catch (e) {
        // A link from before this entry was put again: the same host version, the same bytes.
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      this.linked.add(name);
    }
    return own;
  }

  /** Called when an entry goes: paths handed out for it are no longer there. */
  readonly onDrop = new Set<() => void>();

  /** The key of a path handed out, or null if `path` is not an entry. */
  keyOf(path: string): string | null {
    const prefix = `${this.links ?? this.files}/`;
    if (!path.startsWith(prefix)) return null;
    const name = path.slice(prefix.length);
    return name.includes('/') ? null : decodeKey(name);
  }

  /** The entry's path if it is cached and intact, else null (a corrupt entry is dropped). */
  get(key: string): string | null {
    const e = this.entries.get(key);
    if (!e) return null;
    const path = this.pathOf(key);
    if (!e.verified) {
      let ok = false;
      try {
        ok = createHash('sha256').update(readFileSync(path)).digest('hex') === e.sha;
      } catch {
        ok = false;
      }
      if (!ok) {
        this.drop(key);
        return null;
      }
      e.verified = true;
    }
    this.entries.delete(key);
    this.entries.set(key, e);
    try {
      return this.handOut(key);
    } catch {
      // Evicted by another daemon since this one started.
      this.forget(key);
      return null;
    }
  }

  /** Counts one open of a host file's content: from the cache, or fetched over the link. */
  served(fromCache: boolean): void {
    if (fromCache) this.hits++;
    else this.misses++;
  }

  get stats(): { entries: number; bytes: number; limit: number; hits: number; misses: number } {
    const { hits, misses, limit } = this;
    return { entries: this.entries.size, bytes: this.total, limit, hits, misses };
  }

  put(key: string, data: Buffer): string {
    const path = this.pathOf(key);
    const tmp = `${path}.tmp${process.pid}`;
    const fd = openSync(tmp, 'w', 0o555);
    try {
      writeSync(fd, data);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, 0o555);
    // This daemon's link first: a daemon tidying the cache beside it cannot take it away.
    const own = this.links ? join(this.links, encodeKey(key)) : null;
    if (own) {
      rmSync(own, { force: true });
      linkSync(tmp, own);
      this.linked.add(encodeKey(key));
    }
    try {
      renameSync(tmp, path);
    } catch (e) {
      // Tidied away meanwhile: the entry is this daemon's only (its link), not shared.
      if (!own || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const sha = createHash('sha256').update(data).digest('hex');
    const old = this.entries.get(key);
    if (old) this.total -= old.size;
    this.entries.delete(key);
    this.entries.set(key, { sha, size: data.length, verified: true });
    this.total += data.length;
    appendFileSync(this.indexPath, `+ ${key} ${sha} ${data.length}\n`);
    this.evict(key);
    return own ?? path;
  }

  private evict(keep: string): void {
    for (const [key] of this.entries) {
      if (this.total <= this.limit) return;
      if (key !== keep) this.drop(key);
    }
  }

  private drop(key: string): void {
    if (!this.forget(key)) return;
    // An open or running copy, and other daemons' links, keep the inode; the name goes.
    rmSync(this.pathOf(key), { force: true });
    appendFileSync(this.indexPath, `- ${key}\n`);
  }

  /** Forgets an entry in this daemon, its own link included; false if it knew none. */
  private forget(key: string): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    for (const f of this.onDrop) f();
    this.entries.delete(key);
    this.total -= e.size;
    const name = encodeKey(key);
    if (this.links && this.linked.delete(name)) rmSync(join(this.links, name), { force: true });
    return true;
  }
}

// Keys are digits and colons; keep file names portable anyway.
function encodeKey(key: string): string {
  return key.replace(/:/g, '_');
}

function decodeKey(name: string): string {
  return name.replace(/_/g, ':');
}
