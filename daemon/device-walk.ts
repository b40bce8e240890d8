// Paths into the device's own mounts (/proc, /dev, /tmp…), walked on the device as the kernel
// walks them: component by component, `..` to the real parent, symlinks read on the device.
// As long as the walk stays in device mounts the kernel can be handed the path exactly as the
// program wrote it, so every error and corner (`rmdir d/.`, `f/`, `/proc/self/fd/0/`) is the
// kernel's own. A symlink or `..` that leads out of the device mounts, and a /proc link of a
// traced process that stands for a view file (its cwd, exe, root or an fd), continue in the
// view: the walk then hands back the view path to resolve there.

/** The kernel follows at most this many symlinks in one path walk (MAXSYMLINKS). */
const MAXSYMLINKS = 40;

export interface WalkEnv {
  /** Whether view path `path` lies in a device mount (and not in a host mount inside it). */
  isDevice(path: string): boolean;
  /** Whether `path` is a host mount or on the way to one (made up by the view). */
  isAnchor(path: string): boolean;
  lstat(path: string): 'dir' | 'link' | 'other' | null;
  readlink(path: string): string;
  /** The tracee's pid and tid, for /proc/self and /proc/thread-self. */
  pid: number;
  tid: number;
  /**
   * The view path a /proc/PID/{cwd,root,exe,fd/N} link of a traced process stands for, or
   * null when the kernel's own link says it (not traced, or not a view file).
   */
  procLink(pid: number, which: string): string | null;
}

export type Walked =
  /** The kernel resolves the program's path itself; `at` is where it lands, if it exists. */
  | { kind: 'device'; at: string | null }
  /** A /proc link of a traced process, not followed: readlink answers from the view. */
  | { kind: 'magic'; pid: number; which: string }
  /** The rest is the view's: resolve `path` there. */
  | { kind: 'view'; path: string };

const PROC_PID = /^\/proc\/(\d+)(?:\/task\/\d+)?$/;
const PROC_FD = /^\/proc\/(\d+)(?:\/task\/\d+)?\/fd$/;

/**
 * The device mount the first name of root-relative `comps` enters (taking it off), or null
 * when it leads into the view's own directories.
 */
function entry(comps: string[], env: WalkEnv): string | null {
  while (comps[0] === '.' || comps[0] === '..') comps.shift();
  const first = comps[0];
  if (first === undefined) return null;
  const at = `/${first}`;
  if (!env.isDevice(at)) return null;
  comps.shift();
  return at;
}

/**
 * Walks absolute view path `path`; `follow` says whether a final symlink is followed (a
 * trailing slash always follows it, as in the kernel).
 */
export function walkDevice(path: string, follow: boolean, env: WalkEnv): Walked {
  const slash = path.length > 1 && path.endsWith('/');
  const todo = path.split('/').filter((c) => c !== '');
  const view = (cur: string) => ({
    kind: 'view' as const,
    path:
      `${cur === '/' ? '' : cur}/${todo.join('/')}${slash && todo.length > 0 ? '/' : ''}` || '/',
  });
  const start = entry(todo, env);
  if (start === null) return { kind: 'view', path };
  let cur: string = start;
  let links = 0;
  // A restart at the root (an absolute link target, /proc/PID/root…): into a device mount, or
  // out into the view with the rest of the path.
  const restart = (target: string): string | null => {
    todo.unshift(...target.split('/').filter((c) => c !== ''));
    return entry(todo, env);
  };
  const out = (): Walked => view('/');
  while (todo.length > 0) {
    const c = todo.shift()!;
    if (c === '.') continue;
    if (c === '..') {
      const parent = cur.slice(0, cur.lastIndexOf('/')) || '/';
      if (!env.isDevice(parent)) return view(parent);
      cur = parent;
      continue;
    }
    const next = `${cur === '/' ? '' : cur}/${c}`;
    // A host mount inside a device mount is the view's; so is the way to it, unless the
    // device has that directory itself (/tmp of a bind at /tmp/build).
    if (env.isAnchor(next) && (!env.isDevice(next) || env.lstat(next) !== 'dir')) {
      todo.unshift(c);
      return view(cur);
    }
    const last = todo.length === 0;
    const following = !last || follow || slash;
    // The kernel's /proc/self is the caller's; the daemon reading it would see its own.
    if (next === '/proc/self' || next === '/proc/thread-self') {
      if (!following) return { kind: 'device', at: null };
      if (++links > MAXSYMLINKS) return { kind: 'device', at: null };
      todo.unshift(
        ...(next === '/proc/self' ? [String(env.pid)] : [String(env.pid), 'task', String(env.tid)]),
      );
      continue;
    }
    const pidDir = PROC_PID.exec(cur);
    const fdDir = PROC_FD.exec(cur);
    const which =
      pidDir && ['cwd', 'root', 'exe'].includes(c)
        ? c
        : fdDir && /^\d+$/.test(c)
          ? `fd/${c}`
          : null;
    const pid = Number((pidDir ?? fdDir)?.[1]);
    if (which !== null) {
      const target = env.procLink(pid, which);
      if (target !== null) {
        if (!following) return { kind: 'magic', pid, which };
        if (++links > MAXSYMLINKS) return { kind: 'device', at: null };
        const at = restart(target);
        if (at === null) return out();
        cur = at;
        continue;
      }
    }
    const type = env.lstat(next);
    // Not there, or not reachable: the kernel says why, for the path as written.
    if (type === null) return { kind: 'device', at: null };
    if (type === 'link') {
      if (!following) return { kind: 'device', at: next };
      if (++links > MAXSYMLINKS) return { kind: 'device', at: null };
      // A magic link to something the view does not hold (a pipe, a device file): the kernel's.
      if (which !== null) return { kind: 'device', at: null };
      const target = env.readlink(next);
      if (target.startsWith('/')) {
        const at = restart(target);
        if (at === null) return out();
        cur = at;
      } else todo.unshift(...target.split('/').filter((x) => x !== ''));
      continue;
    }
    if (type === 'other') return { kind: 'device', at: last && !slash ? next : null };
    cur = next;
  }
  // The view lists a directory on the way to a host mount, adding the way on.
  if (env.isAnchor(cur)) return { kind: 'view', path };
  return { kind: 'device', at: cur };
}
