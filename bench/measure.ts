// Timing and memory probes shared by the benchmarks. Every time is wall
// time seen from the host: from spawn() to the child's exit.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';

export interface Sample {
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export interface TimedOptions {
  env?: NodeJS.ProcessEnv;
  /** Working directory (the launcher sends its own to the agent: the view binds it). */
  cwd?: string;
  timeoutMs: number;
}

/** Runs argv with stdin and stdout on /dev/null; stderr is kept (last 4 KB) for errors. */
export function timedRun(argv: string[], opts: TimedOptions): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), {
      env: opts.env,
      cwd: opts.cwd,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    running.add(child.pid!);
    let ms = 0;
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4096);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      running.delete(child.pid!);
      reject(e);
    });
    // Timed at 'exit', not 'close': the stderr pipe may drain a little later.
    child.once('exit', () => {
      ms = Number(process.hrtime.bigint() - t0) / 1e6;
      running.delete(child.pid!);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ ms, code, signal, stderr });
    });
  });
}

// Children in flight, so an interrupted run can kill them (they share our
// process group, so Ctrl-C reaches them anyway; SIGTERM from elsewhere does not).
const running = new Set<number>();
export function killRunning(): void {
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
}

export function checkOk(what: string, s: Sample): void {
  if (s.code !== 0)
    throw new Error(
      `${what} failed (${s.signal ?? `exit ${s.code}`}) after ${s.ms.toFixed(0)} ms: ${s.stderr.trim()}`,
    );
}

/** Runs argv under GNU time to learn the client's peak RSS (ru_maxrss, kB) exactly. */
export async function timedRunWithRss(
  argv: string[],
  opts: TimedOptions & { rssFile: string },
): Promise<Sample & { clientRssKb: number | null }> {
  const s = await timedRun(['/usr/bin/time', '-f', '%M', '-o', opts.rssFile, ...argv], opts);
  let clientRssKb: number | null = null;
  try {
    // GNU time may put "Command exited with non-zero status" first: the figure is last.
    const last = readFileSync(opts.rssFile, 'utf8').trim().split('\n').pop()!;
    clientRssKb = /^\d+$/.test(last) ? Number(last) : null;
    rmSync(opts.rssFile, { force: true });
  } catch {}
  return { ...s, clientRssKb };
}

function statusField(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Peak RSS (VmHWM, kB) of a running process since start or since resetPeakRss. */
export function peakRssKb(pid: number): number | null {
  return statusField(pid, 'VmHWM');
}

export function rssKb(pid: number): number | null {
  return statusField(pid, 'VmRSS');
}

/** Resets VmHWM to the current RSS (clear_refs 5), so a peak is per measurement. */
export function resetPeakRss(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {}
}

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function summarize(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { n, median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const median = n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { n, median, min: s[0]!, max: s[n - 1]! };
}

/** Round-robin order for iteration i, starting one further each time so no
 *  variant always runs right after the same other one. */
export function rotation<T>(items: T[], i: number): T[] {
  const k = i % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export interface Goal {
  ratio: string;
  op: '<=' | '>=';
  limit: number;
  value: number;
  met: boolean;
}

export function goal(
  ratios: Record<string, number>,
  ratio: string,
  op: Goal['op'],
  limit: number,
): Goal {
  const value = ratios[ratio]!;
  return { ratio, op, limit, value, met: op === '<=' ? value <= limit : value >= limit };
}
