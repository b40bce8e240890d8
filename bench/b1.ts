// B1 exec latency: `true` run N times per variant, variants interleaved
// round-robin within each iteration, each timed from spawn to exit.
import { TETHER } from '../test/lib/tetherd.ts';
import {
  checkOk,
  type Goal,
  goal,
  peakRssKb,
  resetPeakRss,
  rotation,
  rssKb,
  type Summary,
  summarize,
  timedRun,
} from './measure.ts';
import { DEFAULT_KEX, KEX, type Testbed } from './testbed.ts';

interface Variant {
  id: string;
  label: string;
  argv: string[];
  env?: NodeJS.ProcessEnv;
}

export interface B1Variant {
  id: string;
  label: string;
  samplesMs: number[];
  summary: Summary;
}

export interface B1Result {
  n: number;
  warmup: number;
  variants: B1Variant[];
  ratios: Record<string, number>;
  goals: Goal[];
  rss: {
    tetherdIdleKb: number | null;
    tetherdPeakKb: number | null;
    agentIdleKb: number | null;
    agentPeakKb: number | null;
  };
  /** TLS connections tetherd accepted during B1: only the --no-agent runs should make one. */
  connections: { expected: number; seen: number };
}

function variants(tb: Testbed): Variant[] {
  const env = tb.daemon.env;
  const v: Variant[] = [
    { id: 'local', label: 'local /bin/true', argv: ['/bin/true'] },
    { id: 'tether-agent', label: 'tether run true (agent)', argv: [TETHER, 'run', 'true'], env },
    {
      id: 'tether-direct',
      label: 'tether run --no-agent true',
      argv: [TETHER, 'run', '--no-agent', 'true'],
      env,
    },
    { id: 'ssh', label: `ssh dev true (${KEX})`, argv: ['ssh', ...tb.sshd.sshArgs(), 'true'] },
  ];
  if (tb.sshdDefaultKex)
    v.push({
      id: 'ssh-default-kex',
      label: `ssh dev true (${DEFAULT_KEX.replace(/-sha512@openssh.com$/, '')})`,
      argv: ['ssh', ...tb.sshdDefaultKex.sshArgs(), 'true'],
    });
  v.push({
    id: 'ssh-cm',
    label: 'ssh dev true (ControlMaster)',
    argv: ['ssh', ...tb.cm.args, 'true'],
  });
  return v;
}

export async function runB1(
  tb: Testbed,
  opts: { n: number; warmup: number; progress: (done: number, total: number) => void },
): Promise<B1Result> {
  const vs = variants(tb);
  const samples = new Map(vs.map((v) => [v.id, [] as number[]]));
  const connBefore = tb.connections();
  const tetherdPid = tb.daemon.proc.pid!;
  const rss = {
    tetherdIdleKb: rssKb(tetherdPid),
    tetherdPeakKb: null as number | null,
    agentIdleKb: rssKb(tb.agentPid),
    agentPeakKb: null as number | null,
  };
  resetPeakRss(tetherdPid);
  resetPeakRss(tb.agentPid);
  const total = opts.warmup + opts.n;
  for (let i = 0; i < total; i++) {
    for (const v of rotation(vs, i)) {
      const s = await timedRun(v.argv, { env: v.env, timeoutMs: 30_000 });
      checkOk(v.label, s);
      if (i >= opts.warmup) samples.get(v.id)!.push(s.ms);
    }
    opts.progress(i + 1, total);
  }
  rss.tetherdPeakKb = peakRssKb(tetherdPid);
  rss.agentPeakKb = peakRssKb(tb.agentPid);
  if (!tb.agentAlive()) throw new Error('the agent died during B1: its runs went direct');

  const result = vs.map((v) => {
    const ms = samples.get(v.id)!;
    return { id: v.id, label: v.label, samplesMs: ms, summary: summarize(ms) };
  });
  const med = (id: string) => result.find((r) => r.id === id)?.summary.median ?? Number.NaN;
  const ratios: Record<string, number> = {
    'tether-agent/ssh': med('tether-agent') / med('ssh'),
    'tether-agent/ssh-cm': med('tether-agent') / med('ssh-cm'),
    'tether-direct/ssh': med('tether-direct') / med('ssh'),
  };
  if (tb.sshdDefaultKex)
    ratios['tether-agent/ssh-default-kex'] = med('tether-agent') / med('ssh-default-kex');
  return {
    n: opts.n,
    warmup: opts.warmup,
    variants: result,
    ratios,
    // The goals for the agent path (DESIGN §4b).
    goals: [
      goal(ratios, 'tether-agent/ssh', '<=', 0.5),
      goal(ratios, 'tether-agent/ssh-cm', '<=', 3),
    ],
    rss,
    connections: { expected: total, seen: tb.connections() - connBefore },
  };
}
