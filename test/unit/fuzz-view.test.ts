// Fuzzing what a device controls on the host side, and the daemon's ELF reader: mutated view
// requests must parse or be refused as MESSAGE_ERROR; random trees of symlinks and random
// paths must never lead an answer outside the exported roots; mutated ELF headers must give
// an answer, never an exception.
//
// FUZZ_SEED=<seed> replays a run; FUZZ_SCALE=<k> multiplies the case counts (k=30 with
// fuzz.test.ts's is over a million inputs: `FUZZ_SCALE=30 npx tap test/unit/fuzz*.test.ts`).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Mount } from '../../client/view-resolve.ts';
import { ViewServer } from '../../client/view-server.ts';
import { elfInterp } from '../../daemon/exec-view.ts';
import { ErrorCode, TransportError } from '../../transport/errors.ts';
import { parseViewRequest, type ViewChunk, type ViewReply } from '../../transport/view.ts';
import { Rng } from '../lib/rng.ts';

const SEED = process.env.FUZZ_SEED
  ? Number(process.env.FUZZ_SEED) >>> 0
  : (Math.random() * 2 ** 32) >>> 0;
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
t.comment(`FUZZ_SEED=${SEED}`);
process.stderr.write(`fuzz-view.test.ts: FUZZ_SEED=${SEED}\n`);

const WORDS = ['', '/', '.', '..', 'a', '/a/b', 'x'.repeat(5000), 'a\0b', 'read', 'write', 'now'];

function randomValue(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 2 ? 5 : 7)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, 1, -1, 0o777, 2 ** 32, 2 ** 53, 1.5, Number.NaN]);
    case 3:
      return r.pick(WORDS);
    case 4:
      return new Uint8Array(r.bytes(r.int(8)));
    case 5:
      return Array.from({ length: r.int(4) }, () => randomValue(r, depth + 1));
    default: {
      const m: Record<string, unknown> = {};
      for (let i = r.int(4); i > 0; i--) m[r.pick(['op', 'path', 'id', 'x'])] = randomValue(r);
      return m;
    }
  }
}

const VALID: Record<string, unknown>[] = [
  { id: 1, op: 'lookup', path: '/a', follow: true },
  { id: 2, op: 'open', path: '/a', flags: ['read'], mode: 0, have: null },
  { id: 3, op: 'readdir', path: '/' },
  { id: 4, op: 'rename', from: '/a', to: '/b', noreplace: false, exchange: false },
  { id: 5, op: 'utimens', path: '/a', atime: 'now', mtime: [1, 2], follow: false },
  { id: 6, op: 'write', path: '/a', offset: 0, data: new Uint8Array(3), truncate: 3 },
  { id: 7, op: 'symlink', target: '../x', path: '/a' },
  { id: 8, op: 'chown', path: '/a', uid: 0, gid: 0, follow: true },
];

t.test('view requests: parsed, or refused as MESSAGE_ERROR', async (t) => {
  const cases = Math.round(100_000 * SCALE);
  const failures: string[] = [];
  for (let i = 0; i < cases; i++) {
    const r = new Rng(SEED, 11, i);
    const v: Record<string, unknown> = { ...r.pick(VALID) };
    for (let k = 1 + r.int(3); k > 0; k--) {
      const key = r.chance(0.8) ? r.pick(Object.keys(v)) : r.pick(['op', 'x', 'path']);
      if (r.chance(0.3)) delete v[key];
      else v[key] = randomValue(r);
    }
    try {
      parseViewRequest(r.chance(0.05) ? randomValue(r) : v);
    } catch (e) {
      if (!(e instanceof TransportError) || e.code !== ErrorCode.MESSAGE_ERROR)
        failures.push(`case ${i}: ${(e as Error).stack}`);
    }
  }
  t.same(failures.slice(0, 3), [], `${cases} mutated requests`);
});

/** Names the random trees use, and the targets their symlinks point at. */
const NAMES = ['a', 'b', 'c', 'link', 'up'];

t.test('random symlink trees and paths: no answer from outside the roots', async (t) => {
  const trees = Math.round(40 * SCALE);
  const perTree = 500;
  const failures: string[] = [];
  for (let k = 0; k < trees; k++) {
    const r = new Rng(SEED, 12, k);
    const root = mkdtempSync(join(tmpdir(), 'tether-fuzz-view-'));
    try {
      const outside = join(root, 'outside');
      mkdirSync(join(outside, 'a'), { recursive: true });
      writeFileSync(join(outside, 'a/outsider'), 'SECRET');
      writeFileSync(join(outside, 'outsider'), 'SECRET');
      const roots = [join(root, 'sys'), join(root, 'proj')];
      const targets = [
        '..',
        '../..',
        '../../..',
        '/',
        '/w',
        '/w/a',
        '.',
        'a',
        'secret',
        outside,
        join(outside, 'outsider'),
        '/proc/self/root',
        '/proc/self/cwd',
        '../outside/outsider',
        '/tmp',
      ];
      // Each root gets a random tree of directories, files and symlinks.
      for (const top of roots) {
        mkdirSync(top);
        const dirs = [top];
        for (let n = 0; n < 25; n++) {
          const at = join(r.pick(dirs), r.pick(NAMES) + r.int(3));
          try {
            const kind = r.int(3);
            if (kind === 0) {
              mkdirSync(at);
              dirs.push(at);
              // wx: never through a symlink of the tree (it could write outside).
            } else if (kind === 1) writeFileSync(at, 'inside', { flag: 'wx' });
            else symlinkSync(r.pick(targets), at);
          } catch {
            // The name was taken: another kind is there already.
          }
        }
      }
      const mounts: Mount[] = [
        { path: '/', host: roots[0]!, readonly: false },
        { path: '/w', host: roots[1]!, readonly: r.chance(0.3) },
        { path: '/tmp', device: true },
        { path: '/proc', device: true },
      ];
      const server = new ViewServer(mounts, [], { openat2: r.chance(0.7) });
      for (let i = 0; i < perTree; i++) {
        const comps = Array.from({ length: 1 + r.int(5) }, () =>
          r.pick([...NAMES.map((x) => x + r.int(3)), '..', '.', '', 'w', 'outsider', 'outside']),
        );
        const path = `/${comps.join('/')}${r.chance(0.1) ? '/' : ''}`;
        const op = r.int(3);
        const req =
          op === 0
            ? { id: 1, op: 'lookup', path, follow: r.chance(0.5) }
            : op === 1
              ? { id: 1, op: 'open', path, flags: ['read'], mode: 0, have: null }
              : { id: 1, op: 'readdir', path };
        try {
          const out: (ViewReply | ViewChunk)[] = [];
          for await (const m of server.handle(req as never)) out.push(m);
          const reply = out[0] as ViewReply & { entries?: { name: string }[] };
          const data = out
            .slice(1)
            .map((c) => Buffer.from((c as ViewChunk).data).toString())
            .join('');
          if (data.includes('SECRET')) failures.push(`tree ${k} ${op} ${path}: served SECRET`);
          if (reply.ok && reply.entries?.some((e) => e.name === 'outsider'))
            failures.push(`tree ${k} readdir ${path}: listed outside/`);
        } catch (e) {
          failures.push(`tree ${k} ${JSON.stringify(req)}: threw ${(e as Error).message}`);
        }
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  t.same(failures.slice(0, 5), [], `${trees} trees × ${perTree} requests`);
});

t.test('mutated ELF headers: an interpreter, static, or not ELF; never an exception', async (t) => {
  const cases = Math.round(20_000 * SCALE);
  const real = readFileSync('/bin/true');
  const dir = mkdtempSync(join(tmpdir(), 'tether-fuzz-elf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'elf');
  // Found by this fuzzer: program headers said to be 2^60 bytes in threw (the exec got EIO).
  const far = Buffer.from(real.subarray(0, 4096));
  far.writeBigUInt64LE(1n << 60n, 32);
  writeFileSync(file, far);
  t.equal(elfInterp(file, far), 'not-elf', 'program headers past any file');
  const failures: string[] = [];
  let interps = 0;
  for (let i = 0; i < cases; i++) {
    const r = new Rng(SEED, 13, i);
    const b = Buffer.from(real.subarray(0, 4096 + r.int(4096)));
    // Mostly the header and program headers, where the reader looks.
    for (let n = 1 + r.int(8); n > 0; n--) {
      const at = r.chance(0.8) ? r.int(Math.min(b.length, 64 + 56 * 13)) : r.int(b.length);
      b[at] = r.chance(0.5) ? r.int(256) : r.pick([0, 0xff, 0x7f, 3, 2, 1]);
    }
    writeFileSync(file, b);
    const head = b.subarray(0, r.pick([52, 64, 512, 4096]));
    try {
      const x = elfInterp(file, head);
      if (x !== null && x !== 'not-elf') {
        interps++;
        if (x.size < 2 || x.size > 4096 || x.offset + x.size > b.length || x.path.includes('\0'))
          failures.push(`case ${i}: ${JSON.stringify(x)}`);
      }
    } catch (e) {
      failures.push(`case ${i}: ${(e as Error).message}`);
    }
  }
  t.same(failures.slice(0, 3), [], `${cases} mutated headers (${interps} with an interpreter)`);
});
