// The device's content cache: host file contents kept under the state directory (which must
// allow exec: cached programs and loaders are executed from here), named by the host identity
// key (dev:ino:size:mtime:ctime), so a changed host file is a new entry. Entries are written
// to a temporary name and renamed, and their SHA-256 is kept in an index and checked the first
// time an entry is used after a daemon start. Least recently used entries go beyond the size
// bound.
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

interface Entry {
  sha: string;
  size: number;
  /** Checked against its hash since this daemon started. */
  verified: boolean;
}

const DEFAULT_LIMIT = 1024 * 1024 * 1024;

export class ContentCache {
  readonly dir: string;
  private readonly files: string;
  private readonly indexPath: string;
  private readonly limit: number;
  /** Insertion order is recency: a use moves the entry to the end. */
  private readonly entries = new Map<string, Entry>();
  private total = 0;
  /** Host file opens since the daemon started served from here (hits) or over the link. */
  hits = 0;
  misses = 0;

  constructor(dir: string, limit = DEFAULT_LIMIT) {
    this.dir = dir;
    this.files = join(dir, 'files');
    this.indexPath = join(dir, 'index');
    this.limit = limit;
    mkdirSync(this.files, { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o755);
    this.load();
  }

  private load(): void {
    let text = '';
    try {
      text = readFileSync(this.indexPath, 'utf8');
    } catch {
      return;
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
    // Rewrite the index compacted.
    const lines = [...this.entries].map(([k, e]) => `+ ${k} ${e.sha} ${e.size}\n`);
    writeFileSync(`${this.indexPath}.tmp`, lines.join(''));
    renameSync(`${this.indexPath}.tmp`, this.indexPath);
  }

  /** Where an entry's bytes live on the device. */
  pathOf(key: string): string {
    return join(this.files, encodeKey(key));
  }

  /** The key of a cache path, or null if `path` is not an entry. */
  keyOf(path: string): string | null {
    const prefix = `${this.files}/`;
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
    return path;
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
    renameSync(tmp, path);
    const sha = createHash('sha256').update(data).digest('hex');
    const old = this.entries.get(key);
    if (old) this.total -= old.size;
    this.entries.delete(key);
    this.entries.set(key, { sha, size: data.length, verified: true });
    this.total += data.length;
    appendFileSync(this.indexPath, `+ ${key} ${sha} ${data.length}\n`);
    this.evict(key);
    return path;
  }

  private evict(keep: string): void {
    for (const [key] of this.entries) {
      if (this.total <= this.limit) return;
      if (key !== keep) this.drop(key);
    }
  }

  private drop(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.total -= e.size;
    // An open or running copy keeps its inode; the name goes.
    rmSync(this.pathOf(key), { force: true });
    appendFileSync(this.indexPath, `- ${key}\n`);
  }
}

// Keys are digits and colons; keep file names portable anyway.
function encodeKey(key: string): string {
  return key.replace(/:/g, '_');
}

function decodeKey(name: string): string {
  return name.replace(/_/g, ':');
}
