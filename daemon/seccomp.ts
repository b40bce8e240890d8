// The seccomp BPF filter a traced program runs under: per ABI (by AUDIT_ARCH), the syscalls
// the tracer redirects return SECCOMP_RET_TRACE, the ones that could bypass the view and are not
// handled fail with ENOSYS (libc then falls back), and everything else runs at full speed.

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_RET_K = 0x06;
const BPF_JA = 0x05;

const RET_ALLOW = 0x7fff0000;
const RET_TRACE = 0x7ff00000;
const RET_ERRNO = 0x00050000;
const ENOSYS = 38;

// Offsets in struct seccomp_data.
const NR = 0;
const ARCH = 4;

export interface FilterAbi {
  auditArch: number;
  trace: readonly number[];
  enosys: readonly number[];
  /** Numbers at or above this fail with ENOSYS (x86_64's x32 calls set bit 30). */
  limit?: number;
}

type Insn = [code: number, jt: number, jf: number, k: number];

/** struct sock_filter[] for the addon's spawn. */
export function buildFilter(abis: readonly FilterAbi[]): Buffer {
  const blocks = abis.map(abiBlock);
  const prog: Insn[] = [[BPF_LD_W_ABS, 0, 0, ARCH]];
  // Dispatch: per ABI a jeq on the arch and a long jump (ja has a 32-bit offset) to its block.
  const dispatchEnd = 1 + 2 * abis.length + 1;
  let blockStart = dispatchEnd;
  abis.forEach((abi, i) => {
    const ja = 1 + 2 * i + 1;
    prog.push([BPF_JEQ_K, 0, 1, abi.auditArch >>> 0]);
    prog.push([BPF_JA, 0, 0, blockStart - (ja + 1)]);
    blockStart += blocks[i]!.length;
  });
  // A foreign ABI (none this device runs) gets nothing through.
  prog.push([BPF_RET_K, 0, 0, RET_ERRNO | ENOSYS]);
  for (const b of blocks) prog.push(...b);
  if (prog.length > 4096) throw new RangeError('seccomp filter: more than 4096 instructions');
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, jt, jf, k], i) => {
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return buf;
}

function abiBlock(abi: FilterAbi): Insn[] {
  const b: Insn[] = [[BPF_LD_W_ABS, 0, 0, NR]];
  if (abi.limit !== undefined) {
    b.push([BPF_JGE_K, 0, 1, abi.limit]);
    b.push([BPF_RET_K, 0, 0, RET_ERRNO | ENOSYS]);
  }
  for (const nr of new Set(abi.enosys)) {
    b.push([BPF_JEQ_K, 0, 1, nr]);
    b.push([BPF_RET_K, 0, 0, RET_ERRNO | ENOSYS]);
  }
  for (const nr of new Set(abi.trace)) {
    b.push([BPF_JEQ_K, 0, 1, nr]);
    b.push([BPF_RET_K, 0, 0, RET_TRACE]);
  }
  b.push([BPF_RET_K, 0, 0, RET_ALLOW]);
  return b;
}
