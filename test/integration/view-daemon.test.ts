// The view under the daemon's settings: the content cache across restarts (cached contents
// are not fetched again, a damaged entry is noticed by its hash and fetched anew), without
// seccomp (every syscall stops), and runs as an unprivileged user.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startDaemon, tether } from '../lib/tetherd.ts';

const work = mkdtempSync(join(tmpdir(), 'tether-cache-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test('cached contents persist across a restart and are checked by hash', async (t) => {
  const d = await startDaemon({ minimalRoot: true });
  t.teardown(() => d.stop());
  const run = (args: string[]) =>
    tether(d, ['run', '--view', '-u', 'NODE_OPTIONS', '-C', work, ...args]);
  const data = randomBytes(200_000);
  writeFileSync(join(work, 'blob'), data);
  const sum = async () => (await run(['sha256sum', 'blob'])).stdout.split(' ')[0];
  const want = createHash('sha256').update(data).digest('hex');
  t.equal(await sum(), want);

  const files = join(d.stateDir, 'cache/files');
  const entry = readdirSync(files)
    .map((f) => join(files, f))
    .find((f) => readFileSync(f).equals(data));
  t.ok(entry, 'the content is in the cache');
  const before = statSync(entry!);

  await d.restart();
  t.equal(await sum(), want);
  const after = statSync(entry!);
  t.equal(after.ino, before.ino, 'the entry was not written again after the restart');
  t.equal(after.mtimeMs, before.mtimeMs);

  // Damage the entry while the daemon is down: its hash no longer matches.
  const bad = Buffer.from(data);
  bad[1000] ^= 0xff;
  await d.restart(() => writeFileSync(entry!, bad));
  t.equal(await sum(), want, 'the damaged copy is not used');
  t.ok(readFileSync(entry!).equals(data), 'the entry holds the host content again');
});

t.test('without seccomp every syscall stops, and runs still work', async (t) => {
  const d = await startDaemon({ minimalRoot: true, extraArgs: ['--no-seccomp'] });
  t.teardown(() => d.stop());
  writeFileSync(join(work, 'in.txt'), 'b\na\nc\n');
  const r = await tether(d, [
    'run',
    '--view',
    '-u',
    'NODE_OPTIONS',
    '-C',
    work,
    'sh',
    '-c',
    'sort in.txt > out.txt && cat out.txt && readlink /proc/self/exe && ls -d "$PWD"',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `a\nb\nc\n/usr/bin/readlink\n${work}\n`);
  t.equal(readFileSync(join(work, 'out.txt'), 'utf8'), 'a\nb\nc\n');
});

t.test('a run as an unprivileged user reads, writes and runs host files', async (t) => {
  // The minimal root knows only root: this device is the host's own tree.
  const d = await startDaemon({ extraArgs: ['--user', 'nobody'] });
  t.teardown(() => d.stop());
  writeFileSync(join(work, 'readable'), 'for everyone\n');
  const r = await tether(d, [
    'run',
    '-u',
    'NODE_OPTIONS',
    '-C',
    work,
    'sh',
    '-c',
    'id -un; cat readable; echo mine > written; cat written; cd / && pwd',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'nobody\nfor everyone\nmine\n/\n');
  t.equal(readFileSync(join(work, 'written'), 'utf8'), 'mine\n');
});
