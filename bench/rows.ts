// The sample loop B2, B3 and B5 share: rows (one command each) run once
// untimed, then `reps` times interleaved, each rep one row further on (A B C,
// B C A, ...). A row whose baseline is not installed is reported as missing;
// a row that fails (exit status, wrong output, timeout) is reported as failed
// with its exact command and dropped from the rest of the run; the others go on.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  peakRssKb,
  resetPeakRss,
  rotation,
  type Sample,
  type Summary,
  summarize,
  timedRunWithRss,
} from './measure.ts';
import { fmt, mb, table } from './table.ts';
import type { Testbed } from './testbed.ts';
import { innerTimes, shq } from './work.ts';

export interface Row {
  id: string;
  label: string;
  argv: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Why the row cannot run (its baseline is not installed): reported, never skipped silently. */
  missing?: string;
  /** Untimed, before every sample of the row (a fresh sshfs mount, emptied outputs). */
  before?: () => Promise<void>;
  /** Untimed, after every sample: a message when the output is wrong. */
  check?: (s: Sample) => string | null | Promise<string | null>;
  /** The row runs through tetherd / this agent: their peak RSS is reported. */
  tetherd?: boolean;
  agentPid?: number;
}

export interface RowSample {
  ms: number;
  /** The "@tt LABEL NS" times the command printed (tt, sysloop), in ms. */
  inner: Record<string, number>;
  clientRssKb: number | null;
  tetherdRssKb: number | null;
  agentRssKb: number | null;
}

export interface RowResult {
  id: string;
  label: string;
  /** The command as a shell line (cwd and TETHER_HOME included), to rerun it by hand. */
  command: string;
  status: 'ok' | 'missing' | 'failed';
  error?: string;
  /** The row's agent was gone before some of its samples: those runs did not go through it. */
  agentDied?: string;
  /** The untimed first sample: the first run of this command on the link. */
  first: RowSample | null;
  samples: RowSample[];
  /** Wall ms, spawn to exit. */
  summary: Summary;
  inner: Record<string, Summary>;
  /** Largest peak over the samples. */
  rss: { clientKb: number | null; tetherdKb: number | null; agentKb: number | null };
}

export interface RowsOptions {
  reps: number;
  /** One untimed sample per row first (default); off when the caller primed the caches itself. */
  warmup?: boolean;
  timeoutMs: number;
  progress: (done: number, total: number) => void;
}

export function commandLine(row: Row): string {
  const env = row.env?.TETHER_HOME ? `TETHER_HOME=${shq(row.env.TETHER_HOME)} ` : '';
  const cd = row.cwd ? `cd ${shq(row.cwd)} && ` : '';
  return `${cd}${env}${row.argv.map(shq).join(' ')}`;
}

const maxOf = (xs: (number | null)[]) => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? Math.max(...v) : null;
};

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function exited(tb: Testbed): string | null {
  const p = tb.daemon.proc;
  if (p.exitCode === null && p.signalCode === null) return null;
  const log = tb.daemon.stderr().trim().split('\n').slice(-8).join('\n    ');
  return `tetherd exited (${p.signalCode ?? `exit ${p.exitCode}`}); its last log lines:\n    ${log}`;
}

export async function runRows(tb: Testbed, rows: Row[], opts: RowsOptions): Promise<RowResult[]> {
  const tetherdPid = tb.daemon.proc.pid!;
  const rssFile = join(tmpdir(), `tether-bench-rss-${process.pid}`);
  const state = new Map(
    rows.map((r) => [
      r.id,
      {
        status: (r.missing ? 'missing' : 'ok') as RowResult['status'],
        error: r.missing,
        first: null as RowSample | null,
        samples: [] as RowSample[],
        agentDied: undefined as string | undefined,
      },
    ]),
  );

  const one = async (row: Row): Promise<RowSample | null> => {
    const st = state.get(row.id)!;
    if (st.status !== 'ok') return null;
    // Without its agent the launcher falls back to the Node CLI: a different path, so say so.
    if (row.agentPid && !alive(row.agentPid) && !st.agentDied) {
      st.agentDied = `agent pid ${row.agentPid} was gone before sample ${st.samples.length + 1}`;
      process.stderr.write(`bench: ${row.label}: ${st.agentDied}\n`);
    }
    try {
      await row.before?.();
      resetPeakRss(tetherdPid);
      if (row.agentPid) resetPeakRss(row.agentPid);
      // coreutils timeout kills the command's whole process group (timedRun alone would kill
      // only GNU time, and the command would hold the stderr pipe open until it ended).
      const limit = ['timeout', '-s', 'KILL', String(Math.ceil(opts.timeoutMs / 1000))];
      const s = await timedRunWithRss([...limit, ...row.argv], {
        env: row.env,
        cwd: row.cwd,
        timeoutMs: opts.timeoutMs + 30_000,
        rssFile,
      });
      if (s.code !== 0) {
        const how =
          s.ms >= opts.timeoutMs
            ? `timed out after ${(opts.timeoutMs / 1000).toFixed(0)} s`
            : `${s.signal ?? `exit ${s.code}`} after ${s.ms.toFixed(0)} ms`;
        throw new Error(`${how}: ${s.stderr.trim().split('\n').slice(-6).join('\n    ')}`);
      }
      const wrong = await row.check?.(s);
      if (wrong) throw new Error(`wrong output: ${wrong}`);
      return {
        ms: s.ms,
        inner: innerTimes(s.stderr),
        clientRssKb: s.clientRssKb,
        tetherdRssKb: row.tetherd ? peakRssKb(tetherdPid) : null,
        agentRssKb: row.agentPid ? peakRssKb(row.agentPid) : null,
      };
    } catch (e) {
      st.status = 'failed';
      const dead = row.tetherd ? exited(tb) : null;
      st.error = `${(e as Error).message}${dead ? `\n    ${dead}` : ''}`;
      process.stderr.write(
        `bench: ${row.label} FAILED: ${st.error}\n    command: ${commandLine(row)}\n`,
      );
      return null;
    }
  };

  if (opts.warmup !== false) for (const row of rows) state.get(row.id)!.first = await one(row);
  opts.progress(0, opts.reps);
  for (let r = 0; r < opts.reps; r++) {
    for (const row of rotation(rows, r)) {
      const s = await one(row);
      if (s) state.get(row.id)!.samples.push(s);
    }
    opts.progress(r + 1, opts.reps);
  }

  return rows.map((row) => {
    const st = state.get(row.id)!;
    const labels = [...new Set(st.samples.flatMap((s) => Object.keys(s.inner)))];
    const result: RowResult = {
      id: row.id,
      label: row.label,
      command: commandLine(row),
      status: st.status,
      first: st.first,
      samples: st.samples,
      summary: summarize(st.status === 'ok' ? st.samples.map((s) => s.ms) : []),
      inner: Object.fromEntries(
        labels.map((l) => [
          l,
          summarize(
            st.status === 'ok'
              ? st.samples.map((s) => s.inner[l]).filter((x) => x !== undefined)
              : [],
          ),
        ]),
      ),
      rss: {
        clientKb: maxOf(st.samples.map((s) => s.clientRssKb)),
        tetherdKb: maxOf(st.samples.map((s) => s.tetherdRssKb)),
        agentKb: maxOf(st.samples.map((s) => s.agentRssKb)),
      },
    };
    if (st.error) result.error = st.error;
    if (st.agentDied) result.agentDied = st.agentDied;
    return result;
  });
}

/** Median of a row's wall time or of one of its inner times; NaN unless the row ran. */
export function median(rs: RowResult[], id: string, inner?: string): number {
  const r = rs.find((x) => x.id === id);
  if (r?.status !== 'ok') return Number.NaN;
  return (inner ? r.inner[inner]?.median : r.summary.median) ?? Number.NaN;
}

/** The rows as a table of wall times (ms, or s with `seconds`) and peak RSS. */
export function rowsTable(rs: RowResult[], seconds: boolean): string {
  const f = (x: number) => fmt(seconds ? x / 1000 : x);
  return table(
    [
      'variant',
      `median ${seconds ? 's' : 'ms'}`,
      'min',
      'max',
      'client RSS',
      'tetherd RSS',
      'agent RSS',
    ],
    rs.map((r) =>
      r.status === 'ok'
        ? [
            r.label,
            f(r.summary.median),
            f(r.summary.min),
            f(r.summary.max),
            mb(r.rss.clientKb),
            mb(r.rss.tetherdKb),
            mb(r.rss.agentKb),
          ]
        : [r.label, r.status === 'missing' ? 'MISSING' : 'FAILED', '', '', '', '', ''],
    ),
  );
}

/** One cell: "median (min–max)". */
export function cell(s: Summary | undefined, seconds = false): string {
  if (!s || s.n === 0) return '-';
  const f = (x: number) => fmt(seconds ? x / 1000 : x);
  return s.n === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

/** Lines for the rows that did not run, with why and the command. */
export function problems(rs: RowResult[]): string[] {
  const out: string[] = [];
  for (const r of rs) {
    if (r.status === 'missing') out.push(`MISSING ${r.label}: ${r.error}`);
    if (r.status === 'failed')
      out.push(`FAILED ${r.label}: ${r.error}`, `    command: ${r.command}`);
    if (r.agentDied) out.push(`WARNING ${r.label}: ${r.agentDied} (later runs went without it)`);
  }
  return out;
}
