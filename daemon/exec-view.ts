// execve through the view: the program, its ELF interpreter and its `#!` interpreters come from
// the view's files. A dynamic program runs as its (cached) interpreter with the program's view
// path as argument, so the loader opens the program and its libraries through the view too;
// `--argv0` keeps argv[0]. A static program runs from its cached copy.
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  openSync,
  readSync,
  statSync,
} from 'node:fs';
import { constants } from 'node:os';
import type { Redirector } from './redirect/redirector.ts';
import type { Proc, SyscallStop } from './syscall-stop.ts';
import { ViewError } from './view-client.ts';

const E = constants.errno;
const X_OK = 1;
/** The kernel follows at most this many `#!` interpreters (BINPRM nesting). */
const MAX_DEPTH = 4;
/** The kernel reads this much of a `#!` line (BINPRM_BUF_SIZE). */
const SHEBANG_MAX = 256;

export type ExecPlan = { file: string; argv: bigint; exe: string } | { errno: number };

/**
 * Decides what the kernel really executes for execve(path, argv) and writes the new argv.
 * `name` is the file name as the kernel would pass it to a `#!` interpreter (as the program
 * gave it, even relative).
 */
export async function prepareExec(
  r: Redirector,
  s: SyscallStop,
  path: string,
  name: string,
  argvPtr: bigint,
  /** Run a file the kernel cannot (ENOEXEC) with /bin/sh, as execvp(3) does: the run's own. */
  shellFallback = false,
): Promise<ExecPlan> {
  const plan = await planExec(r, s, path, name, argvPtr, null);
  if (!shellFallback || !('errno' in plan) || plan.errno !== E.ENOEXEC) return plan;
  return planExec(r, s, path, name, argvPtr, '/bin/sh');
}

async function planExec(
  r: Redirector,
  s: SyscallStop,
  path: string,
  name: string,
  argvPtr: bigint,
  shell: string | null,
): Promise<ExecPlan> {
  const argv = readPointers(s, argvPtr);
  if (argv === null) return { errno: E.EFAULT };
  // Strings we add go onto the stack; the program's own strings are reused where they are.
  const str = (x: string) => s.scratch(Buffer.from(`${x}\0`));
  // execvp's retry: /bin/sh with the file as its script, argv[0] the shell's name.
  let front: bigint[] = shell ? [str(shell), str(name)] : [];
  let rest = argv.slice(1);
  let argv0: bigint | null = shell ? null : (argv[0] ?? null);
  let target = shell ?? path;
  let exe = '';
  for (let depth = 0; ; depth++) {
    if (depth > MAX_DEPTH) return { errno: E.ELOOP };
    let f: { file: string; viewPath: string };
    try {
      f = await programFile(r, s.proc, target);
    } catch (e) {
      if (e instanceof ViewError) return { errno: e.errno };
      throw e;
    }
    if (depth === 0) exe = f.viewPath;
    let head: Buffer;
    try {
      head = readAt(f.file, 0, 4096);
    } catch (e) {
      if (e instanceof ViewError) return { errno: e.errno };
      throw e;
    }
    if (head.subarray(0, 2).toString('latin1') === '#!') {
      const { interp, arg } = parseShebang(head);
      if (!interp) return { errno: E.ENOEXEC };
      // argv becomes: interp [arg] script-as-named args...; argv[0] of the script is dropped.
      // A nested interpreter replaces the previous one's name, as the kernel does.
      front = [
        str(interp),
        ...(arg !== null ? [str(arg)] : []),
        str(depth === 0 ? name : target),
        ...front.slice(1),
      ];
      argv0 = null;
      target = interp;
      continue;
    }
    const elf = elfInterp(f.file, head);
    if (elf === 'not-elf') return { errno: E.ENOEXEC };
    // The process is named after what was executed (a script's name, not its interpreter's).
    const comm = path.slice(path.lastIndexOf('/') + 1);
    const links = r.run.links;
    const plain = () => writePointers(s, [...(argv0 !== null ? [argv0] : []), ...front, ...rest]);
    if (elf === null) return { file: links.named(f.file, comm), argv: plain(), exe };
    let ld: { file: string; viewPath: string };
    try {
      ld = await programFile(r, s.proc, elf.path, false);
    } catch (e) {
      if (e instanceof ViewError) return { errno: e.errno };
      throw e;
    }
    const patched = links.withLoader(f.file, elf, ld.file);
    if (patched !== null) return { file: links.named(patched, comm), argv: plain(), exe };
    // The loader's name does not fit: run the loader with the program as its argument.
    const shown = argv0 ?? front[0] ?? str(target);
    if (argv0 === null && front.length > 0) front = front.slice(1);
    else if (argv0 === null) front = [];
    const list = [str(ld.viewPath), str('--argv0'), shown, str(f.viewPath), ...front, ...rest];
    rest = [];
    return { file: ld.file, argv: writePointers(s, list), exe };
  }
}

/** The device file holding the program at view `path`, after the kernel's checks. */
async function programFile(
  r: Redirector,
  self: Proc,
  viewPath: string,
  needX = true,
): Promise<{ file: string; viewPath: string }> {
  const at = r.walk(viewPath, true, self);
  if (at.kind !== 'view')
    return deviceProgram(at.kind === 'device' ? (at.at ?? viewPath) : viewPath, needX);
  const path = at.path;
  const { node, file } = await r.cached(path);
  if (node.where === 'device') return deviceProgram(node.path, needX);
  if ((node.st.mode & 0o170000) !== 0o100000) throw new ViewError('EACCES');
  if (needX) await r.access(node.path, X_OK, true);
  if (r.work.busy(node.path)) throw new ViewError('ETXTBSY');
  if (file === null) throw new ViewError('EACCES');
  return { file, viewPath: node.path };
}

/** A program in a device mount: the kernel's checks, done here since we read it first. */
export function deviceProgram(path: string, needX = true): { file: string; viewPath: string } {
  try {
    if (!statSync(path).isFile()) throw new ViewError('EACCES');
    if (needX) accessSync(path, fsConstants.X_OK);
  } catch (e) {
    if (e instanceof ViewError) throw e;
    throw new ViewError((e as NodeJS.ErrnoException).code ?? 'EACCES');
  }
  return { file: path, viewPath: path };
}

function parseShebang(head: Buffer): { interp: string; arg: string | null } {
  let line = head.subarray(2, SHEBANG_MAX).toString('latin1');
  const nl = line.indexOf('\n');
  if (nl >= 0) line = line.slice(0, nl);
  line = line.replace(/^[ \t]+/, '').replace(/[ \t\r]+$/, '');
  const m = /^(\S+)(?:[ \t]+(.*))?$/.exec(line);
  if (!m) return { interp: '', arg: null };
  return { interp: m[1]!, arg: m[2] !== undefined && m[2] !== '' ? m[2] : null };
}

/** `len` bytes of `file` at `pos` (fewer at its end). */
function readAt(file: string, pos: number, len: number): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new ViewError((e as NodeJS.ErrnoException).code ?? 'EACCES');
  }
  try {
    const b = Buffer.alloc(len);
    return b.subarray(0, readSync(fd, b, 0, len, pos));
  } finally {
    closeSync(fd);
  }
}

/**
 * PT_INTERP of the ELF file `file` (`head`: its first bytes): the loader's path, and where its
 * bytes are in the file; null for a static program. The program headers and the path may be
 * anywhere in the file, as the kernel allows: a binary edited by postject (a Node single
 * executable) has its program headers near the end.
 */
export function elfInterp(
  file: string,
  head: Buffer,
): { path: string; offset: number; size: number } | null | 'not-elf' {
  if (head.length < 52 || head.readUInt32BE(0) !== 0x7f454c46) return 'not-elf';
  const is64 = head[4] === 2;
  if (is64 && head.length < 64) return 'not-elf';
  const phoff = is64 ? Number(head.readBigUInt64LE(32)) : head.readUInt32LE(28);
  const phentsize = head.readUInt16LE(is64 ? 54 : 42);
  const phnum = head.readUInt16LE(is64 ? 56 : 44);
  const tableSize = phentsize * phnum;
  // The kernel's limits: entries of the ABI's size, a table of at most 64 KiB.
  if (phentsize !== (is64 ? 56 : 32) || tableSize > 65536) return 'not-elf';
  const bytes = (at: number, len: number) =>
    at + len <= head.length
      ? head.subarray(at, at + len)
      : // An offset past any file (a 64-bit one beyond 2^53): nothing there.
        Number.isSafeInteger(at + len)
        ? readAt(file, at, len)
        : Buffer.alloc(0);
  const table = bytes(phoff, tableSize);
  if (table.length < tableSize) return 'not-elf';
  for (let off = 0; off < tableSize; off += phentsize) {
    if (table.readUInt32LE(off) !== 3) continue;
    const o = is64 ? Number(table.readBigUInt64LE(off + 8)) : table.readUInt32LE(off + 4);
    const len = is64 ? Number(table.readBigUInt64LE(off + 32)) : table.readUInt32LE(off + 16);
    if (len < 2 || len > 4096) return 'not-elf';
    const name = bytes(o, len);
    if (name.length < len) return 'not-elf';
    const path = name.toString('latin1').replace(/\0.*$/s, '');
    return { path, offset: o, size: len };
  }
  return null;
}

function readPointers(s: SyscallStop, at: bigint): bigint[] | null {
  const out: bigint[] = [];
  if (at === 0n) return out;
  const w = s.abi.wordSize;
  for (let i = 0; i < 1 << 20; i += 256) {
    const b = s.readMem(at + BigInt(i * w), 256 * w);
    for (let j = 0; j + w <= b.length; j += w) {
      const p = w === 8 ? b.readBigUInt64LE(j) : BigInt(b.readUInt32LE(j));
      if (p === 0n) return out;
      out.push(p);
    }
    if (b.length < 256 * w) return null;
  }
  return null;
}

function writePointers(s: SyscallStop, list: bigint[]): bigint {
  const w = s.abi.wordSize;
  const b = Buffer.alloc((list.length + 1) * w);
  list.forEach((p, i) => {
    if (w === 8) b.writeBigUInt64LE(p, i * w);
    else b.writeUInt32LE(Number(p), i * w);
  });
  return s.scratch(b);
}
