// Open flags and *at constants as each ABI's programs pass them. arm and aarch64 number
// O_DIRECTORY, O_NOFOLLOW, O_DIRECT and O_LARGEFILE differently from x86 (asm/fcntl.h).
import type { Abi } from './syscalls.ts';

export interface OpenFlags {
  O_ACCMODE: number;
  O_WRONLY: number;
  O_RDWR: number;
  O_CREAT: number;
  O_EXCL: number;
  O_NOCTTY: number;
  O_TRUNC: number;
  O_APPEND: number;
  O_DIRECTORY: number;
  O_NOFOLLOW: number;
  O_CLOEXEC: number;
  O_PATH: number;
  O_TMPFILE: number;
}

const COMMON = {
  O_ACCMODE: 0o3,
  O_WRONLY: 0o1,
  O_RDWR: 0o2,
  O_CREAT: 0o100,
  O_EXCL: 0o200,
  O_NOCTTY: 0o400,
  O_TRUNC: 0o1000,
  O_APPEND: 0o2000,
  O_CLOEXEC: 0o2000000,
  O_PATH: 0o10000000,
} as const;

const X86: OpenFlags = Object.freeze({
  ...COMMON,
  O_DIRECTORY: 0o200000,
  O_NOFOLLOW: 0o400000,
  O_TMPFILE: 0o20000000 | 0o200000,
});

const ARM: OpenFlags = Object.freeze({
  ...COMMON,
  O_DIRECTORY: 0o40000,
  O_NOFOLLOW: 0o100000,
  O_TMPFILE: 0o20000000 | 0o40000,
});

export const OPEN_FLAGS: Readonly<Record<Abi, OpenFlags>> = Object.freeze({
  x86_64: X86,
  i386: X86,
  arm: ARM,
  aarch64: ARM,
});

/** The same on every ABI (linux/fcntl.h). */
export const AT = Object.freeze({
  FDCWD: -100,
  SYMLINK_NOFOLLOW: 0x100,
  REMOVEDIR: 0x200,
  SYMLINK_FOLLOW: 0x400,
  EACCESS: 0x200,
  NO_AUTOMOUNT: 0x800,
  EMPTY_PATH: 0x1000,
});

/** renameat2 flags. */
export const RENAME = Object.freeze({ NOREPLACE: 1, EXCHANGE: 2, WHITEOUT: 4 });
