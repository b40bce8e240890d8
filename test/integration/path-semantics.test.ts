// Differential path semantics: the same operations (test/lib/path-cases.ts, performed by
// test/lib/path-probe.c) on the same trees, natively and through `tether run` on a device whose
// own root holds only tetherd (test/lib/minroot.ts), must print the same thing: every spelling
// of a path (trailing /, ., .., symlinks, loops, dirfds), the working directory, exec, /proc
// and /dev. The trees: a host directory bound writable, a host directory under the read-only
// view root, and a directory in the device's own /tmp.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { changes, execs, fixture, looks, procs } from '../lib/path-cases.ts';
import { ROOT, startDaemon, tether } from '../lib/tetherd.ts';

const d = await startDaemon({ minimalRoot: true });
t.teardown(() => d.stop());
const work = mkdtempSync(join(tmpdir(), 'tether-paths-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const probe = join(work, 'path-probe');
const built = spawnSync(
  'gcc',
  ['-O1', '-static', '-o', probe, join(ROOT, 'test/lib/path-probe.c')],
  {
    encoding: 'utf8',
  },
);
if (built.status !== 0) throw new Error(`gcc path-probe.c: ${built.stderr}`);

/** The script both runs execute: optionally make the fixture in BASE, then the probe's lines. */
function script(base: string, ops: string[], makeFixture: boolean): string {
  return [
    'export PATH=/usr/bin:/bin',
    makeFixture
      ? `rm -rf '${base}' && mkdir -p '${base}' && cd '${base}' && ${fixture(base).replaceAll('\n', ' && ')} || exit 9`
      : `cd '${base}' || exit 9`,
    `'${probe}' <<'EOF'`,
    ...ops,
    'EOF',
  ].join('\n');
}

/** Numbers the kernel makes up per object (pipe:[1234]) say nothing about semantics. */
const normal = (out: string) => out.replace(/:\[\d+\]/g, ':[N]').split('\n');

async function compare(
  t: Test,
  base: string,
  ops: string[],
  makeFixture: boolean,
  binds: string[],
) {
  const text = script(base, ops, makeFixture);
  const native = spawnSync('sh', ['-c', text], { encoding: 'utf8', cwd: '/', timeout: 60_000 });
  t.equal(native.status, 0, `native run: ${native.stderr}`);
  const running = tether(d, [
    'run',
    '--view',
    '-u',
    'NODE_OPTIONS',
    ...binds.flatMap((b) => ['--bind', b]),
    '-C',
    '/',
    'sh',
    '-c',
    text,
  ]);
  // A case that hangs fails alone rather than the whole file.
  const timer = setTimeout(() => running.child.kill('SIGKILL'), 120_000);
  const viaTether = await running;
  clearTimeout(timer);
  t.equal(viaTether.code, 0, `tether run: ${viaTether.stderr}`);
  const want = normal(native.stdout);
  const got = normal(viaTether.stdout);
  const differ: string[] = [];
  for (let i = 0; i < Math.max(want.length, got.length); i++)
    if (want[i] !== got[i]) differ.push(`native: ${want[i]}\n   tether: ${got[i]}`);
  const answered = native.stdout.split('\n').filter((l) => l.includes(' => ')).length;
  t.equal(answered, ops.length, 'the probe answered every operation natively');
  t.same(differ, [], `${ops.length} operations, ${differ.length} differ`);
  t.equal(viaTether.stderr, native.stderr, 'the same errors');
}

t.test('a host directory bound writable', async (t) => {
  const base = join(work, 'host');
  const ops = [...looks(base), ...execs(base), ...changes(base)];
  await compare(t, base, ops, true, [work]);
});

t.test('a host directory under the read-only view root', async (t) => {
  const base = mkdtempSync('/var/tmp/tether-paths-ro-');
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const made = spawnSync('sh', ['-c', `cd '${base}' && ${fixture(base).replaceAll('\n', ' && ')}`]);
  t.equal(made.status, 0, 'fixture');
  await compare(t, base, [...looks(base), ...execs(base)], false, [work]);
});

t.test("the device's own /tmp", async (t) => {
  // One level down: `..` of the tree is then the test's own, not /tmp (the device's differs).
  const top = `/tmp/tether-paths-dev-${process.pid}`;
  const base = `${top}/t`;
  t.teardown(() => rmSync(top, { recursive: true, force: true }));
  await compare(t, base, [...looks(base), ...execs(base), ...changes(base)], true, [work]);
});

t.test('/proc and /dev', async (t) => {
  await compare(t, work, procs(), false, [work]);
});
