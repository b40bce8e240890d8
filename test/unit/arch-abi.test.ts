// Register layouts, constants and struct layouts of arch/abi.ts and arch/structs.ts against
// each architecture's own headers, read by its compiler (the kernel's asm-offsets trick: a
// constant becomes an `.ascii "->name value"` line of the -S output); then the encoders'
// bytes read back at the compiler's offsets, and the register accessors round-tripped.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  ARCH_ABIS,
  type ArchAbi,
  abiByAuditArch,
  abiByRegsetSize,
  abiForNodeArch,
  abiForStop,
  NT_ARM_SYSTEM_CALL,
  NT_PRSTATUS,
  PTRACE_SET_SYSCALL,
} from '../../arch/abi.ts';
import { HEADER_SOURCES, missingHeaders } from '../../arch/gen-syscalls.ts';
import {
  DIRENT64,
  encodeDirent64,
  encodeStat,
  encodeStatfs,
  encodeStatx,
  type Field,
  STATX,
  STATX_BASIC_STATS,
  STRUCTS,
  type StatfsKind,
  type StatKind,
  type StructLayout,
} from '../../arch/structs.ts';
import { ABIS, type Abi, SYSCALLS } from '../../arch/syscalls.ts';
import type { StatFs, ViewStat } from '../../transport/view.ts';

interface Target {
  cc: string;
  pkg: string;
  flags: string[];
  headers: string[];
  /** The regset struct and the C names of the registers RegOffsets holds. */
  regs: { type: string; nr: string; args: string[]; result: string; sp: string; ip: string };
}

const ARM_ARGS = ['ARM_r0', 'ARM_r1', 'ARM_r2', 'ARM_r3', 'ARM_r4', 'ARM_r5'];
const KERNEL_HEADERS = [
  'asm/stat.h',
  'asm/statfs.h',
  'linux/stat.h',
  'linux/audit.h',
  'linux/elf.h',
];

// Kernel uapi headers only (-nostdinc), so no target libc is needed; x86_64 also reads glibc's
// sys/user.h (user_regs_struct is not uapi) and dirent.h (neither is linux_dirent64).
const TARGETS: Record<Abi, Target> = {
  x86_64: {
    cc: 'gcc',
    pkg: 'gcc libc6-dev',
    flags: ['-m64', '-D_GNU_SOURCE'],
    headers: ['sys/user.h', 'dirent.h', ...KERNEL_HEADERS],
    regs: {
      type: 'struct user_regs_struct',
      nr: 'orig_rax',
      args: ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'],
      result: 'rax',
      sp: 'rsp',
      ip: 'rip',
    },
  },
  i386: {
    cc: 'gcc',
    pkg: 'gcc',
    flags: ['-m32', '-nostdinc', '-I/usr/include/x86_64-linux-gnu', '-I/usr/include'],
    headers: ['asm/ptrace.h', ...KERNEL_HEADERS],
    regs: {
      type: 'struct pt_regs',
      nr: 'orig_eax',
      args: ['ebx', 'ecx', 'edx', 'esi', 'edi', 'ebp'],
      result: 'eax',
      sp: 'esp',
      ip: 'eip',
    },
  },
  arm: {
    cc: 'arm-linux-gnueabihf-gcc',
    pkg: 'gcc-arm-linux-gnueabihf',
    flags: ['-nostdinc', '-I/usr/arm-linux-gnueabihf/include'],
    headers: ['asm/ptrace.h', ...KERNEL_HEADERS],
    regs: {
      type: 'struct pt_regs',
      nr: 'ARM_r7',
      args: ARM_ARGS,
      result: 'ARM_r0',
      sp: 'ARM_sp',
      ip: 'ARM_pc',
    },
  },
  aarch64: {
    cc: 'aarch64-linux-gnu-gcc',
    pkg: 'gcc-aarch64-linux-gnu',
    flags: ['-nostdinc', '-I/usr/aarch64-linux-gnu/include'],
    headers: ['asm/ptrace.h', ...KERNEL_HEADERS],
    regs: {
      type: 'struct user_pt_regs',
      nr: 'regs[8]',
      args: ['regs[0]', 'regs[1]', 'regs[2]', 'regs[3]', 'regs[4]', 'regs[5]'],
      result: 'regs[0]',
      sp: 'sp',
      ip: 'pc',
    },
  },
};

const AUDIT_ARCH_C: Record<Abi, string> = {
  x86_64: 'AUDIT_ARCH_X86_64',
  i386: 'AUDIT_ARCH_I386',
  arm: 'AUDIT_ARCH_ARM',
  aarch64: 'AUDIT_ARCH_AARCH64',
};

const C_TYPE: Record<StatKind | StatfsKind, string> = {
  stat: 'struct stat',
  stat64: 'struct stat64',
  statfs: 'struct statfs',
  statfs64: 'struct statfs64',
};

const INT80_ARGS = ['rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp'];

// What each target's compile reports: `name` → value.
function probes(abi: Abi): [string, string][] {
  const { regs } = TARGETS[abi];
  const p: [string, string][] = [];
  const field = (name: string, type: string, member: string) => {
    p.push([`${name}.off`, `__builtin_offsetof(${type}, ${member})`]);
    p.push([`${name}.size`, `sizeof(((${type} *)0)->${member})`]);
  };
  const struct = (name: string, type: string, l: StructLayout) => {
    p.push([`${name}.size`, `sizeof(${type})`]);
    for (const f of Object.keys(l.fields)) field(`${name}.${f}`, type, f);
  };
  p.push(['regs.size', `sizeof(${regs.type})`]);
  field('regs.nr', regs.type, regs.nr);
  for (const [i, r] of regs.args.entries()) field(`regs.arg${i}`, regs.type, r);
  field('regs.result', regs.type, regs.result);
  field('regs.sp', regs.type, regs.sp);
  field('regs.ip', regs.type, regs.ip);
  if (abi === 'x86_64') {
    for (const [i, r] of INT80_ARGS.entries()) field(`int80.arg${i}`, regs.type, r);
  }
  p.push(['AUDIT_ARCH', AUDIT_ARCH_C[abi]]);
  p.push(['NT_PRSTATUS', 'NT_PRSTATUS']);
  if (abi === 'arm' || abi === 'aarch64') p.push(['NT_ARM_SYSTEM_CALL', 'NT_ARM_SYSTEM_CALL']);
  if (abi === 'arm') p.push(['PTRACE_SET_SYSCALL', 'PTRACE_SET_SYSCALL']);
  p.push(['STATX_BASIC_STATS', 'STATX_BASIC_STATS']);
  for (const [kind, l] of Object.entries(STRUCTS[abi])) struct(kind, C_TYPE[kind as StatKind], l);
  struct('statx', 'struct statx', STATX);
  if (abi === 'x86_64') {
    for (const f of Object.keys(DIRENT64.fields)) field(`dirent64.${f}`, 'struct dirent64', f);
    p.push(['dirent64.d_name.off', '__builtin_offsetof(struct dirent64, d_name)']);
  }
  return p;
}

const compiled = new Map<Abi, Map<string, number> | Error>();

/** The probes' values as `abi`'s compiler sees its headers; an Error saying what to install. */
function headerValues(abi: Abi): Map<string, number> | Error {
  const cached = compiled.get(abi);
  if (cached) return cached;
  const result = compile(abi);
  compiled.set(abi, result);
  return result;
}

function compile(abi: Abi): Map<string, number> | Error {
  const target = TARGETS[abi];
  const src = HEADER_SOURCES.find((s) => s.abi === abi);
  const missing = src && missingHeaders(src);
  if (missing) return new Error(missing);
  const list = probes(abi);
  const code = [
    ...target.headers.map((h) => `#include <${h}>`),
    'void probe(void) {',
    ...list.map(
      ([name, expr]) => `  __asm__ volatile(".ascii \\"->${name} %0\\\\n\\"" :: "i"(${expr}));`,
    ),
    '}',
  ].join('\n');
  let asm: string;
  try {
    asm = execFileSync(target.cc, [...target.flags, '-S', '-o', '-', '-x', 'c', '-'], {
      input: code,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      return new Error(
        `${target.cc} is missing: apt-get install ${target.pkg} (listed in scripts/ci-packages.sh)`,
      );
    }
    return new Error(`${target.cc} failed on ${abi}'s headers:\n${e.stderr ?? e.message}`);
  }
  // arm prints immediates as #N, x86 as $N, aarch64 bare.
  const values = new Map<string, number>();
  for (const m of asm.matchAll(/->(\S+) [#$]?(-?\d+)/g)) values.set(m[1]!, Number(m[2]));
  const lost = list.filter(([name]) => !values.has(name)).map(([name]) => name);
  if (lost.length) return new Error(`${abi}: no value for ${lost.join(', ')}`);
  return values;
}

/** The header values, or fails the test with what to install (never a skip). */
function need(t: Test, abi: Abi): Map<string, number> | null {
  const v = headerValues(abi);
  if (v instanceof Error) {
    t.fail(v.message);
    return null;
  }
  return v;
}

const headerField = (v: Map<string, number>, name: string): Field => [
  v.get(`${name}.off`)!,
  v.get(`${name}.size`)!,
];

// Every ABI variant a tracer can meet.
const I386_FROM_X86_64 = abiForStop(ARCH_ABIS.x86_64, ARCH_ABIS.i386.auditArch, 216)!;
const ARM_ON_AARCH64 = abiByRegsetSize(ARCH_ABIS.aarch64, 72)!;
const VARIANTS: ArchAbi[] = [...Object.values(ARCH_ABIS), I386_FROM_X86_64, ARM_ON_AARCH64];

for (const abi of ABIS) {
  t.test(`${abi}: registers and constants match the headers`, async (t) => {
    const v = need(t, abi);
    if (!v) return;
    const a = ARCH_ABIS[abi];
    t.equal(a.regsetSize, v.get('regs.size'), `NT_PRSTATUS is sizeof(${TARGETS[abi].regs.type})`);
    const role = (name: string, off: number) => {
      t.strictSame([off, a.regSize], headerField(v, `regs.${name}`), `${name} at ${off}`);
    };
    role('nr', a.regs.nr);
    for (const [i, off] of a.regs.args.entries()) role(`arg${i}`, off);
    role('result', a.regs.result);
    role('sp', a.regs.sp);
    role('ip', a.regs.ip);
    t.equal(a.auditArch, v.get('AUDIT_ARCH')! >>> 0, AUDIT_ARCH_C[abi]);
    t.equal(NT_PRSTATUS, v.get('NT_PRSTATUS'));
    if (abi === 'arm' || abi === 'aarch64')
      t.equal(NT_ARM_SYSTEM_CALL, v.get('NT_ARM_SYSTEM_CALL'));
    if (abi === 'arm') t.equal(PTRACE_SET_SYSCALL, v.get('PTRACE_SET_SYSCALL'));
    t.equal(STATX_BASIC_STATS, v.get('STATX_BASIC_STATS'));
    if (abi === 'x86_64') {
      I386_FROM_X86_64.regs.args.forEach((off, i) => {
        t.strictSame(
          [off, 8],
          headerField(v, `int80.arg${i}`),
          `int 0x80 arg${i}: ${INT80_ARGS[i]}`,
        );
      });
    }
    if (abi === 'arm') {
      // The compat regset of an aarch64 kernel is COMPAT_ELF_NGREG (18) words, arm's pt_regs.
      t.equal(ARM_ON_AARCH64.regsetSize, v.get('regs.size'));
      t.strictSame(ARM_ON_AARCH64.regs, ARCH_ABIS.arm.regs);
    }
  });

  t.test(`${abi}: struct layouts match the headers`, async (t) => {
    const v = need(t, abi);
    if (!v) return;
    const check = (name: string, l: StructLayout) => {
      t.equal(l.size, v.get(`${name}.size`), `sizeof ${name}`);
      for (const [f, at] of Object.entries(l.fields)) {
        t.strictSame(at, headerField(v, `${name}.${f}`), `${name}.${f}`);
      }
    };
    for (const [kind, l] of Object.entries(STRUCTS[abi])) check(kind, l);
    check('statx', STATX);
    if (abi === 'x86_64') {
      for (const [f, at] of Object.entries(DIRENT64.fields)) {
        t.strictSame(at, headerField(v, `dirent64.${f}`), `dirent64.${f}`);
      }
      t.equal(DIRENT64.size, v.get('dirent64.d_name.off'), 'd_name');
    }
  });
}

t.test('every stat and statfs call of an ABI has its struct', async (t) => {
  for (const abi of ABIS) {
    const names = Object.keys(SYSCALLS[abi].byName);
    const s = STRUCTS[abi];
    for (const n of ['stat', 'lstat', 'fstat', 'newfstatat', 'statfs', 'fstatfs']) {
      if (names.includes(n)) t.ok(n.includes('statfs') ? s.statfs : s.stat, `${abi} ${n}`);
    }
    for (const n of ['stat64', 'lstat64', 'fstat64', 'fstatat64']) {
      t.equal(names.includes(n), s.stat64 !== undefined, `${abi} ${n} ⇔ struct stat64`);
    }
    for (const n of ['statfs64', 'fstatfs64']) {
      t.equal(names.includes(n), s.statfs64 !== undefined, `${abi} ${n} ⇔ struct statfs64`);
    }
  }
});

// glibc's makedev: a host dev_t from major and minor.
const makedev = (major: number, minor: number): number =>
  Number(
    ((BigInt(major) & 0xfffn) << 8n) |
      ((BigInt(major) & ~0xfffn) << 32n) |
      (BigInt(minor) & 0xffn) |
      ((BigInt(minor) & ~0xffn) << 12n),
  );
// The kernel's new_encode_dev.
const newEncodeDev = (major: number, minor: number): bigint =>
  BigInt((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) & 0xffff_ffffn;

// Both samples' devices: one with a minor past 8 bits, one at the largest major and minor.
const DEV = [259, 0x4567] as const;
const RDEV = [4095, 0xfffff] as const;

const SMALL: ViewStat = {
  dev: makedev(...DEV),
  ino: 0x89abcdef,
  mode: 0o100644,
  nlink: 3,
  uid: 1000,
  gid: 0xfffe,
  rdev: makedev(...RDEV),
  size: 0x7fff_fff0,
  blksize: 4096,
  blocks: 0x12345,
  atime: [1_700_000_000, 123_456_789],
  mtime: [-5, 999_999_999],
  ctime: [0x7fff_ffff, 1],
};

const BIG: ViewStat = {
  ...SMALL,
  ino: 2 ** 40 + 5,
  nlink: 70_000,
  uid: 100_000,
  gid: 2 ** 31,
  size: 2 ** 35 + 3,
  blocks: 2 ** 33 + 7,
  mtime: [2 ** 33, 5],
};

// What each header field holds for `st` before truncation to the field.
function statValues(st: ViewStat): Record<string, bigint> {
  const [devMajor, devMinor] = DEV;
  const [rdevMajor, rdevMinor] = RDEV;
  return {
    st_dev: newEncodeDev(devMajor, devMinor),
    st_ino: BigInt(st.ino),
    __st_ino: BigInt(st.ino),
    st_mode: BigInt(st.mode),
    st_nlink: BigInt(st.nlink),
    st_uid: BigInt(st.uid),
    st_gid: BigInt(st.gid),
    st_rdev: newEncodeDev(rdevMajor, rdevMinor),
    st_size: BigInt(st.size),
    st_blksize: BigInt(st.blksize),
    st_blocks: BigInt(st.blocks),
    st_atime: BigInt(st.atime[0]),
    st_atime_nsec: BigInt(st.atime[1]),
    st_mtime: BigInt(st.mtime[0]),
    st_mtime_nsec: BigInt(st.mtime[1]),
    st_ctime: BigInt(st.ctime[0]),
    st_ctime_nsec: BigInt(st.ctime[1]),
    stx_mask: BigInt(STATX_BASIC_STATS),
    stx_blksize: BigInt(st.blksize),
    stx_nlink: BigInt(st.nlink),
    stx_uid: BigInt(st.uid),
    stx_gid: BigInt(st.gid),
    stx_mode: BigInt(st.mode),
    stx_ino: BigInt(st.ino),
    stx_size: BigInt(st.size),
    stx_blocks: BigInt(st.blocks),
    'stx_atime.tv_sec': BigInt(st.atime[0]),
    'stx_atime.tv_nsec': BigInt(st.atime[1]),
    'stx_mtime.tv_sec': BigInt(st.mtime[0]),
    'stx_mtime.tv_nsec': BigInt(st.mtime[1]),
    'stx_ctime.tv_sec': BigInt(st.ctime[0]),
    'stx_ctime.tv_nsec': BigInt(st.ctime[1]),
    stx_rdev_major: BigInt(rdevMajor),
    stx_rdev_minor: BigInt(rdevMinor),
    stx_dev_major: BigInt(devMajor),
    stx_dev_minor: BigInt(devMinor),
  };
}

const readField = (b: Buffer, [off, len]: Field): bigint =>
  len === 8 ? b.readBigUInt64LE(off) : BigInt(b.readUIntLE(off, len));

/**
 * Checks `buf` against the header's layout of `name`: its size, each listed field (read at the
 * header's offset and width) equal to `want` truncated to that width, every other byte zero.
 */
function checkStruct(
  t: Test,
  v: Map<string, number>,
  name: string,
  fields: readonly string[],
  buf: Buffer,
  want: Record<string, bigint>,
): void {
  t.equal(buf.length, v.get(`${name}.size`), `${name}: size`);
  const rest = Buffer.from(buf);
  for (const f of fields) {
    const at = headerField(v, `${name}.${f}`);
    const w = want[f];
    if (w === undefined) throw new Error(`no value for ${f}`);
    t.equal(readField(buf, at), BigInt.asUintN(at[1] * 8, w), `${name}.${f}`);
    rest.fill(0, at[0], at[0] + at[1]);
  }
  t.ok(
    rest.every((x) => x === 0),
    `${name}: the rest is zero`,
  );
}

const SF: StatFs = {
  type: 0xef53,
  bsize: 4096,
  blocks: 0xfff_ffff,
  bfree: 12_345,
  bavail: 12_000,
  files: -1,
  ffree: 0xffff_fffe,
  namelen: 255,
  frsize: 1024,
  flags: 0x1020,
};

function statfsValues(sf: StatFs): Record<string, bigint> {
  const n = (x: number) => (x === -1 ? 0xffff_ffff_ffff_ffffn : BigInt(x));
  return {
    f_type: n(sf.type),
    f_bsize: n(sf.bsize),
    f_blocks: n(sf.blocks),
    f_bfree: n(sf.bfree),
    f_bavail: n(sf.bavail),
    f_files: n(sf.files),
    f_ffree: n(sf.ffree),
    f_fsid: 0n,
    f_namelen: n(sf.namelen),
    f_frsize: n(sf.frsize),
    f_flags: n(sf.flags),
  };
}

for (const abi of ABIS) {
  t.test(`${abi}: encoded structs read back at the header's offsets`, async (t) => {
    const v = need(t, abi);
    if (!v) return;
    const s = STRUCTS[abi];
    for (const kind of ['stat', 'stat64'] as const) {
      const l = s[kind];
      if (!l) continue;
      const fields = Object.keys(l.fields);
      const small = encodeStat(abi, kind, SMALL);
      if (small === 'EOVERFLOW') t.fail(`${kind} overflows`);
      else checkStruct(t, v, kind, fields, small, statValues(SMALL));
      // Legacy 32-bit struct stat refuses what does not fit; the others hold it.
      const big = encodeStat(abi, kind, BIG);
      if (l.fields.st_ino![1] === 4) t.equal(big, 'EOVERFLOW', `${kind}: BIG overflows`);
      else if (big === 'EOVERFLOW') t.fail(`${kind}: BIG overflows`);
      else checkStruct(t, v, kind, fields, big, statValues(BIG));
    }
    for (const kind of ['statfs', 'statfs64'] as const) {
      const l = s[kind];
      if (!l) continue;
      const b = encodeStatfs(abi, kind, SF);
      if (b === 'EOVERFLOW') t.fail(`${kind} overflows`);
      else checkStruct(t, v, kind, [...Object.keys(l.fields)], b, statfsValues(SF));
    }
    for (const st of [SMALL, BIG]) {
      checkStruct(t, v, 'statx', Object.keys(STATX.fields), encodeStatx(st), statValues(st));
    }
  });
}

t.test('32-bit struct stat follows the kernel where a value does not fit', async (t) => {
  for (const abi of ['i386', 'arm'] as const) {
    const f = STRUCTS[abi].stat.fields;
    t.equal(encodeStat(abi, 'stat', { ...SMALL, ino: 2 ** 32 }), 'EOVERFLOW', `${abi}: inode`);
    t.equal(encodeStat(abi, 'stat', { ...SMALL, nlink: 65_536 }), 'EOVERFLOW', `${abi}: nlink`);
    t.equal(encodeStat(abi, 'stat', { ...SMALL, size: 2 ** 31 }), 'EOVERFLOW', `${abi}: size`);
    const b = encodeStat(abi, 'stat', { ...SMALL, uid: 65_536, gid: 70_000, size: 2 ** 31 - 1 });
    if (b === 'EOVERFLOW') {
      t.fail(`${abi}: a large uid is not an overflow`);
      continue;
    }
    t.equal(readField(b, f.st_uid!), 65_534n, `${abi}: uid shows as the overflow id`);
    t.equal(readField(b, f.st_gid!), 65_534n, `${abi}: gid shows as the overflow id`);
    t.equal(readField(b, f.st_size!), 0x7fff_ffffn, `${abi}: the largest size fits`);
    // stat64 keeps a 32-bit copy of the inode number in __st_ino, silently truncated.
    const b64 = encodeStat(abi, 'stat64', BIG);
    if (b64 === 'EOVERFLOW') t.fail('stat64 overflow');
    else t.equal(readField(b64, STRUCTS[abi].stat64!.fields.__st_ino!), 5n, `${abi}: __st_ino`);
  }
  t.throws(() => encodeStat('x86_64', 'stat64', SMALL), /no struct stat64/);
});

t.test('32-bit statfs follows the kernel where a value does not fit', async (t) => {
  for (const abi of ['i386', 'arm'] as const) {
    t.equal(encodeStatfs(abi, 'statfs', { ...SF, blocks: 2 ** 32 }), 'EOVERFLOW', `${abi}: blocks`);
    t.equal(encodeStatfs(abi, 'statfs', { ...SF, files: 2 ** 32 }), 'EOVERFLOW', `${abi}: files`);
    t.equal(encodeStatfs(abi, 'statfs64', { ...SF, bsize: 2 ** 32 }), 'EOVERFLOW', `${abi}: bsize`);
    const big = encodeStatfs(abi, 'statfs64', { ...SF, blocks: 2 ** 40, files: 2 ** 64 });
    if (big === 'EOVERFLOW') {
      t.fail('statfs64 holds 64-bit counts');
      continue;
    }
    const f = STRUCTS[abi].statfs64!.fields;
    t.equal(readField(big, f.f_blocks!), 2n ** 40n, `${abi}: statfs64 blocks`);
    t.equal(readField(big, f.f_files!), 2n ** 64n - 1n, `${abi}: 2^64 - 1 as a JS number`);
  }
  const b = encodeStatfs('x86_64', 'statfs', { ...SF, blocks: 2 ** 40 });
  t.not(b, 'EOVERFLOW', 'x86_64 statfs holds 64-bit counts');
});

t.test('linux_dirent64 records', async (t) => {
  const cases: [string | Uint8Array, number][] = [
    ['a', 24],
    ['abcd', 24],
    ['abcde', 32],
    ['', 24],
    [Buffer.from([0xff, 0xfe]), 24],
    ['x'.repeat(255), 280],
  ];
  for (const [name, reclen] of cases) {
    const bytes = Buffer.from(name);
    const b = encodeDirent64(2n ** 63n + 1n, -1, 4, name);
    t.equal(b.length, reclen, `${bytes.length}-byte name: reclen ${reclen}`);
    t.equal(b.readBigUInt64LE(0), 2n ** 63n + 1n, 'd_ino');
    t.equal(b.readBigInt64LE(8), -1n, 'd_off');
    t.equal(b.readUInt16LE(16), reclen, 'd_reclen');
    t.equal(b[18], 4, 'd_type');
    t.strictSame(b.subarray(19, 19 + bytes.length), bytes, 'd_name');
    t.ok(
      b.subarray(19 + bytes.length).every((x) => x === 0),
      'NUL and zero padding',
    );
  }
  t.throws(() => encodeDirent64(1, 1, 8, 'a\0b'), /NUL/);
});

t.test("this kernel's getdents64 and newfstatat bytes equal the encoders'", async (t) => {
  // x86_64 only: the machine the tests run on.
  const v = need(t, 'x86_64');
  if (!v) return;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'arch-abi-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const dir = path.join(tmp, 'list');
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  for (const n of ['a', 'abcdefgh', 'x'.repeat(200)]) fs.writeFileSync(path.join(dir, n), n);
  const exe = path.join(tmp, 'probe');
  const code = `#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/stat.h>
int main(int argc, char **argv) {
  static char buf[65536];
  struct stat st;
  int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
  long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
  memset(&st, 0x5a, sizeof st);
  if (n < 0 || syscall(SYS_newfstatat, AT_FDCWD, argv[2], &st, 0) != 0) return 1;
  fwrite(&st, sizeof st, 1, stdout);
  fwrite(buf, 1, n, stdout);
  return 0;
}
`;
  execFileSync('gcc', ['-o', exe, '-x', 'c', '-'], {
    input: code,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = execFileSync(exe, [dir, path.join(dir, 'abcdefgh')]);
  const l = STRUCTS.x86_64.stat;
  const kst = out.subarray(0, l.size);
  const f = (name: string) => Number(readField(kst, l.fields[name]!));
  const dev = f('st_dev');
  // The kernel's st_dev is new_encode_dev's 32 bits; as a host dev_t it is the same number.
  const st: ViewStat = {
    dev,
    ino: f('st_ino'),
    mode: f('st_mode'),
    nlink: f('st_nlink'),
    uid: f('st_uid'),
    gid: f('st_gid'),
    rdev: f('st_rdev'),
    size: f('st_size'),
    blksize: f('st_blksize'),
    blocks: f('st_blocks'),
    atime: [f('st_atime'), f('st_atime_nsec')],
    mtime: [f('st_mtime'), f('st_mtime_nsec')],
    ctime: [f('st_ctime'), f('st_ctime_nsec')],
  };
  t.strictSame(encodeStat('x86_64', 'stat', st), kst, 'struct stat, padding included');
  let at = l.size;
  const names: string[] = [];
  while (at < out.length) {
    const reclen = out.readUInt16LE(at + 16);
    const rec = out.subarray(at, at + reclen);
    const name = rec.subarray(19, rec.indexOf(0, 19));
    names.push(name.toString());
    t.strictSame(
      encodeDirent64(rec.readBigUInt64LE(0), rec.readBigInt64LE(8), rec[18]!, name),
      rec,
      `record of ${JSON.stringify(name.toString().slice(0, 10))}`,
    );
    at += reclen;
  }
  t.strictSame(names.sort(), ['.', '..', 'a', 'abcdefgh', 'sub', 'x'.repeat(200)].sort());
});

t.test('register accessors round-trip and touch only their register', async (t) => {
  const values: (bigint | number)[] = [
    0n,
    1n,
    0x7fff_ffffn,
    0xffff_ffffn,
    0x1_0000_0000n,
    0xffff_8000_0000_1234n,
    2n ** 64n - 1n,
    -1n,
    -100,
  ];
  for (const a of VARIANTS) {
    const base = Buffer.alloc(a.regsetSize, 0xa5);
    const untouched = (b: Buffer, off: number, what: string) => {
      const x = Buffer.from(b);
      base.copy(x, off, off, off + a.regSize);
      t.strictSame(x, base, `${a.label}: ${what} touches only its register`);
    };
    for (let i = 0; i < 6; i++) {
      for (const val of values) {
        const b = Buffer.from(base);
        a.setArg(b, i, val);
        t.equal(
          a.arg(b, i),
          BigInt.asUintN(a.wordSize * 8, BigInt(val)),
          `${a.label} arg${i} = ${val}`,
        );
        untouched(b, a.regs.args[i], `arg${i}`);
      }
      const b = Buffer.from(base);
      a.setArg(b, i, -100);
      t.equal(a.argInt(b, i), -100, `${a.label} arg${i} as an int`);
    }
    t.throws(() => a.arg(base, 6), RangeError);

    const r = Buffer.from(base);
    a.setResult(r, -2);
    t.equal(a.result(r), -2n, `${a.label}: result -2`);
    t.equal(
      readField(r, [a.regs.result, a.regSize]),
      2n ** BigInt(a.regSize * 8) - 2n,
      'sign-extended',
    );
    untouched(r, a.regs.result, 'setResult');
    a.setResult(r, 0x7fff_ffff_ffffn);
    t.equal(
      a.result(r),
      BigInt.asIntN(a.wordSize * 8, 0x7fff_ffff_ffffn),
      `${a.label}: a large result`,
    );

    const n = Buffer.from(base);
    if (a.syscallChange === 'regs') {
      a.setNr(n, -1);
      t.equal(a.nr(n), -1, `${a.label}: number -1`);
      t.equal(readField(n, [a.regs.nr, a.regSize]), 2n ** BigInt(a.regSize * 8) - 1n, 'all ones');
      a.setNr(n, 257);
      t.equal(a.nr(n), 257, `${a.label}: number 257`);
      untouched(n, a.regs.nr, 'setNr');
    } else {
      t.throws(() => a.setNr(n, -1), /changed by/, `${a.label}: no number in the regset`);
      t.strictSame(n, base);
    }

    const p = Buffer.from(base);
    const ptr = a.regSize === 8 ? 0x7ffd_1234_5678n : 0xbeef_0010n;
    const put = (off: number, x: bigint) =>
      a.regSize === 8 ? p.writeBigUInt64LE(x, off) : p.writeUInt32LE(Number(x), off);
    put(a.regs.sp, ptr);
    put(a.regs.ip, ptr + 8n);
    put(a.regs.nr, 42n);
    t.equal(a.sp(p), ptr, `${a.label}: sp`);
    t.equal(a.ip(p), ptr + 8n, `${a.label}: ip`);
    t.equal(a.nr(p), 42, `${a.label}: nr`);
    t.equal(a.syscallName(a.syscallNumber('openat')!), 'openat', `${a.label}: syscall table`);
  }
});

t.test('the ABI of a stop', async (t) => {
  const { x86_64, i386, arm, aarch64 } = ARCH_ABIS;
  for (const a of Object.values(ARCH_ABIS)) {
    t.equal(abiByAuditArch(a.auditArch), a, `${a.name} by AUDIT_ARCH`);
    t.equal(abiByAuditArch(a.auditArch | 0), a, `${a.name} by AUDIT_ARCH as a signed int`);
    t.equal(abiByRegsetSize(a, a.regsetSize), a, `${a.name}'s own regset`);
    t.equal(abiForStop(a, a.auditArch, a.regsetSize), a, `${a.name} native stop`);
  }
  t.equal(abiByAuditArch(0xc00000f3), undefined, 'riscv64 is not known yet');
  t.equal(abiByRegsetSize(x86_64, 68), i386, 'an i386 program under an x86_64 tracer');
  t.equal(abiByRegsetSize(i386, 216), undefined);
  t.equal(abiByRegsetSize(arm, 272), undefined);
  t.equal(ARM_ON_AARCH64.name, 'arm');
  t.equal(
    ARM_ON_AARCH64.syscallChange,
    'nt-arm-system-call',
    'a 64-bit tracer has no PTRACE_SET_SYSCALL',
  );
  t.equal(arm.syscallChange, 'ptrace-set-syscall');
  t.equal(aarch64.syscallChange, 'nt-arm-system-call');
  t.equal(abiForStop(aarch64, arm.auditArch, 72), ARM_ON_AARCH64);
  t.equal(abiForStop(x86_64, i386.auditArch, 68), i386);
  t.equal(I386_FROM_X86_64.name, 'i386', 'int 0x80 from 64-bit code: i386 numbers');
  t.equal(I386_FROM_X86_64.regsetSize, 216, 'in the x86_64 regset');
  t.equal(I386_FROM_X86_64.redZone, 128, "with the 64-bit program's red zone");
  t.equal(abiForStop(x86_64, x86_64.auditArch, 68), undefined, 'x86_64 numbers in a 32-bit regset');
  t.equal(abiForStop(aarch64, aarch64.auditArch, 72), undefined);
  t.equal(abiForStop(x86_64, arm.auditArch, 216), undefined);
  t.equal(abiForNodeArch('x64'), x86_64);
  t.equal(abiForNodeArch('arm64'), aarch64);
  t.equal(abiForNodeArch('arm'), arm);
  t.equal(abiForNodeArch('ia32'), i386);
  t.equal(abiForNodeArch('riscv64'), undefined);
  t.equal(abiForNodeArch('constructor'), undefined);
  t.strictSame(
    Object.values(ARCH_ABIS).map((a) => a.redZone),
    [128, 0, 0, 0],
    'red zone: 128 bytes on x86_64 only',
  );
  for (const a of VARIANTS)
    t.ok(Object.isFrozen(a) && Object.isFrozen(a.regs.args), `${a.label} frozen`);
});
