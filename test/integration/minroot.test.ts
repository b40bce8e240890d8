// tetherd in a minimal root (test/lib/minroot.ts): the daemon works there, and
// its programs find nothing of the host but tetherd's own files.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { MOUNTPOINT, nodeBinary, tetherdFiles } from '../lib/minroot.ts';
import { ROOT, startDaemon, type TestDaemon, tether } from '../lib/tetherd.ts';

const d = await startDaemon({ minimalRoot: true, extraArgs: ['--idle-timeout', '3'] });
t.teardown(() => d.stop());
const node = nodeBinary();

// `-C /`: the client's cwd need not exist on the device. NODE_OPTIONS (tap's
// loaders) names host files the device's Node would fail to import.
const run = (args: string[], on: TestDaemon = d) =>
  tether(on, ['run', '--no-view', '-C', '/', '-u', 'NODE_OPTIONS', ...args]);

/** Runs `script` in the device's Node (the one program the device has) and parses its JSON. */
async function onDevice(t: Test, script: string, ...args: string[]): Promise<unknown> {
  const r = await run([node, '-e', `console.log(JSON.stringify((() => {${script}})()))`, ...args]);
  t.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

t.test("the root's mounts stay in the daemon's namespace", async (t) => {
  t.notOk(readFileSync('/proc/self/mountinfo', 'utf8').includes(MOUNTPOINT));
  t.same(readdirSync(MOUNTPOINT), []);
});

t.test('a paired client runs the device Node', async (t) => {
  const r = await run([node, '-p', 'process.version']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), process.version);
});

t.test('the device has no sh and no /bin/true: 127', async (t) => {
  const sh = await run(['/bin/sh', '-c', 'true']);
  t.equal(sh.code, 127, sh.stderr);
  t.match(sh.stderr, /\/bin\/sh/);
  const tr = await run(['/bin/true']);
  t.equal(tr.code, 127, tr.stderr);
  // Found through PATH on the host, not on the device.
  t.equal((await run(['true'])).code, 127);
});

t.test('the host is invisible: no /usr, no test files, no client home', async (t) => {
  const top = (p: string) => p.split('/')[1];
  const allowed = new Set(['dev', 'etc', 'proc', 'sys', 'tmp', top(d.stateDir)]);
  for (const f of tetherdFiles()) allowed.add(top(f));
  const seen = (await onDevice(
    t,
    `const fs = require('node:fs');
     const [root, home, test, tmpParent] = process.argv.slice(1);
     return {
       top: fs.readdirSync('/'),
       usr: fs.existsSync('/usr'),
       usrBin: fs.existsSync('/usr/bin'),
       binSh: fs.existsSync('/bin/sh'),
       repo: fs.readdirSync(root),
       test: fs.existsSync(test),
       home: fs.existsSync(home),
       tmp: fs.readdirSync(tmpParent),
     };`,
    ROOT,
    d.home,
    join(ROOT, 'test'),
    dirname(d.stateDir),
  )) as Record<string, unknown>;
  t.same(
    (seen.top as string[]).filter((n) => !allowed.has(n)),
    [],
    `only tetherd's own top directories: ${seen.top}`,
  );
  t.equal(seen.usr, false);
  t.equal(seen.usrBin, false);
  t.equal(seen.binSh, false);
  t.same(
    (seen.repo as string[]).filter((n) => !['node_modules', 'dist', 'build'].includes(n)),
    [],
    `the repository holds only tetherd's files: ${seen.repo}`,
  );
  t.equal(seen.test, false, "the repository's test directory");
  t.equal(seen.home, false, "the client's TETHER_HOME");
  // The state directory's parent (a fresh tmpfs /tmp) holds only it, and the
  // repository's top directory should the repository live there too.
  const parent = `${dirname(d.stateDir)}/`;
  const expected = [d.stateDir, ...tetherdFiles()]
    .filter((p) => p.startsWith(parent))
    .map((p) => p.slice(parent.length).split('/')[0]);
  // tetherd's own: the short directory of loader links for traced programs (.tXXXXXX).
  const tmp = (seen.tmp as string[]).filter((n) => !/^\.t[A-Za-z0-9]{6}$/.test(n));
  t.same(tmp.sort(), [...new Set(expected)].sort(), 'a fresh /tmp');
});

t.test('the state directory is writable and exec-permitted', async (t) => {
  const copy = join(d.stateDir, 'node-copy');
  const seen = (await onDevice(
    t,
    `const fs = require('node:fs');
     const [copy] = process.argv.slice(1);
     fs.copyFileSync(process.execPath, copy);
     fs.chmodSync(copy, 0o755);
     return require('node:child_process').execFileSync(copy, ['--version'], { encoding: 'utf8' });`,
    copy,
  )) as string;
  t.equal(seen.trim(), process.version, 'run by the device Node');
  const r = await run([copy, '--version']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), process.version, 'run by tetherd');
});

t.test('-t gets a pty from the device devpts', async (t) => {
  const r = await run([
    '-t',
    node,
    '-e',
    "console.log(process.stdout.isTTY, require('node:fs').readlinkSync('/proc/self/fd/1'))",
  ]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^true \/dev\/pts\/\d+\r?\n$/);
});

t.test('the pretty log format needs nothing more from the host', async (t) => {
  // pino-pretty is a stream in the bundle, not a transport worker loading node_modules.
  const p = await startDaemon({ minimalRoot: true, extraArgs: ['--log-format', 'pretty'] });
  t.teardown(() => p.stop());
  const r = await run([node, '-p', '6 * 7'], p);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '42\n');
  t.match(p.stderr(), /INFO .*: listening/);
});
