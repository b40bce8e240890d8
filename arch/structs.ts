// The structs the view's answers are written into a program as: stat, stat64, statfs,
// statfs64 per ABI, statx and linux_dirent64 (the same on all). Each encoder returns the
// bytes the kernel would have written, little-endian, with the kernel's overflow rules.
// Layouts are checked against each architecture's headers by test/unit/arch-abi.test.ts.
import type { StatFs, ViewStat } from '../transport/view.ts';
import type { Abi } from './syscalls.ts';

/** A field: [byte offset, byte size]. */
export type Field = readonly [number, number];

export interface StructLayout {
  readonly size: number;
  /** The fields the encoders write, named as in the kernel headers; the rest is zero. */
  readonly fields: Readonly<Record<string, Field>>;
}

/**
 * Which struct a call writes, by syscall name: stat, lstat, fstat, newfstatat write `stat`;
 * stat64, lstat64, fstat64, fstatat64 write `stat64` (i386, arm). i386's oldstat family
 * (__old_kernel_stat) has no encoder.
 */
export type StatKind = 'stat' | 'stat64';
/** statfs, fstatfs write `statfs`; statfs64, fstatfs64 write `statfs64` (i386, arm). */
export type StatfsKind = 'statfs' | 'statfs64';

export interface AbiStructs {
  readonly stat: StructLayout;
  readonly stat64?: StructLayout;
  readonly statfs: StructLayout;
  readonly statfs64?: StructLayout;
}

function layout(size: number, fields: Record<string, Field>): StructLayout {
  for (const [name, [off, len]] of Object.entries(fields)) {
    if (off + len > size) throw new Error(`${name} ends past ${size}`);
  }
  return Object.freeze({ size, fields: Object.freeze(fields) });
}

// The time fields from `at` on: [sec, nsec] × atime, mtime, ctime, each `w` bytes.
function times(at: number, w: number): Record<string, Field> {
  const t: Record<string, Field> = {};
  ['st_atime', 'st_mtime', 'st_ctime'].forEach((name, i) => {
    t[name] = [at + 2 * i * w, w];
    t[`${name}_nsec`] = [at + (2 * i + 1) * w, w];
  });
  return t;
}

// asm/stat.h on x86_64.
const X86_64_STAT = layout(144, {
  st_dev: [0, 8],
  st_ino: [8, 8],
  st_nlink: [16, 8],
  st_mode: [24, 4],
  st_uid: [28, 4],
  st_gid: [32, 4],
  st_rdev: [40, 8],
  st_size: [48, 8],
  st_blksize: [56, 8],
  st_blocks: [64, 8],
  ...times(72, 8),
});

// The legacy struct stat of i386 and arm (stat, lstat, fstat): 16-bit mode, nlink, uid, gid.
const STAT32 = layout(64, {
  st_dev: [0, 4],
  st_ino: [4, 4],
  st_mode: [8, 2],
  st_nlink: [10, 2],
  st_uid: [12, 2],
  st_gid: [14, 2],
  st_rdev: [16, 4],
  st_size: [20, 4],
  st_blksize: [24, 4],
  st_blocks: [28, 4],
  ...times(32, 4),
});

// struct stat64 of i386 and arm: glibc 2.1's layout with a 32-bit __st_ino up front; arm
// aligns the 64-bit st_size and st_blocks to 8.
function stat64(size: number, sizeAt: number, blocksAt: number): StructLayout {
  return layout(size, {
    st_dev: [0, 8],
    __st_ino: [12, 4],
    st_mode: [16, 4],
    st_nlink: [20, 4],
    st_uid: [24, 4],
    st_gid: [28, 4],
    st_rdev: [32, 8],
    st_size: [sizeAt, 8],
    st_blksize: [sizeAt + 8, 4],
    st_blocks: [blocksAt, 8],
    ...times(blocksAt + 8, 4),
    st_ino: [size - 8, 8],
  });
}

// asm-generic/stat.h, 64-bit.
const GENERIC_STAT = layout(128, {
  st_dev: [0, 8],
  st_ino: [8, 8],
  st_mode: [16, 4],
  st_nlink: [20, 4],
  st_uid: [24, 4],
  st_gid: [28, 4],
  st_rdev: [32, 8],
  st_size: [48, 8],
  st_blksize: [56, 4],
  st_blocks: [64, 8],
  ...times(72, 8),
});

// asm-generic/statfs.h: every field a word (`w` bytes) but the 8-byte f_fsid.
function statfs(w: number): StructLayout {
  return layout(14 * w + 8, {
    f_type: [0, w],
    f_bsize: [w, w],
    f_blocks: [2 * w, w],
    f_bfree: [3 * w, w],
    f_bavail: [4 * w, w],
    f_files: [5 * w, w],
    f_ffree: [6 * w, w],
    f_fsid: [7 * w, 8],
    f_namelen: [7 * w + 8, w],
    f_frsize: [8 * w + 8, w],
    f_flags: [9 * w + 8, w],
  });
}

// struct statfs64 of 32-bit ABIs: 64-bit counts, 4-byte alignment (arm packs it so).
const STATFS64 = layout(84, {
  f_type: [0, 4],
  f_bsize: [4, 4],
  f_blocks: [8, 8],
  f_bfree: [16, 8],
  f_bavail: [24, 8],
  f_files: [32, 8],
  f_ffree: [40, 8],
  f_fsid: [48, 8],
  f_namelen: [56, 4],
  f_frsize: [60, 4],
  f_flags: [64, 4],
});

export const STRUCTS: Readonly<Record<Abi, AbiStructs>> = Object.freeze({
  x86_64: Object.freeze({ stat: X86_64_STAT, statfs: statfs(8) }),
  i386: Object.freeze({
    stat: STAT32,
    stat64: stat64(96, 44, 56),
    statfs: statfs(4),
    statfs64: STATFS64,
  }),
  arm: Object.freeze({
    stat: STAT32,
    stat64: stat64(104, 48, 64),
    statfs: statfs(4),
    statfs64: STATFS64,
  }),
  aarch64: Object.freeze({ stat: GENERIC_STAT, statfs: statfs(8) }),
});

// linux/stat.h; struct statx_timestamp is { s64 tv_sec; u32 tv_nsec; s32 reserved }.
export const STATX: StructLayout = layout(256, {
  stx_mask: [0, 4],
  stx_blksize: [4, 4],
  stx_nlink: [16, 4],
  stx_uid: [20, 4],
  stx_gid: [24, 4],
  stx_mode: [28, 2],
  stx_ino: [32, 8],
  stx_size: [40, 8],
  stx_blocks: [48, 8],
  'stx_atime.tv_sec': [64, 8],
  'stx_atime.tv_nsec': [72, 4],
  'stx_ctime.tv_sec': [96, 8],
  'stx_ctime.tv_nsec': [104, 4],
  'stx_mtime.tv_sec': [112, 8],
  'stx_mtime.tv_nsec': [120, 4],
  stx_rdev_major: [128, 4],
  stx_rdev_minor: [132, 4],
  stx_dev_major: [136, 4],
  stx_dev_minor: [140, 4],
});

/** STATX_BASIC_STATS: what encodeStatx() fills (no btime, no mount id). */
export const STATX_BASIC_STATS = 0x7ff;

// include/linux/dirent.h (the kernel's; glibc's struct dirent64 is the same): the name
// starts at 19, NUL-terminated, and the record is padded to 8 bytes.
export const DIRENT64: StructLayout = layout(19, {
  d_ino: [0, 8],
  d_off: [8, 8],
  d_reclen: [16, 2],
  d_type: [18, 1],
});

const U64 = 0xffff_ffff_ffff_ffffn;
// fs.overflowuid's default: what a 16-bit uid field shows for a larger id.
const OVERFLOW_ID = 65534n;
// MAX_NON_LFS: the largest size a 32-bit struct stat may report.
const MAX_NON_LFS = 0x7fff_ffffn;

function put(out: Buffer, [off, len]: Field, v: bigint): void {
  if (len === 8) out.writeBigUInt64LE(BigInt.asUintN(64, v), off);
  else out.writeUIntLE(Number(BigInt.asUintN(len * 8, v)), off, len);
}

const fits = ([, len]: Field, v: bigint): boolean => v >= 0n && v <= (1n << BigInt(len * 8)) - 1n;

// A host Linux dev_t (glibc's encoding) split into major and minor.
function devSplit(dev: number): [bigint, bigint] {
  const d = BigInt(dev);
  return [((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn), (d & 0xffn) | ((d >> 12n) & ~0xffn)];
}

// The kernel's new_encode_dev(): the 32-bit dev_t every stat struct carries.
function encodeDev(dev: number): bigint {
  const [major, minor] = devSplit(dev);
  return (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & 0xfff00n) << 12n);
}

/**
 * The `kind` struct of `abi` for `st`, or EOVERFLOW where the kernel refuses: in the legacy
 * 32-bit struct stat an inode number, link count or size that does not fit (a uid or gid that
 * does not fit shows as 65534).
 */
export function encodeStat(abi: Abi, kind: StatKind, st: ViewStat): Buffer | 'EOVERFLOW' {
  const l = STRUCTS[abi][kind];
  if (l === undefined) throw new Error(`${abi} has no struct ${kind}`);
  const f = l.fields;
  const ino = BigInt(st.ino);
  const size = BigInt(st.size);
  if (!fits(f.st_ino, ino) || !fits(f.st_nlink, BigInt(st.nlink))) return 'EOVERFLOW';
  if (f.st_size[1] === 4 && size > MAX_NON_LFS) return 'EOVERFLOW';
  const id = (field: Field, v: number): bigint =>
    fits(field, BigInt(v)) ? BigInt(v) : OVERFLOW_ID;
  const out = Buffer.alloc(l.size);
  put(out, f.st_dev, encodeDev(st.dev));
  put(out, f.st_ino, ino);
  if (f.__st_ino) put(out, f.__st_ino, ino);
  put(out, f.st_mode, BigInt(st.mode));
  put(out, f.st_nlink, BigInt(st.nlink));
  put(out, f.st_uid, id(f.st_uid, st.uid));
  put(out, f.st_gid, id(f.st_gid, st.gid));
  put(out, f.st_rdev, encodeDev(st.rdev));
  put(out, f.st_size, size);
  put(out, f.st_blksize, BigInt(st.blksize));
  put(out, f.st_blocks, BigInt(st.blocks));
  for (const [name, [s, ns]] of [
    ['st_atime', st.atime],
    ['st_mtime', st.mtime],
    ['st_ctime', st.ctime],
  ] as const) {
    put(out, f[name], BigInt(s));
    put(out, f[`${name}_nsec`], BigInt(ns));
  }
  return out;
}

// A statfs count as the kernel holds it (u64); -1 ("unknown", as f_files can be) and values
// past 2^64 - 1 that a JS number rounds up to stay all ones.
const count = (v: number): bigint => (v === -1 || v >= 2 ** 64 ? U64 : BigInt(v));

/**
 * The `kind` struct of `abi` for `sf`, or EOVERFLOW where the kernel refuses (32-bit fields too
 * small for a block count or size; f_files and f_ffree of -1 pass). f_fsid is zero.
 */
export function encodeStatfs(abi: Abi, kind: StatfsKind, sf: StatFs): Buffer | 'EOVERFLOW' {
  const l = STRUCTS[abi][kind];
  if (l === undefined) throw new Error(`${abi} has no struct ${kind}`);
  const f = l.fields;
  const v = {
    f_type: BigInt(sf.type),
    f_bsize: count(sf.bsize),
    f_blocks: count(sf.blocks),
    f_bfree: count(sf.bfree),
    f_bavail: count(sf.bavail),
    f_files: count(sf.files),
    f_ffree: count(sf.ffree),
    f_namelen: BigInt(sf.namelen),
    f_frsize: count(sf.frsize),
    f_flags: BigInt(sf.flags),
  };
  const sizes = ['f_bsize', 'f_frsize', 'f_blocks', 'f_bfree', 'f_bavail'] as const;
  if (sizes.some((n) => !fits(f[n], v[n]))) return 'EOVERFLOW';
  if ((['f_files', 'f_ffree'] as const).some((n) => v[n] !== U64 && !fits(f[n], v[n]))) {
    return 'EOVERFLOW';
  }
  const out = Buffer.alloc(l.size);
  for (const [name, value] of Object.entries(v)) put(out, f[name], value);
  return out;
}

/** struct statx for `st`, claiming STATX_BASIC_STATS. */
export function encodeStatx(st: ViewStat): Buffer {
  const f = STATX.fields;
  const out = Buffer.alloc(STATX.size);
  const [devMajor, devMinor] = devSplit(st.dev);
  const [rdevMajor, rdevMinor] = devSplit(st.rdev);
  put(out, f.stx_mask, BigInt(STATX_BASIC_STATS));
  put(out, f.stx_blksize, BigInt(st.blksize));
  put(out, f.stx_nlink, BigInt(st.nlink));
  put(out, f.stx_uid, BigInt(st.uid));
  put(out, f.stx_gid, BigInt(st.gid));
  put(out, f.stx_mode, BigInt(st.mode));
  put(out, f.stx_ino, BigInt(st.ino));
  put(out, f.stx_size, BigInt(st.size));
  put(out, f.stx_blocks, BigInt(st.blocks));
  for (const [name, [s, ns]] of [
    ['stx_atime', st.atime],
    ['stx_mtime', st.mtime],
    ['stx_ctime', st.ctime],
  ] as const) {
    put(out, f[`${name}.tv_sec`], BigInt(s));
    put(out, f[`${name}.tv_nsec`], BigInt(ns));
  }
  put(out, f.stx_rdev_major, rdevMajor);
  put(out, f.stx_rdev_minor, rdevMinor);
  put(out, f.stx_dev_major, devMajor);
  put(out, f.stx_dev_minor, devMinor);
  return out;
}

/**
 * One linux_dirent64 record: `off` is the d_off cookie (where the next read continues), `type`
 * a DT_* value. getdents64 returns whole records: EINVAL when the first does not fit.
 */
export function encodeDirent64(
  ino: number | bigint,
  off: number | bigint,
  type: number,
  name: string | Uint8Array,
): Buffer {
  const bytes = typeof name === 'string' ? Buffer.from(name) : name;
  if (bytes.includes(0)) throw new Error('a file name has no NUL byte');
  const f = DIRENT64.fields;
  const reclen = (DIRENT64.size + bytes.length + 1 + 7) & ~7;
  const out = Buffer.alloc(reclen);
  put(out, f.d_ino, BigInt(ino));
  put(out, f.d_off, BigInt(off));
  put(out, f.d_reclen, BigInt(reclen));
  put(out, f.d_type, BigInt(type));
  out.set(bytes, DIRENT64.size);
  return out;
}
