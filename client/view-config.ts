// The mount table of a run: the host directory shown as `/` (read-only: a sysroot, or the host's
// own root), the writable trees at their own paths (the working directory, configured and
// --bind ones; not $HOME), and the device's own /dev, /proc, /sys and /tmp; and the host paths
// never served whatever the mounts say (tether's own keys, ssh's and gpg's, configured ones).
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ViewSpec } from '../transport/view.ts';
import { configDir, type DeviceConfig } from './config.ts';
import type { Mount } from './view-resolve.ts';

export const DEVICE_MOUNTS = ['/dev', '/proc', '/sys', '/tmp'] as const;

export interface ViewChoice {
  /** --view / --no-view; undefined follows the device's config. */
  view?: boolean;
  root?: string;
  binds: string[];
}

/** The run's mounts, or null for a run on the device's own files. */
export function viewMounts(device: DeviceConfig, choice: ViewChoice, cwd: string): Mount[] | null {
  const on = choice.view ?? device.view !== 'no';
  if (!on) return null;
  const root = resolve(choice.root ?? device.root ?? '/');
  const mounts: Mount[] = [{ path: '/', host: root, readonly: true }];
  for (const p of DEVICE_MOUNTS) mounts.push({ path: p, device: true });
  const binds = [...device.binds, ...choice.binds];
  // Without a sysroot the host's tree is the view: the working directory's tree is writable
  // (the project a build works in), the rest of the host, $HOME included, read-only.
  if (root === '/') binds.push(cwd);
  for (const b of binds.map((p) => resolve(p))) {
    if (b === '/' || mounts.some((m) => m.path === b)) continue;
    mounts.push({ path: b, host: b, readonly: false });
  }
  return mounts;
}

/**
 * Host paths a run never sees, whatever its mounts (EACCES, as for a directory it may not
 * enter): tether's own configuration (its keys), ~/.ssh and ~/.gnupg, and the device's `hide`
 * lines. Each also under its real path, which is what the host's symlinks lead to.
 */
export function hiddenPaths(device: DeviceConfig): string[] {
  const home = homedir();
  const listed = [configDir(), join(home, '.ssh'), join(home, '.gnupg'), ...(device.hide ?? [])];
  const out = new Set<string>();
  for (const p of listed.map((x) => resolve(x))) {
    out.add(p);
    try {
      out.add(realpathSync(p));
    } catch {
      // Not there (yet): its own path is enough.
    }
  }
  return [...out];
}

/**
 * What the device learns of the mounts: paths and kinds, never host directories; the lease
 * is a digest of the whole table, host directories included.
 */
export function viewSpecOf(mounts: readonly Mount[]): ViewSpec {
  return {
    mounts: mounts.map((m) =>
      'device' in m
        ? { path: m.path, device: true, readonly: false }
        : { path: m.path, device: false, readonly: m.readonly },
    ),
    lease: createHash('sha256').update(JSON.stringify(mounts)).digest('hex').slice(0, 32),
  };
}

/**
 * Why a run's working directory may be missing on the device: with a sysroot as `/`, the
 * host's directories are in the view only where a writable mount shows them.
 */
export function cwdHint(mounts: readonly Mount[] | null, cwd: string): string | null {
  const root = mounts?.find((m) => m.path === '/');
  if (!mounts || !root || 'device' in root || root.host === '/') return null;
  const under = (p: string) => cwd === p || cwd.startsWith(p.endsWith('/') ? p : `${p}/`);
  // Under the device's /tmp it is the device's directory: a bind shows the host's.
  if (mounts.some((m) => m.path !== '/' && !('device' in m) && under(m.path))) return null;
  return `the view's / is ${root.host}: show this directory with --bind ${cwd}`;
}
