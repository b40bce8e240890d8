// The host-side race harness (test/unit/view-race.test.ts, scripts/view-race.ts): a child
// process swaps `proj/d` (a real directory) with a symlink to a directory outside the view,
// while a ViewServer answers opens, lookups and listings of paths through `/work/proj/d`.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Mount } from '../../client/view-resolve.ts';
import { ViewServer } from '../../client/view-server.ts';
import type { ViewChunk, ViewReply, ViewRequest } from '../../transport/view.ts';

const SWAPPER = `
const { renameSync, writeFileSync } = require('node:fs');
process.chdir(process.argv[1]);
let n = 0;
const stop = Date.now() + Number(process.argv[2]) * 1000;
while (Date.now() < stop) {
  for (let i = 0; i < 100; i++) {
    renameSync('d', 'held');
    renameSync('evil', 'd');
    renameSync('d', 'evil');
    renameSync('held', 'd');
    n++;
  }
  // Now and then, not at the end: the harness kills this loop when it has tried enough.
  if (n % 1000 === 0) writeFileSync('swaps', String(n));
}
writeFileSync('swaps', String(n));
`;

export interface RaceResult {
  tries: number;
  swaps: number;
  /** Answers that came from the real directory. */
  inside: number;
  /** Answers that came from outside the view: must be 0. */
  outside: number;
  hits: Record<string, number>;
}

export async function raceView(opts: {
  seconds?: number;
  tries?: number;
  openat2?: boolean;
}): Promise<RaceResult> {
  const root = mkdtempSync(join(tmpdir(), 'tether-race-'));
  try {
    const proj = join(root, 'proj');
    const out = join(root, 'outside');
    mkdirSync(join(proj, 'd'), { recursive: true });
    mkdirSync(out);
    writeFileSync(join(proj, 'd/f'), 'inside');
    writeFileSync(join(out, 'f'), 'OUTSIDE-SECRET');
    writeFileSync(join(out, 'only-outside'), '');
    symlinkSync(out, join(proj, 'evil'));
    const mounts: Mount[] = [
      { path: '/', host: join(root, 'sys'), readonly: true },
      { path: '/work/proj', host: proj, readonly: false },
    ];
    mkdirSync(join(root, 'sys'));
    const server = new ViewServer(mounts, [], { openat2: opts.openat2 ?? true });
    const seconds = opts.seconds ?? 3600;
    const swapper = spawn(process.execPath, ['-e', SWAPPER, proj, String(seconds)], {
      stdio: 'inherit',
    });
    const exited = new Promise<void>((r) => swapper.once('exit', () => r()));
    const hits: Record<string, number> = {};
    let tries = 0;
    let inside = 0;
    let outside = 0;
    const stopAt = Date.now() + seconds * 1000;
    const ask = async (req: Record<string, unknown>) => {
      const out: (ViewReply | ViewChunk)[] = [];
      for await (const m of server.handle({ id: 1, ...req } as ViewRequest)) out.push(m);
      return out;
    };
    const count = (what: string, bad: boolean, good: boolean) => {
      if (bad) {
        outside++;
        hits[what] = (hits[what] ?? 0) + 1;
      } else if (good) inside++;
    };
    let running = true;
    void exited.then(() => {
      running = false;
    });
    while (running && Date.now() < stopAt && (opts.tries === undefined || tries < opts.tries)) {
      tries++;
      const op = tries % 3;
      if (op === 0) {
        const r = await ask({
          op: 'open',
          path: '/work/proj/d/f',
          flags: ['read'],
          mode: 0,
          have: null,
        });
        const data = Buffer.concat(
          r.slice(1).map((c) => Buffer.from((c as ViewChunk).data)),
        ).toString();
        count('open', data.includes('OUTSIDE'), data === 'inside');
      } else if (op === 1) {
        const [r] = await ask({ op: 'lookup', path: '/work/proj/d/f', follow: true });
        const size = (r as { node?: { st?: { size: number } } }).node?.st?.size;
        count('lookup', size === 14, size === 6);
      } else {
        const [r] = await ask({ op: 'readdir', path: '/work/proj/d' });
        const names = ((r as { entries?: { name: string }[] }).entries ?? []).map((e) => e.name);
        count('readdir', names.includes('only-outside'), names.includes('f'));
      }
    }
    swapper.kill();
    await exited;
    let swaps = 0;
    try {
      swaps = Number(readFileSync(join(proj, 'swaps'), 'utf8'));
    } catch {
      // Killed before its first thousand.
    }
    return { tries, swaps, inside, outside, hits };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
