// npm run package (scripts/package.ts): one tetherd file per target. The x64 one then runs as
// the device's daemon in a minimal root that holds only it and the C libraries it links, the
// arm64 and armv7 ones as the daemons of emulated arm64 and armv7 devices (test/lib/arm-device.ts)
// whose own files are busybox and those libraries: a passing run proves the executable carries
// the rest (its JavaScript and its native addon) and that every program came through the view.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import pkg from '../../package.json' with { type: 'json' };
import { type ArmArch, armGlibcVersion, armSysroot, startArmDevice } from '../lib/arm-device.ts';
import { elfMachine } from '../lib/elf.ts';
import { changes, execs, looks, procs } from '../lib/path-cases.ts';
import { buildProbe, differential } from '../lib/path-diff.ts';
import { ROOT, startDaemon, tether } from '../lib/tetherd.ts';

const RELEASE = join(ROOT, 'dist/release');
const X64 = join(RELEASE, 'tetherd-linux-x64');
const ARM64 = join(RELEASE, 'tetherd-linux-arm64');
const ARMV7 = join(RELEASE, 'tetherd-linux-armv7');
const ARM64_CLIENT = join(RELEASE, 'tether-linux-arm64');

function packageAll(targets?: string): string {
  return execFileSync(
    process.execPath,
    ['scripts/package.ts', ...(targets ? ['--targets', targets] : [])],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
}

const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

// Three builds and two emulated devices (TCG): 3–4 minutes on 2 cores, more beside other test
// files.
t.setTimeout(900_000);

// The x64 tether client is test/integration/release-client.test.ts's, which may run beside this;
// the arm64 one is checked here, on the arm64 device.
const printed = packageAll(
  'tetherd-linux-x64,tetherd-linux-arm64,tetherd-linux-armv7,tether-linux-arm64',
);

t.test('npm run package makes one executable per target', async (t) => {
  for (const [file, machine] of [
    [X64, 62],
    [ARM64, 183],
    [ARMV7, 40],
  ] as const) {
    t.ok(existsSync(file), file);
    t.equal(elfMachine(file), machine, `${file} is built for its architecture`);
    t.equal(statSync(file).mode & 0o111, 0o111, 'executable');
    t.match(
      printed,
      new RegExp(`${file.slice(ROOT.length)}\\s+[\\d.]+ MiB\\s+sha256 ${sha256(file)}`),
    );
  }
});

t.test('--version names the version, the Node inside and the architecture', async (t) => {
  const addonDir = mkdtempSync(join(tmpdir(), 'tether-addon-'));
  t.teardown(() => rmSync(addonDir, { recursive: true, force: true }));
  const out = execFileSync(X64, ['--version'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TETHER_ADDON_DIR: addonDir },
  });
  t.equal(out, `tetherd ${pkg.version} (node v24.21.0, x64)\n`);
  t.same(readdirSync(addonDir), [], 'the extracted addon is not left behind');
});

for (const [file, qemu, libs, arch, node] of [
  [ARM64, 'qemu-aarch64-static', '/usr/aarch64-linux-gnu', 'arm64', 'v24.21.0'],
  [ARMV7, 'qemu-arm-static', '/usr/arm-linux-gnueabihf', 'arm', 'v20.11.0'],
] as const)
  t.test(
    `the ${arch} executable starts and loads its ${arch} addon (qemu user mode)`,
    async (t) => {
      // A user-mode check of the binary (no ptrace under qemu-user); the emulated arm64 device
      // runs programs with the arm64 one. Node 20 on armv7 starts 4x faster without io_uring.
      const addonDir = mkdtempSync(join(tmpdir(), 'tether-addon-'));
      t.teardown(() => rmSync(addonDir, { recursive: true, force: true }));
      const r = spawnSync(qemu, ['-L', libs, file, '--version'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, TETHER_ADDON_DIR: addonDir, UV_USE_IO_URING: '0' },
      });
      t.error(r.error, `${qemu} runs (scripts/ci-packages.sh installs qemu-user-static)`);
      t.equal(r.stdout, `tetherd ${pkg.version} (node ${node}, ${arch})\n`, r.stderr);
      t.same(readdirSync(addonDir), [], 'the extracted addon is not left behind');
    },
  );

t.test('a noexec TMPDIR does not matter; an unwritable addon directory is one line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-noexec-'));
  t.teardown(() => {
    spawnSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'noexec', 'tmpfs', dir]);
  t.equal(mount.status, 0, 'a noexec tmpfs (the test runs as root)');
  const state = join(dir, 'state-elsewhere');
  mkdirSync(state);
  const ok = spawnSync(X64, ['--version'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TMPDIR: dir, HOME: dir },
  });
  t.equal(ok.status, 0, ok.stderr);
  const bad = spawnSync(X64, ['--version'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TETHER_ADDON_DIR: '/proc/no-such-dir' },
  });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /^tetherd: cannot write its native addon under \/proc\/no-such-dir: .*\n$/);
  t.equal(bad.stderr.split('\n').length, 2, 'one line');
});

t.test('the packaged daemon runs programs through the view from a bare root', async (t) => {
  const d = await startDaemon({ minimalRoot: true, binary: X64 });
  t.teardown(() => d.stop());
  const work = mkdtempSync(join(tmpdir(), 'tether-pkg-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const r = await tether(d, [
    'run',
    '--view',
    '-C',
    work,
    'sh',
    '-c',
    'uname -m; echo written > out.txt; tr "\\0" " " < /proc/$PPID/cmdline',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^x86_64\n/);
  t.match(r.stdout, /tetherd-linux-x64 --listen/, "the program's parent is the packaged daemon");
  t.equal(readFileSync(join(work, 'out.txt'), 'utf8'), 'written\n');

  // postject moved its program headers near the end of the file: the view finds its loader
  // there (it used to read only the first 4 KiB and answer ENOEXEC).
  const self = await tether(d, ['run', '--view', '-e', 'TETHER_ADDON_DIR=/tmp', X64, '--version']);
  t.equal(self.stdout, `tetherd ${pkg.version} (node v24.21.0, x64)\n`, self.stderr);
});

t.test('a second build is byte for byte the same', async (t) => {
  const before = sha256(X64);
  packageAll('tetherd-linux-x64');
  t.equal(sha256(X64), before);
});

const inputProgram = (what: string) => `#include <stdio.h>
int main(void) {
  FILE *f = fopen("input.txt", "r");
  char line[64] = "";
  if (!f || !fgets(line, sizeof line, f)) { perror("input.txt"); return 1; }
  printf("${what} read %s", line);
  return 3;
}
`;

/**
 * 32-bit arm calls with 64-bit values, on the host file `big`: truncate64's length in a
 * register pair that starts at r2, utimensat_time64's times past 2038 (glibc uses it only for
 * those).
 */
async function time64(t: Test, { run, cc, work }: ArmCheck, what: string): Promise<void> {
  cc(
    'arm-linux-gnueabihf-gcc',
    'time64',
    `#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
  struct timespec ts[2] = {{0, UTIME_OMIT}, {4000000000LL, 7}};
  if (truncate("big", 4294967299LL) || utimensat(AT_FDCWD, "big", ts, 0)) perror("big");
  return 0;
}
`,
    ['-static', '-D_FILE_OFFSET_BITS=64', '-D_TIME_BITS=64'],
  );
  writeFileSync(join(work, 'big'), 'content\n');
  const r = await run(['./time64']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '');
  const st = statSync(join(work, 'big'), { bigint: true });
  t.equal(st.size, 4294967299n, `truncate64 of ${what} on the host file`);
  t.equal(st.mtimeNs, 4000000000_000000007n, `utimensat_time64 of ${what} on the host file`);
}

/**
 * The differential path-semantics check on the arm64 device, against this host natively: a
 * writable host tree, a tree in the device's /tmp, /proc and /dev (what any kernel and any
 * program answer alike; test/integration/path-semantics.test.ts has the rest).
 */
async function pathSemantics(t: Test, c: ArmCheck): Promise<void> {
  const nativeProbe = buildProbe('gcc', join(c.work, 'path-probe-x64'));
  const deviceProbe = buildProbe('aarch64-linux-gnu-gcc', join(c.work, 'path-probe-arm64'));
  const top = `/tmp/tether-paths-arm64-${process.pid}`;
  t.teardown(() => rmSync(top, { recursive: true, force: true }));
  const host = join(c.work, 'paths');
  for (const [what, base, ops, make] of [
    ['a host tree', host, [...looks(host), ...execs(host), ...changes(host)], true],
    ["the device's /tmp", `${top}/t`, [...looks(`${top}/t`), ...changes(`${top}/t`)], true],
    ['/proc and /dev', c.work, procs(), false],
  ] as const)
    await t.test(what, (t) =>
      differential(t, {
        base,
        ops: [...ops],
        make,
        probe: join(c.work, 'path-probe'),
        nativeProbe,
        deviceProbe,
        viaTether: (script) => c.run(['sh', '-c', script]),
      }),
    );
}

const ARM_DEVICES: {
  arch: ArmArch;
  binary: string;
  machine: string;
  gcc: string;
  /** What else this device runs: a test of its own on the same device. */
  more: (t: Test, c: ArmCheck) => Promise<void>;
}[] = [
  {
    arch: 'arm64',
    binary: ARM64,
    machine: 'aarch64',
    gcc: 'aarch64-linux-gnu-gcc',
    more: async (t, c) => {
      c.cc('arm-linux-gnueabihf-gcc', 'static32', inputProgram('32-bit arm'), ['-static']);
      const s32 = await c.run(['./static32']);
      t.equal(s32.code, 3, s32.stderr);
      t.equal(
        s32.stdout,
        '32-bit arm read from the host\n',
        'a 32-bit program on the 64-bit device',
      );
      await time64(t, c, 'a 32-bit program under a 64-bit tracer');

      // The arm64 single-file client on an arm64 machine: its launcher copies its Node part
      // into the device's /tmp and execs it.
      copyFileSync(ARM64_CLIENT, join(c.work, 'tether'));
      const client = await c.run(['-e', 'TETHER_CACHE_DIR=/tmp/tc', './tether', '--version']);
      t.equal(client.stdout, `tether ${pkg.version} (node v24.21.0, arm64)\n`, client.stderr);

      await t.test('path semantics as native (test/lib/path-diff.ts)', (t) => pathSemantics(t, c));
    },
  },
  {
    arch: 'armv7',
    binary: ARMV7,
    machine: 'armv7l',
    gcc: 'arm-linux-gnueabihf-gcc',
    more: (t, c) => time64(t, c, 'a 32-bit tracer'),
  },
];

interface ArmCheck {
  work: string;
  run: (args: string[]) => ReturnType<typeof tether>;
  cc: (gcc: string, name: string, src: string, flags: string[]) => void;
}

for (const { arch, binary, machine, gcc, more } of ARM_DEVICES)
  t.test(
    `the ${arch} executable runs ${arch} programs from a host sysroot on an ${arch} device`,
    async (t) => {
      const dev = await startArmDevice(arch, binary);
      t.teardown(() => dev.stop());
      t.comment(`the ${arch} device listened ${dev.bootSeconds.toFixed(1)} s after qemu started`);
      const started = performance.now();
      const work = mkdtempSync(join(tmpdir(), `tether-${arch}-work-`));
      t.teardown(() => rmSync(work, { recursive: true, force: true }));
      const sysroot = armSysroot(arch);
      const run = (args: string[]) =>
        tether(dev, ['run', '--root', sysroot, '--bind', work, '-C', work, ...args]);
      const cc = (gcc: string, name: string, src: string, flags: string[]) => {
        writeFileSync(join(work, `${name}.c`), src);
        execFileSync(gcc, ['-O1', ...flags, '-o', join(work, name), join(work, `${name}.c`)]);
      };

      const uname = await run(['uname', '-m']);
      t.equal(uname.code, 0, uname.stderr);
      t.equal(uname.stdout, `${machine}\n`, "the sysroot's dynamic coreutils on the device");

      const bash = await run([
        'bash',
        '-c',
        'echo "$BASH_VERSION" > version.txt; ls /bin/bash; exit 7',
      ]);
      t.equal(bash.code, 7, bash.stderr);
      t.equal(bash.stdout, '/bin/bash\n');
      t.match(
        readFileSync(join(work, 'version.txt'), 'utf8'),
        /^5\.\d+/,
        'the write landed on the host',
      );

      writeFileSync(join(work, 'script'), '#!/bin/sh\necho "script $1 on $(uname -m)"\n', {
        mode: 0o755,
      });
      const script = await run(['./script', 'arg']);
      t.equal(script.stdout, `script arg on ${machine}\n`, script.stderr);

      // Linked here against the cross compiler's glibc, it runs with the sysroot's (Debian 13),
      // which the device (Debian 12's, for tetherd) does not have.
      cc(
        gcc,
        'glibc',
        `#include <gnu/libc-version.h>
#include <stdio.h>
int main(void) { printf("glibc %s\\n", gnu_get_libc_version()); return 0; }
`,
        [],
      );
      const [device, view] = [armGlibcVersion(arch, 'device'), armGlibcVersion(arch, 'sysroot')];
      t.not(view, device, `the sysroot's glibc ${view} is not the device's ${device}`);
      const glibc = await run(['./glibc']);
      t.equal(glibc.stdout, `glibc ${view}\n`, glibc.stderr);

      writeFileSync(join(work, 'input.txt'), 'from the host\n');
      cc(gcc, 'static', inputProgram(`static ${arch}`), ['-static']);
      const stat = await run(['./static']);
      t.equal(stat.code, 3, stat.stderr);
      t.equal(stat.stdout, `static ${arch} read from the host\n`);

      await more(t, { run, cc, work });

      const killed = await run(['sh', '-c', 'kill -TERM $$']);
      t.equal(killed.signal, 'SIGTERM', killed.stderr);
      t.comment(`the ${arch} checks took ${((performance.now() - started) / 1000).toFixed(1)} s`);
    },
  );

t.test(
  'the arm64 executable under --tracer unotify: the path semantics hold there too',
  async (t) => {
    // Debian 12's 6.1 has user notification without synchronous wake-up: ptrace is the default
    // there, unotify is asked for (a board with 6.6 or later gets it by default).
    const dev = await startArmDevice('arm64', ARM64, ['--tracer', 'unotify']);
    t.teardown(() => dev.stop());
    const { info } = JSON.parse((await tether(dev, ['status', '--json'])).stdout);
    t.equal(info.tracer, 'unotify');
    const work = mkdtempSync(join(tmpdir(), 'tether-arm64-unotify-'));
    t.teardown(() => rmSync(work, { recursive: true, force: true }));
    const sysroot = armSysroot('arm64');
    const run = (args: string[]) =>
      tether(dev, ['run', '--root', sysroot, '--bind', work, '-C', work, ...args]);
    const cc = (gcc: string, name: string, src: string, flags: string[]) => {
      writeFileSync(join(work, `${name}.c`), src);
      execFileSync(gcc, ['-O1', ...flags, '-o', join(work, name), join(work, `${name}.c`)]);
    };
    writeFileSync(join(work, 'input.txt'), 'from the host\n');
    cc('aarch64-linux-gnu-gcc', 'dynamic', inputProgram('dynamic arm64'), []);
    const r = await run(['./dynamic']);
    t.equal(r.stdout, 'dynamic arm64 read from the host\n', r.stderr);
    await t.test('path semantics as native (test/lib/path-diff.ts)', (t) =>
      pathSemantics(t, { run, cc, work }),
    );
  },
);

t.test('the systemd unit example is valid and passes only options tetherd has', async (t) => {
  const unit = readFileSync(join(ROOT, 'docs/tetherd.service'), 'utf8');
  const exec = /^ExecStart=(\S+) (.*)$/m.exec(unit);
  t.ok(exec, 'an ExecStart line');
  const dir = mkdtempSync(join(tmpdir(), 'tether-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // verify checks the binary exists: point it at the executable this test built.
  const copy = join(dir, 'tetherd.service');
  writeFileSync(copy, unit.replaceAll(exec![1]!, X64));
  const verify = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
  t.equal(verify.status, 0, verify.stderr);
  const help = execFileSync(X64, ['--help'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TETHER_ADDON_DIR: dir },
  });
  for (const opt of exec![2]!.match(/--[a-z-]+/g) ?? []) t.match(help, opt, `tetherd has ${opt}`);
});
