// Generates arch/syscalls/<abi>.ts from the kernel's own uapi headers as
// Debian packages them, so the numbers are never typed by hand: Debian 13's
// linux-libc-dev (Linux 6.12, every architecture's asm/ in one package),
// unpacked by scripts/ci-packages.sh into HEADERS_ROOT.
// Run: node arch/gen-syscalls.ts   (needs cc and those headers)
// The test (test/unit/arch-syscalls.test.ts) reads the headers again through
// readSyscalls() and fails when a table no longer matches them.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Abi } from './syscalls.ts';

/** Where scripts/ci-packages.sh unpacks Debian 13's linux-libc-dev. */
export const HEADERS_ROOT =
  process.env.TETHER_KERNEL_HEADERS ?? '/var/cache/tether-test/linux-libc-dev-trixie';
const UAPI = `${HEADERS_ROOT}/usr/lib/linux/uapi`;
const GENERIC = `-I${HEADERS_ROOT}/usr/include`;

export interface HeaderSource {
  abi: Abi;
  /** The header holding the numbers; checked to exist before running cc. */
  header: string;
  /** What the tiny C input includes. */
  include: string;
  /** cc flags after -E -dM -undef -nostdinc. */
  flags: string[];
}

// -undef -nostdinc keep the host compiler's own macros (__x86_64__, its
// include path) out, so one host cc reads every target's headers the same
// way; each target's asm/ selects by macros we set explicitly instead.
export const HEADER_SOURCES: readonly HeaderSource[] = [
  {
    abi: 'x86_64',
    header: `${UAPI}/x86/asm/unistd_64.h`,
    // unistd_64.h directly: asm/unistd.h would pick by __i386__/__ILP32__.
    include: 'asm/unistd_64.h',
    flags: [`-I${UAPI}/x86`, GENERIC],
  },
  {
    abi: 'i386',
    header: `${UAPI}/x86/asm/unistd_32.h`,
    include: 'asm/unistd_32.h',
    flags: [`-I${UAPI}/x86`, GENERIC],
  },
  {
    abi: 'arm',
    header: `${UAPI}/arm/asm/unistd-eabi.h`,
    include: 'asm/unistd.h',
    // EABI, not OABI: __NR_SYSCALL_BASE 0 and the __ARM_NR_* private calls.
    flags: [`-I${UAPI}/arm`, GENERIC, '-D__ARM_EABI__'],
  },
  {
    abi: 'aarch64',
    header: `${UAPI}/arm64/asm/unistd_64.h`,
    include: 'asm/unistd_64.h',
    flags: [`-I${UAPI}/arm64`, GENERIC],
  },
];

/** The cc command line, as written into each generated file. */
export function ccCommand(src: HeaderSource): string {
  const flags = src.flags.map((f) => f.replace(HEADERS_ROOT, '$TETHER_KERNEL_HEADERS'));
  return `echo '#include <${src.include}>' | cc -E -dM -undef -nostdinc ${flags.join(' ')} -x c -`;
}

// Macros with the __NR_ prefix that are not syscalls.
const NOT_SYSCALLS = new Set([
  '__NR_syscalls',
  '__NR_SYSCALL_BASE',
  '__NR_OABI_SYSCALL_BASE',
  '__NR_SYSCALL_MASK',
  '__ARM_NR_BASE',
]);

function cc(src: HeaderSource, mode: string[], input: string): string {
  try {
    return execFileSync('cc', [...mode, '-undef', '-nostdinc', ...src.flags, '-x', 'c', '-'], {
      input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('cc is missing: apt-get install gcc (listed in scripts/ci-packages.sh)');
    }
    throw err;
  }
}

/** Why the headers for `src` cannot be read, naming what provides them; null if they can. */
export function missingHeaders(src: HeaderSource): string | null {
  if (!fs.existsSync(src.header)) {
    return `${src.header} is missing: scripts/ci-packages.sh unpacks Debian 13's linux-libc-dev there`;
  }
  return null;
}

// `#define` lines of the header's __NR_/__ARM_NR_ macros: name → body, sorted by name.
function defines(src: HeaderSource): Map<string, string> {
  const missing = missingHeaders(src);
  if (missing) throw new Error(missing);
  const found = new Map<string, string>();
  for (const line of cc(src, ['-E', '-dM'], `#include <${src.include}>\n`).split('\n')) {
    const m = /^#define (__NR_\w+|__ARM_NR_\w+)\s+(.*)$/.exec(line);
    if (m && !NOT_SYSCALLS.has(m[1])) found.set(m[1], m[2].trim());
  }
  return new Map([...found].sort(([a], [b]) => (a < b ? -1 : 1)));
}

const syscallName = (macro: string): string => macro.replace(/^__(ARM_)?NR_/, '');

/**
 * Syscall name → number for one ABI, read from the headers through cc.
 * ARM private calls (__ARM_NR_cacheflush, …) appear without prefix, as
 * libseccomp and strace name them.
 */
export function readSyscalls(src: HeaderSource): Map<string, number> {
  const macros = [...defines(src).keys()];
  // Let cc expand each macro (values like (__NR_SYSCALL_BASE + 3) or
  // __NR3264_fcntl), behind a string literal that names it and is not expanded.
  const prelude = `#include <${src.include}>\n`;
  const expanded = cc(src, ['-E', '-P'], prelude + macros.map((m) => `"${m}" ${m}\n`).join(''));
  const table = new Map<string, number>();
  for (const line of expanded.split('\n')) {
    const m = /^"(\w+)" (.*)$/.exec(line.trim());
    if (!m) continue;
    const name = syscallName(m[1]);
    if (table.has(name)) throw new Error(`${src.abi}: ${name} defined twice`);
    table.set(name, evaluate(m[2], `${src.abi} ${m[1]}`));
  }
  if (table.size !== macros.length) {
    throw new Error(`${src.abi}: expanded ${table.size} of ${macros.length} macros`);
  }
  return table;
}

/**
 * Names the header defines as another syscall's name (arm: sync_file_range2 →
 * arm_sync_file_range): alias → the name it stands for. Both are in the
 * name → number table; number → name gives the one defined by number.
 */
export function readAliases(src: HeaderSource): Map<string, string> {
  const aliases = new Map<string, string>();
  for (const [macro, body] of defines(src)) {
    if (/^__(ARM_)?NR_\w+$/.test(body)) aliases.set(syscallName(macro), syscallName(body));
  }
  return aliases;
}

// The expanded values are integer sums in parentheses; anything else
// (an identifier left over) means the headers changed shape, so refuse.
function evaluate(expr: string, what: string): number {
  const tokens = expr.match(/0x[0-9a-fA-F]+|\d+|[-+()]|\S/g) ?? [];
  let i = 0;
  const fail = (): never => {
    throw new Error(`${what}: cannot evaluate ${JSON.stringify(expr)}`);
  };
  const primary = (): number => {
    const tok = tokens[i++];
    if (tok === '(') {
      const v = sum();
      if (tokens[i++] !== ')') fail();
      return v;
    }
    if (tok === '-') return -primary();
    if (tok !== undefined && /^(0x[0-9a-fA-F]+|\d+)$/.test(tok)) return Number(tok);
    return fail();
  };
  const sum = (): number => {
    let v = primary();
    while (tokens[i] === '+' || tokens[i] === '-') {
      const op = tokens[i++];
      v = op === '+' ? v + primary() : v - primary();
    }
    return v;
  };
  const v = sum();
  if (i !== tokens.length || !Number.isSafeInteger(v) || v < 0) fail();
  return v;
}

/** What the headers are, as scripts/ci-packages.sh recorded it when it unpacked them. */
function headersSource(): string {
  return fs.readFileSync(path.join(HEADERS_ROOT, '.source'), 'utf8').trim();
}

function render(
  src: HeaderSource,
  table: Map<string, number>,
  aliases: Map<string, string>,
): string {
  const byNumber = [...table].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  // A number has two names only where the header aliases one; number → name
  // gives the name the header defines by number, never the alias.
  const numberNames = new Map<number, string>();
  for (const [name, nr] of byNumber) {
    if (aliases.has(name)) continue;
    if (numberNames.has(nr)) {
      throw new Error(`${src.abi}: ${nr} is both ${numberNames.get(nr)} and ${name}`);
    }
    numberNames.set(nr, name);
  }
  const lines = [
    `// Generated by \`node arch/gen-syscalls.ts\`; do not edit.`,
    `// Source: ${headersSource()}, ${src.header.slice(HEADERS_ROOT.length)}`,
    '// (unpacked into $TETHER_KERNEL_HEADERS by scripts/ci-packages.sh)',
    `// Read with: ${ccCommand(src)}`,
    '',
    `/** Syscall name → number for ${src.abi}. */`,
    'export const byName = Object.freeze({',
    ...byNumber.map(([name, nr]) => `  ${name}: ${nr},`),
    '});',
    '',
    `/** Syscall number → name for ${src.abi}. */`,
    'export const byNumber: Readonly<Record<number, string>> = Object.freeze({',
    ...[...numberNames].map(([nr, name]) => `  ${nr}: '${name}',`),
    '});',
    '',
  ];
  return lines.join('\n');
}

function main(): void {
  const outDir = path.join(import.meta.dirname, 'syscalls');
  fs.mkdirSync(outDir, { recursive: true });
  for (const src of HEADER_SOURCES) {
    const table = readSyscalls(src);
    const file = path.join(outDir, `${src.abi}.ts`);
    fs.writeFileSync(file, render(src, table, readAliases(src)));
    console.log(`${path.relative(process.cwd(), file)}: ${table.size} syscalls`);
  }
}

if (import.meta.main) main();
