// Waiting on conditions and finding the processes a run started: the test
// device shares our pid namespace, so its processes are visible here.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Polls `cond` until it holds or `ms` pass; returns its last value. */
export async function waitFor(cond: () => boolean, ms: number, stepMs = 100): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}

/** Command lines of `sleep MARKER` processes (markers are numbers unique to a test). */
export function sleepers(marker: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', `^sleep ${marker.replace(/\./g, '\\.')}$`], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter((l) => l && !l.includes('pgrep'));
  } catch (e) {
    // pgrep says 1 when nothing matches; anything else (no pgrep) must not read as "none".
    if ((e as { status?: number }).status === 1) return [];
    throw e;
  }
}

/** The state letter of /proc/PID/stat (T when stopped), or 'gone'. */
export function procState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]!;
  } catch {
    return 'gone';
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

export function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** VmRSS in bytes, or 0 once the process is gone. */
export function rss(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The node process under `pid`: `ip netns exec` and bin/tetherd exec into it, or fork it. */
export function nodeOf(pid: number): number {
  let p = pid;
  for (let i = 0; i < 3 && !/node/.test(cmdline(p).split(' ')[0] ?? ''); i++) {
    const kids = children(p);
    if (kids.length !== 1) break;
    p = kids[0]!;
  }
  return p;
}
