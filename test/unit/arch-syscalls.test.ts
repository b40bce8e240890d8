// The committed syscall tables must equal what the installed kernel headers
// say now (a stale table fails), and well-known numbers must hold.
import t from 'tap';
import {
  HEADER_SOURCES,
  missingHeaders,
  readAliases,
  readSyscalls,
} from '../../arch/gen-syscalls.ts';
import { ABIS, SYSCALLS, syscallName, syscallNumber } from '../../arch/syscalls.ts';

for (const src of HEADER_SOURCES) {
  t.test(`${src.abi} table matches the kernel headers`, async (t) => {
    // Never skip: without the headers the tables are unchecked.
    const missing = missingHeaders(src);
    if (missing) {
      t.fail(missing);
      return;
    }
    const fromHeaders = Object.fromEntries(readSyscalls(src));
    t.strictSame(
      { ...SYSCALLS[src.abi].byName },
      fromHeaders,
      `arch/syscalls/${src.abi}.ts equals ${src.header}; if not, run: node arch/gen-syscalls.ts`,
    );
    // A number with two names maps back to the one the header defines by number.
    for (const [alias, name] of readAliases(src)) {
      const nr = syscallNumber(src.abi, name);
      t.equal(syscallNumber(src.abi, alias), nr, `${src.abi}: ${alias} is ${name}`);
      t.equal(syscallName(src.abi, nr!), name, `${src.abi}: ${nr} is ${name}, not ${alias}`);
    }
  });
}

t.test('every ABI has a table and number → name inverts name → number', async (t) => {
  t.strictSame([...ABIS].sort(), HEADER_SOURCES.map((s) => s.abi).sort());
  for (const abi of ABIS) {
    const { byName, byNumber } = SYSCALLS[abi];
    t.ok(Object.isFrozen(byName) && Object.isFrozen(byNumber), `${abi} tables are frozen`);
    const bad = Object.entries(byName).filter(([, nr]) => byName[byNumber[nr]] !== nr);
    t.strictSame(bad, [], `${abi}: every number maps back to a name with that number`);
    const extra = Object.entries(byNumber).filter(([nr, name]) => byName[name] !== Number(nr));
    t.strictSame(extra, [], `${abi}: every number → name entry is in name → number`);
  }
});

t.test('well-known numbers', async (t) => {
  const known: [Parameters<typeof syscallNumber>[0], string, number][] = [
    ['x86_64', 'read', 0],
    ['x86_64', 'execve', 59],
    ['x86_64', 'openat', 257],
    ['x86_64', 'getdents64', 217],
    ['x86_64', 'statx', 332],
    ['i386', 'execve', 11],
    ['i386', 'openat', 295],
    ['i386', 'statx', 383],
    ['arm', 'execve', 11],
    ['arm', 'openat', 322],
    ['arm', 'statx', 397],
    ['arm', 'cacheflush', 0x0f0002],
    ['arm', 'set_tls', 0x0f0005],
    ['aarch64', 'openat', 56],
    ['aarch64', 'execve', 221],
    ['aarch64', 'getdents64', 61],
    ['aarch64', 'statx', 291],
  ];
  for (const [abi, name, nr] of known) {
    t.equal(syscallNumber(abi, name), nr, `${abi} ${name} = ${nr}`);
    t.equal(syscallName(abi, nr), name, `${abi} ${nr} is ${name}`);
  }
  // aarch64 has only the *at calls; the tracer relies on these being absent.
  t.equal(syscallNumber('aarch64', 'open'), undefined, 'aarch64 has no open');
  t.equal(syscallNumber('aarch64', 'stat'), undefined, 'aarch64 has no stat');
  t.equal(syscallNumber('x86_64', 'constructor'), undefined, 'no prototype names');
  t.equal(syscallNumber('x86_64', '__proto__'), undefined, 'no __proto__');
  t.equal(syscallName('x86_64', 100000), undefined, 'unassigned number');
  t.equal(syscallName('arm', 341), 'arm_sync_file_range', 'arm alias keeps one name');
  t.equal(syscallNumber('arm', 'sync_file_range2'), 341, 'arm alias by name');
});
