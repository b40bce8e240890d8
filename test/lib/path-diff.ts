// The differential path-semantics check: one script (make the fixture, feed the probe its
// operations) run natively here and through `tether run` on a device; the probe's output must
// be identical. Used on the hidden-tree x64 device (test/integration/path-semantics.test.ts) and
// on the emulated arm64 device (test/integration/release.test.ts).
import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Test } from 'tap';
import { fixture } from './path-cases.ts';
import { ROOT, type tether } from './tetherd.ts';

/** Builds test/lib/path-probe.c, static (it runs from the view on any device) with `gcc`. */
export function buildProbe(gcc: string, out: string): string {
  const r = spawnSync(gcc, ['-O1', '-static', '-o', out, join(ROOT, 'test/lib/path-probe.c')], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${gcc} path-probe.c: ${r.stderr}`);
  return out;
}

/** A file beside the probe, on the host only: the fixture links to it. */
export const hostFile = (probe: string) => join(dirname(probe), 'host-only.txt');

/** The script: optionally make the fixture in BASE, then the probe's lines. */
export function probeScript(probe: string, base: string, ops: string[], make: boolean): string {
  return [
    'export PATH=/usr/bin:/bin',
    make
      ? `rm -rf '${base}' && mkdir -p '${base}' && cd '${base}' && ${fixture(base, hostFile(probe)).replaceAll('\n', ' && ')} || exit 9`
      : `cd '${base}' || exit 9`,
    `'${probe}' <<'EOF'`,
    ...ops,
    'EOF',
  ].join('\n');
}

/** Numbers the kernel makes up per object (pipe:[1234]) say nothing about semantics. */
const normal = (out: string) => out.replace(/:\[\d+\]/g, ':[N]').split('\n');

/**
 * Runs the operations natively and through `viaTether(script)`, the probe at `probe` both
 * times: `nativeProbe` copied there first, then `deviceProbe` (the same program for the
 * device's architecture), so that /proc/self/exe names the same path.
 */
export async function differential(
  t: Test,
  o: {
    base: string;
    ops: string[];
    make: boolean;
    probe: string;
    nativeProbe: string;
    deviceProbe: string;
    viaTether: (script: string) => ReturnType<typeof tether>;
  },
): Promise<void> {
  writeFileSync(hostFile(o.probe), 'only on the host\n');
  const text = probeScript(o.probe, o.base, o.ops, o.make);
  copyFileSync(o.nativeProbe, o.probe);
  const native = spawnSync('sh', ['-c', text], { encoding: 'utf8', cwd: '/', timeout: 60_000 });
  t.equal(native.status, 0, `native run: ${native.stderr}`);
  copyFileSync(o.deviceProbe, o.probe);
  const running = o.viaTether(text);
  // A case that hangs fails alone rather than the whole file.
  const timer = setTimeout(() => running.child.kill('SIGKILL'), 300_000);
  const viaTether = await running;
  clearTimeout(timer);
  t.equal(viaTether.code, 0, `tether run: ${viaTether.stderr}`);
  const want = normal(native.stdout);
  const got = normal(viaTether.stdout);
  const differ: string[] = [];
  for (let i = 0; i < Math.max(want.length, got.length); i++)
    if (want[i] !== got[i]) differ.push(`native: ${want[i]}\n   tether: ${got[i]}`);
  const answered = native.stdout.split('\n').filter((l) => l.includes(' => ')).length;
  t.equal(answered, o.ops.length, 'the probe answered every operation natively');
  t.same(differ, [], `${o.ops.length} operations, ${differ.length} differ`);
  t.equal(viaTether.stderr, native.stderr, 'the same errors');
}
