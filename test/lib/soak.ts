// The soak of issue 15: many concurrent runs through one agent for a while, every run checked,
// and the agent's and the daemon's open fds and RSS sampled (test/integration/soak.test.ts for
// a minute in `npm test`; scripts/soak.ts for as long as asked).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeOf, rss } from './procs.ts';
import { startDaemon, tether } from './tetherd.ts';

export interface Sample {
  at: number;
  agentFds: number;
  agentRss: number;
  daemonFds: number;
  daemonRss: number;
}

export interface SoakResult {
  runs: number;
  failures: string[];
  /** After the warm-up (the first fifth), then every few seconds. */
  samples: Sample[];
}

function fds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

export async function soak(opts: {
  seconds: number;
  concurrency: number;
  log?: (line: string) => void;
}): Promise<SoakResult> {
  const d = await startDaemon();
  const work = mkdtempSync('/var/tmp/tether-soak-');
  try {
    writeFileSync(join(work, 'in.txt'), 'soak input\n');
    const started = await tether(d, ['agent']);
    if (started.code !== 0) throw new Error(`tether agent: ${started.stderr}`);
    const agent = Number(readFileSync(join(d.home, 'agents', 'dev.pid'), 'utf8'));
    const daemon = nodeOf(d.proc.pid!);
    const stopAt = Date.now() + opts.seconds * 1000;
    const warm = Date.now() + (opts.seconds * 1000) / 5;
    const failures: string[] = [];
    const samples: Sample[] = [];
    let runs = 0;
    const sample = () => {
      const s = {
        at: Math.round((Date.now() - (stopAt - opts.seconds * 1000)) / 1000),
        agentFds: fds(agent),
        agentRss: rss(agent),
        daemonFds: fds(daemon),
        daemonRss: rss(daemon),
      };
      samples.push(s);
      opts.log?.(
        `${s.at} s: ${runs} runs; agent ${s.agentFds} fds ${(s.agentRss / 2 ** 20).toFixed(0)} MiB, ` +
          `tetherd ${s.daemonFds} fds ${(s.daemonRss / 2 ** 20).toFixed(0)} MiB`,
      );
    };
    const timer = setInterval(() => {
      if (Date.now() >= warm) sample();
    }, 5000);
    const loop = async (i: number) => {
      for (let n = 0; Date.now() < stopAt; n++) {
        // Alternately the launcher's fast path and the Node CLI with the view and a write-back.
        const viaView = n % 2 === 1;
        const r = viaView
          ? await tether(d, [
              'run',
              '-C',
              work,
              'sh',
              '-c',
              `cat in.txt && echo ${i}-${n} > out-${i}.txt && cat out-${i}.txt`,
            ])
          : await tether(d, ['run', 'sh', '-c', `echo ${i}-${n}; exit ${n % 7}`]);
        runs++;
        const want = viaView ? `soak input\n${i}-${n}\n` : `${i}-${n}\n`;
        const code = viaView ? 0 : n % 7;
        if (r.code !== code || r.stdout !== want)
          failures.push(
            `loop ${i} run ${n}: exit ${r.code}, ${JSON.stringify(r.stdout)} ${r.stderr}`,
          );
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, (_, i) => loop(i)));
    clearInterval(timer);
    // Settled: the last runs' streams and processes are gone.
    await new Promise((r) => setTimeout(r, 2000));
    sample();
    await tether(d, ['agent', '--stop']);
    return { runs, failures, samples };
  } finally {
    rmSync(work, { recursive: true, force: true });
    await d.stop();
  }
}
