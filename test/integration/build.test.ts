// A real autotools build on the device: GNU hello from Debian's sources, configured and built
// with `tether run ./configure && tether run make` in a host build tree, on the minimal-root
// device (it has no sh, make or gcc of its own). The result must match a local build of the
// same sources at the same path, run on the host, and leave no timestamps from the future.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import t from 'tap';
import { startDaemon, tether } from '../lib/tetherd.ts';

const HELLO = join(
  process.env.HELLO_DIR ?? '/var/cache/tether-test/hello',
  'hello_2.10.orig.tar.gz',
);
// Configure alone runs a few hundred programs; give the whole file room.
t.setTimeout(1_500_000);

if (!existsSync(HELLO)) {
  t.fail(`${HELLO} is missing: run scripts/ci-packages.sh (it fetches Debian's hello sources)`);
} else {
  const base = mkdtempSync(join(tmpdir(), 'tether-build-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const src = join(base, 'hello-2.10');

  const unpack = () => {
    rmSync(src, { recursive: true, force: true });
    const r = spawnSync('tar', ['xzf', HELLO, '-C', base], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tar: ${r.stderr}`);
  };
  /** sha256 of every file the build made (beside the unpacked sources), by relative path. */
  const outputs = (before: Set<string>): Map<string, string> => {
    const out = new Map<string, string>();
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile() && !before.has(relative(src, p)))
          out.set(relative(src, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
      }
    };
    walk(src);
    return out;
  };
  const listing = (): Set<string> => new Set(outputs(new Set()).keys());

  // The local build first, at the same path, so paths compiled into the outputs agree.
  unpack();
  const pristine = listing();
  for (const step of [['./configure'], ['make']]) {
    const r = spawnSync(step[0]!, step.slice(1), { cwd: src, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`local ${step[0]}: ${r.stderr}`);
  }
  const local = outputs(pristine);
  unpack();

  const d = await startDaemon({ minimalRoot: true });
  t.teardown(() => d.stop());
  const onDevice = (args: string[]) =>
    tether(d, ['run', '--view', '-u', 'NODE_OPTIONS', '-C', src, ...args]);

  t.test('./configure runs on the device', async (t) => {
    const r = await onDevice(['./configure']);
    t.equal(r.code, 0, r.stderr.slice(-2000));
    t.match(r.stdout, /config\.status: creating Makefile/);
  });

  t.test('make builds the program on the device', async (t) => {
    const r = await onDevice(['make']);
    t.equal(r.code, 0, r.stderr.slice(-2000));
  });

  t.test("the outputs are the local build's", async (t) => {
    const remote = outputs(pristine);
    // config.log and config.status record the run itself (times, the shell's pid).
    const same = (m: Map<string, string>) =>
      new Map([...m].filter(([k]) => k !== 'config.log' && k !== 'config.status'));
    t.same([...remote.keys()].sort(), [...local.keys()].sort(), 'the same files');
    t.equal(remote.get('hello'), local.get('hello'), 'hello is byte for byte the same');
    const differ = [...same(remote)].filter(([k, v]) => local.get(k) !== v).map(([k]) => k);
    t.same(differ, [], 'every other output is identical too');
  });

  t.test(
    'the program runs on the host; a host make rebuilds nothing and sees no clock skew',
    async (t) => {
      const run = spawnSync(join(src, 'hello'), ['-g', 'built by tether'], { encoding: 'utf8' });
      t.equal(run.stdout, 'built by tether\n');
      const now = Date.now();
      const future = [...outputs(pristine).keys()].filter(
        (k) => statSync(join(src, k)).mtimeMs > now + 1,
      );
      t.same(future, [], 'no file has a time from the future');
      // hello's recursive targets always run (make -q says 1 after a local build too): what
      // counts is that nothing is compiled or linked again.
      const built = statSync(join(src, 'hello')).mtimeMs;
      const again = spawnSync('make', [], { cwd: src, encoding: 'utf8' });
      t.equal(again.status, 0, again.stderr);
      t.notMatch(again.stdout, /\bgcc\b/, 'the host make compiles nothing');
      t.equal(statSync(join(src, 'hello')).mtimeMs, built, 'hello is not linked again');
      t.notMatch(again.stderr, /[Cc]lock skew|in the future/);
    },
  );
}
