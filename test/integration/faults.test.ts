// Faults in the middle of the two long things a run does, a write-back of a 300 MB file and a
// 1 GiB stdout: the link cut and restored, a burst of loss, a delay spike, tetherd SIGKILLed, the client
// SIGKILLed. A link that comes back loses nothing; a dead end is one line and exit 255; the
// host file is never torn; no process of the run outlives it on the device.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DELAYLINE, ensureDelayline, waitReady } from '../lib/device.ts';
import { nodeOf, sleepers, waitFor } from '../lib/procs.ts';
import { startDaemon, TETHER, type TestDaemon } from '../lib/tetherd.ts';

const work = mkdtempSync('/var/tmp/tether-faults-');
t.teardown(() => rmSync(work, { recursive: true, force: true }));

type Fault =
  | 'link cut for 3 s'
  | '30% loss for 3 s'
  | '500 ms delay for 3 s'
  | 'tetherd SIGKILL'
  | 'client SIGKILL';
const FAULTS: Fault[] = [
  'link cut for 3 s',
  '30% loss for 3 s',
  '500 ms delay for 3 s',
  'tetherd SIGKILL',
  'client SIGKILL',
];
/** The faults a connection lives through: the run must end as if nothing happened. */
const SURVIVED = new Set<Fault>(['link cut for 3 s', '30% loss for 3 s', '500 ms delay for 3 s']);

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'ignore' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function inject(fault: Fault, d: TestDaemon, clientPid: number): Promise<void> {
  const ifc = d.device.hostIf;
  switch (fault) {
    case 'link cut for 3 s':
      sh('ip', ['link', 'set', ifc, 'down']);
      await sleep(3000);
      sh('ip', ['link', 'set', ifc, 'up']);
      return;
    case '30% loss for 3 s': {
      const rules = [
        ['INPUT', '-i', ifc],
        ['OUTPUT', '-o', ifc],
      ];
      const drop = ['-m', 'statistic', '--mode', 'random', '--probability', '0.3', '-j', 'DROP'];
      for (const [chain, ...m] of rules) sh('iptables-legacy', ['-w', '-I', chain!, ...m, ...drop]);
      await sleep(3000);
      for (const [chain, ...m] of rules) sh('iptables-legacy', ['-w', '-D', chain!, ...m, ...drop]);
      return;
    }
    case '500 ms delay for 3 s': {
      // A second delay line in the device's namespace takes what the device receives.
      ensureDelayline();
      const line = d.device.exec([DELAYLINE, '1', '500'], { stdio: ['ignore', 'pipe', 'pipe'] });
      await waitReady(line, 'delayline (spike)');
      const rule = (op: string) => [
        ...['netns', 'exec', d.device.ns, 'iptables-legacy', '-w', '-t', 'mangle', op],
        ...['PREROUTING', '-i', d.device.devIf, '-j', 'NFQUEUE', '--queue-num', '1'],
      ];
      sh('ip', rule('-I'));
      await sleep(3000);
      sh('ip', rule('-D'));
      // What it holds goes out before it stops.
      await sleep(1000);
      line.kill();
      return;
    }
    case 'tetherd SIGKILL':
      process.kill(nodeOf(d.proc.pid!), 'SIGKILL');
      return;
    case 'client SIGKILL':
      // The whole client (launcher and Node CLI), as a terminal's kill of its job would.
      process.kill(-clientPid, 'SIGKILL');
      return;
  }
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  bytes: number;
  stderr: string;
}

/** Starts `tether run` in a process group of its own, counting (not keeping) its stdout. */
function start(
  d: TestDaemon,
  args: string[],
): { pid: number; bytes: () => number; ended: Promise<Ended> } {
  const child = spawn(TETHER, args, {
    env: d.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let bytes = 0;
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => {
    bytes += c.length;
  });
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const ended = new Promise<Ended>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, bytes, stderr })),
  );
  return { pid: child.pid!, bytes: () => bytes, ended };
}

/** What every fault must leave: no run process on the device, and a clean end or one line. */
async function checkEnd(t: Test, fault: Fault, r: Ended, marker: string): Promise<void> {
  if (fault === 'client SIGKILL') t.equal(r.signal, 'SIGKILL', 'the client was killed');
  else if (SURVIVED.has(fault)) t.equal(r.code, 0, `the run went through: ${r.stderr.trim()}`);
  else {
    t.equal(r.code, 255, 'exit 255');
    t.match(r.stderr, /^tether: [^\n]+\n$/, `one line: ${JSON.stringify(r.stderr)}`);
    t.notMatch(r.stderr, /(E[A-Z]+): .*\1/, 'its cause named once');
  }
  t.ok(
    await waitFor(() => sleepers(marker).length === 0, 15_000),
    'no run process is left on the device',
  );
}

let n = 0;

/** A test device whose client waits 30 s for a silent link (the tests' own config says 3 s). */
async function device(t: Test): Promise<TestDaemon> {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const config = join(d.home, 'config');
  writeFileSync(config, readFileSync(config, 'utf8').replace(/idletimeout \d+/, 'idletimeout 30'));
  return d;
}

for (const fault of FAULTS) {
  t.test(`${fault} in the middle of a 300 MB write-back`, async (t) => {
    const d = await device(t);
    const dir = mkdtempSync(join(work, 'wb-'));
    const big = join(dir, 'big');
    writeFileSync(big, 'the old content\n');
    const size = 300_000_000;
    const marker = `86400.${process.pid}${++n}`;
    // The sleeper stands for the run's processes: only the run's end may take it.
    const script = `sleep ${marker} & head -c ${size} /dev/zero | tr '\\0' a > big; kill $!`;
    const run = start(d, ['run', '--view', '-C', dir, 'sh', '-c', script]);
    const tmp = () => readdirSync(dir).some((x) => x.startsWith('.big.tether-'));
    t.ok(await waitFor(tmp, 120_000, 5), 'the write-back began');
    await inject(fault, d, run.pid);
    const r = await run.ended;
    await checkEnd(t, fault, r, marker);
    const st = statSync(big);
    const content = readFileSync(big);
    const old = content.toString() === 'the old content\n';
    const whole = st.size === size && !content.includes(0) && !content.includes('t'.charCodeAt(0));
    if (SURVIVED.has(fault)) t.ok(whole, `the new content, whole (${st.size} bytes)`);
    else t.ok(old || whole, `the host file is the old one or the new one whole (${st.size} bytes)`);
    const left = readdirSync(dir).filter((x) => x !== 'big');
    // A client killed outright cannot remove the new file it was filling (its name says whose).
    if (fault !== 'client SIGKILL') t.same(left, [], 'no new file left beside it');
    else t.comment(`left beside it: ${JSON.stringify(left)}`);
  });

  t.test(`${fault} in the middle of a 1 GiB stdout`, async (t) => {
    const d = await device(t);
    const size = 2 ** 30;
    const marker = `86400.${process.pid}${++n}`;
    const script = `sleep ${marker} & head -c ${size} /dev/zero; kill $!`;
    const run = start(d, ['run', 'sh', '-c', script]);
    t.ok(await waitFor(() => run.bytes() > 100 * 2 ** 20, 120_000, 5), '100 MiB arrived');
    // The rate before and while the fault holds: proof that it took hold.
    const b0 = run.bytes();
    const t0 = Date.now();
    await sleep(1000);
    const b1 = run.bytes();
    const t1 = Date.now();
    await inject(fault, d, run.pid);
    const before = (b1 - b0) / (t1 - t0);
    const during = (run.bytes() - b1) / (Date.now() - t1);
    const r = await run.ended;
    await checkEnd(t, fault, r, marker);
    if (SURVIVED.has(fault)) {
      t.equal(r.bytes, size, 'every byte arrived');
      const mbs = (x: number) => (x / 1000).toFixed(1);
      t.ok(during < before / 2, `the fault slowed it: ${mbs(before)} → ${mbs(during)} MB/s`);
    }
  });
}
