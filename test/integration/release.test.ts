// npm run package (scripts/package.ts): one tetherd file per target. The x64 one then runs as
// the device's daemon in a minimal root that holds only it and the C libraries it links, the
// arm64 one as the daemon of an emulated arm64 device (test/lib/arm64-device.ts) whose own
// files are busybox and those libraries: a passing run proves the executable carries the rest
// (its JavaScript and its native addon) and that every program came through the view.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import pkg from '../../package.json' with { type: 'json' };
import { ARM64_SYSROOT, startArm64Device } from '../lib/arm64-device.ts';
import { ROOT, startDaemon, tether } from '../lib/tetherd.ts';

const RELEASE = join(ROOT, 'dist/release');
const X64 = join(RELEASE, 'tetherd-linux-x64');
const ARM64 = join(RELEASE, 'tetherd-linux-arm64');
const ARMV7 = join(RELEASE, 'tetherd-linux-armv7');

function packageAll(targets?: string): string {
  return execFileSync(
    process.execPath,
    ['scripts/package.ts', ...(targets ? ['--targets', targets] : [])],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
}

const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

/** e_machine of an ELF file: 62 x86-64, 183 AArch64, 40 ARM. */
function elfMachine(file: string): number {
  const b = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, b, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  if (!b.subarray(0, 4).equals(Buffer.from('\x7fELF', 'latin1'))) return -1;
  return b.readUInt16LE(18);
}

const printed = packageAll();

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
});

t.test('a second build is byte for byte the same', async (t) => {
  const before = sha256(X64);
  packageAll('tetherd-linux-x64');
  t.equal(sha256(X64), before);
});

t.test(
  'the arm64 executable runs arm64 programs from a host sysroot on an arm64 device',
  async (t) => {
    const dev = await startArm64Device(ARM64);
    t.teardown(() => dev.stop());
    t.comment(`the arm64 device listened ${dev.bootSeconds.toFixed(1)} s after qemu started`);
    const work = mkdtempSync(join(tmpdir(), 'tether-arm64-work-'));
    t.teardown(() => rmSync(work, { recursive: true, force: true }));
    const run = (args: string[]) =>
      tether(dev, ['run', '--root', ARM64_SYSROOT, '--bind', work, '-C', work, ...args]);
    const cc = (gcc: string, name: string, src: string) => {
      writeFileSync(join(work, `${name}.c`), src);
      execFileSync(gcc, ['-O1', '-static', '-o', join(work, name), join(work, `${name}.c`)]);
    };

    const uname = await run(['uname', '-m']);
    t.equal(uname.code, 0, uname.stderr);
    t.equal(uname.stdout, 'aarch64\n', "the sysroot's dynamic coreutils on the device");

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
    t.equal(script.stdout, 'script arg on aarch64\n', script.stderr);

    const src = (what: string) => `#include <stdio.h>
int main(void) {
  FILE *f = fopen("input.txt", "r");
  char line[64] = "";
  if (!f || !fgets(line, sizeof line, f)) { perror("input.txt"); return 1; }
  printf("${what} read %s", line);
  return 3;
}
`;
    writeFileSync(join(work, 'input.txt'), 'from the host\n');
    cc('aarch64-linux-gnu-gcc', 'static64', src('static arm64'));
    const s64 = await run(['./static64']);
    t.equal(s64.code, 3, s64.stderr);
    t.equal(s64.stdout, 'static arm64 read from the host\n');

    cc('arm-linux-gnueabihf-gcc', 'static32', src('32-bit arm'));
    const s32 = await run(['./static32']);
    t.equal(s32.code, 3, s32.stderr);
    t.equal(s32.stdout, '32-bit arm read from the host\n', 'a 32-bit program on the 64-bit device');

    const killed = await run(['sh', '-c', 'kill -TERM $$']);
    t.equal(killed.signal, 'SIGTERM', killed.stderr);
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
