// B5 tracer overhead: sysloop (compiled C) makes N syscalls that the view does
// not redirect (raw getpid; 1-byte reads of /dev/zero, a device-local file) and
// M stat() calls of host paths, natively on the host, under PRoot
// (`proot -r /`) and under tether's tracer with the view: through the agent
// with the daemon's default tracer, and the stat loop under each tracer
// (`--tracer ptrace|unotify`, a `tetherd --stdio` on the same state). The loop
// times itself (clock_gettime around it), so program start and the run's setup
// are not in the figure; wall times are reported beside it.
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { notifyProbe } from '../daemon/native.ts';
import { TETHER, TETHERD } from '../test/lib/tetherd.ts';
import { type Goal, goal } from './measure.ts';
import { cell, median, problems, type Row, type RowResult, rowsTable, runRows } from './rows.ts';
import { fmt, table } from './table.ts';
import { installed, type Testbed, VIEW_DEVICE } from './testbed.ts';
import type { Work } from './work.ts';

const MODES = ['getpid', 'read', 'stat'] as const;
type Mode = (typeof MODES)[number];
const VARIANTS = ['native', 'proot', 'tether-agent'] as const;
type Variant = (typeof VARIANTS)[number];
/** The stat loop again under each tracer, named as `--tracer` names it. */
const TRACERS = ['ptrace', 'unotify'] as const;

/** Host paths stat()ed in turn: under the view's read-only `/`, where answers may be cached. */
const STAT_PATHS = ['/etc/passwd', '/usr/bin/env', '/usr/include/stdio.h', '/usr/lib/os-release'];

export interface B5Result {
  calls: number;
  stats: number;
  statPaths: string[];
  reps: number;
  /** One row per variant and mode ("tether-agent/getpid"); inner time = the loop, ms. */
  rows: RowResult[];
  ratios: Record<string, number>;
  goals: Goal[];
}

export async function runB5(
  tb: Testbed,
  work: Work,
  opts: {
    calls: number;
    stats: number;
    reps: number;
    progress: (done: number, total: number) => void;
  },
): Promise<B5Result> {
  const paths = STAT_PATHS.filter((p) => existsSync(p));
  if (paths.length === 0) paths.push(work.bin.sysloop);
  const viewAgent = await tb.viewAgent();
  const proot = installed('proot') ? undefined : 'proot is not installed (apt-get install proot)';
  const args = (m: Mode) =>
    m === 'stat'
      ? [work.bin.sysloop, m, String(opts.stats), ...paths]
      : [work.bin.sysloop, m, String(opts.calls)];
  const labels: Record<Variant, string> = {
    native: 'native',
    proot: 'proot -r /',
    'tether-agent': `tether run -d ${VIEW_DEVICE} (agent, view)`,
  };
  // A device per tracer: the same daemon state, served by a tetherd --stdio started per run.
  const config = join(tb.daemon.home, 'config');
  for (const tr of TRACERS)
    appendFileSync(
      config,
      `device tracer-${tr}\n  command exec '${TETHERD}' --stdio --log-level warn --user root --state '${tb.daemon.stateDir}' --tracer ${tr}\n  agent no\n  view yes\n`,
    );
  const unotify = notifyProbe() > 0 ? undefined : 'this kernel has no seccomp user notification';
  const tracerRows: Row[] = TRACERS.map((tr) => ({
    id: `tether-${tr}/stat`,
    label: `tether run -d tracer-${tr} (tetherd --stdio --tracer ${tr}): stat`,
    argv: [TETHER, 'run', '-d', `tracer-${tr}`, ...args('stat')],
    env: tb.daemon.env,
    cwd: work.dir,
    ...(tr === 'unotify' ? { missing: unotify } : {}),
    check: (s) => (/^@tt /m.test(s.stderr) ? null : 'no "@tt stat" line on stderr'),
  }));
  const rows: Row[] = VARIANTS.flatMap((v) =>
    MODES.map(
      (m): Row => ({
        id: `${v}/${m}`,
        label: `${labels[v]}: ${m}`,
        argv:
          v === 'native'
            ? args(m)
            : v === 'proot'
              ? ['proot', '-r', '/', ...args(m)]
              : [TETHER, 'run', '-d', VIEW_DEVICE, ...args(m)],
        ...(v === 'proot' ? { missing: proot } : {}),
        ...(v === 'tether-agent'
          ? { env: tb.daemon.env, cwd: work.dir, tetherd: true, agentPid: viewAgent }
          : {}),
        // A loop that printed no time did not run as asked.
        check: (s) => (/^@tt /m.test(s.stderr) ? null : `no "@tt ${m}" line on stderr`),
      }),
    ),
  );
  rows.push(...tracerRows);
  const rs = await runRows(tb, rows, {
    reps: opts.reps,
    timeoutMs: 900_000,
    progress: opts.progress,
  });
  const ratios: Record<string, number> = {};
  for (const m of MODES) {
    const native = median(rs, `native/${m}`, m);
    ratios[`tether-agent/native ${m}`] = median(rs, `tether-agent/${m}`, m) / native;
    ratios[`proot/native ${m}`] = median(rs, `proot/${m}`, m) / native;
  }
  for (const tr of TRACERS)
    ratios[`tether-${tr}/native stat`] =
      median(rs, `tether-${tr}/stat`, 'stat') / median(rs, 'native/stat', 'stat');
  return {
    calls: opts.calls,
    stats: opts.stats,
    statPaths: paths,
    reps: opts.reps,
    rows: rs,
    ratios,
    // Syscalls the view does not redirect must run at (nearly) native speed under the tracer.
    goals: [
      goal(ratios, 'tether-agent/native getpid', '<=', 1.1),
      goal(ratios, 'tether-agent/native read', '<=', 1.1),
      // BENCHMARKS.md and the hot-path issue: a redirected call answered on the device.
      goal(ratios, 'tether-agent/native stat', '<=', 10),
    ],
  };
}

export function formatB5(r: B5Result, title: string, load: string): string {
  const perCall = (v: Variant, m: Mode) => {
    const x = median(r.rows, `${v}/${m}`, m);
    return fmt((x * 1000) / (m === 'stat' ? r.stats : r.calls));
  };
  const status = (v: Variant, m: Mode) => {
    const x = r.rows.find((y) => y.id === `${v}/${m}`)!;
    return x.status === 'ok' ? cell(x.inner[m]) : x.status === 'missing' ? 'MISSING' : 'FAILED';
  };
  const rows = MODES.map((m) => [
    `${m} × ${m === 'stat' ? r.stats : r.calls}`,
    ...VARIANTS.map((v) => status(v, m)),
    ...VARIANTS.map((v) => perCall(v, m)),
    fmt(r.ratios[`proot/native ${m}`]),
    fmt(r.ratios[`tether-agent/native ${m}`]),
  ]);
  const goalIds = new Set(r.goals.map((g) => g.ratio));
  return [
    '',
    `B5 tracer overhead, ${title}`,
    `   the loop alone, timed inside sysloop; ms, median (min–max); ${r.reps} rep${r.reps === 1 ? '' : 's'} interleaved after 1 untimed; stat of ${r.statPaths.join(' ')}; ${load}`,
    table(
      [
        'syscalls',
        'native',
        'proot',
        'tether',
        'µs/call native',
        'proot',
        'tether',
        'proot/native',
        'tether/native',
      ],
      rows,
    ),
    ...r.goals.map(
      (g) =>
        `${g.ratio} = ${fmt(g.value)}  (goal ${g.op} ${g.limit}: ${Number.isNaN(g.value) ? 'not measured' : g.met ? 'met' : 'NOT met'})`,
    ),
    `stat under each tracer, µs/call: ${TRACERS.map((tr) => {
      const x = r.rows.find((y) => y.id === `tether-${tr}/stat`);
      const ms = x?.status === 'ok' ? median(r.rows, `tether-${tr}/stat`, 'stat') : Number.NaN;
      return `${tr} ${x?.status === 'missing' ? 'MISSING' : fmt((ms * 1000) / r.stats)}`;
    }).join(', ')}`,
    ...Object.entries(r.ratios)
      .filter(([k]) => !goalIds.has(k) && k.startsWith('tether'))
      .map(([k, v]) => `${k} = ${fmt(v)}`),
    'whole runs (spawn to exit):',
    rowsTable(r.rows, false),
    ...problems(r.rows),
  ].join('\n');
}
