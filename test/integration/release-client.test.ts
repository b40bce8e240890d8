// npm run package: the single-file tether clients. Each is the native launcher with the CLI's
// Node executable appended; copied alone to an empty directory, the x64 one runs programs on a
// test device with the caller's fds, through its agent's hot path too.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import pkg from '../../package.json' with { type: 'json' };
import { elfMachine } from '../lib/elf.ts';
import { ROOT, startDaemon } from '../lib/tetherd.ts';

const RELEASE = join(ROOT, 'dist/release');
execFileSync(process.execPath, ['scripts/package.ts', '--targets', 'tether-linux-x64'], {
  cwd: ROOT,
  stdio: ['ignore', 'ignore', 'inherit'],
});

const work = mkdtempSync(join(tmpdir(), 'tether-client-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
// Alone in a directory: nothing of the repository next to it.
const TETHER = join(work, 'bin/tether');
execFileSync('mkdir', ['-p', join(work, 'bin')]);
copyFileSync(join(RELEASE, 'tether-linux-x64'), TETHER);
const cache = join(work, 'cache');

function head(file: string, n: number, at = 0): Buffer {
  const b = Buffer.alloc(n);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, b, 0, n, at);
  } finally {
    closeSync(fd);
  }
  return b;
}

t.test('the file is the x64 launcher with its Node executable appended', async (t) => {
  const file = join(RELEASE, 'tether-linux-x64');
  const size = statSync(file).size;
  const trailer = head(file, 48, size - 48);
  t.equal(trailer.toString('latin1', 0, 16), 'TETHER-PAYLOAD-1', 'trailer');
  const offset = Number(trailer.readBigUInt64LE(16));
  t.equal(offset + Number(trailer.readBigUInt64LE(24)) + 48, size, 'sizes add up');
  t.equal(elfMachine(file), 62, "the launcher's arch");
  t.equal(elfMachine(file, offset), 62, "the Node executable's arch");
});

t.test('the x64 file copies its Node part into the cache once and answers --version', async (t) => {
  const env = { PATH: '/usr/bin:/bin', TETHER_CACHE_DIR: cache };
  // What an older version left: its copy and its addon.
  mkdirSync(cache, { recursive: true });
  writeFileSync(join(cache, 'tether-0123456789abcdef'), 'old');
  writeFileSync(join(cache, 'client-addon-0123456789abcdef.node'), 'old');
  writeFileSync(join(cache, 'other-file'), 'not ours');
  const first = spawnSync(TETHER, ['--version'], { encoding: 'utf8', env });
  t.equal(first.stdout, `tether ${pkg.version} (node v24.21.0, x64)\n`, first.stderr);
  const names = readdirSync(cache).filter((n) => n.startsWith('tether-'));
  t.match(names, [/^tether-[0-9a-f]{16}$/], "the older version's copy is gone");
  t.not(names[0], 'tether-0123456789abcdef');
  t.ok(existsSync(join(cache, 'other-file')), 'other files stay');
  const copy = statSync(join(cache, names[0]!));
  t.equal(copy.mode & 0o777, 0o755);
  const again = spawnSync(TETHER, ['--version'], { encoding: 'utf8', env });
  t.equal(again.status, 0);
  t.equal(statSync(join(cache, names[0]!)).ino, copy.ino, 'the second start reuses the copy');

  const bad = spawnSync(TETHER, ['--version'], {
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin', TETHER_CACHE_DIR: '/proc/no-such-dir' },
  });
  t.equal(bad.status, 255);
  t.match(
    bad.stderr,
    /^tether: cannot write \/proc\/no-such-dir\/tether-[0-9a-f]{16}\.tmp\d+: .*\n$/,
  );
});

t.test(
  'the x64 file runs programs on a device with stdin, extra fds and exit status',
  async (t) => {
    const d = await startDaemon({ minimalRoot: true });
    t.teardown(() => d.stop());
    const env = { ...d.env, TETHER_CACHE_DIR: cache };
    writeFileSync(join(work, 'in.txt'), 'from fd 4\n');
    const script = 'read a; read b <&4; echo "$a/$b"; echo to-5 >&5; exit 3';
    const runIt = () =>
      spawnSync(
        '/bin/sh',
        ['-c', `"${TETHER}" run sh -c '${script}' 4<"${work}/in.txt" 5>"${work}/out5.txt"`],
        { encoding: 'utf8', env, input: 'stdin line\n' },
      );
    const r = runIt();
    t.equal(r.status, 3, r.stderr);
    t.equal(r.stdout, 'stdin line/from fd 4\n');
    t.equal(readFileSync(join(work, 'out5.txt'), 'utf8'), 'to-5\n');

    // The agent, started by the single file, takes the launcher's hot path (its addon gets fds).
    const agent = spawnSync(TETHER, ['agent'], { encoding: 'utf8', env });
    t.equal(agent.status, 0, agent.stderr);
    t.teardown(() => spawnSync(TETHER, ['agent', '--stop'], { env }));
    const viaAgent = runIt();
    t.equal(viaAgent.status, 3, viaAgent.stderr);
    t.equal(viaAgent.stdout, 'stdin line/from fd 4\n');
    t.match(
      readdirSync(cache).filter((n) => n.startsWith('client-addon-')),
      [/^client-addon-[0-9a-f]{16}\.node$/],
      "the addon was written, the older version's removed",
    );
    t.notOk(existsSync(join(cache, 'client-addon-0123456789abcdef.node')));
    const status = spawnSync(TETHER, ['status'], { encoding: 'utf8', env });
    t.match(status.stdout, /^dev: tetherd /, status.stderr);
  },
);
