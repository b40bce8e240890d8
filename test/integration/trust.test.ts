// The trust boundaries of ../shared/DESIGN.md §2, one regression test per finding of the
// read-and-attack review (issue 15): a paired client never becomes root on the device.

import { execFileSync, spawnSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Connection } from '../../transport/connection.ts';
import { loadOrCreateIdentity } from '../../transport/identity.ts';
import { MAX_MESSAGE } from '../../transport/messages.ts';
import { connectTls } from '../../transport/tls.ts';
import { writeVarint } from '../../transport/varint.ts';
import { nodeOf, rss, waitFor } from '../lib/procs.ts';
import { startDaemon, tether } from '../lib/tetherd.ts';

const d = await startDaemon({ extraArgs: ['--user', 'nobody'] });
t.teardown(() => d.stop());
const work = mkdtempSync('/var/tmp/tether-trust-');
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test("a run user cannot swap the daemon's scratch for links to root's files", async (t) => {
  // Run A keeps a working copy open; run B, as the same unprivileged user and without the view,
  // tries to move A's scratch entries aside and put a link to /root in their place: the daemon
  // would then write, chown and read through it as root.
  const a = tether(d, ['run', '--view', '-C', work, 'sh', '-c', 'exec 3>>held.txt; sleep 3']);
  await new Promise((r) => setTimeout(r, 1500));
  const live = join(d.stateDir, 'live');
  const runs = readdirSync(live).flatMap((i) =>
    readdirSync(join(live, i, 'runs')).map((r) => join(live, i, 'runs', r)),
  );
  t.equal(runs.length, 1, "run A's scratch");
  const scratch = runs[0]!;
  const st = statSync(scratch);
  t.same([st.uid, st.mode & 0o777], [0, 0o750], "the scratch is the daemon's, not writable");
  const b = await tether(d, [
    'run',
    '--no-view',
    'sh',
    '-c',
    `mv '${scratch}/work' '${scratch}/w2' && ln -s /root '${scratch}/work' && echo swapped`,
  ]);
  t.equal(b.stdout, '', 'nothing was swapped');
  t.match(b.stderr, /Permission denied/);
  t.ok(lstatSync(join(scratch, 'work')).isDirectory(), 'the working copies stay where they were');
  const ra = await a;
  t.equal(ra.code, 0, ra.stderr);
});

/** A stream header of `n` empty arrays: n + 5 bytes, far more memory once decoded. */
function emptyArrays(n: number): Buffer {
  const body = Buffer.alloc(5 + n, 0x90);
  body[0] = 0xdd;
  body.writeUInt32BE(n, 1);
  const head = Buffer.alloc(8);
  return Buffer.concat([head.subarray(0, writeVarint(head, 0, body.length)), body]);
}

t.test('a stranger cannot exhaust the daemon while pairing is open', async (t) => {
  const p = await startDaemon({ unpaired: true, extraArgs: ['--pair'] });
  t.teardown(() => p.stop());
  const pid = nodeOf(p.proc.pid!);
  const home = mkdtempSync(join(tmpdir(), 'tether-stranger-'));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const id = await loadOrCreateIdentity(home, 'stranger');
  /** Sends `headers` on streams of one pairing connection; tetherd's peak VmRSS meanwhile. */
  const attack = async (headers: Buffer[]) => {
    const conn = new Connection(await connectTls(id, p.device.devAddr, p.port), {
      role: 'client',
    });
    const closed = new Promise<string>((resolve) => conn.on('close', (e) => resolve(String(e))));
    let peak = rss(pid);
    const sample = setInterval(() => {
      peak = Math.max(peak, rss(pid));
    }, 50);
    for (const h of headers) {
      try {
        conn.openStream().write(h);
      } catch {
        break;
      }
    }
    const why = await Promise.race([
      closed,
      new Promise<string>((r) => setTimeout(() => r('still open after 10 s'), 10_000)),
    ]);
    // Sampling goes on a moment after: what was received is decoded by now.
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(sample);
    conn.close(0, 'done');
    return { peak, why };
  };
  // The same path with a small header, for what a connection costs anyway (heap growth, GC).
  const control = await attack([emptyArrays(100)]);
  // Four stream headers of the largest size a message may have: 4 Mi empty arrays each.
  const big = await attack(Array.from({ length: 4 }, () => emptyArrays(MAX_MESSAGE - 5)));
  t.not(big.why, 'still open after 10 s', `the daemon closed the connection (${big.why})`);
  const mib = (b: number) => Math.round(b / 2 ** 20);
  t.comment(
    `tetherd peak VmRSS: ${mib(control.peak)} MiB for a small header, ${mib(big.peak)} MiB for the flood`,
  );
  t.ok(big.peak - control.peak < 20 * 2 ** 20, 'the flood costs less than 20 MiB more');
});

t.test('calls newer than 6.1 reach the view or fail, never the device behind it', async (t) => {
  // fchmodat2 (452) is redirected now that the tables are 6.12's; 464 getxattrat, 467
  // open_tree_attr and 468 file_getattr (6.13+) take paths and are unknown: ENOSYS.
  const src = join(work, 'newcalls.c');
  writeFileSync(
    src,
    `#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static void show(const char *what, long r) {
  printf("%s %s\\n", what, r == 0 ? "ok" : strerrorname_np(errno));
}
int main(void) {
  show("fchmodat2", syscall(452, AT_FDCWD, "target", 0600, 0));
  show("getxattrat", syscall(464, AT_FDCWD, "target", 0, "user.x", 0));
  show("open_tree_attr", syscall(467, AT_FDCWD, "target", 0, 0, 0));
  show("file_getattr", syscall(468, AT_FDCWD, "target", 0, 0, 0));
  return 0;
}
`,
  );
  execFileSync('gcc', ['-static', '-o', join(work, 'newcalls'), src]);
  writeFileSync(join(work, 'target'), 'x', { mode: 0o644 });
  const r = await tether(d, ['run', '--view', '-C', work, './newcalls']);
  t.equal(
    r.stdout,
    'fchmodat2 ok\ngetxattrat ENOSYS\nopen_tree_attr ENOSYS\nfile_getattr ENOSYS\n',
    r.stderr,
  );
  t.equal(statSync(join(work, 'target')).mode & 0o777, 0o600, "fchmodat2 changed the host's file");
});

t.test('i386 calls of 64-bit code (int $0x80) get their rewritten paths below 4 GiB', async (t) => {
  // Its stack is above 4 GiB and an i386 call's pointers are 32 bits: the daemon's rewritten
  // path must go elsewhere (it was EFAULT). Static and not PIE: the program's own buffers are
  // below 4 GiB, as such a program's must be.
  const src = join(work, 'int80.c');
  writeFileSync(
    src,
    `#include <stdio.h>
#include <string.h>
static long int80(long nr, long a, long b, long c) {
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c)
                   : "memory", "r8", "r9", "r10", "r11");
  return r;
}
static char path[4096], buf[256];
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    strncpy(path, argv[i], sizeof path - 1);
    long fd = int80(5, (long)path, 0, 0); /* i386 open */
    if (fd < 0) { printf("open %s: %ld\\n", argv[i], fd); continue; }
    long n = int80(3, fd, (long)buf, sizeof buf - 1); /* i386 read */
    buf[n > 0 ? n : 0] = 0;
    printf("%s", buf);
    int80(6, fd, 0, 0);
  }
  return 0;
}
`,
  );
  execFileSync('gcc', ['-O1', '-static', '-no-pie', '-o', join(work, 'int80'), src]);
  writeFileSync(join(work, 'a.txt'), 'first\n');
  writeFileSync(join(work, 'b.txt'), 'second\n');
  const r = await tether(d, ['run', '--view', '-C', work, './int80', 'a.txt', 'b.txt', 'none']);
  t.equal(r.stdout, 'first\nsecond\nopen none: -2\n', r.stderr);
  t.equal(r.code, 0);
});

t.test("host files the device holds are the runs' only, not other device users'", async (t) => {
  writeFileSync(join(work, 'private.txt'), 'host secret\n', { mode: 0o600 });
  const r = await tether(d, ['run', '--view', '-C', work, 'cat', 'private.txt']);
  t.equal(r.stdout, 'host secret\n', r.stderr);
  const files = join(d.stateDir, 'cache/files');
  const entry = readdirSync(files).find((f) =>
    readFileSync(join(files, f), 'utf8').includes('host secret'),
  );
  t.ok(entry, 'the content is cached');
  const live = join(d.stateDir, 'live');
  const instance = join(live, readdirSync(live)[0]!);
  /** cat as another user of the device: uid 1 (daemon), or the run user nobody. */
  const catAs = (uid: number, file: string) =>
    spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'cat', file], {
      encoding: 'utf8',
    });
  for (const file of [join(files, entry!), join(instance, 'cache', entry!)]) {
    const other = catAs(1, file);
    t.equal(other.stdout, '', `another user reads nothing of ${file.slice(d.stateDir.length)}`);
    t.match(other.stderr, /Permission denied/);
  }
  for (const dir of ['cache', 'exec', 'runs'])
    t.match(catAs(1, join(instance, dir, 'x')).stderr, /Permission denied/, `nor enters ${dir}/`);
  const own = spawnSync(
    'setpriv',
    ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'cat', join(instance, 'cache', entry!)],
    { encoding: 'utf8' },
  );
  t.equal(own.stdout, 'host secret\n', `the run user reads its link: ${own.stderr}`);
});

/**
 * A run that writes 300 MB over a host file through a shell's `>` (O_TRUNC), its daemon
 * killed when `when` says so; the host file must then be the old one or the new one whole.
 */
async function killDuringWrite(t: Test, when: (dir: string) => boolean): Promise<void> {
  const k = await startDaemon();
  t.teardown(() => k.stop());
  const dir = mkdtempSync(join(work, 'torn-'));
  const big = join(dir, 'big');
  writeFileSync(big, 'the old content\n');
  const size = 300_000_000;
  // The copy is written on the device, then written back when tr closes it; sleep holds the run.
  const script = `head -c ${size} /dev/zero | tr '\\0' a > big; sleep 60`;
  const run = tether(k, ['run', '--view', '-C', dir, 'sh', '-c', script]);
  const daemon = nodeOf(k.proc.pid!);
  t.ok(await waitFor(() => when(dir), 60_000, 5), 'the moment came');
  process.kill(daemon, 'SIGKILL');
  const r = await run;
  t.not(r.code, 0, `the run fails: ${r.stderr.trim()}`);
  const st = statSync(big);
  const whole =
    readFileSync(big, 'utf8') === 'the old content\n' ||
    (st.size === size && !readFileSync(big).includes(0));
  t.ok(whole, `the host file is the old one or the new one whole (${st.size} bytes)`);
  t.same(
    readdirSync(dir).filter((n) => n !== 'big'),
    [],
    'no new file left beside it (the client dropped it)',
  );
}

/** Bytes of the file `name` in `dir` (0 if none). */
const sizeOf = (dir: string, name: string) =>
  statSync(join(dir, name), { throwIfNoEntry: false })?.size ?? 0;

t.test('a device killed while the program writes leaves the host file as it was', (t) => {
  // The program's `>` opened it (O_TRUNC) and tr is writing the device's copy: the host has no
  // byte of it yet (a write-back only starts when tr closes it, after about 2 s here).
  const start = Date.now();
  return killDuringWrite(t, () => Date.now() - start > 700);
});

t.test('a device killed in the middle of a write-back leaves the host file whole', (t) =>
  killDuringWrite(t, (dir) => {
    const tmp = readdirSync(dir).find((n) => n.startsWith('.big.tether-'));
    return (tmp !== undefined && sizeOf(dir, tmp) > 1 << 20) || sizeOf(dir, 'big') > 1 << 20;
  }),
);

t.test("the default view: the host's secrets are not served, $HOME is not writable", async (t) => {
  // A home of the test's own, with what a user keeps there.
  const home = mkdtempSync('/var/tmp/tether-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  mkdirSync(join(home, '.ssh'));
  writeFileSync(join(home, '.ssh/id_ed25519'), 'PRIVATE KEY\n', { mode: 0o600 });
  writeFileSync(join(home, '.bashrc'), '# mine\n');
  const env = { env: { ...d.env, HOME: home } };
  const tryRead = (path: string) =>
    tether(d, ['run', '--view', '-C', work, 'cat', path], env).then((r) => r.stdout + r.stderr);
  t.match(await tryRead(join(home, '.ssh/id_ed25519')), /Permission denied/, '~/.ssh');
  t.match(await tryRead(join(d.home, 'identity.pem')), /Permission denied/, "tether's own key");
  t.match(await tryRead('/etc/shadow'), /Permission denied/, '/etc/shadow (a root client too)');
  const append = await tether(
    d,
    ['run', '--view', '-C', work, 'sh', '-c', `echo evil >> '${home}/.bashrc'`],
    env,
  );
  t.match(append.stderr, /Read-only file system/, '~/.bashrc');
  t.equal(readFileSync(join(home, '.bashrc'), 'utf8'), '# mine\n', 'unchanged');
  // The working directory's tree is the run's, and world-readable host files are served.
  const ok = await tether(
    d,
    ['run', '--view', '-C', work, 'sh', '-c', 'echo mine > out.txt; head -c 4 /etc/passwd'],
    env,
  );
  t.equal(ok.stdout, 'root', ok.stderr);
  t.equal(readFileSync(join(work, 'out.txt'), 'utf8'), 'mine\n');
  // Credentials in the environment stay on the host unless given on purpose.
  const secretEnv = { env: { ...env.env, GITHUB_TOKEN: 'gh-secret', BUILD_ID: '7' } };
  const seen = await tether(d, ['run', '-e', 'GIVEN_TOKEN=on-purpose', 'env'], secretEnv);
  t.equal(seen.code, 0, seen.stderr);
  t.notMatch(seen.stdout, /gh-secret/, 'GITHUB_TOKEN is not sent');
  t.match(seen.stdout, /^BUILD_ID=7$/m, 'the rest of the environment is');
  t.match(seen.stdout, /^GIVEN_TOKEN=on-purpose$/m, '-e always is');
});
