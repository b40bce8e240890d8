import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { makeDir } from '../../daemon/state.ts';

t.test('makeDir makes every missing directory, with the mode', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tether-state-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  makeDir(join(root, 'a/b/c'));
  t.equal(statSync(join(root, 'a/b/c')).mode & 0o777, 0o700);
  makeDir(join(root, 'a/b/c'));
  t.ok(statSync(join(root, 'a/b/c')).isDirectory(), 'an existing directory is fine');
  writeFileSync(join(root, 'file'), '');
  t.throws(() => makeDir(join(root, 'file')), { code: 'ENOTDIR' });
  t.throws(() => makeDir(join(root, 'file/x')), { code: 'ENOTDIR' });
});

t.test('makeDir fails at once where the kernel refuses a new directory (/proc)', async (t) => {
  // Node's recursive mkdir loops forever on these.
  t.throws(() => makeDir('/proc/no-such-dir/state'), { code: 'ENOENT' });
  t.throws(() => makeDir('/proc/no-such-dir'), { code: 'ENOENT' });
});
