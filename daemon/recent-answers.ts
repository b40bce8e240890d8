// What a run learned lately about paths in writable mounts: lookups and access checks, each
// trusted for RECENT_MS (others may change the host meanwhile, as NFS's attribute cache
// allows). A change the run makes itself forgets exactly the paths it touched, so a loop
// that reads three files and writes a fourth keeps its answers about the three.
import { dirname } from 'node:path';
import type { ViewNode, ViewStat } from '../transport/view.ts';

export const RECENT_MS = 1000;
/** Paths remembered at most; beyond it everything is dropped (a walk of a huge tree). */
const MAX_PATHS = 50_000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/** A lookup's node ('f' following the last link, 'n' not), or an access answer (0 or errno). */
type Answer = ViewNode | 0 | string;

/** The same content: dev, ino, size, mtime and ctime agree. */
export function sameVersion(x: ViewStat, y: ViewStat): boolean {
  return (
    x.dev === y.dev &&
    x.ino === y.ino &&
    x.size === y.size &&
    x.mtime[0] === y.mtime[0] &&
    x.mtime[1] === y.mtime[1] &&
    x.ctime[0] === y.ctime[0] &&
    x.ctime[1] === y.ctime[1]
  );
}

/** The same answer: the same node with the same content and the same attributes. */
function sameAnswer(a: Answer, b: Answer): boolean {
  if (typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (a.where !== 'host' || b.where !== 'host') return a.where === b.where && a.path === b.path;
  const x = a.st;
  const y = b.st;
  return (
    a.path === b.path &&
    sameVersion(x, y) &&
    x.mode === y.mode &&
    x.nlink === y.nlink &&
    x.uid === y.uid &&
    x.gid === y.gid
  );
}

export class RecentAnswers {
  /** Per asked path: kind ('f', 'n', 'a<mode><f|n>') → answer and when it came. */
  private readonly byPath = new Map<string, Map<string, { answer: Answer; at: number }>>();
  /** Paths whose answer is a node found under another path (through a symlink), by that path. */
  private readonly viaLink = new Map<string, Set<string>>();
  /** Called when the run's own change makes answers go (copies of them must go too). */
  onForget: () => void = () => {};

  /** How many ms the answer for (path, kind) still holds; 0 when there is none. */
  left(path: string, kind: string): number {
    const hit = this.byPath.get(path)?.get(kind);
    return hit ? Math.max(0, Math.floor(hit.at + RECENT_MS - performance.now())) : 0;
  }

  get(path: string, kind: string): Answer | undefined {
    const hit = this.byPath.get(path)?.get(kind);
    return hit && performance.now() - hit.at < RECENT_MS ? hit.answer : undefined;
  }

  /** A node for `path` ('f': following its last link, 'n': not). */
  node(path: string, follow: boolean): ViewNode | undefined {
    const hit = this.get(path, follow ? 'f' : 'n');
    return typeof hit === 'object' ? hit : undefined;
  }

  set(path: string, kind: string, answer: Answer, at = performance.now()): void {
    let facts = this.byPath.get(path);
    if (!facts) {
      if (this.byPath.size >= MAX_PATHS) this.clear();
      facts = new Map();
      this.byPath.set(path, facts);
    }
    const old = facts.get(kind);
    // A different answer (a file the run just created was a miss): copies of the old go.
    if (old && !sameAnswer(old.answer, answer)) this.onForget();
    facts.set(kind, { answer, at });
    if (typeof answer === 'object' && answer.path !== path) {
      const via = this.viaLink.get(answer.path);
      if (via) via.add(path);
      else this.viaLink.set(answer.path, new Set([path]));
    }
  }

  /** A host node learned for `path`, under both kinds when it is no symlink. */
  setNode(path: string, follow: boolean, node: ViewNode, at = performance.now()): void {
    this.set(path, follow ? 'f' : 'n', node, at);
    // Not a symlink: following it changes nothing (ls -l lstats, then getxattr follows).
    if (node.where === 'host' && node.path === path && (node.st.mode & S_IFMT) !== 0o120000)
      this.set(path, follow ? 'n' : 'f', node, at);
  }

  /**
   * The run changed `path` (its entry, contents or attributes): answers about it and its
   * directory go. `subtree`: the change may reach paths below it (a rename or a permission
   * change of a directory); unless `path` is known to be no directory, everything goes.
   */
  forget(path: string, subtree = false): void {
    this.onForget();
    if (subtree) {
      const known = this.byPath.get(path)?.get('n')?.answer;
      const notDir =
        typeof known === 'object' && known.where === 'host' && (known.st.mode & S_IFMT) !== S_IFDIR;
      if (!notDir) return this.clear();
    }
    for (const p of [path, dirname(path)]) {
      this.byPath.delete(p);
      const via = this.viaLink.get(p);
      if (via) {
        for (const q of via) this.byPath.delete(q);
        this.viaLink.delete(p);
      }
    }
  }

  clear(): void {
    this.onForget();
    this.byPath.clear();
    this.viaLink.clear();
  }
}
