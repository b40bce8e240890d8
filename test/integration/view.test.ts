// Runs with a view on a device whose own file system holds only tetherd (test/lib/minroot.ts):
// every program, library, script and data file the tests use exists only on the host, so a
// passing test proves that the bytes came through tether.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startDaemon, TETHER, tether } from '../lib/tetherd.ts';

const d = await startDaemon({ minimalRoot: true });
t.teardown(() => d.stop());

const work = mkdtempSync(join(tmpdir(), 'tether-view-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** tether run with the view, in `cwd` (a host directory, bound writable by the view). */
const run = (args: string[], opts: { cwd?: string; input?: string } = {}) =>
  tether(d, ['run', '--view', '-u', 'NODE_OPTIONS', '-C', opts.cwd ?? work, ...args], {
    input: opts.input,
  });

function cc(name: string, src: string, flags: string[] = []): string {
  const c = join(work, `${name}.c`);
  const out = join(work, name);
  writeFileSync(c, src);
  const r = spawnSync('gcc', ['-O1', '-o', out, c, ...flags], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc ${name}: ${r.stderr}`);
  return out;
}

t.test('coreutils read host files and list host directories', async (t) => {
  writeFileSync(join(work, 'a.txt'), 'alpha\nbeta\n');
  const cat = await run(['cat', 'a.txt']);
  t.equal(cat.code, 0, cat.stderr);
  t.equal(cat.stdout, 'alpha\nbeta\n');
  const ls = await run(['ls', '-la', work]);
  t.equal(ls.code, 0, ls.stderr);
  t.match(ls.stdout, /a\.txt/);
  t.match(ls.stdout, / \.\.?\n/);
  const wc = await run(['wc', '-l', join(work, 'a.txt')]);
  t.equal(wc.stdout.trim(), `2 ${join(work, 'a.txt')}`);
});

t.test('/proc/self/exe and the cwd read back as view paths', async (t) => {
  const exe = await run(['readlink', '/proc/self/exe']);
  t.equal(exe.code, 0, exe.stderr);
  t.equal(exe.stdout.trim(), '/usr/bin/readlink');
  const pwd = await run(['/bin/pwd']);
  t.equal(pwd.stdout.trim(), work);
  const cwdLink = await run(['readlink', '/proc/self/cwd']);
  t.equal(cwdLink.stdout.trim(), work);
});

t.test('bash pipelines, cd and globbing', async (t) => {
  mkdirSync(join(work, 'sub/deeper'), { recursive: true });
  writeFileSync(join(work, 'sub/one'), '1\n');
  writeFileSync(join(work, 'sub/two'), '2\n');
  const r = await run([
    'bash',
    '-c',
    'seq 1 1000 | sort -rn | head -1; cd sub && pwd && echo * && cat one two | paste -sd+ | bc',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `1000\n${work}/sub\ndeeper one two\n3\n`);
});

t.test('writes land in the host file, with host timestamps', async (t) => {
  const before = Date.now();
  const r = await run(['sh', '-c', 'echo first > out.txt; echo second >> out.txt; cat out.txt']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'first\nsecond\n', 'the program reads its own writes');
  t.equal(readFileSync(join(work, 'out.txt'), 'utf8'), 'first\nsecond\n');
  const m = statSync(join(work, 'out.txt')).mtimeMs;
  t.ok(m >= before - 1000 && m <= Date.now() + 5, 'mtime is from the host clock, not the future');
});

t.test('a file written by one program is read by the next in the same shell', async (t) => {
  const r = await run([
    'sh',
    '-c',
    'printf "int main(void){return 7;}" > conf.c; cat conf.c; test -s conf.c && echo nonempty',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'int main(void){return 7;}nonempty\n');
});

t.test('truncate and touch by path after a write act on the file the program wrote', async (t) => {
  // The written file has a working copy on the device; path-based truncate and utimensat go to
  // the host and must not leave the copy's old length or times behind.
  const r = await run([
    'sh',
    '-c',
    'printf 0123456789 > tr.txt; truncate -s 4 tr.txt; stat -c %s tr.txt; printf X >> tr.txt; cat tr.txt; echo;' +
      ' printf abc > tm.txt; touch -d @1000000000 tm.txt; stat -c %Y tm.txt; printf d >> tm.txt',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '4\n0123X\n1000000000\n');
  t.equal(
    readFileSync(join(work, 'tr.txt'), 'utf8'),
    '0123X',
    'the host file: truncated, then appended',
  );
  t.equal(readFileSync(join(work, 'tm.txt'), 'utf8'), 'abcd');
});

t.test("an exited writer's bytes reach the host before the next request", async (t) => {
  // /bin/echo runs as its own process: its file is written back as it exits, and the mv
  // that follows at once must rename the finished file, not an empty or missing one.
  const r = await run([
    'sh',
    '-c',
    'i=0; while [ $i -lt 20 ]; do /bin/echo $i > w$i.txt; mv w$i.txt m$i.txt; i=$((i+1)); done',
  ]);
  t.equal(r.code, 0, r.stderr);
  for (let i = 0; i < 20; i++) t.equal(readFileSync(join(work, `m${i}.txt`), 'utf8'), `${i}\n`);
  t.notOk(existsSync(join(work, 'w19.txt')));
});

t.test("answers remembered in a run follow the run's own changes", async (t) => {
  writeFileSync(join(work, 'seen.txt'), 'old\n');
  const r = await run([
    'sh',
    '-c',
    [
      'cat seen.txt',
      'echo newer > seen.txt',
      'cat seen.txt',
      'mv seen.txt moved.txt',
      'test -e seen.txt || echo seen-gone',
      'mkdir -p dd && echo inner > dd/x',
      'cat dd/x',
      'mv dd ee',
      'cat ee/x',
      'test -e dd/x || echo dd-gone',
      'cat dd/x 2>/dev/null || echo no-dd-x',
      'echo more >> ee/x',
      'ln -s ee lnk && cat lnk/x && cp lnk/x kept.txt && rm lnk/x',
      'test -e ee/x || echo x-gone',
      'cat ee/x 2>/dev/null || echo no-ee-x',
    ].join('; '),
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    'old\nnewer\nseen-gone\ninner\ninner\ndd-gone\nno-dd-x\ninner\nmore\nx-gone\nno-ee-x\n',
  );
  t.equal(readFileSync(join(work, 'moved.txt'), 'utf8'), 'newer\n');
  t.equal(readFileSync(join(work, 'kept.txt'), 'utf8'), 'inner\nmore\n');
  t.notOk(existsSync(join(work, 'ee/x')));
  t.notOk(existsSync(join(work, 'dd')));
});

t.test('mkdir, rename, unlink, symlink and chmod reach the host', async (t) => {
  const r = await run([
    'sh',
    '-c',
    'mkdir -p m/n && echo z > m/n/z && mv m/n/z m/z2 && ln -s z2 m/link && chmod 640 m/z2 && rm -r m/n && ls m',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'link\nz2\n');
  t.equal(readFileSync(join(work, 'm/link'), 'utf8'), 'z\n');
  t.equal(statSync(join(work, 'm/z2')).mode & 0o777, 0o640);
  t.notOk(existsSync(join(work, 'm/n')));
});

t.test('find, tar create and extract, cp -a with symlinks and hard links', async (t) => {
  const src = join(work, 'tree');
  mkdirSync(join(src, 'x/y'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(src, 'x/y', `f${i}`), `file ${i}\n`);
  symlinkSync('y/f1', join(src, 'x/sym'));
  linkSync(join(src, 'x/y/f2'), join(src, 'x/hard'));
  const find = await run(['find', 'tree', '-type', 'f']);
  t.equal(find.code, 0, find.stderr);
  t.equal(find.stdout.trim().split('\n').length, 51);
  const tar = await run([
    'sh',
    '-c',
    'tar cf t.tar tree && mkdir -p untar && tar xf t.tar -C untar && cp -a tree copy',
  ]);
  t.equal(tar.code, 0, tar.stderr);
  for (const dir of ['untar/tree', 'copy']) {
    t.equal(readFileSync(join(work, dir, 'x/y/f49'), 'utf8'), 'file 49\n', dir);
    t.equal(readFileSync(join(work, dir, 'x/sym'), 'utf8'), 'file 1\n', `${dir} symlink`);
    const a = statSync(join(work, dir, 'x/hard'));
    const b = statSync(join(work, dir, 'x/y/f2'));
    t.equal(a.ino, b.ino, `${dir}: the hard link is kept`);
  }
});

t.test("#! scripts run the view interpreter; errors are the kernel's", async (t) => {
  writeFileSync(join(work, 'script.sh'), '#!/bin/sh -e\necho "script $0 $1"\n');
  chmodSync(join(work, 'script.sh'), 0o755);
  const r = await run(['./script.sh', 'arg']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'script ./script.sh arg\n');
  writeFileSync(join(work, 'noexec.sh'), '#!/bin/sh\necho no\n');
  chmodSync(join(work, 'noexec.sh'), 0o644);
  const denied = await run(['./noexec.sh']);
  t.equal(denied.code, 126, denied.stderr);
  const missing = await run(['./no-such-program']);
  t.equal(missing.code, 127, missing.stderr);
  const inShell = await run(['sh', '-c', './noexec.sh; echo $?; ./missing; echo $?']);
  t.match(inShell.stdout, /^126\n127\n$/);
  const cat = await run(['cat', 'no-such-file']);
  t.equal(cat.code, 1);
  t.match(cat.stderr, /No such file or directory/);
});

t.test('a static program and a program mapping a host file MAP_SHARED', async (t) => {
  const prog = cc(
    'mapper',
    `#include <fcntl.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int fd = open(argv[1], O_RDWR);
  if (fd < 0) return 2;
  char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return 3;
  close(fd);
  memcpy(p, "MAPPED", 6);
  munmap(p, 4096);
  return 0;
}`,
    ['-static'],
  );
  writeFileSync(join(work, 'mapped.bin'), Buffer.alloc(4096, 'x'));
  const r = await run([prog, 'mapped.bin']);
  t.equal(r.code, 0, r.stderr);
  const got = readFileSync(join(work, 'mapped.bin'));
  t.equal(got.subarray(0, 8).toString(), 'MAPPEDxx');
  t.equal(got.length, 4096);
});

t.test('threads that chdir share the cwd; a forked child keeps its own', async (t) => {
  const prog = cc(
    'threads',
    `#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
static void *go(void *a) { (void)a; return (void *)(long)chdir("sub"); }
int main(void) {
  pthread_t th;
  void *rc;
  pthread_create(&th, 0, go, 0);
  pthread_join(th, &rc);
  char b[4096];
  printf("%ld %s\\n", (long)rc, getcwd(b, sizeof b));
  fflush(stdout);
  if (fork() == 0) { chdir("/"); return 0; }
  wait(0);
  FILE *f = fopen("one", "r");
  printf("%s %d\\n", getcwd(b, sizeof b), f != 0);
  return 0;
}`,
    ['-pthread'],
  );
  const r = await run([prog]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `0 ${work}/sub\n${work}/sub 1\n`);
});

t.test('python3 scripts', async (t) => {
  const r = await run([
    'python3',
    '-c',
    'import os, json; print(json.dumps(sorted(os.listdir("sub"))))',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), '["deeper", "one", "two"]');
});

t.test('escapes through symlinks, .. and /proc stay inside the view', async (t) => {
  // A sysroot as the view's root: the host's /etc/hostname is not in it.
  const root = join(work, 'sysroot');
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/hostname'), 'inside\n');
  symlinkSync('/etc/hostname', join(root, 'abs'));
  symlinkSync('../../../../../../etc/hostname', join(root, 'rel'));
  const viaRoot = (args: string[]) =>
    tether(d, ['run', '--view', '--root', root, '-u', 'NODE_OPTIONS', '-C', '/', ...args]);
  // The sysroot has no programs: run a host-built static reader from a bound directory.
  const reader = cc(
    'reader',
    `#include <stdio.h>
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "r");
    char b[256] = "";
    if (!f) { perror(argv[i]); continue; }
    fgets(b, sizeof b, f);
    printf("%s: %s", argv[i], b);
  }
  return 0;
}`,
    ['-static'],
  );
  const r = await tether(d, [
    'run',
    '--view',
    '--root',
    root,
    '--bind',
    work,
    '-u',
    'NODE_OPTIONS',
    '-C',
    '/',
    reader,
    '/abs',
    '/rel',
    '/../../etc/hostname',
    '/proc/self/root/etc/hostname',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    '/abs: inside\n/rel: inside\n/../../etc/hostname: inside\n/proc/self/root/etc/hostname: inside\n',
  );
  const none = await viaRoot(['/bin/sh', '-c', 'true']);
  t.equal(none.code, 127, 'the sysroot has no sh: nothing falls through to the host');
});

t.test('an extra fd that is a host file is opened through the view: appends land', async (t) => {
  const log = join(work, 'config.log');
  writeFileSync(log, 'line 1\n');
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    // The shell opens fd 5 for appending, as configure does, and tether inherits it.
    const child = spawn(
      'sh',
      [
        '-c',
        `exec 5>>"$1"; exec "$2" run --view -u NODE_OPTIONS -C "$3" sh -c 'echo line 2 >&5; echo line 3 >&5'`,
        'sh',
        log,
        TETHER,
        work,
      ],
      { env: d.env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b;
    });
    child.on('close', (code) => resolve({ code, stderr }));
  });
  t.equal(r.code, 0, r.stderr);
  t.equal(readFileSync(log, 'utf8'), 'line 1\nline 2\nline 3\n');
  // A read fd keeps its offset: the program reads on from where the host left off.
  writeFileSync(join(work, 'numbers'), '1\n2\n3\n');
  const rd = await new Promise<string>((resolve) => {
    const child = spawn(
      'sh',
      [
        '-c',
        `exec 6<"$1"; read first <&6; exec "$2" run --view -u NODE_OPTIONS -C "$3" sh -c 'cat <&6'`,
        'sh',
        join(work, 'numbers'),
        TETHER,
        work,
      ],
      { env: d.env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    child.on('close', () => resolve(out));
  });
  t.equal(rd, '2\n3\n');
});

t.test(
  "a host symlink into a device mount is followed on the device, as the program's own",
  async (t) => {
    const dir = mkdtempSync(join(work, 'links-'));
    symlinkSync('/dev/null', join(dir, 'devnull'));
    symlinkSync('/proc/self', join(dir, 'self'));
    symlinkSync('/tmp', join(dir, 'tmp'));
    const r = await run(
      [
        'sh',
        '-c',
        'stat -L -c "%F %a" devnull; test -w devnull && echo writable; test -d tmp/ && echo dir; ' +
          // The program's own stderr, not tetherd's: /proc/self named through the view.
          '[ "$(readlink self/fd/2)" = "$(readlink /proc/self/fd/2)" ] && echo own-fd; ' +
          "python3 -c \"import os; print(os.access('devnull', os.W_OK), oct(os.stat('tmp/').st_mode))\"",
      ],
      { cwd: dir },
    );
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, 'character special file 666\nwritable\ndir\nown-fd\nTrue 0o41777\n');
  },
);

t.test('unix sockets bound at host paths work on the device', async (t) => {
  const r = await run([
    'python3',
    '-c',
    `import socket, os
s = socket.socket(socket.AF_UNIX); s.bind('app.sock'); s.listen(1)
c = socket.socket(socket.AF_UNIX); c.connect('app.sock')
a, _ = s.accept(); c.send(b'over the socket'); print(a.recv(64).decode())
os.unlink('app.sock')
s2 = socket.socket(socket.AF_UNIX); s2.bind('app.sock'); print('bound again')`,
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'over the socket\nbound again\n');
});

t.test('syscalls that could bypass the view fail with ENOSYS', async (t) => {
  const prog = cc(
    'bypass',
    `#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
#include <fcntl.h>
int main(void) {
  struct open_how how = { .flags = O_RDONLY };
  long a = syscall(SYS_openat2, AT_FDCWD, "/etc/hostname", &how, sizeof how);
  int e1 = errno;
  long b = syscall(SYS_open_by_handle_at, 0, 0, 0);
  int e2 = errno;
  printf("%ld %d %ld %d\\n", a, e1 == ENOSYS, b, e2 == ENOSYS);
  return 0;
}`,
  );
  const r = await run([prog]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '-1 1 -1 1\n');
});

t.test('utimes, futimesat and utime set the times of host files', async (t) => {
  // The calls before utimensat, made directly (glibc turns its wrappers into utimensat).
  const prog = cc(
    'oldtimes',
    `#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include <utime.h>
int main(void) {
  struct timeval tv[2] = {{1000000000, 250000}, {1100000000, 500000}};
  struct utimbuf ub = {1200000000, 1300000000};
  int dir = open(".", O_RDONLY | O_DIRECTORY);
  long a = syscall(SYS_utimes, "t1", tv);
  long b = syscall(SYS_futimesat, dir, "t2", tv);
  long c = syscall(SYS_utime, "t3", &ub);
  tv[1].tv_usec = 1000000;
  long d = syscall(SYS_utimes, "t1", tv);
  int einval = errno == EINVAL;
  long e = syscall(SYS_utimes, "no-such-file", 0);
  printf("%ld %ld %ld %ld %d %ld %d\\n", a, b, c, d, einval, e, errno == ENOENT);
  return 0;
}`,
  );
  for (const f of ['t1', 't2', 't3']) writeFileSync(join(work, f), f);
  const r = await run([prog]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '0 0 0 -1 1 -1 1\n');
  const mtime = (f: string) => statSync(join(work, f), { bigint: true }).mtimeNs;
  t.equal(mtime('t1'), 1100000000_500000000n, 'utimes: seconds and microseconds');
  t.equal(mtime('t2'), 1100000000_500000000n, 'futimesat relative to a directory fd');
  t.equal(mtime('t3'), 1300000000_000000000n, 'utime: whole seconds');
  t.equal(statSync(join(work, 't1'), { bigint: true }).atimeNs, 1000000000_250000000n);
});

t.test('a program whose loader and libc exist only on the host (musl)', async (t) => {
  const c = join(work, 'musl.c');
  writeFileSync(
    c,
    '#include <stdio.h>\nint main(int argc, char **argv) { printf("musl says %s\\n", argv[0]); return 3; }\n',
  );
  const built = spawnSync('musl-gcc', ['-o', join(work, 'musl-prog'), c], { encoding: 'utf8' });
  t.equal(built.status, 0, `musl-gcc (musl-tools): ${built.stderr ?? built.error}`);
  const r = await run(['./musl-prog']);
  t.equal(r.code, 3, r.stderr);
  t.equal(r.stdout, 'musl says ./musl-prog\n');
});

t.test("new host files get the program's umask, not the client's", async (t) => {
  const r = await run([
    'sh',
    '-c',
    'umask 077; echo x > private; mkdir pdir; umask 0; echo y > open; mkdir odir',
  ]);
  t.equal(r.code, 0, r.stderr);
  const mode = (p: string) => statSync(join(work, p)).mode & 0o777;
  t.equal(mode('private'), 0o600);
  t.equal(mode('pdir'), 0o700);
  t.equal(mode('open'), 0o666);
  t.equal(mode('odir'), 0o777);
});

t.test(
  "repeated stat, access and readlink of read-only paths: the tracer's table answers them as the first time",
  async (t) => {
    const probe = cc(
      'fast-probe',
      `#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
static void st(int r, struct stat *s) {
  if (r) printf(" E%d", errno); else printf(" %lu:%o:%ld:%lu", (unsigned long)s->st_ino, s->st_mode, (long)s->st_size, (unsigned long)s->st_nlink);
}
int main(int argc, char **argv) {
  for (int round = 0; round < 3; round++) {
    for (int i = 1; i < argc; i++) {
      const char *p = argv[i];
      struct stat s;
      struct statx x;
      char buf[256];
      printf("%s", p);
      st(stat(p, &s), &s);
      st(lstat(p, &s), &s);
      st(fstatat(AT_FDCWD, p, &s, AT_SYMLINK_NOFOLLOW), &s);
      if (statx(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &x)) printf(" E%d", errno);
      else printf(" x%llu:%o", (unsigned long long)x.stx_ino, x.stx_mode);
      for (int m = 0; m < 8; m++) printf(" a%d:%d", m, access(p, m) ? errno : 0);
      printf(" n%d", syscall(SYS_faccessat2, AT_FDCWD, p, X_OK, AT_SYMLINK_NOFOLLOW) ? errno : 0);
      printf(" g%d", getxattr(p, "security.selinux", buf, sizeof buf) < 0 ? errno : 0);
      printf(" h%d", lgetxattr(p, "system.posix_acl_access", NULL, 0) < 0 ? errno : 0);
      printf(" i%ld", listxattr(p, buf, sizeof buf));
      int fd = open(p, O_RDONLY | O_CLOEXEC);
      if (fd < 0) printf(" o%d", errno);
      else {
        unsigned char head[4] = {0};
        char self[64], where[256];
        long got = read(fd, head, 4);
        snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
        long wl = readlink(self, where, sizeof where);
        printf(" o%ld:%02x%02x%02x%02x:%.*s", got, head[0], head[1], head[2], head[3], wl < 0 ? 0 : (int)wl, where);
        close(fd);
      }
      long n = readlink(p, buf, sizeof buf);
      printf(" l%ld:%.*s", n < 0 ? -errno : n, n < 0 ? 0 : (int)n, buf);
      n = readlink(p, buf, 2);
      printf(" s%ld:%.*s\\n", n < 0 ? -errno : n, n < 0 ? 0 : (int)n, buf);
    }
  }
  return 0;
}
`,
    );
    const paths = ['/usr/bin/env', '/usr/bin', '/bin', '/etc/passwd/x', '/nonexistent-tether'];
    const hits = async () => {
      const s = await tether(d, ['status', '--json']);
      return JSON.parse(s.stdout).info.fastAnswers.hits as number;
    };
    const before = await hits();
    const r = await run([probe, ...paths]);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines.length, 3 * paths.length);
    const first = lines.slice(0, paths.length);
    t.same(lines.slice(paths.length, 2 * paths.length), first, 'round 2 = round 1');
    t.same(lines.slice(2 * paths.length), first, 'round 3 = round 1');
    // The first round's answers are the host's.
    const env = statSync('/usr/bin/env');
    t.match(first[0], new RegExp(`^/usr/bin/env ${env.ino}:${env.mode.toString(8)}:${env.size}:`));
    t.match(first[2], /^\/bin \d+:40755:\d+:\d+ \d+:120777:\d+:1 /);
    t.match(first[2], / l7:usr\/bin s2:us$/);
    t.match(first[3], /^\/etc\/passwd\/x E20 E20 E20 E20 a0:20 .* g20 h20 i-1 /);
    // Host files show no extended attributes.
    t.match(first[0], / g61 h61 i0 /);
    t.match(first[4], /^\/nonexistent-tether E2 E2 E2 E2 a0:2 .* l-2: s-2:$/);
    // W_OK in the read-only view: EROFS, as on a read-only mount.
    t.match(first[0], / a2:30 /);
    // An open reads the host file's bytes and the fd names the view path.
    t.match(first[0], / o4:7f454c46:\/usr\/bin\/env /);
    t.ok((await hits()) - before >= 2 * paths.length * 10, 'rounds 2 and 3 came from the table');
  },
);

t.test('an empty path is ENOENT for every path call, as the kernel says', async (t) => {
  const probe = cc(
    'empty-path',
    `#include <errno.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>
int main(void) {
  char buf[64];
  struct statfs sf;
  int fd = inotify_init();
  printf("getxattr %d\\n", getxattr("", "user.x", buf, sizeof buf) < 0 ? errno : 0);
  printf("lgetxattr %d\\n", lgetxattr("", "user.x", buf, sizeof buf) < 0 ? errno : 0);
  printf("listxattr %d\\n", listxattr("", buf, sizeof buf) < 0 ? errno : 0);
  printf("setxattr %d\\n", setxattr("", "user.x", "1", 1, 0) < 0 ? errno : 0);
  printf("statfs %d\\n", statfs("", &sf) < 0 ? errno : 0);
  printf("inotify %d\\n", inotify_add_watch(fd, "", IN_MODIFY) < 0 ? errno : 0);
  printf("chdir %d\\n", chdir("") < 0 ? errno : 0);
  printf("access %d\\n", access("", F_OK) < 0 ? errno : 0);
  return 0;
}
`,
  );
  const native = spawnSync(probe, { cwd: work, encoding: 'utf8' });
  t.equal(native.status, 0);
  t.match(
    native.stdout,
    /^getxattr 2\nlgetxattr 2\nlistxattr 2\nsetxattr 2\nstatfs 2\ninotify 2\n/,
  );
  const r = await run([probe]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, native.stdout);
});

t.test(
  '300 host directories read in turn, a little at a time, list every entry once',
  async (t) => {
    const top = join(work, 'many');
    for (let i = 0; i < 300; i++) {
      mkdirSync(join(top, `d${i}`), { recursive: true });
      for (const f of ['a', 'b', 'c']) writeFileSync(join(top, `d${i}`, f), '');
    }
    const probe = cc(
      'many-dirs',
      `#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
struct d64 { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; };
static int fds[300];
static char names[300][256];
static void take(int i, int size) {
  char buf[4096];
  long n = syscall(SYS_getdents64, fds[i], buf, size);
  for (long o = 0; o < n;) {
    struct d64 *e = (struct d64 *)(buf + o);
    strcat(names[i], e->name);
    strcat(names[i], " ");
    o += e->reclen;
  }
}
int main(void) {
  char p[64];
  for (int i = 0; i < 300; i++) {
    snprintf(p, sizeof p, "many/d%d", i);
    fds[i] = open(p, O_RDONLY | O_DIRECTORY);
    if (fds[i] < 0) return 1;
    take(i, 32);
  }
  for (int i = 0; i < 300; i++) {
    for (int k = 0; k < 6; k++) take(i, 32);
    printf("%d %s\\n", i, names[i]);
  }
  return 0;
}
`,
    );
    const r = await run([probe]);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines.length, 300);
    const sorted = (l: string) => l.split(' ').slice(1).filter(Boolean).sort().join(' ');
    t.same(
      [...new Set(lines.map(sorted))],
      ['. .. a b c'],
      'each directory once, whole, wherever its listing was dropped',
    );
  },
);

t.test(
  "the tracer's table follows the run's own changes and the host's after a second",
  async (t) => {
    const probe = cc(
      'fast-writable',
      `#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static char f[512], g[512];
static void show(const char *what, const char *p) {
  struct stat s;
  for (int i = 0; i < 2; i++) {
    if (stat(p, &s)) printf("%s E%d\\n", what, errno);
    else printf("%s %ld %o\\n", what, (long)s.st_size, s.st_mode & 07777);
  }
}
int main(int argc, char **argv) {
  snprintf(f, sizeof f, "%s/f", argv[1]);
  snprintf(g, sizeof g, "%s/g", argv[1]);
  if (argc > 2) {
    show("before", f);
    sleep(2);
    show("after", f);
    return 0;
  }
  show("start", f);
  int fd = open(f, O_WRONLY | O_APPEND);
  if (write(fd, "abc", 3) != 3) return 1;
  show("writing", f);
  close(fd);
  show("closed", f);
  chmod(f, 0600);
  show("chmod", f);
  rename(f, g);
  show("renamed-from", f);
  show("renamed-to", g);
  unlink(g);
  show("unlinked", g);
  return 0;
}
`,
    );
    const natDir = mkdtempSync(join(work, 'fw-native-'));
    const viewDir = mkdtempSync(join(work, 'fw-view-'));
    for (const dir of [natDir, viewDir]) {
      writeFileSync(join(dir, 'f'), 'hello\n');
      chmodSync(join(dir, 'f'), 0o644);
    }
    const native = spawnSync(probe, [natDir], { encoding: 'utf8' });
    t.equal(native.status, 0);
    t.match(native.stdout, /^start 6 644\n.*writing 9 644\n.*unlinked E2\n$/s);
    const r = await run([probe, viewDir]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, native.stdout, 'each answer as the kernel gives it for its own files');

    // The host appends while the program sleeps: after the answers' second it sees the change.
    const hostDir = mkdtempSync(join(work, 'fw-host-'));
    writeFileSync(join(hostDir, 'f'), 'hello\n');
    const running = run([probe, hostDir, 'wait']);
    setTimeout(() => writeFileSync(join(hostDir, 'f'), 'hello, world\n'), 500);
    const w = await running;
    t.equal(w.code, 0, w.stderr);
    t.equal(w.stdout, 'before 6 644\nbefore 6 644\nafter 13 644\nafter 13 644\n');
  },
);

t.test(
  "repeated opens of a cached read-only file are rewritten by the tracer's table",
  async (t) => {
    const prog = cc(
      'open-loop',
      `#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
  for (int i = 0; i < 50; i++) {
    char b[4];
    int fd = open("/usr/bin/env", O_RDONLY);
    if (fd < 0 || read(fd, b, 4) != 4 || memcmp(b, "\\x7f" "ELF", 4)) return 1;
    close(fd);
  }
  puts("ok");
  return 0;
}
`,
    );
    const hits = async () =>
      JSON.parse((await tether(d, ['status', '--json'])).stdout).info.fastAnswers.hits as number;
    const before = await hits();
    const r = await run([prog]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, 'ok\n');
    // The first open fetches, the second is rewritten by TypeScript and kept, the rest by C.
    t.ok((await hits()) - before >= 48, 'opens 3 to 50 came from the table');
  },
);

t.test(
  "relative paths from the cwd and from directory fds: the tracer's table answers them as the kernel",
  async (t) => {
    const probe = cc(
      'fast-relative',
      `#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
static void show(const char *what, int r, struct stat *s) {
  if (r) printf("%s E%d\\n", what, errno);
  else printf("%s %ld %o\\n", what, (long)s->st_size, s->st_mode & 07777);
}
int main(void) {
  struct stat s;
  int d = open("sub", O_RDONLY | O_DIRECTORY);
  for (int i = 0; i < 20; i++) {
    int a = stat("sub/f", &s); long x = s.st_size;
    int b = fstatat(d, "f", &s, 0); long y = s.st_size;
    int c = stat("./sub/f", &s); long z = s.st_size;
    if (a || b || c || x != 6 || y != 6 || z != 6) { printf("loop %d: %d %d %d %ld %ld %ld\\n", i, a, b, c, x, y, z); return 1; }
  }
  int fd = open("sub/f", O_WRONLY | O_APPEND);
  if (write(fd, "abc", 3) != 3) return 1;
  close(fd);
  show("appended", stat("sub/f", &s), &s);
  show("appended-at", fstatat(d, "f", &s, 0), &s);
  rename("sub/f", "sub/g");
  show("from", stat("sub/f", &s), &s);
  show("from-at", fstatat(d, "f", &s, 0), &s);
  show("to-at", fstatat(d, "g", &s, AT_SYMLINK_NOFOLLOW), &s);
  if (chdir("sub")) return 1;
  show("cd-g", stat("g", &s), &s);
  show("cd-f", stat("f", &s), &s);
  show("cd-up", stat("../sub/g", &s), &s);
  return 0;
}
`,
    );
    const dirs = [mkdtempSync(join(work, 'rel-native-')), mkdtempSync(join(work, 'rel-view-'))];
    for (const dir of dirs) {
      mkdirSync(join(dir, 'sub'));
      writeFileSync(join(dir, 'sub/f'), 'hello\n');
      chmodSync(join(dir, 'sub/f'), 0o644);
    }
    const native = spawnSync(probe, { cwd: dirs[0], encoding: 'utf8' });
    t.equal(native.status, 0, native.stdout);
    t.match(native.stdout, /^appended 9 644\nappended-at 9 644\nfrom E2\n/);
    const hits = async () =>
      JSON.parse((await tether(d, ['status', '--json'])).stdout).info.fastAnswers.hits as number;
    const before = await hits();
    // Run from its own tree: /tmp, where the test's files are, is the device's.
    copyFileSync(probe, join(dirs[1]!, 'probe'));
    const r = await run(['./probe'], { cwd: dirs[1] });
    t.equal(r.code, 0, r.stderr + r.stdout);
    t.equal(r.stdout, native.stdout);
    t.ok((await hits()) - before >= 40, 'the loop came from the table');
  },
);

t.test('a name the run found missing is there once the run makes it', async (t) => {
  const probe = cc(
    'miss-then-make',
    `#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
static void show(const char *p) {
  struct stat s;
  for (int i = 0; i < 3; i++) {
    if (lstat(p, &s)) printf("%s E%d\\n", p, errno);
    else printf("%s %o %ld\\n", p, s.st_mode & 0170000, (long)s.st_size);
  }
}
int main(void) {
  show("n1");
  close(open("n1", O_CREAT | O_RDONLY, 0644));
  show("n1");
  show("n2");
  mkdir("n2", 0755);
  show("n2");
  show("n3");
  symlink("n1", "n3");
  show("n3");
  show("n2/n4");
  if (rename("n1", "n2/n4")) return 1;
  show("n2/n4");
  show("n1");
  return 0;
}
`,
  );
  const dirs = [mkdtempSync(join(work, 'miss-native-')), mkdtempSync(join(work, 'miss-view-'))];
  const native = spawnSync(probe, { cwd: dirs[0], encoding: 'utf8' });
  t.equal(native.status, 0, native.stdout);
  t.match(native.stdout, /^n1 E2\nn1 E2\nn1 E2\nn1 100000 0\n/);
  copyFileSync(probe, join(dirs[1]!, 'probe'));
  const r = await run(['./probe'], { cwd: dirs[1] });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, native.stdout);
});

t.test(
  'after a read-only directory is listed whole, names not in it are ENOENT and the rest are found',
  async (t) => {
    const probe = cc(
      'listed-then-probe',
      `#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
int main(void) {
  DIR *d = opendir("/usr/bin");
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  struct stat s;
  const char *p[] = {"/usr/bin/env", "/usr/bin/no-such-tether-tool", "/usr/bin/env/x", "/usr/bin/../bin/env"};
  for (int i = 0; i < 4; i++) printf("%s %d\\n", p[i], stat(p[i], &s) ? errno : 0);
  printf("%d\\n", n > 10);
  return 0;
}
`,
    );
    const native = spawnSync(probe, { encoding: 'utf8' });
    t.equal(native.status, 0);
    t.equal(
      native.stdout,
      '/usr/bin/env 0\n/usr/bin/no-such-tether-tool 2\n/usr/bin/env/x 20\n/usr/bin/../bin/env 0\n1\n',
    );
    const r = await run([probe]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, native.stdout);
  },
);
