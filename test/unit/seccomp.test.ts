// The seccomp filter, run by a small classic-BPF interpreter over every syscall number of each
// ABI and beyond: traced calls trap, the table's others run unless they could bypass the view,
// and every number the table does not know fails with ENOSYS (default deny).
import t from 'tap';
import { ARCH_ABIS, abiForNodeArch } from '../../arch/abi.ts';
import { OPEN_FLAGS } from '../../arch/fcntl.ts';
import { SYSCALLS } from '../../arch/syscalls.ts';
import { NOTIFIED } from '../../daemon/notify-stop.ts';
import { ENOSYS_CALLS } from '../../daemon/redirect/index.ts';
import { Redirector } from '../../daemon/redirect/redirector.ts';
import { buildFilter, type FilterAbi } from '../../daemon/seccomp.ts';
import { filterAbis, filterFor } from '../../daemon/view-session.ts';

const RET_ALLOW = 0x7fff0000;
const RET_TRACE = 0x7ff00000;
const RET_USER_NOTIF = 0x7fc00000;
const RET_ENOSYS = 0x00050000 | 38;

/** Runs a cBPF program of the filter's instruction set on seccomp_data {nr, arch, args}. */
function run(prog: Buffer, nr: number, arch: number, args: number[] = []): number {
  // Words: nr, arch, ip (2), then each argument's low and high word.
  const data = [nr >>> 0, arch >>> 0, 0, 0, ...args.flatMap((a) => [a >>> 0, 0])];
  let a = 0;
  for (let pc = 0, steps = 0; steps < 10_000; steps++) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    if (code === 0x20) a = data[k / 4]!;
    else if (code === 0x06) return k;
    else if (code === 0x05) pc += k;
    else if (code === 0x15) pc += a === k ? jt : jf;
    else if (code === 0x35) pc += a >= k ? jt : jf;
    else if (code === 0x45) pc += a & k ? jt : jf;
    else throw new Error(`unexpected instruction ${code.toString(16)} at ${pc}`);
    pc++;
  }
  throw new Error('no return');
}

const abis = [ARCH_ABIS.x86_64, ARCH_ABIS.i386, ARCH_ABIS.aarch64, ARCH_ABIS.arm];
const lists = filterAbis(abis);
const prog = buildFilter(lists);

t.test('every number of every ABI, and past each table, gets its verdict', async (t) => {
  t.ok(prog.length / 8 < 4096, `${prog.length / 8} instructions`);
  lists.forEach((l: FilterAbi, i) => {
    const abi = abis[i]!;
    const want = (nr: number) =>
      l.trace.includes(nr) ? RET_TRACE : l.allow.includes(nr) ? RET_ALLOW : RET_ENOSYS;
    const max = Math.max(...Object.values(SYSCALLS[abi.name].byName));
    const numbers = [...Array(1200).keys(), 0x0f0000, 0x0f0002, 0x0f0006, max, max + 1];
    numbers.push(0x40000000 | 2, 0x7fffffff, 0xffffffff);
    const wrong = numbers.filter((nr) => run(prog, nr, abi.auditArch) !== want(nr));
    t.same(wrong, [], `${abi.name}: every verdict as listed`);
  });
  t.equal(run(prog, 0, 0x12345678), RET_ENOSYS, 'a foreign ABI gets nothing through');
});

t.test('what a newer kernel adds is refused; what tether redirects is traced', async (t) => {
  for (const abi of abis) {
    const verdict = (nr: number) => run(prog, nr, abi.auditArch);
    t.equal(verdict(abi.syscallNumber('fchmodat2')!), RET_TRACE, `${abi.name}: fchmodat2 traced`);
    t.equal(verdict(abi.syscallNumber('openat')!), RET_TRACE, `${abi.name}: openat traced`);
    t.equal(verdict(abi.syscallNumber('read')!), RET_ALLOW, `${abi.name}: read runs`);
    t.equal(verdict(abi.syscallNumber('openat2')!), RET_ENOSYS, `${abi.name}: openat2 refused`);
    // Linux 6.13–6.17: getxattrat, open_tree_attr, file_getattr take paths (the same numbers on
    // every ABI of the unified table).
    for (const nr of [464, 467, 468])
      t.equal(verdict(nr), RET_ENOSYS, `${abi.name}: ${nr} (newer than the table) refused`);
  }
  t.equal(run(prog, 0x40000002, ARCH_ABIS.x86_64.auditArch), RET_ENOSYS, 'x32 calls refused');
});

t.test("under unotify the own ABI's answered calls notify; the rest still trace", async (t) => {
  const own = abiForNodeArch(process.arch)!;
  const other = own.name === 'x86_64' ? ARCH_ABIS.i386 : ARCH_ABIS.arm;
  const p = filterFor([own, other], 'unotify');
  const verdict = (abi: typeof own, name: string) =>
    run(p, abi.syscallNumber(name)!, abi.auditArch);
  const mine: string[] = NOTIFIED.filter((n) => own.syscallNumber(n) !== undefined);
  t.ok(
    ['statx', 'readlinkat', 'openat', 'getdents64'].every((n) => mine.includes(n)),
    `${mine.length} calls notify`,
  );
  for (const n of mine) t.equal(verdict(own, n), RET_USER_NOTIF, `${own.name}: ${n} notifies`);
  for (const n of ['execve', 'chdir', 'mkdirat', 'unlinkat', 'renameat2'])
    t.equal(verdict(own, n), RET_TRACE, `${own.name}: ${n} still a ptrace stop`);
  // The answer table and the notifications speak the tracer's own ABI only.
  for (const n of ['statx', 'stat64', 'readlink'].filter(
    (n) => other.syscallNumber(n) !== undefined,
  ))
    t.equal(verdict(other, n), RET_TRACE, `${other.name}: ${n} a ptrace stop`);
  t.equal(verdict(own, 'getpid'), RET_ALLOW, 'getpid runs');
  // An O_PATH open stays a ptrace stop: no fd the listener could install stands for it.
  const O_PATH = OPEN_FLAGS[own.name].O_PATH;
  const openat = (flags: number) =>
    run(p, own.syscallNumber('openat')!, own.auditArch, [-100, 0, flags, 0]);
  t.equal(openat(0), RET_USER_NOTIF, 'openat O_RDONLY notifies');
  t.equal(openat(O_PATH | 0o400000), RET_TRACE, 'openat O_PATH|O_CLOEXEC traces');
  t.equal(openat(0o100 | 0o1), RET_USER_NOTIF, 'openat O_CREAT|O_WRONLY notifies');
  if (own.syscallNumber('open') !== undefined)
    t.equal(
      run(p, own.syscallNumber('open')!, own.auditArch, [0, O_PATH]),
      RET_TRACE,
      'open O_PATH traces',
    );
});

t.test('every handler and every refused name is a syscall of some ABI', async (t) => {
  const known = (n: string) => abis.some((a) => a.syscallNumber(n) !== undefined);
  t.same(
    Redirector.traced().filter((n) => !known(n)),
    [],
    'handlers',
  );
  t.same(
    ENOSYS_CALLS.filter((n) => !known(n)),
    [],
    'refused calls',
  );
});
