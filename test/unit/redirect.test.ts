// The syscall handlers of daemon/redirect/ against stops made up here: no tracee, no root.
// A stop's memory is a map of buffers, the host is a table of paths behind a fake client
// that counts what it is asked; the handlers, the Redirector and its memories are the real
// ones.
import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import pino from 'pino';
import t, { type Test } from 'tap';
import { ARCH_ABIS } from '../../arch/abi.ts';
import { AT } from '../../arch/fcntl.ts';
import { ContentCache } from '../../daemon/cache.ts';
import { Redirector } from '../../daemon/redirect/redirector.ts';
import { type Action, type Proc, SyscallStop, type Task } from '../../daemon/syscall-stop.ts';
import { type ViewClient, ViewError, type ViewRequestBody } from '../../daemon/view-client.ts';
import { ViewMemory } from '../../daemon/view-memory.ts';
import type { DirEntry, ViewMount, ViewNode, ViewStat } from '../../transport/view.ts';

const E = constants.errno;
const X86 = ARCH_ABIS.x86_64;
const BUF = 0x7000_0000n;

function stat(ino: number, mode: number, size = 0): ViewStat {
  return {
    dev: 1,
    ino,
    mode,
    nlink: 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    size,
    blksize: 4096,
    blocks: 0,
    atime: [1, 0],
    mtime: [2, 0],
    ctime: [3, 0],
  };
}

/** A host of a few files; every question it is asked is counted by op. */
class FakeHost {
  readonly asked: string[] = [];
  readonly files = new Map<string, ViewStat>([
    ['/', stat(1, 0o40755)],
    ['/ro', stat(2, 0o40755)],
    ['/ro/file', stat(3, 0o100644, 5)],
    ['/ro/link', stat(4, 0o120777, 4)],
    ['/w', stat(5, 0o40755)],
    ['/w/a', stat(6, 0o100644, 7)],
  ]);
  readonly links = new Map([['/ro/link', 'file']]);

  node(asked: string, follow: boolean): ViewNode {
    const path = posix.normalize(asked).replace(/(.)\/$/, '$1');
    const target = follow && this.links.get(path);
    const p = target ? `${path.slice(0, path.lastIndexOf('/'))}/${target}` : path;
    const st = this.files.get(p);
    if (!st) throw new ViewError('ENOENT');
    return { where: 'host', path: p, st };
  }

  client(): ViewClient {
    const c = {
      gate: () => null,
      lookup: async (path: string, follow: boolean) => {
        this.asked.push(`lookup ${path}`);
        return this.node(path, follow);
      },
      readlink: async (path: string) => {
        this.asked.push(`readlink ${path}`);
        const t = this.links.get(path);
        if (t === undefined) throw new ViewError(this.files.has(path) ? 'EINVAL' : 'ENOENT');
        return t;
      },
      simple: async (body: ViewRequestBody) => {
        this.asked.push(`${body.op} ${'path' in body ? body.path : ''}`);
        if (body.op === 'access' && body.path.startsWith('/ro') && body.mode & 2)
          throw new ViewError('EROFS');
        this.node((body as { path: string }).path, true);
        return null;
      },
      change: async (body: ViewRequestBody) => {
        this.asked.push(`${body.op} ${'path' in body ? body.path : ''}`);
        if (body.op === 'mkdir') this.files.set(body.path, stat(99, 0o40755));
        return 'path' in body ? [body.path] : [];
      },
      readdir: async (path: string): Promise<DirEntry[]> => {
        this.asked.push(`readdir ${path}`);
        return [...this.files]
          .filter(([p]) => p !== path && p.slice(0, p.lastIndexOf('/') || 1) === path)
          .map(([p, st]) => ({ name: p.slice(p.lastIndexOf('/') + 1), ino: st.ino, type: 8, st }));
      },
      statfs: async () => {
        throw new ViewError('ENOSYS');
      },
    };
    return c as unknown as ViewClient;
  }
}

/** A stop whose memory is buffers at made-up addresses. */
class FakeStop extends SyscallStop {
  readonly mem = new Map<bigint, Buffer>();
  private next = 0x6000_0000n;

  str(s: string): bigint {
    const at = this.next;
    this.next += 0x1000n;
    this.mem.set(at, Buffer.from(`${s}\0`));
    return at;
  }

  override readString(addr: bigint, max = 4096): Buffer | null {
    const b = this.mem.get(addr);
    if (!b) return null;
    const end = b.indexOf(0);
    return b.subarray(0, Math.min(end < 0 ? b.length : end, max));
  }

  override writeMem(addr: bigint, data: Buffer): void {
    this.mem.set(addr, Buffer.from(data));
    this.written = { addr, data };
  }

  override scratch(data: Buffer): bigint {
    const at = this.next;
    this.next += 0x1000n;
    this.writeMem(at, data);
    return at;
  }
}

function setup(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'tether-redirect-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const host = new FakeHost();
  const mounts: ViewMount[] = [
    { path: '/', device: false, readonly: true },
    { path: '/w', device: false, readonly: false },
    { path: '/tmp', device: true, readonly: false },
  ];
  const r = new Redirector({
    client: host.client(),
    mounts,
    cache: new ContentCache(join(dir, 'cache')),
    scratch: join(dir, 'run'),
    links: {} as never,
    memory: new ViewMemory(),
    owner: { uid: -1, gid: -1 },
    log: pino({ level: 'silent' }),
  });
  t.teardown(() => r.close());
  const proc: Proc = { pid: process.pid, cwd: '/w', exe: '/bin/true', pendingExe: null };
  const task: Task = {
    tid: process.pid,
    proc,
    started: true,
    busy: false,
    exitResult: null,
    lowTop: null,
    mapping: null,
  };
  /** A stop of call `name`; string arguments are put in its memory. */
  const stop = (name: string, args: (bigint | number | string)[]) => {
    const s = new FakeStop(task, X86, X86.syscallNumber(name)!, name, [], 0x7fff_0000n);
    const regs = args.map((a) =>
      typeof a === 'string' ? s.str(a) : BigInt.asUintN(64, BigInt(a)),
    );
    (s as { args: bigint[] }).args = [...regs, 0n, 0n, 0n, 0n, 0n, 0n].slice(0, 6);
    return s;
  };
  const decide = async (s: FakeStop): Promise<Action> => {
    const a = r.onSyscall(s);
    return a instanceof Promise ? await a : a;
  };
  return { host, r, stop, decide };
}

const ret = (v: number): Action => ({ kind: 'return', value: BigInt(v) });

t.test('stat of a read-only host path: the host answers once, the struct is written', async (t) => {
  const { host, stop, decide } = setup(t);
  for (let i = 0; i < 2; i++) {
    const s = stop('newfstatat', [AT.FDCWD, '/ro/file', BUF, 0]);
    t.same(await decide(s), ret(0));
    const b = s.mem.get(BUF)!;
    t.equal(b.readBigUInt64LE(8), 3n, 'st_ino');
    t.equal(b.readUInt32LE(24), 0o100644, 'st_mode');
    t.equal(b.readBigInt64LE(48), 5n, 'st_size');
  }
  t.same(host.asked, ['lookup /ro/file'], 'the second from the read-only memory');
  const lstat = stop('newfstatat', [AT.FDCWD, '/ro/link', BUF, AT.SYMLINK_NOFOLLOW]);
  t.same(await decide(lstat), ret(0));
  t.equal(lstat.mem.get(BUF)!.readUInt32LE(24), 0o120777, 'lstat sees the link');
  const missing = stop('newfstatat', [AT.FDCWD, '/ro/none', BUF, 0]);
  t.same(await decide(missing), ret(-E.ENOENT));
});

t.test(
  'an empty path is ENOENT for every path call; with AT_EMPTY_PATH it is the fd',
  async (t) => {
    const { host, stop, decide } = setup(t);
    for (const [name, args] of [
      ['getxattr', ['', 'user.x', BUF, 16]],
      ['lgetxattr', ['', 'user.x', BUF, 16]],
      ['listxattr', ['', BUF, 16]],
      ['statfs', ['', BUF]],
      ['inotify_add_watch', [3, '', 2]],
      ['chdir', ['']],
      ['access', ['', 0]],
      ['newfstatat', [AT.FDCWD, '', BUF, 0]],
      ['readlink', ['', BUF, 16]],
      ['mkdir', ['', 0o755]],
    ] as const) {
      t.same(await decide(stop(name, [...args])), ret(-E.ENOENT), name);
    }
    t.same(host.asked, [], 'nothing asked of the host');
  },
);

t.test('readlink: a target cut to the buffer, EINVAL for a file, kept for repeats', async (t) => {
  const { host, r, stop, decide } = setup(t);
  const cut = stop('readlink', ['/ro/link', BUF, 2]);
  t.same(await decide(cut), ret(2));
  t.equal(cut.mem.get(BUF)!.toString(), 'fi');
  t.equal(r.fast.stats()!.entries, 0, 'a cut target is not kept for the C table');
  const whole = stop('readlink', ['/ro/link', BUF, 64]);
  t.same(await decide(whole), ret(4));
  t.equal(r.fast.stats()!.entries, 1, 'the whole target is');
  t.same(await decide(stop('readlink', ['/ro/file', BUF, 64])), ret(-E.EINVAL));
  t.same(host.asked, ['readlink /ro/link', 'readlink /ro/file']);
});

t.test('access in a read-only mount: the verdict is kept, W_OK is EROFS', async (t) => {
  const { host, stop, decide } = setup(t);
  for (let i = 0; i < 2; i++) {
    t.same(await decide(stop('access', ['/ro/file', 4])), ret(0));
    t.same(await decide(stop('access', ['/ro/file', 2])), ret(-E.EROFS));
  }
  t.same(host.asked, ['access /ro/file', 'access /ro/file']);
});

t.test('paths that are not as written never go to the C table', async (t) => {
  const { r, stop, decide } = setup(t);
  await decide(stop('newfstatat', [AT.FDCWD, '/ro/../ro/file', BUF, 0]));
  await decide(stop('newfstatat', [AT.FDCWD, '/ro//file', BUF, 0]));
  await decide(stop('newfstatat', [AT.FDCWD, '../ro/file', BUF, 0]));
  t.equal(r.fast.stats()!.entries, 0);
  await decide(stop('newfstatat', [AT.FDCWD, '/ro/file', BUF, 0]));
  t.equal(r.fast.stats()!.entries, 1);
});

t.test('device mounts are the kernel’s: the call runs as written', async (t) => {
  const { host, stop, decide } = setup(t);
  t.same(await decide(stop('newfstatat', [AT.FDCWD, '/tmp/x', BUF, 0])), { kind: 'pass' });
  t.same(host.asked, []);
});

t.test("a writable mount's miss is kept a moment and goes with the run's own change", async (t) => {
  const { host, stop, decide } = setup(t);
  for (let i = 0; i < 2; i++)
    t.same(await decide(stop('newfstatat', [AT.FDCWD, '/w/new', BUF, 0])), ret(-E.ENOENT));
  t.same(host.asked, ['lookup /w/new'], 'the second miss without asking');
  t.same(await decide(stop('mkdir', ['/w/new', 0o755])), ret(0));
  t.same(await decide(stop('newfstatat', [AT.FDCWD, '/w/new', BUF, 0])), ret(0));
  t.same(host.asked, ['lookup /w/new', 'mkdir /w/new', 'lookup /w/new']);
});

t.test('a listed read-only directory answers its missing names', async (t) => {
  const { host, r, stop, decide } = setup(t);
  const s = stop('getdents64', [3, BUF, 4096]);
  await r.listing(s, 3, '/ro');
  t.same(await decide(stop('newfstatat', [AT.FDCWD, '/ro/none', BUF, 0])), ret(-E.ENOENT));
  t.same(await decide(stop('newfstatat', [AT.FDCWD, '/ro/file', BUF, 0])), ret(0));
  t.same(host.asked, ['lookup /ro', 'readdir /ro'], 'neither asked the host');
  // Handed over as written, these name the directory itself, not an entry of it.
  for (const p of ['/ro/.', '/ro/', '/ro/..'])
    t.same(await decide(stop('newfstatat', [AT.FDCWD, p, BUF, 0])), ret(0), p);
});
