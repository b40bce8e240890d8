// Resolving the user that programs run as, from the device's own files.
import { readFileSync } from 'node:fs';
import type { RunAs } from './exec.ts';

function lines(path: string): string[][] {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

/** uid, gid and supplementary groups of a user name or numeric uid. */
export function lookupUser(name: string): RunAs & { name: string } {
  const pw = lines('/etc/passwd').find(
    (f) => f[0] === name || (/^\d+$/.test(name) && f[2] === name),
  );
  if (!pw) {
    if (/^\d+$/.test(name)) return { name, uid: Number(name), gid: Number(name), groups: [] };
    throw new Error(`no such user: ${name}`);
  }
  const uid = Number(pw[2]);
  const gid = Number(pw[3]);
  const groups = lines('/etc/group')
    .filter((g) => (g[3] ?? '').split(',').includes(pw[0]!))
    .map((g) => Number(g[2]));
  return { name: pw[0]!, uid, gid, groups: [gid, ...groups.filter((g) => g !== gid)] };
}
