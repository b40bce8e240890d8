// B2 configure-like: N runs of a tiny dynamic C program (conftest, compiled
// once into a host tree) that each read three host files and write one, as
// configure's test programs do, per variant, reps interleaved. The loop is
// one shell on the device (tether: one run with the view; ssh: one command
// over an sshfs mount of the tree, fresh per sample), or N ssh commands
// through a ControlMaster, or local.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TETHER } from '../test/lib/tetherd.ts';
import { type Goal, goal, type Summary, summarize } from './measure.ts';
import { cell, median, problems, type Row, type RowResult, rowsTable, runRows } from './rows.ts';
import { fmt } from './table.ts';
import { installed, sshfsMount, sshfsUnmount, type Testbed, VIEW_DEVICE } from './testbed.ts';
import { type B2Tree, shq } from './work.ts';

export interface B2Result {
  programs: number;
  reps: number;
  tree: string;
  rows: RowResult[];
  /** How long each fresh sshfs mount took (untimed in the rows). */
  sshfsMountMs: Summary;
  ratios: Record<string, number>;
  goals: Goal[];
}

/** Every out/<i>.txt present with the right content, and nothing else. */
function checkOutputs(tree: B2Tree, n: number): string | null {
  const out = join(tree.dir, 'out');
  const names = readdirSync(out);
  if (names.length !== n) return `${names.length} files in ${out}, expected ${n}`;
  for (let i = 0; i < n; i++) {
    let got: string;
    try {
      got = readFileSync(join(out, `${i}.txt`), 'utf8');
    } catch (e) {
      return (e as Error).message;
    }
    if (got !== tree.expected(i))
      return `${out}/${i}.txt holds ${JSON.stringify(got)}, expected ${JSON.stringify(tree.expected(i))}`;
  }
  return null;
}

function emptyOutputs(tree: B2Tree): void {
  const out = join(tree.dir, 'out');
  for (const f of readdirSync(out)) rmSync(join(out, f), { force: true });
}

export async function runB2(
  tb: Testbed,
  tree: B2Tree,
  opts: { programs: number; reps: number; progress: (done: number, total: number) => void },
): Promise<B2Result> {
  const n = opts.programs;
  const dir = tree.dir;
  const env = tb.daemon.env;
  // The same loop everywhere, run by sh (dash): no exec but conftest's.
  const loop = `cd ${shq(dir)} && i=0; while [ $i -lt ${n} ]; do ./conftest $i || exit 1; i=$((i+1)); done`;
  // N ssh commands from a host loop, each through the ControlMaster.
  const cmOne = `"cd ${shq(dir)} && ./conftest $i"`;
  const cmLoop = `i=0; while [ $i -lt ${n} ]; do ssh ${tb.cm.args.map(shq).join(' ')} ${cmOne} || exit 1; i=$((i+1)); done`;
  const viewAgent = await tb.viewAgent();
  const sshfs = installed('sshfs') ? undefined : 'sshfs is not installed (apt-get install sshfs)';
  const mounts: number[] = [];
  const fresh = async () => {
    emptyOutputs(tree);
    await sshfsUnmount(tb, dir);
    mounts.push(await sshfsMount(tb, dir));
  };
  const check = () => checkOutputs(tree, n);
  const clean = async () => emptyOutputs(tree);
  const rows: Row[] = [
    {
      id: 'tether-agent',
      label: `tether run -d ${VIEW_DEVICE} sh -c LOOP (agent, view)`,
      argv: [TETHER, 'run', '-d', VIEW_DEVICE, 'sh', '-c', loop],
      env,
      cwd: dir,
      before: clean,
      check,
      tetherd: true,
      agentPid: viewAgent,
    },
    {
      id: 'tether-cli',
      label: 'tether run --view -C TREE sh -c LOOP (CLI via agent)',
      argv: [TETHER, 'run', '--view', '-C', dir, 'sh', '-c', loop],
      env,
      before: clean,
      check,
      tetherd: true,
      agentPid: tb.agentPid,
    },
    {
      id: 'sshfs-ssh',
      label: 'ssh dev LOOP, sshfs (fresh mount)',
      argv: ['ssh', ...tb.sshd.sshArgs(), `sh -c ${shq(loop)}`],
      missing: sshfs,
      before: fresh,
      check,
    },
    {
      id: 'sshfs-cm',
      label: `${n} × ssh ControlMaster, sshfs (fresh mount)`,
      argv: ['sh', '-c', cmLoop],
      missing: sshfs,
      before: fresh,
      check,
    },
    { id: 'local', label: 'local sh -c LOOP', argv: ['sh', '-c', loop], before: clean, check },
  ];
  // Generous: ~25 s for the slowest baseline at 10 ms RTT (BENCHMARKS.md), tether unknown.
  const timeoutMs = 60_000 + n * (200 + 100 * tb.link.delayMs);
  let rs: RowResult[];
  try {
    rs = await runRows(tb, rows, { reps: opts.reps, timeoutMs, progress: opts.progress });
  } finally {
    if (!sshfs) await sshfsUnmount(tb, dir).catch(() => {});
    emptyOutputs(tree);
  }
  const med = (id: string) => median(rs, id);
  const ratios: Record<string, number> = {
    'tether-agent/sshfs-ssh': med('tether-agent') / med('sshfs-ssh'),
    'tether-agent/sshfs-cm': med('tether-agent') / med('sshfs-cm'),
    'tether-agent/local': med('tether-agent') / med('local'),
    'tether-cli/sshfs-ssh': med('tether-cli') / med('sshfs-ssh'),
  };
  // The goal is set at 1 ms RTT (BENCHMARKS.md, DESIGN §4b).
  const goals =
    tb.link.delayMs === 1 && tb.link.rateMbit === 0
      ? [goal(ratios, 'tether-agent/sshfs-ssh', '<=', 0.5)]
      : [];
  return {
    programs: n,
    reps: opts.reps,
    tree: dir,
    rows: rs,
    sshfsMountMs: summarize(mounts),
    ratios,
    goals,
  };
}

export function formatB2(r: B2Result, title: string, load: string): string {
  const goalIds = new Set(r.goals.map((g) => g.ratio));
  const firsts = r.rows
    .filter((x) => x.first)
    .map((x) => `${x.id} ${fmt(x.first!.ms / 1000)}`)
    .join(', ');
  return [
    '',
    `B2 configure-like, ${title}`,
    `   ${r.programs} runs of conftest (reads 3 host files, writes 1) in one loop, ${r.reps} rep${r.reps === 1 ? '' : 's'} interleaved after 1 untimed; s from spawn to exit; ${load}`,
    rowsTable(r.rows, true),
    ...r.goals.map(
      (g) =>
        `${g.ratio} = ${fmt(g.value)}  (goal ${g.op} ${g.limit}: ${Number.isNaN(g.value) ? 'not measured' : g.met ? 'met' : 'NOT met'})`,
    ),
    ...Object.entries(r.ratios)
      .filter(([k]) => !goalIds.has(k))
      .map(([k, v]) => `${k} = ${fmt(v)}`),
    `first (untimed) run, s: ${firsts || '-'}`,
    `sshfs mount (untimed, per sample) ms: ${cell(r.sshfsMountMs)}`,
    ...problems(r.rows),
  ].join('\n');
}
