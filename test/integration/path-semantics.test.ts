// Differential path semantics: the same operations (test/lib/path-cases.ts, performed by
// test/lib/path-probe.c) on the same trees, natively and through `tether run` on a device whose
// own root holds only tetherd (test/lib/minroot.ts), must print the same thing: every spelling
// of a path (trailing /, ., .., symlinks, loops, dirfds), the working directory, exec, /proc
// and /dev. The trees: a host directory bound writable, a host directory under the read-only
// view root, and a directory in the device's own /tmp. The emulated arm64 device runs the
// same check (test/integration/release.test.ts).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { changes, execs, fixture, looks, procs, procsSameHost } from '../lib/path-cases.ts';
import { buildProbe, differential, hostFile } from '../lib/path-diff.ts';
import { startDaemon, tether } from '../lib/tetherd.ts';

const d = await startDaemon({ minimalRoot: true });
t.teardown(() => d.stop());
const work = mkdtempSync(join(tmpdir(), 'tether-paths-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const built = buildProbe('gcc', join(work, 'path-probe-x64'));

const compare = (t: Test, base: string, ops: string[], make: boolean) =>
  differential(t, {
    base,
    ops,
    make,
    probe: join(work, 'path-probe'),
    nativeProbe: built,
    deviceProbe: built,
    viaTether: (script) =>
      tether(d, [
        'run',
        '--view',
        '-u',
        'NODE_OPTIONS',
        '--bind',
        work,
        '-C',
        '/',
        'sh',
        '-c',
        script,
      ]),
  });

t.test('a host directory bound writable', async (t) => {
  const base = join(work, 'host');
  await compare(t, base, [...looks(base), ...execs(base), ...changes(base)], true);
});

t.test('a host directory under the read-only view root', async (t) => {
  const base = mkdtempSync('/var/tmp/tether-paths-ro-');
  // The read-only root serves what every host user may read: not mkdtemp's 0700.
  chmodSync(base, 0o755);
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const host = hostFile(join(work, 'path-probe'));
  const made = spawnSync('sh', [
    '-c',
    `cd '${base}' && ${fixture(base, host).replaceAll('\n', ' && ')}`,
  ]);
  t.equal(made.status, 0, 'fixture');
  await compare(t, base, [...looks(base), ...execs(base)], false);
});

t.test("the device's own /tmp", async (t) => {
  // One level down: `..` of the tree is then the test's own, not /tmp (the device's differs).
  const top = `/tmp/tether-paths-dev-${process.pid}`;
  const base = `${top}/t`;
  t.teardown(() => rmSync(top, { recursive: true, force: true }));
  await compare(t, base, [...looks(base), ...execs(base), ...changes(base)], true);
});

t.test('/proc and /dev', async (t) => {
  await compare(t, work, [...procs(), ...procsSameHost()], false);
});
