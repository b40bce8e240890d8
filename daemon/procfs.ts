// What /proc says about a tracee: where its fds point, their offsets, its umask. Each read
// answers null (or the default) for a task or fd that is gone.
import { readFileSync, readlinkSync } from 'node:fs';

/** The path an fd of `pid` refers to (as the kernel shows it), or null. */
export function fdTarget(pid: number, fd: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return null;
  }
}

/** A task's working directory as the kernel shows it, or null. */
export function cwdTarget(tid: number): string | null {
  try {
    return readlinkSync(`/proc/${tid}/cwd`);
  } catch {
    return null;
  }
}

/** The kernel's file offset of a tracee's fd (fdinfo "pos:"). */
export function fdPos(pid: number, fd: number): number {
  try {
    const m = /^pos:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** A task's umask: new host files get the program's, as they would locally. */
export function umaskOf(tid: number): number {
  try {
    const m = /^Umask:\s+([0-7]+)$/m.exec(readFileSync(`/proc/${tid}/status`, 'latin1'));
    return m ? Number.parseInt(m[1]!, 8) : 0o022;
  } catch {
    return 0o022;
  }
}

/** A task's ids as /proc/TID/status lists them: real and file system uid and gid, and groups. */
export function idsOf(
  tid: number,
): { uid: number; gid: number; fsuid: number; fsgid: number; groups: number[] } | null {
  try {
    const st = readFileSync(`/proc/${tid}/status`, 'latin1');
    const u = /^Uid:\s+(\d+)\s+\d+\s+\d+\s+(\d+)$/m.exec(st);
    const g = /^Gid:\s+(\d+)\s+\d+\s+\d+\s+(\d+)$/m.exec(st);
    const groups = /^Groups:(.*)$/m.exec(st)?.[1]?.trim() ?? '';
    if (!u || !g) return null;
    return {
      uid: Number(u[1]),
      fsuid: Number(u[2]),
      gid: Number(g[1]),
      fsgid: Number(g[2]),
      groups: groups === '' ? [] : groups.split(/\s+/).map(Number),
    };
  } catch {
    return null;
  }
}
