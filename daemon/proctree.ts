// Finding and killing every process a run started, including children that
// left its process group, so a dropped connection leaves nothing behind.
import { readdirSync, readFileSync } from 'node:fs';

/** Parent of each live process, read from /proc/<pid>/stat. */
function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      // The command name may hold spaces and parentheses; fields follow the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      map.set(pid, Number(fields[1]));
    } catch {
      // The process exited while we looked.
    }
  }
  return map;
}

export function descendants(root: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const [pid, ppid] of parents()) {
    const list = byParent.get(ppid) ?? [];
    list.push(pid);
    byParent.set(ppid, list);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    for (const c of byParent.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

/** SIGKILLs the process group `pgid`, the root and all its descendants. */
export function killTree(root: number): void {
  const all = [root, ...descendants(root)];
  const tryKill = (pid: number) => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  tryKill(-root);
  for (const pid of all) tryKill(pid);
}
