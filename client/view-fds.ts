// Extra fds that are regular files in the view (`5>>config.log`) are not relayed: the device
// opens the same file through the view, with its flags and offset, so appends land in the
// host file and reads see its bytes at the right place.
import { constants, fstatSync, readFileSync, readlinkSync } from 'node:fs';
import type { FdFile, FdSpec } from '../transport/protocol.ts';
import type { Mount } from './view-resolve.ts';

/** The view path of host path `host`, through the host mount that exports it most closely. */
export function hostToView(mounts: readonly Mount[], host: string): string | null {
  let best: { path: string; host: string } | null = null;
  for (const m of mounts) {
    if ('device' in m) continue;
    const inside = host === m.host || host.startsWith(m.host === '/' ? '/' : `${m.host}/`);
    if (inside && (!best || m.host.length > best.host.length)) best = m;
  }
  if (!best) return null;
  const rest = host.slice(best.host === '/' ? 0 : best.host.length);
  const view = best.path === '/' ? rest || '/' : `${best.path}${rest === '/' ? '' : rest}`;
  // A deeper mount that shows something else at this view path hides the file.
  const shown = mounts
    .filter((m) => view === m.path || view.startsWith(m.path === '/' ? '/' : `${m.path}/`))
    .sort((a, b) => b.path.length - a.path.length)[0];
  return shown === best ? view : null;
}

/** `local` is this process's fd behind program fd `spec.fd`; the spec with its file, if any. */
export function fdFile(spec: FdSpec, local: number, mounts: readonly Mount[]): FdFile | null {
  if (spec.fd <= 2) return null;
  try {
    if (!fstatSync(local).isFile()) return null;
    const host = readlinkSync(`/proc/self/fd/${local}`);
    // A deleted file has no path to open again: relay it.
    if (!host.startsWith('/') || host.endsWith(' (deleted)')) return null;
    const path = hostToView(mounts, host);
    if (path === null) return null;
    const info = readFileSync(`/proc/self/fdinfo/${local}`, 'latin1');
    const flags = Number.parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? '0', 8);
    const offset = Number(/^pos:\s*(\d+)/m.exec(info)?.[1] ?? '0');
    return { path, append: (flags & constants.O_APPEND) !== 0, offset };
  } catch {
    return null;
  }
}
