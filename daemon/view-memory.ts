// What the runs of one connection learn about a view and may reuse: answers about read-only
// mounts (a sysroot does not change under a build: lookups, misses, access checks, link
// targets, opens) and the content keys of host files. Shared by the runs of one connection
// that show the same mounts (the client's lease token), for LEASE_MS after it was made, so a
// loop of short runs does not ask the host again about the loader and libc each time.
import type { ViewNode, ViewStat } from '../transport/view.ts';

/** How long read-only answers are trusted across runs (within one run: for the whole run). */
export const LEASE_MS = 30_000;

/**
 * A Map that forgets its oldest entry when a new one would pass `max`: a walk of a huge
 * sysroot costs round trips again, never unbounded memory.
 */
export class CappedMap<K, V> extends Map<K, V> {
  private readonly max: number;

  constructor(max: number) {
    super();
    this.max = max;
  }

  override set(key: K, value: V): this {
    if (this.size >= this.max && !this.has(key)) this.delete(this.keys().next().value as K);
    return super.set(key, value);
  }
}

/** Entries each memory keeps: ~300 bytes per node, so tens of MiB at most. */
export const MEMORY_ENTRIES = 50_000;

export class ViewMemory {
  readonly born = Date.now();
  /** Lookups in read-only mounts following a final symlink: the node, or the errno. */
  readonly roFollow = new CappedMap<string, ViewNode | string>(MEMORY_ENTRIES);
  /** The same not following it (lstat). */
  readonly roNoFollow = new CappedMap<string, ViewNode | string>(MEMORY_ENTRIES);
  /** Plain read-only opens in read-only mounts: the node, or the errno. */
  readonly roOpens = new CappedMap<string, ViewNode | string>(MEMORY_ENTRIES);
  /** access answers in read-only mounts by path, then by mode and follow ("4f"). */
  readonly roAccess = new CappedMap<string, Map<string, 0 | { device: string } | string>>(
    MEMORY_ENTRIES,
  );
  /** Names in read-only directories listed whole: any other name is not there. */
  readonly roListings = new CappedMap<string, Set<string>>(MEMORY_ENTRIES / 10);
  /** readlink answers in read-only mounts: the target, a device path, or the errno. */
  readonly roTargets = new CappedMap<string, string | { device: string } | { errno: string }>(
    MEMORY_ENTRIES,
  );

  /** The lookup memory for `follow`. */
  roLookups(follow: boolean): CappedMap<string, ViewNode | string> {
    return follow ? this.roFollow : this.roNoFollow;
  }

  /** The content key last seen per view path, offered back so unchanged files are not resent. */
  readonly haveKey = new CappedMap<string, string>(MEMORY_ENTRIES);
  /** Host attributes of cache entries (by key) and the view path they were opened as. */
  readonly keyInfo = new CappedMap<string, { path: string; st: ViewStat }>(MEMORY_ENTRIES);

  get fresh(): boolean {
    return Date.now() - this.born < LEASE_MS;
  }
}

/** A connection's memories by lease token. */
export class ViewMemories {
  private readonly byLease = new Map<string, ViewMemory>();

  /** The memory for `lease`, a new one when there is none or it has expired. */
  for(lease: string): ViewMemory {
    // Expired memories of other leases are never used again.
    for (const [k, old] of this.byLease) if (!old.fresh) this.byLease.delete(k);
    let m = this.byLease.get(lease);
    if (!m?.fresh) {
      m = new ViewMemory();
      this.byLease.set(lease, m);
    }
    return m;
  }
}
