// `npm run bench`: B1 (exec latency), B2 (configure-like), B3 (metadata),
// B4 (bulk through stdout) and B5 (tracer overhead) against their baselines
// on each link setting, printed as tables and written as JSON to
// bench/results/. See bench/README.md and BENCHMARKS.md.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, TETHER } from '../test/lib/tetherd.ts';
import { loadOrCreateIdentity } from '../transport/identity.ts';
import { type B1Result, runB1 } from './b1.ts';
import { type B2Result, formatB2, runB2 } from './b2.ts';
import { type B3Result, formatB3, runB3 } from './b3.ts';
import { type B4Result, runB4 } from './b4.ts';
import { type B5Result, formatB5, runB5 } from './b5.ts';
import { type Goal, killRunning, summarize } from './measure.ts';
import { fmt, mb, table } from './table.ts';
import { LINKS, type LinkSpec, NODE, type Rtt, startTestbed } from './testbed.ts';
import {
  type B2Tree,
  type B3Tree,
  createB2Tree,
  createB3Tree,
  createWork,
  type Work,
} from './work.ts';

const BENCHES = ['b1', 'b2', 'b3', 'b4', 'b5'];

const USAGE = `usage: npm run bench -- [options]
  --quick                  smoke run: --n 20 --bytes 64M --shaped-bytes 16M --programs 20
                           --files 2000 --calls 100000 --stats 10000
  --n N                    B1 iterations per variant (default 200)
  --programs N             B2 programs per loop (default 200)
  --files N                B3 files in the tree (default 20000)
  --bytes SIZE             B4 size on unshaped links (default 1G; K/M/G are powers of 1024)
  --shaped-bytes SIZE      B4 size on a rate-limited link (default 128M)
  --calls N                B5 getpid and read calls (default 1000000)
  --stats N                B5 stat calls (default 100000)
  --reps N                 B2-B5 repetitions per variant (default 3)
  --b3-reps N              B3 repetitions (default: --reps, but 1 on the 10ms link, where
                           tether's ls -lR of 20k files takes ~10 min per walk)
  --tree-dir DIR           where B2/B3/B5 make their host trees (default /var/tmp)
  --links LIST             among none,1ms,10ms (default all three; B5 runs on the first only)
  --only LIST              among b1,b2,b3,b4,b5 (default all)
  --ssh-default-kex        add a B1 ssh row with OpenSSH's default sntrup761x25519 key exchange
  --out DIR                where the JSON goes (default bench/results)`;

function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(v.trim());
  if (!m) throw new Error(`bad size ${JSON.stringify(v)}`);
  const shift = { '': 0, k: 10, m: 20, g: 30 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * 2 ** shift);
}

function parseCount(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} needs a positive integer`);
  return n;
}

function parseList(v: string, allowed: string[], what: string): string[] {
  const items = v.split(',').map((s) => s.trim());
  for (const it of items)
    if (!allowed.includes(it)) throw new Error(`${what}: ${it}? (one of ${allowed.join(', ')})`);
  return items;
}

function options() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      n: { type: 'string' },
      programs: { type: 'string' },
      files: { type: 'string' },
      calls: { type: 'string' },
      stats: { type: 'string' },
      'tree-dir': { type: 'string', default: '/var/tmp' },
      bytes: { type: 'string' },
      'shaped-bytes': { type: 'string' },
      reps: { type: 'string' },
      'b3-reps': { type: 'string' },
      links: { type: 'string', default: 'none,1ms,10ms' },
      only: { type: 'string', default: BENCHES.join(',') },
      // Off by default: ~0.2 s more per iteration on every link, and BENCHMARKS.md
      // already gives its cost (~65 ms of CPU per connection).
      'ssh-default-kex': { type: 'boolean', default: false },
      out: { type: 'string', default: join(ROOT, 'bench/results') },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowNegative: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const q = values.quick;
  return {
    quick: q,
    n: parseCount(values.n ?? (q ? '20' : '200'), '--n'),
    warmup: 3,
    programs: parseCount(values.programs ?? (q ? '20' : '200'), '--programs'),
    files: parseCount(values.files ?? (q ? '2000' : '20000'), '--files'),
    calls: parseCount(values.calls ?? (q ? '100000' : '1000000'), '--calls'),
    stats: parseCount(values.stats ?? (q ? '10000' : '100000'), '--stats'),
    treeDir: values['tree-dir'],
    bytes: parseSize(values.bytes ?? (q ? '64M' : '1G')),
    shapedBytes: parseSize(values['shaped-bytes'] ?? (q ? '16M' : '128M')),
    reps: parseCount(values.reps ?? '3', '--reps'),
    b3Reps: values['b3-reps'] === undefined ? null : parseCount(values['b3-reps'], '--b3-reps'),
    links: parseList(values.links, Object.keys(LINKS), '--links'),
    only: parseList(values.only, BENCHES, '--only'),
    sshDefaultKex: values['ssh-default-kex'],
    out: values.out,
  };
}

function cmdOut(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

function machine() {
  return {
    nproc: os.availableParallelism(),
    model: os.cpus()[0]?.model ?? 'unknown',
    kernel: `${os.type()} ${os.release()}`,
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    loadavgAtStart: os.loadavg(),
  };
}

/** Short hashes of the bundles that bin/tether and bin/tetherd run. */
function distHashes(): Record<string, string> {
  const h: Record<string, string> = {};
  for (const f of ['tether.mjs', 'tetherd.mjs']) {
    try {
      h[f] = createHash('sha256')
        .update(readFileSync(join(ROOT, 'dist', f)))
        .digest('hex')
        .slice(0, 12);
    } catch {
      h[f] = 'missing';
    }
  }
  return h;
}

/** The part of a version banner that names the version, or 'missing'. */
function firstMatch(out: string, re: RegExp): string {
  return re.exec(out)?.[0] ?? 'missing';
}

function versions() {
  const commit = cmdOut('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = cmdOut('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no']);
  return {
    node: cmdOut(NODE, ['-v']),
    openssl: process.versions.openssl,
    tether: cmdOut(TETHER, ['-V']),
    tetherCommit: `${commit}${dirty ? '-dirty' : ''}`,
    ssh: cmdOut('ssh', ['-V']),
    sshfs: firstMatch(cmdOut('sshfs', ['-V']), /SSHFS version \S+/),
    proot: firstMatch(cmdOut('proot', ['--version']), /v?\d+\.\d+\.\d+\S*/),
    dist: distHashes(),
  };
}

interface LinkEntry {
  link: LinkSpec;
  rtt: Rtt | null;
  /** 1-minute load average when each benchmark started and ended: this machine is shared. */
  load: Record<string, number>;
  b1?: B1Result;
  b2?: B2Result;
  b3?: B3Result;
  b4?: B4Result;
  b5?: B5Result;
  error?: string;
  /** Bundle hashes when this link started; distChanged if they differed at its end. */
  dist: Record<string, string>;
  distChanged?: boolean;
}

const results = {
  started: new Date().toISOString(),
  finished: null as string | null,
  loadavgAtEnd: null as number[] | null,
  aborted: null as string | null,
  machine: machine(),
  versions: {} as ReturnType<typeof versions>,
  options: {} as ReturnType<typeof options>,
  links: [] as LinkEntry[],
};
let resultsPath: string | null = null;

function writeResults(): void {
  if (!resultsPath) return;
  mkdirSync(join(resultsPath, '..'), { recursive: true });
  writeFileSync(resultsPath, `${JSON.stringify(results, null, 1)}\n`);
}

function linkTitle(link: LinkSpec, rtt: Rtt | null): string {
  const shape =
    link.delayMs === 0 && link.rateMbit === 0
      ? 'no delay'
      : `${link.delayMs} ms RTT${link.rateMbit ? `, ${link.rateMbit} Mbit/s` : ''}`;
  return `link ${link.name} (${shape}; ping -U avg ${rtt ? `${rtt.avg.toFixed(2)} ms` : '?'})`;
}

function load(e: LinkEntry, b: string): string {
  const f = (x: number | undefined) => (x === undefined ? '?' : x.toFixed(1));
  return `load ${f(e.load[`${b}Start`])} -> ${f(e.load[`${b}End`])}`;
}

function goalLine(g: Goal): string {
  return `${g.ratio} = ${fmt(g.value)}  (goal ${g.op} ${g.limit}: ${g.met ? 'met' : 'NOT met'})`;
}

function printB1(e: LinkEntry, r: B1Result): void {
  const rows = r.variants.map((v) => [
    v.label,
    fmt(v.summary.median),
    fmt(v.summary.min),
    fmt(v.summary.max),
  ]);
  const goals = new Set(r.goals.map((g) => g.ratio));
  const lines = [
    '',
    `B1 exec latency, ${linkTitle(e.link, e.rtt)}`,
    `   n=${r.n} per variant after ${r.warmup} warm-up, interleaved; ms from spawn to exit; ${load(e, 'b1')}`,
    table(['variant', 'median', 'min', 'max'], rows),
    ...r.goals.map(goalLine),
    ...Object.entries(r.ratios)
      .filter(([k]) => !goals.has(k))
      .map(([k, v]) => `${k} = ${fmt(v)}`),
    `peak RSS: tetherd ${mb(r.rss.tetherdPeakKb)} (idle ${mb(r.rss.tetherdIdleKb)}), agent ${mb(r.rss.agentPeakKb)} (idle ${mb(r.rss.agentIdleKb)})`,
  ];
  if (r.connections.seen !== r.connections.expected)
    lines.push(
      `WARNING: tetherd saw ${r.connections.seen} TLS connections, expected ${r.connections.expected} (one per --no-agent run)`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printB4(e: LinkEntry, r: B4Result): void {
  const rows = r.variants.map((v) => [
    v.label,
    fmt(v.summary.median),
    fmt(v.summary.min),
    fmt(v.summary.max),
    mb(v.rss.clientKb),
    mb(v.rss.tetherdKb),
    mb(v.rss.agentKb),
  ]);
  const goals = new Set(r.goals.map((g) => g.ratio));
  const lines = [
    '',
    `B4 bulk, ${linkTitle(e.link, e.rtt)}`,
    `   ${r.bytes / 2 ** 20} MiB of zeros through stdout to /dev/null, ${r.reps} reps interleaved; MB/s = 1e6 bytes / wall s (spawn to exit); ${load(e, 'b4')}`,
    table(['variant', 'median MB/s', 'min', 'max', 'client RSS', 'tetherd RSS', 'agent RSS'], rows),
    ...r.goals.map(goalLine),
    ...Object.entries(r.ratios)
      .filter(([k]) => !goals.has(k))
      .map(([k, v]) => `${k} = ${fmt(v)}`),
  ];
  // How much of the raw TLS row is Node start and handshake rather than transfer.
  const inner = r.variants
    .find((v) => v.id === 'raw-tls')
    ?.samples.map((s) => s.inner)
    .filter((x) => x !== undefined);
  if (inner?.length) {
    const hs = summarize(inner.map((x) => x.handshakeMs)).median;
    const rate = summarize(inner.map((x) => r.bytes / x.transferMs / 1e3)).median;
    lines.push(
      `raw TLS inside the client: connect+handshake ${fmt(hs)} ms, transfer ${fmt(rate)} MB/s`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

function progress(what: string): (done: number, total: number) => void {
  const tty = process.stderr.isTTY;
  let lastQuarter = 0;
  return (done, total) => {
    if (tty) {
      process.stderr.write(`\r\x1b[K  ${what}: ${done}/${total}`);
      if (done === total) process.stderr.write('\r\x1b[K');
      return;
    }
    const quarter = Math.floor((done * 4) / total);
    if (quarter > lastQuarter) {
      lastQuarter = quarter;
      process.stderr.write(`  ${what}: ${done}/${total}\n`);
    }
  };
}

// Cleanup: what the current link has running, and our throwaway TLS key.
let current: { stop: () => Promise<void>; stopSync: () => void } | null = null;
let sinkKeyDir: string | null = null;
let work: Work | null = null;
let interrupted = false;

process.on('exit', () => {
  killRunning();
  current?.stopSync();
  if (sinkKeyDir) rmSync(sinkKeyDir, { recursive: true, force: true });
  work?.remove();
});

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, async () => {
    // A second signal: leave now, the 'exit' handler does what it can.
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
    killRunning();
    results.aborted = sig;
    writeResults();
    await current?.stop();
    if (resultsPath) process.stderr.write(`bench: partial results in ${resultsPath}\n`);
    process.exit(130);
  });
}

async function main(): Promise<void> {
  const opts = options();
  results.options = opts;
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, iptables)');
  if (!existsSync(join(ROOT, 'dist/tether.mjs')) || !existsSync(join(ROOT, 'dist/tetherd.mjs')))
    throw new Error('dist/ is missing: run `npm run build` first');
  results.versions = versions();
  resultsPath = join(opts.out, `${results.started.replace(/:/g, '-')}.json`);
  const m = results.machine;
  process.stdout.write(
    [
      `tether bench  ${results.started}`,
      `machine: ${m.nproc} CPUs, ${m.model}, ${m.kernel}, ${m.memTotalMiB} MiB, load ${m.loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}`,
      `versions: ${results.versions.tether} @ ${results.versions.tetherCommit}; node ${results.versions.node}; ${results.versions.ssh}`,
      `options: n=${opts.n} programs=${opts.programs} files=${opts.files} bytes=${opts.bytes / 2 ** 20}MiB shaped-bytes=${opts.shapedBytes / 2 ** 20}MiB calls=${opts.calls} stats=${opts.stats} reps=${opts.reps} links=${opts.links.join(',')} only=${opts.only.join(',')}`,
      `baselines: ${results.versions.sshfs}, proot ${results.versions.proot}`,
      '',
    ].join('\n'),
  );

  sinkKeyDir = mkdtempSync(join(os.tmpdir(), 'tether-bench-tls-'));
  // Written out as two files of our own, whatever layout identity.ts keeps.
  const id = await loadOrCreateIdentity(join(sinkKeyDir, 'id'), 'tls-sink@bench');
  writeFileSync(join(sinkKeyDir, 'key.pem'), id.key, { mode: 0o600 });
  writeFileSync(join(sinkKeyDir, 'cert.pem'), id.cert);

  // Host trees for B2, B3 and B5, made once for all links (outside /tmp: the view shows the
  // device's own /tmp there).
  let b2Tree: B2Tree | null = null;
  let b3Tree: B3Tree | null = null;
  if (['b2', 'b3', 'b5'].some((b) => opts.only.includes(b))) {
    work = await createWork(opts.treeDir);
    if (opts.only.includes('b2')) b2Tree = await createB2Tree(work);
    if (opts.only.includes('b3')) b3Tree = createB3Tree(work, opts.files);
    process.stderr.write(`bench: host trees in ${work.dir}\n`);
  }
  // B5 does not depend on the link: it runs on the first one only.
  const b5Link = opts.links[0];

  for (const name of opts.links) {
    const link = LINKS[name]!;
    const entry: LinkEntry = { link, rtt: null, load: {}, dist: distHashes() };
    results.links.push(entry);
    process.stderr.write(`bench: setting up link ${name}\n`);
    try {
      const tb = await startTestbed(
        link,
        { defaultKex: opts.sshDefaultKex, sinkKeyDir },
        (stop, stopSync) => {
          current = { stop, stopSync };
        },
      );
      entry.rtt = tb.rtt;
      if (opts.only.includes('b1')) {
        entry.load.b1Start = os.loadavg()[0]!;
        entry.b1 = await runB1(tb, {
          n: opts.n,
          warmup: opts.warmup,
          progress: progress(`B1 ${name}`),
        });
        entry.load.b1End = os.loadavg()[0]!;
        printB1(entry, entry.b1);
        writeResults();
      }
      if (opts.only.includes('b2') && b2Tree) {
        entry.load.b2Start = os.loadavg()[0]!;
        entry.b2 = await runB2(tb, b2Tree, {
          programs: opts.programs,
          reps: opts.reps,
          progress: progress(`B2 ${name}`),
        });
        entry.load.b2End = os.loadavg()[0]!;
        process.stdout.write(
          `${formatB2(entry.b2, linkTitle(link, entry.rtt), load(entry, 'b2'))}\n`,
        );
        writeResults();
      }
      if (opts.only.includes('b3') && b3Tree && work) {
        entry.load.b3Start = os.loadavg()[0]!;
        entry.b3 = await runB3(tb, work, b3Tree, {
          reps: opts.b3Reps ?? (link.delayMs >= 10 ? Math.min(opts.reps, 1) : opts.reps),
          check: name === opts.links[0],
          progress: progress(`B3 ${name}`),
        });
        entry.load.b3End = os.loadavg()[0]!;
        process.stdout.write(
          `${formatB3(entry.b3, linkTitle(link, entry.rtt), load(entry, 'b3'))}\n`,
        );
        writeResults();
      }
      if (opts.only.includes('b4')) {
        // The rate-limited link moves ~12 MB/s: a smaller size keeps the run short.
        entry.load.b4Start = os.loadavg()[0]!;
        const bytes = link.rateMbit > 0 ? Math.min(opts.bytes, opts.shapedBytes) : opts.bytes;
        entry.b4 = await runB4(tb, { bytes, reps: opts.reps, progress: progress(`B4 ${name}`) });
        entry.load.b4End = os.loadavg()[0]!;
        printB4(entry, entry.b4);
        writeResults();
      }
      if (opts.only.includes('b5') && work && name === b5Link) {
        entry.load.b5Start = os.loadavg()[0]!;
        entry.b5 = await runB5(tb, work, {
          calls: opts.calls,
          stats: opts.stats,
          reps: opts.reps,
          progress: progress(`B5 ${name}`),
        });
        entry.load.b5End = os.loadavg()[0]!;
        process.stdout.write(
          `${formatB5(entry.b5, linkTitle(link, entry.rtt), load(entry, 'b5'))}\n`,
        );
        writeResults();
      }
      // A rebuild mid-run (the clients load dist/ afresh each run) mixes versions.
      if (JSON.stringify(distHashes()) !== JSON.stringify(entry.dist)) {
        entry.distChanged = true;
        process.stdout.write('WARNING: dist/ changed during this link: rebuilt mid-run\n');
      }
    } catch (e) {
      entry.error = (e as Error).message;
      throw e;
    } finally {
      if (!interrupted) {
        await current?.stop();
        current = null;
      }
    }
  }
  results.finished = new Date().toISOString();
  results.loadavgAtEnd = os.loadavg();
  writeResults();
  process.stdout.write(`\nresults: ${resultsPath}\n`);
}

main().catch(async (e: Error) => {
  // After a signal the handler owns the exit; this error is only its echo.
  if (interrupted) return;
  process.stderr.write(`bench: ${e.message}\n`);
  results.aborted = `error: ${e.message}`;
  writeResults();
  await current?.stop();
  if (resultsPath) process.stderr.write(`bench: partial results in ${resultsPath}\n`);
  process.exit(1);
});
