// This daemon's own directory under the state directory: its exec links, its runs' scratch and
// its links to cache entries. Several daemons share one state directory (the local device
// starts one per `tether run`, so `make -j` starts many), so a daemon removes only its own
// directory, when it exits, and those of daemons provably gone: no process with that pid in
// that pid namespace, or one started at another time (the pid was reused).
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from 'node:fs';
import { join } from 'node:path';

/** A process's identity over time: its pid namespace, pid and start time (clock ticks). */
interface Owner {
  pidns: string;
  pid: number;
  start: string;
}

/** Field 22 of /proc/PID/stat, or null when there is no such process. */
function startTime(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // The name (field 2) may hold spaces and parentheses: count from the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
}

function pidNamespace(): string {
  // "pid:[4026531836]": the inode number names the namespace.
  return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? 'unknown';
}

const NAME = /^(\d+|unknown)-(\d+)-(\d+)$/;
const nameOf = (o: Owner) => `${o.pidns}-${o.pid}-${o.start}`;

/** True when the daemon that named a directory `name` cannot be running any more. */
function gone(name: string, pidns: string): boolean {
  const m = NAME.exec(name);
  // Not ours to judge: another naming, or another pid namespace whose pids we cannot see.
  if (!m || m[1] !== pidns || pidns === 'unknown') return false;
  return startTime(Number(m[2])) !== m[3];
}

/**
 * Makes `path` a directory of the daemon's that runs may read and search and no one else may:
 * root:GID 0750 for the run user's group `gid`, 0700 where the daemon is the run user (gid -1).
 * Host files live below (cached contents, working copies, programs to run), 0600 ones too.
 */
export function runsOnlyDir(path: string, gid: number): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  if (gid < 0) return chmodSync(path, 0o700);
  chownSync(path, 0, gid);
  chmodSync(path, 0o750);
}

/** The file in a daemon's exec directory naming its short directory of loader links. */
export const SHORT_DIR_FILE = 'short-dir';

/**
 * Removes a dead daemon's directory and the short directory of loader links it made in /tmp
 * (exec-links.ts), if that is still one of ours: a root-owned /tmp/.t* directory.
 */
function removeDead(dir: string): void {
  let short = '';
  try {
    short = readFileSync(join(dir, 'exec', SHORT_DIR_FILE), 'utf8');
  } catch {
    // No loader links were made.
  }
  if (/^\/tmp\/\.t[\w]+$/.test(short)) {
    const st = lstatSync(short, { throwIfNoEntry: false });
    if (st?.isDirectory() && st.uid === process.getuid?.())
      rmSync(short, { recursive: true, force: true });
  }
  rmSync(dir, { recursive: true, force: true });
}

export class Instance {
  /** This daemon's directory: exec-permitted, reachable by run users. */
  readonly dir: string;
  /** Other daemons that were alive on this state directory when this one started. */
  readonly others: number;

  /** Makes STATE/live/<this daemon>, removing the directories of daemons that are gone. */
  constructor(stateDir: string) {
    const live = join(stateDir, 'live');
    mkdirSync(live, { recursive: true, mode: 0o755 });
    const pidns = pidNamespace();
    const me: Owner = { pidns, pid: process.pid, start: startTime(process.pid) ?? '0' };
    let others = 0;
    for (const name of readdirSync(live)) {
      if (gone(name, pidns)) removeDead(join(live, name));
      else others++;
    }
    this.dir = join(live, nameOf(me));
    // Searchable: what a run uses is in subdirectories only runs may enter (runsOnlyDir).
    mkdirSync(this.dir, { mode: 0o711 });
    this.others = others;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
