// What the release tests read of an executable: the ELF e_machine of its first bytes.
import { closeSync, openSync, readSync } from 'node:fs';

/** e_machine of the ELF file at byte `at` of `file` (62 x86-64, 183 AArch64, 40 ARM); -1 if none. */
export function elfMachine(file: string, at = 0): number {
  const b = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, b, 0, 20, at);
  } finally {
    closeSync(fd);
  }
  if (!b.subarray(0, 4).equals(Buffer.from('\x7fELF', 'latin1'))) return -1;
  return b.readUInt16LE(18);
}
