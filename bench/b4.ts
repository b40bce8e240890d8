// B4 bulk: N bytes of zeros through stdout to /dev/null, per variant, reps
// interleaved. Throughput is bytes over wall time (spawn to exit), so each
// row also pays its client's start and handshake, the raw TLS row included.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TETHER } from '../test/lib/tetherd.ts';
import {
  checkOk,
  type Goal,
  goal,
  peakRssKb,
  resetPeakRss,
  rotation,
  type Summary,
  summarize,
  timedRunWithRss,
} from './measure.ts';
import { DRAIN, NODE, type Testbed } from './testbed.ts';

interface Variant {
  id: string;
  label: string;
  argv: (n: number) => string[];
  env?: NodeJS.ProcessEnv;
  /** Which long-lived processes carry this row's bytes (for their peak RSS). */
  tetherd: boolean;
  agent: boolean;
}

export interface B4Sample {
  ms: number;
  mbps: number;
  clientRssKb: number | null;
  tetherdRssKb: number | null;
  agentRssKb: number | null;
  /** tls-drain's own handshake and transfer times (raw TLS row only). */
  inner?: { handshakeMs: number; transferMs: number };
}

export interface B4Variant {
  id: string;
  label: string;
  samples: B4Sample[];
  summary: Summary;
  rss: { clientKb: number | null; tetherdKb: number | null; agentKb: number | null };
}

export interface B4Result {
  bytes: number;
  reps: number;
  variants: B4Variant[];
  ratios: Record<string, number>;
  goals: Goal[];
}

function variants(tb: Testbed): Variant[] {
  const env = tb.daemon.env;
  const head = (n: number) => ['head', '-c', String(n), '/dev/zero'];
  const ssh = (cipher: string) => (n: number) => [
    'ssh',
    ...tb.sshd.sshArgs(['-c', cipher]),
    head(n).join(' '),
  ];
  return [
    {
      id: 'tether-agent',
      label: 'tether run head (agent)',
      argv: (n) => [TETHER, 'run', ...head(n)],
      env,
      tetherd: true,
      agent: true,
    },
    {
      id: 'tether-direct',
      label: 'tether run --no-agent head',
      argv: (n) => [TETHER, 'run', '--no-agent', ...head(n)],
      env,
      tetherd: true,
      agent: false,
    },
    {
      id: 'ssh-aes128-gcm',
      label: 'ssh head (aes128-gcm)',
      argv: ssh('aes128-gcm@openssh.com'),
      tetherd: false,
      agent: false,
    },
    {
      id: 'ssh-chacha20',
      label: 'ssh head (chacha20-poly1305)',
      argv: ssh('chacha20-poly1305@openssh.com'),
      tetherd: false,
      agent: false,
    },
    {
      id: 'raw-tls',
      label: 'raw Node TLS 1.3',
      argv: (n) => [NODE, DRAIN, tb.sink.host, String(tb.sink.port), String(n)],
      tetherd: false,
      agent: false,
    },
  ];
}

const maxOf = (xs: (number | null)[]) => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? Math.max(...v) : null;
};

export async function runB4(
  tb: Testbed,
  opts: { bytes: number; reps: number; progress: (done: number, total: number) => void },
): Promise<B4Result> {
  const vs = variants(tb);
  const samples = new Map(vs.map((v) => [v.id, [] as B4Sample[]]));
  const tetherdPid = tb.daemon.proc.pid!;
  const rssFile = join(tmpdir(), `tether-bench-rss-${process.pid}`);
  // Generous: the slowest link (100 Mbit) moves ~12 MB/s.
  const timeoutMs = 60_000 + opts.bytes / 2e3;
  const one = async (v: Variant, n: number): Promise<B4Sample> => {
    resetPeakRss(tetherdPid);
    resetPeakRss(tb.agentPid);
    const s = await timedRunWithRss(v.argv(n), { env: v.env, timeoutMs, rssFile });
    checkOk(v.label, s);
    const sample: B4Sample = {
      ms: s.ms,
      mbps: n / (s.ms / 1000) / 1e6,
      clientRssKb: s.clientRssKb,
      tetherdRssKb: v.tetherd ? peakRssKb(tetherdPid) : null,
      agentRssKb: v.agent ? peakRssKb(tb.agentPid) : null,
    };
    if (v.id === 'raw-tls') {
      const m = /\{.*\}/.exec(s.stderr);
      if (m) sample.inner = JSON.parse(m[0]);
    }
    return sample;
  };

  // One small untimed run each: first exec of head, ssh's known_hosts, caches.
  for (const v of vs) await one(v, 8 << 20);
  for (let r = 0; r < opts.reps; r++) {
    for (const v of rotation(vs, r)) samples.get(v.id)!.push(await one(v, opts.bytes));
    opts.progress(r + 1, opts.reps);
  }
  if (!tb.agentAlive()) throw new Error('the agent died during B4: its runs went direct');

  const result = vs.map((v) => {
    const ss = samples.get(v.id)!;
    return {
      id: v.id,
      label: v.label,
      samples: ss,
      summary: summarize(ss.map((s) => s.mbps)),
      rss: {
        clientKb: maxOf(ss.map((s) => s.clientRssKb)),
        tetherdKb: maxOf(ss.map((s) => s.tetherdRssKb)),
        agentKb: maxOf(ss.map((s) => s.agentRssKb)),
      },
    };
  });
  const med = (id: string) => result.find((r) => r.id === id)!.summary.median;
  const ratios: Record<string, number> = {
    'tether-agent/raw-tls': med('tether-agent') / med('raw-tls'),
    'tether-direct/raw-tls': med('tether-direct') / med('raw-tls'),
    'tether-agent/ssh-aes128-gcm': med('tether-agent') / med('ssh-aes128-gcm'),
  };
  // The goal holds on the unshaped link; elsewhere the link is the limit for both.
  const unshaped = tb.link.delayMs === 0 && tb.link.rateMbit === 0;
  const goals = unshaped ? [goal(ratios, 'tether-agent/raw-tls', '>=', 0.8)] : [];
  return { bytes: opts.bytes, reps: opts.reps, variants: result, ratios, goals };
}
