// A 1 GiB transfer to a slow reader keeps both processes' memory bounded:
// flow control must stall the program on the device, not buffer the excess
// in tether or tetherd.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { children, cmdline, nodeOf, rss } from '../lib/procs.ts';
import { ROOT, startDaemon, TETHER } from '../lib/tetherd.ts';

const GIB = 1024 * 1024 * 1024;
// Measured peaks are 110–190 MB (Node's heap under churn, flat over the run).
// Ignoring backpressure would buffer what the link carries beyond the
// reader's pace: over 400 MB of the gigabyte.
const BOUND = 300 * 1024 * 1024;
const NODE = join(ROOT, 'node_modules/.bin/node');

const d = await startDaemon();
const tmp = mkdtempSync(join(tmpdir(), 'tether-mem-'));
t.teardown(async () => {
  await d.stop();
  rmSync(tmp, { recursive: true, force: true });
});

// Reads fd 0 in 64 KiB chunks, paced to RATE bytes/s (slower than the link
// carries, so the device side has to wait), and prints the byte count.
const READER = join(tmp, 'slow-reader.mjs');
writeFileSync(
  READER,
  `import { readSync } from 'node:fs';
const rate = Number(process.argv[2]);
const buf = Buffer.alloc(65536);
const nap = new Int32Array(new SharedArrayBuffer(4));
const t0 = Date.now();
let total = 0;
for (;;) {
  let n;
  try { n = readSync(0, buf, 0, buf.length, null); }
  catch (e) { if (e.code === 'EAGAIN') { Atomics.wait(nap, 0, 0, 1); continue; } throw e; }
  if (n === 0) break;
  total += n;
  const ahead = (total / rate) * 1000 - (Date.now() - t0);
  if (ahead > 0) Atomics.wait(nap, 0, 0, ahead);
}
process.stdout.write(String(total));
`,
);
// About 16 s for the gigabyte; the link alone carries it in about 8 s.
const RATE = 64 * 1024 * 1024;

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;

/** Runs `script` (which pipes tether into the reader) and samples RSS every 200 ms. */
async function transfer(t: Test, script: string): Promise<void> {
  const dpid = nodeOf(d.proc.pid!);
  t.match(cmdline(dpid), /node .*tetherd/, 'sampling the tetherd node process');
  const sh = spawn('sh', ['-c', script, TETHER, NODE, READER, String(RATE)], {
    env: d.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  sh.stdout.on('data', (c: Buffer) => {
    out += c;
  });
  sh.stderr.on('data', (c: Buffer) => {
    err += c;
  });
  const t0 = Date.now();
  let clientPid = 0;
  let clientSeen = '';
  let peakClient = 0;
  let peakDaemon = 0;
  const sample = setInterval(() => {
    // The pipeline's first element: bin/tether, which execs node.
    if (!clientPid) clientPid = children(sh.pid!).find((p) => !cmdline(p).includes(READER)) ?? 0;
    if (clientPid) {
      const c = cmdline(clientPid);
      if (/node/.test(c)) clientSeen = c;
      peakClient = Math.max(peakClient, rss(clientPid));
    }
    peakDaemon = Math.max(peakDaemon, rss(dpid));
  }, 200);
  const code = await new Promise<number | null>((resolve) => sh.on('close', resolve));
  clearInterval(sample);
  const secs = (Date.now() - t0) / 1000;
  t.equal(code, 0, `pipeline succeeded ${err}`);
  t.equal(out, String(GIB), 'exactly 1 GiB arrived');
  t.match(clientSeen, /node .*tether/, 'sampled the tether node process');
  t.comment(
    `${secs.toFixed(1)} s; peak VmRSS: tether ${mb(peakClient)}, tetherd ${mb(peakDaemon)}`,
  );
  t.ok(peakClient > 0 && peakClient < BOUND, `tether peak ${mb(peakClient)} < ${mb(BOUND)}`);
  t.ok(peakDaemon > 0 && peakDaemon < BOUND, `tetherd peak ${mb(peakDaemon)} < ${mb(BOUND)}`);
  // Had the gigabyte been buffered instead of held back, the reader's pace
  // would still bound the time, so also make sure it really was the reader.
  t.ok(secs > (GIB / RATE) * 0.9, `the slow reader set the pace (${secs.toFixed(1)} s)`);
}

t.test('1 GiB on stdout to a slow reader', (t) =>
  transfer(t, `"$0" run head -c ${GIB} /dev/zero | "$1" "$2" "$3"`),
);

t.test('1 GiB on fd 5 (a relayed pipe) to a slow reader', (t) =>
  transfer(
    t,
    // fd 5 is the pipe to the reader; tether's own stdout is /dev/null.
    `"$0" run sh -c 'head -c ${GIB} /dev/zero >&5' 5>&1 >/dev/null | "$1" "$2" "$3"`,
  ),
);
