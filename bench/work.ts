// The host files B2, B3 and B5 run on: one work directory per bench run
// (mkdtemp under --tree-dir, /var/tmp by default: the view's device-local
// /tmp would hide a tree under /tmp), the small C programs they time, and
// the trees they read.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Work {
  dir: string;
  /** Compiled helpers, outside the trees (the sshfs baseline mounts only the trees). */
  bin: { tt: string; sysloop: string };
  /** Removes the whole work directory. */
  remove(): void;
}

// `tt LABEL PROGRAM [ARG]...`: runs PROGRAM (PATH search) and prints
// "@tt LABEL <ns>" on stderr, the time from before fork to after wait, so the
// time excludes whatever started tt. Exits as PROGRAM did.
const TT_C = `#define _GNU_SOURCE
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc < 3) { dprintf(2, "usage: tt LABEL PROGRAM [ARG]...\\n"); return 2; }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  pid_t p = fork();
  if (p < 0) { perror("tt: fork"); return 127; }
  if (p == 0) { execvp(argv[2], argv + 2); perror(argv[2]); _exit(127); }
  int st;
  if (waitpid(p, &st, 0) < 0) { perror("tt: waitpid"); return 127; }
  clock_gettime(CLOCK_MONOTONIC, &b);
  long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
  dprintf(2, "@tt %s %lld\\n", argv[1], ns);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
`;

// `sysloop getpid N | read N | stat N PATH...`: N raw getpid calls, N 1-byte
// reads of /dev/zero, or N stat calls over the PATHs in turn; prints
// "@tt MODE <ns>" for the loop alone (not the program's start).
const SYSLOOP_C = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc < 3) { dprintf(2, "usage: sysloop getpid|read|stat N [PATH]...\\n"); return 2; }
  const char *mode = argv[1];
  long n = atol(argv[2]);
  int fd = -1;
  if (!strcmp(mode, "read") && (fd = open("/dev/zero", O_RDONLY)) < 0) { perror("/dev/zero"); return 1; }
  if (!strcmp(mode, "stat") && argc < 4) { dprintf(2, "sysloop stat: no paths\\n"); return 2; }
  struct timespec a, b;
  struct stat st;
  char c;
  long sum = 0;
  clock_gettime(CLOCK_MONOTONIC, &a);
  if (!strcmp(mode, "getpid")) {
    for (long i = 0; i < n; i++) sum += syscall(SYS_getpid);
  } else if (!strcmp(mode, "read")) {
    for (long i = 0; i < n; i++) if (read(fd, &c, 1) != 1) { perror("read"); return 1; }
  } else if (!strcmp(mode, "stat")) {
    int k = argc - 3;
    for (long i = 0; i < n; i++) {
      if (stat(argv[3 + i % k], &st) != 0) { perror(argv[3 + i % k]); return 1; }
      sum += st.st_size;
    }
  } else { dprintf(2, "sysloop: mode %s?\\n", mode); return 2; }
  clock_gettime(CLOCK_MONOTONIC, &b);
  long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
  dprintf(2, "@tt %s %lld\\n", mode, ns);
  return sum == -1;
}
`;

// B2's test program, as configure's conftest: reads conf.h and two inputs,
// writes out/<i>.txt with "<i> <bytes> <byte sum>".
const CONFTEST_C = `#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  if (argc != 2) return 2;
  const char *in[] = {"conf.h", "in/a.txt", "in/b.txt"};
  unsigned long bytes = 0, sum = 0;
  for (int k = 0; k < 3; k++) {
    FILE *f = fopen(in[k], "r");
    if (!f) { perror(in[k]); return 1; }
    int c;
    while ((c = getc(f)) != EOF) { bytes++; sum += (unsigned char)c; }
    fclose(f);
  }
  char out[64];
  snprintf(out, sizeof out, "out/%s.txt", argv[1]);
  FILE *o = fopen(out, "w");
  if (!o) { perror(out); return 1; }
  fprintf(o, "%s %lu %lu\\n", argv[1], bytes, sum);
  return fclose(o) != 0;
}
`;

function gcc(src: string, out: string): Promise<void> {
  writeFileSync(`${out}.c`, src);
  return new Promise((resolve, reject) => {
    execFile('gcc', ['-O2', '-o', out, `${out}.c`], (err, _stdout, stderr) => {
      if (err) reject(new Error(`gcc ${out}.c: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

export async function createWork(parent: string): Promise<Work> {
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, 'tether-bench-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    mkdirSync(join(dir, 'bin'));
    const tt = join(dir, 'bin/tt');
    const sysloop = join(dir, 'bin/sysloop');
    await Promise.all([gcc(TT_C, tt), gcc(SYSLOOP_C, sysloop)]);
    return { dir, bin: { tt, sysloop }, remove };
  } catch (e) {
    remove();
    throw e;
  }
}

/** Deterministic filler text of `n` bytes. */
function filler(seed: number, n: number): string {
  let s = '';
  for (let i = 0; s.length < n; i++)
    s += `/* ${seed}.${i} HAVE_FEATURE_${(seed * 31 + i) % 997} */\n`;
  return s.slice(0, n);
}

export interface B2Tree {
  dir: string;
  /** What out/<i>.txt must hold. */
  expected(i: number): string;
}

/** B2's tree: conftest (compiled in the tree), conf.h, in/a.txt, in/b.txt, out/. */
export async function createB2Tree(work: Work): Promise<B2Tree> {
  const dir = join(work.dir, 'b2');
  mkdirSync(join(dir, 'in'), { recursive: true });
  mkdirSync(join(dir, 'out'));
  const inputs = [filler(1, 2048), filler(2, 700), filler(3, 1300)];
  writeFileSync(join(dir, 'conf.h'), inputs[0]!);
  writeFileSync(join(dir, 'in/a.txt'), inputs[1]!);
  writeFileSync(join(dir, 'in/b.txt'), inputs[2]!);
  await gcc(CONFTEST_C, join(dir, 'conftest'));
  const all = Buffer.from(inputs.join(''), 'latin1');
  let sum = 0;
  for (const b of all) sum += b;
  return { dir, expected: (i) => `${i} ${all.length} ${sum}\n` };
}

export interface B3Tree {
  dir: string;
  files: number;
  dirs: number;
}

/** B3's tree: `files` small files, 100 per leaf directory, 10 leaves per top directory. */
export function createB3Tree(work: Work, files: number): B3Tree {
  const dir = join(work.dir, 'b3');
  mkdirSync(dir);
  const perLeaf = 100;
  const leavesPerTop = 10;
  let made = 0;
  let dirs = 1;
  for (let t = 0; made < files; t++) {
    mkdirSync(join(dir, `d${t}`));
    dirs++;
    for (let l = 0; l < leavesPerTop && made < files; l++) {
      const leaf = join(dir, `d${t}`, `s${l}`);
      mkdirSync(leaf);
      dirs++;
      for (let f = 0; f < perLeaf && made < files; f++, made++)
        writeFileSync(join(leaf, `f${f}.c`), `int f${made}(void) { return ${made}; }\n`);
    }
  }
  return { dir, files, dirs };
}

/** POSIX shell quoting. */
export function shq(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The "@tt LABEL NS" lines of tt and sysloop, in ms. */
export function innerTimes(stderr: string): Record<string, number> {
  const t: Record<string, number> = {};
  for (const m of stderr.matchAll(/^@tt (\S+) (\d+)$/gm)) t[m[1]!] = Number(m[2]) / 1e6;
  return t;
}
