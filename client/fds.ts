// The client's open file descriptors that the program must see at the same
// numbers. Descriptors inherited from the caller (the shell's `5>f`, make's
// jobserver) are exactly those without close-on-exec: Node and libuv open
// every descriptor of their own with O_CLOEXEC.
import { readdirSync, readFileSync } from 'node:fs';
import type { FdMode } from '../transport/protocol.ts';

const O_ACCMODE = 0o3;
const O_WRONLY = 0o1;
const O_RDWR = 0o2;
const O_CLOEXEC = 0o2000000;

export interface InheritedFd {
  fd: number;
  mode: FdMode;
}

function modeOf(flags: number): FdMode {
  const acc = flags & O_ACCMODE;
  return acc === O_RDWR ? 'rw' : acc === O_WRONLY ? 'w' : 'r';
}

function flagsOf(fd: number): number | null {
  try {
    const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
    return m ? Number.parseInt(m[1]!, 8) : null;
  } catch {
    return null;
  }
}

/** Extra fds (3 and up) inherited by this process, with their access modes. */
export function inheritedFds(): InheritedFd[] {
  const out: InheritedFd[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd < 3) continue;
    const flags = flagsOf(fd);
    if (flags === null || flags & O_CLOEXEC) continue;
    out.push({ fd, mode: modeOf(flags) });
  }
  return out.sort((a, b) => a.fd - b.fd);
}
