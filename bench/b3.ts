// B3 metadata: `find TREE -type f` and `ls -lR TREE` over a host tree of
// small files, cold and warm, per variant, reps interleaved. Each sample is
// one run (one tether run with the view, one ssh command over a fresh sshfs
// mount, or a local shell) that walks twice, each walk timed on the device by
// tt (fork to wait): the first walk is cold, the second warm.
import { execFile } from 'node:child_process';
import { TETHER } from '../test/lib/tetherd.ts';
import type { Goal } from './measure.ts';
import { cell, median, problems, type Row, type RowResult, rowsTable, runRows } from './rows.ts';
import { fmt, table } from './table.ts';
import { installed, sshfsMount, sshfsUnmount, type Testbed, VIEW_DEVICE } from './testbed.ts';
import { type B3Tree, shq, type Work } from './work.ts';

const WALKS = {
  find: (dir: string) => `find ${shq(dir)} -type f`,
  ls: (dir: string) => `ls -lR ${shq(dir)}`,
} as const;
type Walk = keyof typeof WALKS;

const VARIANTS = ['tether-agent', 'sshfs-ssh', 'local'] as const;
type Variant = (typeof VARIANTS)[number];

export interface B3Result {
  files: number;
  dirs: number;
  reps: number;
  tree: string;
  /** One row per variant and walk ("tether-agent/find"); inner times "cold" and "warm". */
  rows: RowResult[];
  /** What each variant's walks printed, against the local walks (run once, untimed). */
  checks: Record<string, string>;
  ratios: Record<string, number>;
  goals: Goal[];
}

function capture(argv: string[], env?: NodeJS.ProcessEnv, cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      argv[0]!,
      argv.slice(1),
      { env, cwd, maxBuffer: 256 << 20, encoding: 'utf8', timeout: 3_600_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message.split('\n')[0]} ${stderr.trim().slice(-500)}`));
        else resolve(stdout);
      },
    );
  });
}

const sorted = (s: string) => s.split('\n').filter(Boolean).sort().join('\n');

function firstDifference(a: string, b: string): string {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++)
    if (x[i] !== y[i])
      return `line ${i + 1}: ${JSON.stringify(x[i])} vs local ${JSON.stringify(y[i])}`;
  return '';
}

export async function runB3(
  tb: Testbed,
  work: Work,
  tree: B3Tree,
  opts: {
    reps: number;
    /** Compare each variant's output with the host's first (the walks are long on slow links). */
    check: boolean;
    progress: (done: number, total: number) => void;
  },
): Promise<B3Result> {
  const dir = tree.dir;
  const env = tb.daemon.env;
  const tt = shq(work.bin.tt);
  const script = (w: Walk) =>
    `${tt} cold ${WALKS[w](dir)} >/dev/null && ${tt} warm ${WALKS[w](dir)} >/dev/null`;
  const viewAgent = await tb.viewAgent();
  const sshfs = installed('sshfs') ? undefined : 'sshfs is not installed (apt-get install sshfs)';
  const fresh = async () => {
    await sshfsUnmount(tb, dir);
    await sshfsMount(tb, dir);
  };
  const argvOf = (v: Variant, sh: string): string[] =>
    v === 'tether-agent'
      ? [TETHER, 'run', '-d', VIEW_DEVICE, 'sh', '-c', sh]
      : v === 'sshfs-ssh'
        ? ['ssh', ...tb.sshd.sshArgs(), `sh -c ${shq(sh)}`]
        : ['sh', '-c', sh];
  const labels: Record<Variant, string> = {
    'tether-agent': `tether run -d ${VIEW_DEVICE} (agent, view)`,
    'sshfs-ssh': 'ssh dev, sshfs (fresh mount)',
    local: 'local',
  };
  const rowOf = (v: Variant, w: Walk): Row => ({
    id: `${v}/${w}`,
    label: `${labels[v]}: ${w === 'ls' ? 'ls -lR' : 'find'}`,
    argv: argvOf(v, script(w)),
    ...(v === 'tether-agent' ? { env, cwd: dir, tetherd: true, agentPid: viewAgent } : {}),
    ...(v === 'sshfs-ssh' ? { missing: sshfs, before: fresh } : {}),
  });

  // Untimed, instead of a whole warm-up walk: start each variant's programs once (tether's device
  // cache gets sh, tt, find, ls and their libraries) on one leaf directory.
  const leaf = `${dir}/d0/s0`;
  const prime = `${tt} prime find ${shq(leaf)} -type f >/dev/null && ls -lR ${shq(leaf)} >/dev/null`;
  for (const v of VARIANTS) {
    if (v === 'sshfs-ssh' && sshfs) continue;
    if (v === 'sshfs-ssh') await fresh();
    await capture(
      argvOf(v, prime),
      v === 'tether-agent' ? env : undefined,
      v === 'tether-agent' ? dir : undefined,
    ).catch((e: Error) =>
      process.stderr.write(`bench: B3 ${v} priming run failed: ${e.message}\n`),
    );
  }

  // Once, untimed: does each variant see the tree the host sees? (tether's `ls -lR` should match
  // the host's byte for byte; sshfs shows its own link counts, so only its line count is checked.)
  const checks: Record<string, string> = {};
  const walkOut = async (v: Variant, w: Walk) => {
    if (v === 'sshfs-ssh') await fresh();
    const out = await capture(
      argvOf(v, WALKS[w](dir)),
      v === 'tether-agent' ? env : undefined,
      v === 'tether-agent' ? dir : undefined,
    );
    return w === 'find' ? sorted(out) : out;
  };
  const local = opts.check
    ? { find: await walkOut('local', 'find'), ls: await walkOut('local', 'ls') }
    : { find: '', ls: '' };
  if (opts.check && local.find.split('\n').length !== tree.files)
    throw new Error(`local find saw ${local.find.split('\n').length} files, made ${tree.files}`);
  for (const v of VARIANTS) {
    if (!opts.check || v === 'local' || (v === 'sshfs-ssh' && sshfs)) continue;
    for (const w of ['find', 'ls'] as const) {
      const key = `${v}/${w}`;
      try {
        const out = await walkOut(v, w);
        const same =
          v === 'sshfs-ssh' && w === 'ls'
            ? out.split('\n').length === local.ls.split('\n').length
            : out === local[w];
        checks[key] = same
          ? 'same as local'
          : `DIFFERS from local (${out.split('\n').length} lines vs ${local[w].split('\n').length}; ${firstDifference(out, local[w])})`;
      } catch (e) {
        checks[key] = `FAILED: ${(e as Error).message}`;
      }
    }
  }
  if (!sshfs) await sshfsUnmount(tb, dir);

  const rows = VARIANTS.flatMap((v) => (['find', 'ls'] as const).map((w) => rowOf(v, w)));
  // Every uncached lookup is a round trip: allow ~10 per file on the slowest link, twice.
  const timeoutMs = 120_000 + 2 * tree.files * (1 + 10 * tb.link.delayMs);
  let rs: RowResult[];
  try {
    rs = await runRows(tb, rows, {
      reps: opts.reps,
      warmup: false,
      timeoutMs,
      progress: opts.progress,
    });
  } finally {
    if (!sshfs) await sshfsUnmount(tb, dir).catch(() => {});
  }
  const ratios: Record<string, number> = {};
  for (const w of ['find', 'ls'] as const)
    for (const t of ['cold', 'warm'] as const) {
      const tether = median(rs, `tether-agent/${w}`, t);
      ratios[`tether-agent/sshfs-ssh ${w} ${t}`] = tether / median(rs, `sshfs-ssh/${w}`, t);
      ratios[`tether-agent/local ${w} ${t}`] = tether / median(rs, `local/${w}`, t);
    }
  return {
    files: tree.files,
    dirs: tree.dirs,
    reps: opts.reps,
    tree: dir,
    rows: rs,
    checks,
    ratios,
    // BENCHMARKS.md sets no figure for B3: the ratios are reported.
    goals: [] as Goal[],
  };
}

export function formatB3(r: B3Result, title: string, load: string): string {
  const byVariant = VARIANTS.map((v) => {
    const f = r.rows.find((x) => x.id === `${v}/find`)!;
    const l = r.rows.find((x) => x.id === `${v}/ls`)!;
    const c = (x: RowResult, t: string) =>
      x.status === 'ok' ? cell(x.inner[t]) : x.status === 'missing' ? 'MISSING' : 'FAILED';
    return [f.label.replace(/: find$/, ''), c(f, 'cold'), c(f, 'warm'), c(l, 'cold'), c(l, 'warm')];
  });
  return [
    '',
    `B3 metadata, ${title}`,
    `   ${r.files} files in ${r.dirs} directories; each sample one run walking twice (cold, then warm), each walk timed on the device by tt; ${r.reps} rep${r.reps === 1 ? '' : 's'} interleaved; ms, median (min–max); ${load}`,
    table(['variant', 'find cold', 'find warm', 'ls -lR cold', 'ls -lR warm'], byVariant),
    ...Object.entries(r.ratios).map(([k, v]) => `${k} = ${fmt(v)}`),
    'whole runs (spawn to exit, both walks):',
    rowsTable(r.rows, false),
    `output check (untimed): ${
      Object.entries(r.checks)
        .map(([k, v]) => `${k} ${v}`)
        .join('; ') || 'not on this link (on the first link only)'
    }`,
    ...problems(r.rows),
  ].join('\n');
}
