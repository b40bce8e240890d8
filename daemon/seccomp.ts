// The seccomp BPF filter a traced program runs under: per ABI (by AUDIT_ARCH), the syscalls
// the tracer redirects return SECCOMP_RET_TRACE (a ptrace stop) or SECCOMP_RET_USER_NOTIF (a
// notification to the filter's listener), the ones known to be safe to pass through are
// allowed, and everything else fails with ENOSYS (libc then falls back): the calls that could
// bypass the view and are not handled, and every number the ABI's table does not know (a
// newer kernel's call may take a path). A binary search over ranges of numbers decides, so a
// call costs about log2(ranges) comparisons, not one per listed call. A notified call may
// still trace when a flag is set in one of its arguments (an O_PATH open: the listener cannot
// hand the program an O_PATH fd).

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_JSET_K = 0x45;
const BPF_RET_K = 0x06;
const BPF_JA = 0x05;

const RET_ALLOW = 0x7fff0000;
const RET_TRACE = 0x7ff00000;
const RET_USER_NOTIF = 0x7fc00000;
const RET_ERRNO = 0x00050000;
const ENOSYS = 38;

// Offsets in struct seccomp_data.
const NR = 0;
const ARCH = 4;
/** The low 32 bits of argument i (every ABI tether traces is little-endian). */
const ARG_LO = (i: number) => 16 + 8 * i;

export interface FilterAbi {
  auditArch: number;
  trace: readonly number[];
  /** Redirected numbers that notify the listener instead of stopping for ptrace. */
  notify?: readonly number[];
  /** Notified numbers that trace instead when argument `arg` has a bit of `mask` set. */
  traceIf?: readonly { nr: number; arg: number; mask: number }[];
  /** Numbers that run untouched; any number in none of the lists fails with ENOSYS. */
  allow: readonly number[];
}

type Insn = [code: number, jt: number, jf: number, k: number];
/** `notify:ARG:MASK`: notify unless argument ARG has a bit of MASK set, then trace. */
type Verdict = 'trace' | 'notify' | 'allow' | 'deny' | `notify:${number}:${number}`;
type Plain = 'trace' | 'notify' | 'allow' | 'deny';
const RET: Record<Plain, number> = {
  trace: RET_TRACE,
  notify: RET_USER_NOTIF,
  allow: RET_ALLOW,
  deny: RET_ERRNO | ENOSYS,
};

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
  prog.push([BPF_RET_K, 0, 0, RET.deny]);
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

/** Ranges of numbers with one verdict each, from 0 to 2^32, in order: [first number, verdict]. */
export function ranges(abi: FilterAbi): [number, Verdict][] {
  const verdict = new Map<number, Verdict>();
  for (const nr of abi.allow) verdict.set(nr, 'allow');
  // A traced call is traced even where a list also allows it.
  for (const nr of abi.trace) verdict.set(nr, 'trace');
  for (const nr of abi.notify ?? []) verdict.set(nr, 'notify');
  for (const { nr, arg, mask } of abi.traceIf ?? [])
    if (verdict.get(nr) === 'notify') verdict.set(nr, `notify:${arg}:${mask >>> 0}`);
  const out: [number, Verdict][] = [[0, 'deny']];
  for (const nr of [...verdict.keys()].sort((a, b) => a - b)) {
    const v = verdict.get(nr)!;
    const last = out[out.length - 1]!;
    if (last[1] !== v) {
      if (last[0] === nr) last[1] = v;
      else out.push([nr, v]);
    }
    // What follows a listed number is denied until the next one says otherwise.
    if (!verdict.has(nr + 1)) out.push([nr + 1, 'deny']);
  }
  // Merge neighbours that ended up alike.
  return out.filter((r, i) => i === 0 || out[i - 1]![1] !== r[1]);
}

/**
 * Loads the number and searches the ranges: each inner node is `jge k` (true falls through to
 * a long jump to the upper half, false skips it into the lower half), each leaf a return.
 */
function abiBlock(abi: FilterAbi): Insn[] {
  const b: Insn[] = [[BPF_LD_W_ABS, 0, 0, NR]];
  const emit = (rs: [number, Verdict][]): void => {
    if (rs.length === 1) {
      const v = rs[0]![1];
      const cond = /^notify:(\d+):(\d+)$/.exec(v);
      if (cond) {
        // The number is no longer needed: load the argument and test the flag.
        b.push([BPF_LD_W_ABS, 0, 0, ARG_LO(Number(cond[1]))]);
        b.push([BPF_JSET_K, 0, 1, Number(cond[2])]);
        b.push([BPF_RET_K, 0, 0, RET_TRACE]);
        b.push([BPF_RET_K, 0, 0, RET_USER_NOTIF]);
      } else b.push([BPF_RET_K, 0, 0, RET[v as Plain]]);
      return;
    }
    const mid = rs.length >> 1;
    b.push([BPF_JGE_K, 0, 1, rs[mid]![0]]);
    const ja = b.length;
    b.push([BPF_JA, 0, 0, 0]);
    emit(rs.slice(0, mid));
    b[ja]![3] = b.length - (ja + 1);
    emit(rs.slice(mid));
  };
  emit(ranges(abi));
  return b;
}

/** What the filter decides for `nr` of `abi`, by the same ranges (for tests and traces). */
export function verdictOf(abi: FilterAbi, nr: number): Verdict {
  let v: Verdict = 'deny';
  for (const [first, verdict] of ranges(abi)) {
    if (nr < first) break;
    v = verdict;
  }
  return v;
}
