// The host's answers to view requests, against real directories: every op
// with the kernel's errors, confinement (no symlink, `..` or mount crossing
// reaches a host file outside the exported roots), read-only mounts,
// content chunking, and the stream service with concurrent requests.
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Duplex, duplexPair } from 'node:stream';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { setXattr, xattrs } from '../../client/native.ts';
import { type Mount, ViewError, ViewTable } from '../../client/view-resolve.ts';
import { contentKey, ViewServer } from '../../client/view-server.ts';
import { ErrorCode, TransportError } from '../../transport/errors.ts';
import { MessageReader, writeMessage } from '../../transport/messages.ts';
import {
  parseViewReply,
  VIEW_CHUNK,
  type ViewChunk,
  type ViewReply,
  type ViewRequest,
} from '../../transport/view.ts';

type Body<R> = R extends unknown ? Omit<R, 'id'> : never;
type Req = Body<ViewRequest>;

interface Fixture {
  root: string;
  sys: string;
  ro: string;
  proj: string;
  /** The exported roots: no answer may name a host path outside them. */
  roots: string[];
  mounts: Mount[];
  server: ViewServer;
}

function fixture(t: Test): Fixture {
  const root = mkdtempSync(join(tmpdir(), 'tether-view-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const sys = join(root, 'sys');
  const ro = join(root, 'ro');
  const proj = join(root, 'work', 'proj');
  for (const d of ['outside', 'sys/etc/dir', 'sys/usr/bin', 'sys/dir/sub', 'ro/dir', 'work/proj']) {
    mkdirSync(join(root, d), { recursive: true });
  }
  writeFileSync(join(root, 'outside/secret'), 'SECRET');
  writeFileSync(join(sys, 'etc/passwd'), 'view passwd\n');
  writeFileSync(join(sys, 'usr/bin/tool'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(sys, 'file'), 'hello');
  writeFileSync(join(sys, 'empty'), '');
  writeFileSync(join(ro, 'file'), 'ro');
  writeFileSync(join(proj, 'f'), 'proj');
  const links: [string, string][] = [
    ['sys/bin', 'usr/bin'],
    ['sys/abs', '/etc/passwd'],
    ['sys/up', '../../../../../../../../etc/passwd'],
    ['sys/dotdot', '..'],
    ['sys/loopa', 'loopb'],
    ['sys/loopb', 'loopa'],
    ['sys/tmplink', '/tmp/x'],
    ['sys/procroot', '/proc/self/root/etc/passwd'],
    ['sys/hostabs', join(root, 'outside/secret')],
    ['sys/hostroot', '/'],
    ['sys/dangling', 'nothere'],
    ['sys/workabs', '/work/proj/f'],
    ['work/proj/climb', '../../outside/secret'],
    ['work/proj/climb2', '../../../outside/secret'],
    ['work/proj/parent', '..'],
  ];
  for (const [at, to] of links) symlinkSync(to, join(root, at));
  const mounts: Mount[] = [
    { path: '/', host: sys, readonly: false },
    { path: '/ro', host: ro, readonly: true },
    { path: '/work/proj', host: proj, readonly: false },
    { path: '/tmp', device: true },
    { path: '/tmp/build', host: proj, readonly: false },
    { path: '/proc', device: true },
    { path: '/dev', device: true },
  ];
  return { root, sys, ro, proj, roots: [sys, ro, proj], mounts, server: new ViewServer(mounts) };
}

async function all(s: ViewServer, req: Req): Promise<(ViewReply | ViewChunk)[]> {
  const out: (ViewReply | ViewChunk)[] = [];
  for await (const m of s.handle({ id: 7, ...req } as ViewRequest)) out.push(m);
  return out;
}

/** The reply without its id (and no chunks expected after it). */
async function ask(s: ViewServer, req: Req): Promise<Record<string, unknown>> {
  const [first, ...rest] = await all(s, req);
  const { id, ...r } = first as ViewReply;
  if (id !== 7 || (rest.length > 0 && !('key' in r))) throw new Error('bad reply framing');
  return r;
}

/** The errno an op fails with, or 'ok'. */
async function errno(s: ViewServer, req: Req): Promise<string> {
  const r = await ask(s, req);
  return r.ok ? 'ok' : (r.errno as string);
}

const inside = (host: string, roots: string[]) =>
  roots.some((r) => host === r || host.startsWith(`${r}/`));

const content = (msgs: (ViewReply | ViewChunk)[]) =>
  Buffer.concat(msgs.filter((m): m is ViewChunk => 'data' in m).map((m) => m.data));

t.test('lookup: canonical paths, exact stats, mounts, glue and device paths', async (t) => {
  const f = fixture(t);
  const s = f.server;
  const r = await ask(s, { op: 'lookup', path: '/bin/tool', follow: true });
  const host = statSync(join(f.sys, 'usr/bin/tool'), { bigint: true });
  t.match(r, { ok: true, node: { where: 'host', path: '/usr/bin/tool' } });
  const st = (r.node as { st: Record<string, unknown> }).st;
  t.equal(st.ino, Number(host.ino));
  t.equal(st.mode, Number(host.mode));
  t.equal(st.size, 10);
  t.same(st.mtime, [Number(host.mtimeNs / 1_000_000_000n), Number(host.mtimeNs % 1_000_000_000n)]);
  t.match(await ask(s, { op: 'lookup', path: '/bin', follow: false }), {
    node: { path: '/bin', st: { mode: 0o120777 } },
  });
  t.match(await ask(s, { op: 'lookup', path: '/bin/', follow: false }), {
    node: { path: '/usr/bin' },
  });
  t.match(await ask(s, { op: 'lookup', path: '//usr/./bin/../bin//tool', follow: true }), {
    node: { path: '/usr/bin/tool' },
  });
  // /work is not in the sysroot: the view makes it up, read-only, on the way to /work/proj.
  t.match(await ask(s, { op: 'lookup', path: '/work', follow: true }), {
    node: { where: 'host', path: '/work', st: { mode: 0o40555 } },
  });
  t.equal(await errno(s, { op: 'lookup', path: '/work/other', follow: true }), 'ENOENT');
  t.match(await ask(s, { op: 'lookup', path: '/work/proj/f', follow: true }), {
    node: { path: '/work/proj/f', st: { size: 4 } },
  });
  // `..` in device directories is lexical: it cannot climb out of the view.
  t.match(await ask(s, { op: 'lookup', path: '/tmp/a/../b', follow: true }), {
    node: { where: 'device', path: '/tmp/b' },
  });
  t.match(await ask(s, { op: 'lookup', path: '/tmp/a/../../usr/bin/tool', follow: true }), {
    node: { where: 'host', path: '/usr/bin/tool' },
  });
  // A host directory bound inside a device mount (a build tree under /tmp) is the host's.
  t.match(await ask(s, { op: 'lookup', path: '/tmp/./build/f', follow: true }), {
    node: { where: 'host', path: '/tmp/build/f', st: { size: 4 } },
  });
  t.match(await ask(s, { op: 'lookup', path: '/tmp/build/../c', follow: true }), {
    node: { where: 'device', path: '/tmp/c' },
  });
  t.match(await ask(s, { op: 'lookup', path: '/tmplink', follow: true }), {
    node: { where: 'device', path: '/tmp/x' },
  });
  t.match(await ask(s, { op: 'lookup', path: '/tmplink', follow: false }), {
    node: { where: 'host', path: '/tmplink' },
  });
  t.equal(await errno(s, { op: 'lookup', path: '/nope', follow: true }), 'ENOENT');
  t.equal(await errno(s, { op: 'lookup', path: '/dangling', follow: true }), 'ENOENT');
  t.equal(await errno(s, { op: 'lookup', path: '/dangling', follow: false }), 'ok');
  t.equal(await errno(s, { op: 'lookup', path: '/file/x', follow: true }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'lookup', path: '/file/', follow: true }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'lookup', path: '/file/..', follow: true }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'lookup', path: '/loopa', follow: true }), 'ELOOP');
  t.equal(await errno(s, { op: 'lookup', path: '/loopa', follow: false }), 'ok');
  t.equal(
    await errno(s, { op: 'lookup', path: `/${'x'.repeat(300)}`, follow: true }),
    'ENAMETOOLONG',
  );
  // 40 links are followed, the 41st is ELOOP, as the kernel's MAXSYMLINKS.
  const chain = (n: number) => {
    for (let i = 0; i < n; i++) symlinkSync(`c${n}-${i + 1}`, join(f.sys, `c${n}-${i}`));
    writeFileSync(join(f.sys, `c${n}-${n}`), '');
  };
  // A path the links make longer than a reply may carry.
  symlinkSync(`/tmp/${'a/'.repeat(2000)}`, join(f.sys, 'long'));
  const long = `/long/${'b/'.repeat(1000)}`;
  t.equal(await errno(s, { op: 'lookup', path: long, follow: true }), 'ENAMETOOLONG');
  t.equal(await errno(s, { op: 'mkdir', path: long, mode: 0o755 }), 'ENAMETOOLONG');
  chain(40);
  chain(41);
  t.equal(await errno(s, { op: 'lookup', path: '/c40-0', follow: true }), 'ok');
  t.equal(await errno(s, { op: 'lookup', path: '/c41-0', follow: true }), 'ELOOP');
});

t.test('escapes: links and `..` stay inside the view', async (t) => {
  const f = fixture(t);
  const table = new ViewTable(f.mounts);
  /** Where a path leads: the host file, `device:` or `glue:` and the view path, or the errno. */
  const where = (path: string, view = table) =>
    view.resolve(path, { follow: true }).then(
      (n) => (n.where === 'host' ? n.host : `${n.where}:${n.path}`),
      (e: ViewError) => e.errno,
    );
  const passwd = join(f.sys, 'etc/passwd');
  t.equal(await where('/abs'), passwd, 'an absolute link starts at the view root');
  t.equal(await where('/up'), passwd, 'a `..` chain stops at the view root');
  t.equal(await where('/../../../../etc/passwd'), passwd);
  t.equal(await where('/dotdot/dotdot/dotdot/etc/passwd'), passwd, 'a link to `..` at / stays');
  t.equal(await where('/hostroot/etc/passwd'), passwd, 'a link to / is the view root');
  t.equal(
    await where('/work/proj/parent/proj/f'),
    join(f.proj, 'f'),
    '`..` of a bind is its view parent',
  );
  t.equal(
    await where('/work/proj/climb'),
    'ENOENT',
    'a relative link climbs the view, not the host',
  );
  t.equal(await where('/work/proj/climb2'), 'ENOENT');
  t.equal(await where('/procroot'), 'device:/proc/self/root/etc/passwd');
  // A host-absolute link is a view path: under /tmp (a device mount) or missing in the sysroot.
  const hostabs = await where('/hostabs');
  t.ok(hostabs === 'ENOENT' || hostabs === `device:${join(f.root, 'outside/secret')}`, hostabs);
  t.equal(await where('/workabs'), join(f.proj, 'f'), 'an absolute link into a bind');
  // Without device mounts, /proc/self/root and /tmp are plain sysroot paths.
  const bare = new ViewTable([{ path: '/', host: f.sys, readonly: true }]);
  t.equal(await where('/procroot', bare), 'ENOENT');
  t.equal(await where('/hostabs', bare), 'ENOENT');
  const opened = await all(f.server, {
    op: 'open',
    path: '/hostabs',
    flags: ['read'],
    mode: 0,
    have: null,
  });
  t.notOk(content(opened).includes('SECRET'), 'the secret is never read');

  // Every path built from these names resolves inside the roots, in the made-up /work or on
  // the device, or fails; none reads the secret.
  const names = ['..', '.', '', 'abs', 'up', 'dotdot', 'bin', 'etc', 'passwd', 'work', 'proj'];
  names.push('climb', 'climb2', 'parent', 'hostabs', 'hostroot', 'procroot', 'ro', 'dir');
  names.push('outside', 'secret', 'file', 'loopa', 'tmplink', 'tmp', 'sub', 'f', 'workabs');
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const counts = { host: 0, device: 0, glue: 0, error: 0 };
  for (let i = 0; i < 3000; i++) {
    const path = `/${Array.from({ length: 1 + rand(8) }, () => names[rand(names.length)]).join('/')}`;
    const follow = rand(2) === 0;
    let n: Awaited<ReturnType<ViewTable['resolve']>>;
    try {
      n = await table.resolve(path, { follow });
    } catch (e) {
      if (!(e instanceof ViewError)) throw e;
      counts.error++;
      continue;
    }
    counts[n.where]++;
    if (n.where !== 'host') continue;
    if (!inside(n.host, f.roots)) t.fail(`${path} reached ${n.host}`);
    if (n.st.isFile() && readFileSync(n.host, 'utf8') === 'SECRET')
      t.fail(`${path} read the secret`);
    const p = await table
      .resolveParent(path, { dot: 'A', dotdot: 'B', root: 'C', busy: 'D' })
      .catch(() => null);
    if (p?.where === 'entry' && !inside(p.host, f.roots)) t.fail(`${path}'s entry is ${p.host}`);
  }
  t.ok(counts.host > 500 && counts.device > 50 && counts.error > 50, JSON.stringify(counts));
});

t.test('readlink and readdir', async (t) => {
  const f = fixture(t);
  const s = f.server;
  t.same(await ask(s, { op: 'readlink', path: '/abs' }), { ok: true, target: '/etc/passwd' });
  t.same(await ask(s, { op: 'readlink', path: '/dir/../up' }), {
    ok: true,
    target: '../../../../../../../../etc/passwd',
  });
  t.equal(await errno(s, { op: 'readlink', path: '/file' }), 'EINVAL');
  t.equal(await errno(s, { op: 'readlink', path: '/bin/' }), 'EINVAL');
  t.equal(await errno(s, { op: 'readlink', path: '/nope' }), 'ENOENT');
  t.same(await ask(s, { op: 'readlink', path: '/proc/self/exe' }), {
    ok: true,
    device: '/proc/self/exe',
  });

  const r = await ask(s, { op: 'readdir', path: '/' });
  const entries = r.entries as { name: string; ino: number; type: number }[];
  const byName = new Map(entries.map((e) => [e.name, e]));
  t.notOk(byName.has('.') || byName.has('..'), 'no . or ..');
  t.match(byName.get('file'), { ino: Number(lstatSync(join(f.sys, 'file')).ino), type: 8 });
  t.match(byName.get('bin'), { type: 10 });
  t.match(byName.get('dir'), { type: 4 });
  for (const m of ['ro', 'work', 'tmp', 'proc', 'dev']) {
    t.match(byName.get(m), { type: 4 }, `mount point ${m} is listed`);
    t.ok(byName.get(m)!.ino > 0);
  }
  t.equal(byName.get('ro')!.ino, Number(statSync(f.ro).ino), 'a bind shows its own inode');
  t.match(await ask(s, { op: 'readdir', path: '/work' }), {
    entries: [{ name: 'proj', ino: Number(statSync(f.proj).ino), type: 4 }],
  });
  t.equal(await errno(s, { op: 'readdir', path: '/file' }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'readdir', path: '/nope' }), 'ENOENT');
  t.same(await ask(s, { op: 'readdir', path: '/tmplink' }), { ok: true, device: '/tmp/x' });

  const big = join(f.sys, 'big');
  mkdirSync(big);
  for (let i = 0; i < 20_000; i++) closeSync(openSync(join(big, `entry-${i}`), 'w'));
  const t0 = performance.now();
  const listed = await ask(s, { op: 'readdir', path: '/big' });
  const ms = performance.now() - t0;
  t.equal((listed.entries as unknown[]).length, 20_000);
  t.comment(`20,000 entries listed in ${ms.toFixed(0)} ms`);
  t.ok(ms < 3000, 'a 20k-entry directory lists in reasonable time');
});

t.test('open: content, chunks, have, creat/excl/trunc/directory/nofollow', async (t) => {
  const f = fixture(t);
  const s = f.server;
  const read = (path: string, have: string | null = null, flags: string[] = ['read']) =>
    all(s, { op: 'open', path, flags, mode: 0o644, have } as Req);

  const small = await read('/abs');
  const head = small[0] as Record<string, unknown>;
  t.match(head, { ok: true, node: { where: 'host', path: '/etc/passwd' }, content: true });
  t.equal(head.key, contentKey(statSync(join(f.sys, 'etc/passwd'), { bigint: true })));
  t.same(
    small.slice(1).map((m) => (m as ViewChunk).end),
    [true],
  );
  t.equal(content(small).toString(), 'view passwd\n');
  // The read moved atime, which is not part of the key.
  t.match(
    await read('/abs', head.key as string),
    [{ key: head.key, content: false }],
    'have: no content',
  );
  t.equal((await read('/abs', head.key as string)).length, 1);
  t.match(await read('/empty'), [{ ok: true, content: false }]);
  const dirMode = statSync(join(f.sys, 'dir')).mode;
  t.match(await read('/dir'), [{ ok: true, content: false, node: { st: { mode: dirMode } } }]);
  t.match(await read('/work'), [{ ok: true, content: false }], 'a made-up directory opens');

  const data = Buffer.alloc(VIEW_CHUNK * 2 + 12345);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  writeFileSync(join(f.sys, 'big'), data);
  const msgs = await read('/big');
  const chunks = msgs.slice(1) as ViewChunk[];
  t.same(
    chunks.map((c) => [c.data.length, c.end]),
    [
      [VIEW_CHUNK, false],
      [VIEW_CHUNK, false],
      [12345, true],
    ],
  );
  t.ok(content(msgs).equals(data), 'content reassembles');
  writeFileSync(join(f.sys, 'exact'), data.subarray(0, VIEW_CHUNK));
  t.same(
    (await read('/exact'))
      .slice(1)
      .map((c) => [(c as ViewChunk).data.length, (c as ViewChunk).end]),
    [
      [VIEW_CHUNK, false],
      [0, true],
    ],
  );
  // Stopping early closes the host file.
  const fds = readdirSync('/proc/self/fd').length;
  for await (const m of s.handle({
    id: 1,
    op: 'open',
    path: '/big',
    flags: ['read'],
    mode: 0,
    have: null,
  })) {
    if ('data' in m) break;
  }
  t.equal(readdirSync('/proc/self/fd').length, fds, 'no fd left open');

  // A write-only open still gets the content (the device's working copy starts from it).
  t.equal(content(await read('/file', null, ['write'])).toString(), 'hello');
  // A writer's O_TRUNC: no content (the device starts empty), and the host file keeps its own
  // until the write-back replaces it.
  const trunc = await read('/file', null, ['write', 'trunc']);
  t.match(trunc, [{ ok: true, content: false }]);
  t.equal(readFileSync(join(f.sys, 'file'), 'utf8'), 'hello', 'truncated with the write-back');

  const made = await read('/dir/new', null, ['write', 'creat']);
  t.match(made, [{ ok: true, content: false, node: { path: '/dir/new', st: { size: 0 } } }]);
  t.ok(statSync(join(f.sys, 'dir/new')).isFile());
  t.equal(statSync(join(f.sys, 'dir/new')).mode & 0o600, 0o600);
  t.match(await read('/dir/new', null, ['write', 'creat', 'excl']), [
    { ok: false, errno: 'EEXIST' },
  ]);
  t.match(
    await read('/abs', null, ['creat', 'excl']),
    [{ errno: 'EEXIST' }],
    'excl: a link is there',
  );
  t.match(await read('/dangling', null, ['write', 'creat']), [
    { ok: true, node: { path: '/nothere' } },
  ]);
  t.ok(statSync(join(f.sys, 'nothere')).isFile(), 'creat through a dangling link makes the target');
  t.match(await read('/dir', null, ['creat']), [{ errno: 'EISDIR' }]);
  t.match(await read('/newdir/', null, ['write', 'creat']), [{ errno: 'EISDIR' }]);
  t.match(await read('/dir/.', null, ['creat']), [{ errno: 'EISDIR' }]);
  t.match(await read('/x', null, ['creat', 'directory']), [{ errno: 'EINVAL' }]);
  t.match(await read('/nodir/x', null, ['write', 'creat']), [{ errno: 'ENOENT' }]);
  t.match(await read('/file', null, ['directory']), [{ errno: 'ENOTDIR' }]);
  t.match(await read('/abs', null, ['nofollow']), [{ errno: 'ELOOP' }]);
  t.match(await read('/bin', null, ['nofollow', 'directory']), [{ errno: 'ENOTDIR' }]);
  t.match(await read('/dir', null, ['write']), [{ errno: 'EISDIR' }]);
  t.match(await read('/file/', null, ['read']), [{ errno: 'ENOTDIR' }]);
  t.match(await read('/nope'), [{ errno: 'ENOENT' }]);
  t.match(await read('/tmp/f', null, ['write', 'creat']), [{ ok: true, device: '/tmp/f' }]);

  t.match(await read('/ro/file'), [{ ok: true, content: true }]);
  t.match(await read('/ro/file', null, ['write']), [{ errno: 'EROFS' }]);
  t.match(await read('/ro/file', null, ['read', 'trunc']), [{ errno: 'EROFS' }]);
  t.match(await read('/ro/new', null, ['write', 'creat']), [{ errno: 'EROFS' }]);
  t.match(
    await read('/ro/file', null, ['read', 'creat']),
    [{ ok: true }],
    'creat of an existing file',
  );

  execFileSync('mkfifo', [join(f.sys, 'fifo')]);
  t.match(
    await read('/fifo', null, ['read']),
    [{ ok: true, content: false }],
    'a fifo is not opened',
  );
});

t.test(
  'write-back: a new file renamed over the old after the last piece, host clock',
  async (t) => {
    const f = fixture(t);
    const s = f.server;
    const file = join(f.sys, 'file');
    chmodSync(file, 0o640);
    const xfd = openSync(file, 'r');
    setXattr(xfd, 'user.tether-test', Buffer.from('kept'));
    closeSync(xfd);
    const before = statSync(file, { bigint: true });
    const old = readFileSync(file, 'utf8');
    const t0 = BigInt(Date.now() - 1000) * 1_000_000n;
    const w = (offset: number, data: string, truncate: number | null, path = '/file') =>
      ask(s, { op: 'write', path, offset, data: Buffer.from(data), truncate });
    const siblings = () => readdirSync(f.sys).filter((n) => n.includes('.tether-'));
    t.same(await w(0, 'new ', 9), { ok: true }, 'a first piece of two');
    t.equal(readFileSync(file, 'utf8'), old, 'the host file is as it was until the last piece');
    t.equal(siblings().length, 1, 'the new content goes to a file beside it');
    t.equal(
      await errno(s, {
        op: 'write',
        path: '/file',
        offset: 7,
        data: Buffer.from('x'),
        truncate: null,
      }),
      'EINVAL',
      'a piece out of order',
    );
    const r = await w(4, 'words', null);
    const after = statSync(file, { bigint: true });
    t.equal(readFileSync(file, 'utf8'), 'new words');
    t.not(after.ino, before.ino, 'a new inode, renamed over');
    t.same(
      [after.mode & 0o7777n, after.uid, after.gid],
      [0o640n, before.uid, before.gid],
      'mode and owner kept',
    );
    t.same(
      xattrs(file).map(([k, v]) => [k, v.toString()]),
      [['user.tether-test', 'kept']],
      'extended attributes kept',
    );
    t.ok(after.mtimeNs >= t0, 'mtime from the host clock');
    t.match(r, { ok: true, key: contentKey(after), content: false, node: { path: '/file' } });
    t.same(siblings(), [], 'nothing left beside it');
    // A write-back that stops half-way is dropped when the next one of the file starts.
    await w(0, 'torn', 100);
    const whole = await w(0, 'whole', 5);
    t.match(whole, { ok: true, key: contentKey(statSync(file, { bigint: true })) }, 'one piece');
    t.equal(readFileSync(file, 'utf8'), 'whole');
    t.same(siblings(), [], 'the abandoned piece is gone');
    // Another name of the same inode: written in place, so both names see it.
    linkSync(file, join(f.sys, 'other-name'));
    const linked = statSync(file, { bigint: true });
    await w(0, 'both', 4);
    t.equal(statSync(file, { bigint: true }).ino, linked.ino, 'a hard-linked file keeps its inode');
    t.equal(readFileSync(join(f.sys, 'other-name'), 'utf8'), 'both');
    t.equal(
      await errno(s, {
        op: 'write',
        path: '/dir',
        offset: 0,
        data: Buffer.from('x'),
        truncate: null,
      }),
      'EISDIR',
    );
    t.equal(
      await errno(s, {
        op: 'write',
        path: '/ro/file',
        offset: 0,
        data: Buffer.from('x'),
        truncate: null,
      }),
      'EROFS',
    );
    t.equal(
      await errno(s, {
        op: 'write',
        path: '/nope',
        offset: 0,
        data: Buffer.from('x'),
        truncate: null,
      }),
      'ENOENT',
    );
  },
);

t.test('access, mkdir, mknod', async (t) => {
  const f = fixture(t);
  const s = f.server;
  t.equal(await errno(s, { op: 'access', path: '/bin/tool', mode: 1, follow: true }), 'ok');
  t.equal(await errno(s, { op: 'access', path: '/file', mode: 1, follow: true }), 'EACCES');
  t.equal(await errno(s, { op: 'access', path: '/nope', mode: 0, follow: true }), 'ENOENT');
  t.equal(await errno(s, { op: 'access', path: '/dangling', mode: 0, follow: false }), 'ok');
  t.equal(await errno(s, { op: 'access', path: '/dangling', mode: 0, follow: true }), 'ENOENT');
  t.equal(await errno(s, { op: 'access', path: '/ro/file', mode: 4, follow: true }), 'ok');
  t.equal(await errno(s, { op: 'access', path: '/ro/file', mode: 2, follow: true }), 'EROFS');
  t.equal(await errno(s, { op: 'access', path: '/work', mode: 5, follow: true }), 'ok');
  t.equal(await errno(s, { op: 'access', path: '/file', mode: 8, follow: true }), 'EINVAL');
  t.same(await ask(s, { op: 'access', path: '/dev/null', mode: 6, follow: true }), {
    ok: true,
    device: '/dev/null',
  });

  t.equal(await errno(s, { op: 'mkdir', path: '/dir/m', mode: 0o750 }), 'ok');
  t.equal(statSync(join(f.sys, 'dir/m')).mode & 0o7777, 0o750);
  t.equal(await errno(s, { op: 'mkdir', path: '/dir/m2/', mode: 0o755 }), 'ok');
  t.equal(await errno(s, { op: 'mkdir', path: '/dir/m', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/dir/..', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/dir/.', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/abs', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/work', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/work/proj', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/work/other', mode: 0o755 }), 'EROFS');
  t.equal(await errno(s, { op: 'mkdir', path: '/no/x', mode: 0o755 }), 'ENOENT');
  t.equal(await errno(s, { op: 'mkdir', path: '/file/x', mode: 0o755 }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'mkdir', path: '/ro/x', mode: 0o755 }), 'EROFS');
  t.equal(await errno(s, { op: 'mkdir', path: '/ro/dir', mode: 0o755 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mkdir', path: '/work/proj/new', mode: 0o755 }), 'ok');
  t.ok(statSync(join(f.proj, 'new')).isDirectory());
  t.same(await ask(s, { op: 'mkdir', path: '/tmplink/../y', mode: 0o755 }), {
    ok: true,
    device: '/tmp/y',
  });

  t.equal(await errno(s, { op: 'mknod', path: '/reg', mode: 0o100640 }), 'ok');
  t.ok(statSync(join(f.sys, 'reg')).isFile());
  t.equal(await errno(s, { op: 'mknod', path: '/reg0', mode: 0o640 }), 'ok');
  t.equal(await errno(s, { op: 'mknod', path: '/fifo', mode: 0o010640 }), 'ok');
  const fifo = statSync(join(f.sys, 'fifo'));
  t.ok(fifo.isFIFO());
  t.equal(fifo.mode & 0o777, statSync(join(f.sys, 'reg')).mode & 0o777, 'the umask as for files');
  t.equal(await errno(s, { op: 'mknod', path: '/fifo', mode: 0o010640 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mknod', path: '/reg', mode: 0o100640 }), 'EEXIST');
  t.equal(await errno(s, { op: 'mknod', path: '/chr', mode: 0o020640 }), 'EPERM');
  t.equal(await errno(s, { op: 'mknod', path: '/sock', mode: 0o140640 }), 'EPERM');
  t.equal(await errno(s, { op: 'mknod', path: '/lnk', mode: 0o120640 }), 'EINVAL');
  t.equal(await errno(s, { op: 'mknod', path: '/new/', mode: 0o100640 }), 'ENOENT');
  t.equal(await errno(s, { op: 'mknod', path: '/ro/n', mode: 0o100640 }), 'EROFS');
});

t.test('a change names the canonical paths it changed', async (t) => {
  const f = fixture(t);
  const s = f.server;
  writeFileSync(join(f.sys, 'usr/bin/gone'), 'x');
  t.same(await ask(s, { op: 'unlink', path: '/bin/gone' }), {
    ok: true,
    changed: ['/usr/bin/gone'],
  });
  t.same(
    await ask(s, {
      op: 'rename',
      from: '/bin/tool',
      to: '/dir/tool',
      noreplace: false,
      exchange: false,
    }),
    { ok: true, changed: ['/usr/bin/tool', '/dir/tool'] },
  );
  t.same(await ask(s, { op: 'chmod', path: '/bin', mode: 0o755, follow: true }), {
    ok: true,
    changed: ['/usr/bin'],
  });
  t.same(await ask(s, { op: 'mkdir', path: '/bin/sub', mode: 0o755 }), {
    ok: true,
    changed: ['/usr/bin/sub'],
  });
});

t.test('unlink, rmdir, rename, link, symlink', async (t) => {
  const f = fixture(t);
  const s = f.server;
  t.equal(await errno(s, { op: 'unlink', path: '/abs' }), 'ok');
  t.ok(statSync(join(f.sys, 'etc/passwd')).isFile(), 'unlink removes the link, not its target');
  t.equal(await errno(s, { op: 'unlink', path: '/dir' }), 'EISDIR');
  t.equal(await errno(s, { op: 'unlink', path: '/dir/.' }), 'EISDIR');
  t.equal(await errno(s, { op: 'unlink', path: '/' }), 'EISDIR');
  t.equal(await errno(s, { op: 'unlink', path: '/file/' }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'unlink', path: '/bin/' }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'unlink', path: '/dir/' }), 'EISDIR');
  t.equal(await errno(s, { op: 'unlink', path: '/nope' }), 'ENOENT');
  t.equal(await errno(s, { op: 'unlink', path: '/ro/file' }), 'EROFS');
  t.equal(await errno(s, { op: 'unlink', path: '/work/proj' }), 'EISDIR');
  t.equal(await errno(s, { op: 'unlink', path: '/work/proj/f' }), 'ok');

  t.equal(await errno(s, { op: 'rmdir', path: '/dir' }), 'ENOTEMPTY');
  t.equal(await errno(s, { op: 'rmdir', path: '/dir/sub' }), 'ok');
  t.equal(await errno(s, { op: 'rmdir', path: '/dir/.' }), 'EINVAL');
  t.equal(await errno(s, { op: 'rmdir', path: '/dir/..' }), 'ENOTEMPTY');
  t.equal(await errno(s, { op: 'rmdir', path: '/' }), 'EBUSY');
  t.equal(await errno(s, { op: 'rmdir', path: '/work/proj' }), 'EBUSY');
  t.equal(await errno(s, { op: 'rmdir', path: '/work' }), 'EBUSY');
  t.equal(await errno(s, { op: 'rmdir', path: '/file' }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'rmdir', path: '/bin' }), 'ENOTDIR');
  t.equal(await errno(s, { op: 'rmdir', path: '/ro/dir' }), 'EROFS');
  t.same(await ask(s, { op: 'rmdir', path: '/tmp/d' }), { ok: true, device: '/tmp/d' });

  const mv = (from: string, to: string, noreplace = false, exchange = false) =>
    errno(s, { op: 'rename', from, to, noreplace, exchange });
  t.equal(await mv('/file', '/dir/moved'), 'ok');
  t.equal(readFileSync(join(f.sys, 'dir/moved'), 'utf8'), 'hello');
  t.equal(await mv('/dir/moved', '/etc/passwd', true), 'EEXIST');
  t.equal(await mv('/dir/moved', '/etc/passwd', false, true), 'EINVAL');
  t.equal(await mv('/dir/moved', '/etc/passwd', true, true), 'EINVAL');
  t.equal(await mv('/dir/moved', '/work/proj/x'), 'EXDEV');
  t.equal(await mv('/dir/moved', '/tmp/x'), 'EXDEV');
  t.equal(await mv('/work/proj', '/work/p2'), 'EBUSY');
  t.equal(await mv('/dir/.', '/d2'), 'EBUSY');
  t.equal(await mv('/dir/moved/', '/d2'), 'ENOTDIR');
  t.equal(await mv('/dir/moved', '/d2/'), 'ENOTDIR');
  t.equal(await mv('/nope', '/d2'), 'ENOENT');
  t.equal(await mv('/dir/moved', '/etc/dir'), 'EISDIR');
  t.equal(await mv('/dir/moved', '/dir'), 'ENOTEMPTY', 'onto its own directory');
  t.equal(await mv('/dir', '/dir/moved'), 'EINVAL');
  t.equal(await mv('/ro/file', '/ro/f2'), 'EROFS');
  t.equal(await mv('/dir/moved', '/etc/passwd'), 'ok', 'replaces');
  t.equal(readFileSync(join(f.sys, 'etc/passwd'), 'utf8'), 'hello');

  const ln = (from: string, to: string, follow = false) =>
    errno(s, { op: 'link', from, to, follow });
  t.equal(await ln('/etc/passwd', '/hard'), 'ok');
  t.equal(statSync(join(f.sys, 'hard')).ino, statSync(join(f.sys, 'etc/passwd')).ino);
  t.equal(await ln('/up', '/hardlink'), 'ok');
  t.ok(lstatSync(join(f.sys, 'hardlink')).isSymbolicLink(), 'without follow the link itself');
  t.equal(await ln('/up', '/hardtarget', true), 'ok');
  t.equal(statSync(join(f.sys, 'hardtarget')).nlink, 3, 'with follow its target');
  t.equal(await ln('/dir', '/d3'), 'EPERM');
  t.equal(await ln('/etc/passwd', '/hard'), 'EEXIST');
  t.equal(await ln('/etc/passwd', '/dir/.'), 'EEXIST');
  t.equal(await ln('/etc/passwd', '/new/'), 'ENOENT');
  t.equal(await ln('/etc/passwd', '/work/proj/h'), 'EXDEV');
  t.equal(await ln('/etc/passwd', '/tmp/h'), 'EXDEV');
  t.equal(await ln('/nope', '/h'), 'ENOENT');
  t.equal(await ln('/ro/file', '/ro/h'), 'EROFS');

  const sl = (target: string, path: string) => errno(s, { op: 'symlink', target, path });
  t.equal(await sl('/etc/passwd', '/dir/sl'), 'ok');
  t.equal(lstatSync(join(f.sys, 'dir/sl')).isSymbolicLink(), true);
  t.same(await ask(s, { op: 'readlink', path: '/dir/sl' }), { ok: true, target: '/etc/passwd' });
  t.equal(await sl('x', '/dir/sl'), 'EEXIST');
  t.equal(await sl('x', '/dir/.'), 'EEXIST');
  t.equal(await sl('x', '/new/'), 'ENOENT');
  t.equal(await sl('x', '/hard/'), 'EEXIST');
  t.equal(await sl('x', '/ro/sl'), 'EROFS');
  t.equal(await sl('x', '/ro/file'), 'EEXIST');
  t.same(await ask(s, { op: 'symlink', target: 'x', path: '/tmp/sl' }), {
    ok: true,
    device: '/tmp/sl',
  });
});

t.test('chmod, chown, utimens, truncate, statfs', async (t) => {
  const f = fixture(t);
  const s = f.server;
  const file = join(f.sys, 'file');
  t.equal(await errno(s, { op: 'chmod', path: '/file', mode: 0o4711, follow: true }), 'ok');
  t.equal(statSync(file).mode & 0o7777, 0o4711);
  t.equal(await errno(s, { op: 'chmod', path: '/abs', mode: 0o600, follow: true }), 'ok');
  t.equal(statSync(join(f.sys, 'etc/passwd')).mode & 0o7777, 0o600, 'follows the link in the view');
  t.equal(await errno(s, { op: 'chmod', path: '/abs', mode: 0o600, follow: false }), 'EOPNOTSUPP');
  t.equal(await errno(s, { op: 'chmod', path: '/ro/file', mode: 0o600, follow: true }), 'EROFS');
  t.equal(await errno(s, { op: 'chmod', path: '/work', mode: 0o700, follow: true }), 'EROFS');
  t.equal(await errno(s, { op: 'chmod', path: '/nope', mode: 0o600, follow: true }), 'ENOENT');

  const root = process.getuid?.() === 0;
  if (root) {
    t.equal(await errno(s, { op: 'chown', path: '/file', uid: 1234, gid: -1, follow: true }), 'ok');
    t.match(statSync(file), { uid: 1234, gid: statSync(f.sys).gid });
    t.equal(await errno(s, { op: 'chown', path: '/abs', uid: 99, gid: 98, follow: false }), 'ok');
    t.match(lstatSync(join(f.sys, 'abs')), { uid: 99, gid: 98 }, 'the link itself');
    t.not(statSync(join(f.sys, 'etc/passwd')).uid, 99);
  }
  t.equal(await errno(s, { op: 'chown', path: '/ro/file', uid: 1, gid: 1, follow: true }), 'EROFS');
  t.equal(
    await errno(s, { op: 'chown', path: '/file', uid: 2 ** 40, gid: 1, follow: true }),
    'EINVAL',
  );

  const times = () => {
    const st = lstatSync(file, { bigint: true });
    return [st.atimeNs, st.mtimeNs];
  };
  const ut = (atime: unknown, mtime: unknown, path = '/file', follow = true) =>
    errno(s, { op: 'utimens', path, atime, mtime, follow } as Req);
  t.equal(await ut([1_700_000_000, 123_456_789], [1_600_000_000, 987_654_321]), 'ok');
  t.same(times(), [1_700_000_000_123_456_789n, 1_600_000_000_987_654_321n], 'exact to the ns');
  t.equal(await ut([1_500_000_000, 0], [1_400_000_000, 0]), 'ok');
  t.same(times(), [1_500_000_000_000_000_000n, 1_400_000_000_000_000_000n], 'whole seconds');
  t.equal(await ut('omit', [5, 5]), 'ok');
  t.same(times(), [1_500_000_000_000_000_000n, 5_000_000_005n], 'omit keeps atime');
  t.equal(await ut([-2, 500_000_000], 'omit'), 'ok');
  t.same(times(), [-1_500_000_000n, 5_000_000_005n], 'negative times');
  const before = BigInt(Date.now() - 2000) * 1_000_000n;
  t.equal(await ut('now', 'now'), 'ok');
  t.ok(
    times().every((x) => x >= before),
    'now',
  );
  t.equal(await ut('omit', 'omit', '/nope'), 'ENOENT');
  t.equal(await ut('omit', 'omit'), 'ok');
  t.equal(await ut([1, 0], [2, 0], '/abs', false), 'ok');
  t.equal(lstatSync(join(f.sys, 'abs')).mtimeMs, 2000, 'the link itself');
  t.not(lstatSync(join(f.sys, 'etc/passwd')).mtimeMs, 2000);
  t.equal(await ut([1, 0], [2, 0], '/ro/file'), 'EROFS');

  const tr = (path: string, size: number) => errno(s, { op: 'truncate', path, size });
  t.equal(await tr('/abs', 4), 'ok');
  t.equal(readFileSync(join(f.sys, 'etc/passwd'), 'utf8'), 'view');
  t.equal(await tr('/file', 10), 'ok');
  t.equal(statSync(file).size, 10);
  t.equal(await tr('/dir', 0), 'EISDIR');
  t.equal(await tr('/ro/file', 0), 'EROFS');
  t.equal(await tr('/nope', 0), 'ENOENT');

  const fs1 = await ask(s, { op: 'statfs', path: '/etc' });
  t.match(fs1, { ok: true, statfs: { namelen: 255, flags: 0x20 } });
  t.ok((fs1.statfs as { bsize: number }).bsize > 0);
  t.match(await ask(s, { op: 'statfs', path: '/ro/file' }), { statfs: { flags: 0x21 } });
  t.match(await ask(s, { op: 'statfs', path: '/work' }), { ok: true });
  t.same(await ask(s, { op: 'statfs', path: '/proc' }), { ok: true, device: '/proc' });
});

const notRoot = process.getuid?.() !== 0 && 'needs root to run a child as nobody';
t.test(
  'permission errors come from the host kernel (unprivileged user)',
  { skip: notRoot },
  async (t) => {
    const f = fixture(t);
    chmodSync(f.root, 0o755);
    writeFileSync(join(f.sys, 'private'), 'p', { mode: 0o600 });
    writeFileSync(join(f.sys, 'shared'), 's', { mode: 0o666 });
    chmodSync(join(f.sys, 'shared'), 0o666);
    writeFileSync(join(f.sys, 'writeonly'), 'w');
    chmodSync(join(f.sys, 'writeonly'), 0o222);
    const server = fileURLToPath(new URL('../../client/view-server.ts', import.meta.url));
    const script = `
    import { ViewServer } from ${JSON.stringify(server)};
    const s = new ViewServer(${JSON.stringify(f.mounts)});
    const out = [];
    for (const req of JSON.parse(process.argv[1])) {
      for await (const m of s.handle({ id: 1, ...req })) {
        if (!('data' in m)) out.push(m.ok ? ('content' in m ? 'ok:' + m.content : 'ok') : m.errno);
      }
    }
    process.stdout.write(JSON.stringify(out));
  `;
    const reqs: Req[] = [
      { op: 'open', path: '/private', flags: ['read'], mode: 0, have: null },
      { op: 'open', path: '/shared', flags: ['write'], mode: 0, have: null },
      { op: 'open', path: '/writeonly', flags: ['write'], mode: 0, have: null },
      { op: 'access', path: '/private', mode: 4, follow: true },
      { op: 'mkdir', path: '/etc/x', mode: 0o755 },
      { op: 'chown', path: '/shared', uid: 65534, gid: 65534, follow: true },
      { op: 'chmod', path: '/shared', mode: 0o600, follow: true },
      { op: 'utimens', path: '/shared', atime: [1, 0], mtime: [1, 0], follow: true },
      { op: 'utimens', path: '/shared', atime: [1, 5], mtime: [1, 5], follow: true },
      { op: 'utimens', path: '/shared', atime: 'now', mtime: 'now', follow: true },
      { op: 'truncate', path: '/private', size: 0 },
    ];
    const got = await new Promise<string>((resolve, reject) => {
      const p = spawn(
        process.execPath,
        ['--input-type=module', '-e', script, JSON.stringify(reqs)],
        {
          uid: 65534,
          gid: 65534,
          cwd: '/',
        },
      );
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d));
      p.stderr.on('data', (d: Buffer) => (err += d));
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(err))));
    });
    t.same(JSON.parse(got), [
      'EACCES',
      'ok:true',
      'ok:false',
      'EACCES',
      'EACCES',
      'EPERM',
      'EPERM',
      'EPERM',
      'EPERM',
      'ok',
      'EACCES',
    ]);
  },
);

/** Reads a stream's replies, gathering chunk data per id. */
function collect(stream: Duplex) {
  const replies = new Map<number, Record<string, unknown>>();
  const data = new Map<number, Buffer[]>();
  const done = (async () => {
    for await (const m of new MessageReader(stream)) {
      const r = parseViewReply(m);
      if ('data' in r) {
        const list = data.get(r.id) ?? [];
        list.push(Buffer.from(r.data));
        data.set(r.id, list);
      } else replies.set(r.id, r);
    }
  })();
  return { replies, data, done };
}

t.test('serve: concurrent requests over a stream, backpressure, clean end', async (t) => {
  const f = fixture(t);
  const big = Buffer.alloc(8 * VIEW_CHUNK + 3, 0x5a);
  writeFileSync(join(f.sys, 'big'), big);
  const [device, host] = duplexPair();
  const served = f.server.serve(host);
  writeMessage(device, { id: 1, op: 'open', path: '/big', flags: ['read'], mode: 0, have: null });
  await new Promise((r) => setTimeout(r, 200));
  t.ok(host.writableLength <= 2 * VIEW_CHUNK + 65536, 'an unread reader holds the content back');
  const got = collect(device);
  for (let id = 2; id < 200; id++) {
    const path = id % 3 === 0 ? '/abs' : id % 3 === 1 ? '/nope' : '/tmp/x';
    writeMessage(device, { id, op: 'lookup', path, follow: true });
  }
  writeMessage(device, {
    id: 200,
    op: 'open',
    path: '/etc/passwd',
    flags: ['read'],
    mode: 0,
    have: null,
  });
  device.end();
  await got.done;
  await served;
  t.equal(got.replies.size, 200, 'every request answered');
  t.ok(Buffer.concat(got.data.get(1)!).equals(big), 'big content intact');
  t.equal(Buffer.concat(got.data.get(200)!).toString(), 'view passwd\n');
  t.match(got.replies.get(3), { ok: true, node: { path: '/etc/passwd' } });
  t.match(got.replies.get(4), { ok: false, errno: 'ENOENT' });
  t.match(got.replies.get(5), { ok: true, node: { where: 'device', path: '/tmp/x' } });
  t.ok(host.writableEnded, 'the host ended its side');
});

t.test('serve: a malformed request destroys the stream', async (t) => {
  const f = fixture(t);
  const [device, host] = duplexPair();
  const served = f.server.serve(host);
  device.on('error', () => {});
  writeMessage(device, { id: 1, op: 'lookup', path: 'relative', follow: true });
  const e = await served.catch((x: unknown) => x);
  t.ok(e instanceof TransportError && e.code === ErrorCode.MESSAGE_ERROR, String(e));
  t.ok(host.destroyed);
});

t.test(
  'never served: hidden host paths; on read-only mounts, what others may not read',
  async (t) => {
    const f = fixture(t);
    mkdirSync(join(f.sys, 'keys/deeper'), { recursive: true });
    writeFileSync(join(f.sys, 'keys/id'), 'KEY');
    writeFileSync(join(f.ro, 'private'), 'mine only', { mode: 0o600 });
    mkdirSync(join(f.ro, 'closed'), { mode: 0o700 });
    writeFileSync(join(f.proj, 'private'), 'the user’s own', { mode: 0o600 });
    const s = new ViewServer(f.mounts, [join(f.sys, 'keys')]);
    const open = (path: string) =>
      errno(s, { op: 'open', path, flags: ['read'], mode: 0, have: null });
    t.equal(await open('/keys/id'), 'EACCES', 'a hidden file');
    t.equal(await errno(s, { op: 'lookup', path: '/keys/deeper', follow: true }), 'EACCES');
    t.equal(await errno(s, { op: 'readdir', path: '/keys' }), 'EACCES', 'a hidden directory');
    t.equal(await open('/ro/private'), 'EACCES', 'a 0600 file of a read-only mount');
    t.equal(await errno(s, { op: 'readdir', path: '/ro/closed' }), 'EACCES', 'a 0700 directory');
    t.equal(await open('/ro/file'), 'ok', 'a world-readable one');
    t.equal(await open('/work/proj/private'), 'ok', 'a writable tree serves its own 0600 files');
  },
);
