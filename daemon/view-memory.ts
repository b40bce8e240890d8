// What the runs of one connection learn about a view and may reuse: answers about read-only
// mounts (a sysroot does not change under a build: lookups, misses, access checks, link
// targets, opens) and the content keys of host files. Shared by the runs of one connection
// that show the same mounts (the client's lease token), for LEASE_MS after it was made, so a
// loop of short runs does not ask the host again about the loader and libc each time.
import type { ViewNode, ViewStat } from '../transport/view.ts';

/** How long read-only answers are trusted across runs (within one run: for the whole run). */
export const LEASE_MS = 30_000;

export class ViewMemory {
  readonly born = Date.now();
  /** lookup / open answers in read-only mounts: the node, or the errno. */
  readonly roLookups = new Map<string, ViewNode | string>();
  /** access answers in read-only mounts: 0, a device path, or the errno. */
  readonly roAccess = new Map<string, 0 | { device: string } | string>();
  /** readlink targets in read-only mounts. */
  readonly roTargets = new Map<string, string | { device: string }>();
  /** The content key last seen per view path, offered back so unchanged files are not resent. */
  readonly haveKey = new Map<string, string>();
  /** Host attributes of cache entries (by key) and the view path they were opened as. */
  readonly keyInfo = new Map<string, { path: string; st: ViewStat }>();

  get fresh(): boolean {
    return Date.now() - this.born < LEASE_MS;
  }
}

/** A connection's memories by lease token. */
export class ViewMemories {
  private readonly byLease = new Map<string, ViewMemory>();

  /** The memory for `lease`, a new one when there is none or it has expired. */
  for(lease: string): ViewMemory {
    let m = this.byLease.get(lease);
    if (!m?.fresh) {
      m = new ViewMemory();
      this.byLease.set(lease, m);
    }
    return m;
  }
}
