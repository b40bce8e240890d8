// The emulated ARM devices (DESIGN §7): qemu-system-aarch64 (virt, cortex-a57, TCG) booting
// Debian's arm64 kernel, or qemu-system-arm (virt, cortex-a15) booting Debian's armmp-lpae one,
// each with an initramfs holding only busybox, the libraries the packaged tetherd links, the
// virtio-net modules and tetherd-linux-arm64 / tetherd-linux-armv7 (npm run package). Every
// program a test runs there comes from the host's sysroot of that architecture through the view.
// scripts/ci-packages.sh unpacks the Debian packages into /var/cache/tether-test/{arm64,armv7}
// (ARM64_DIR and ARMV7_DIR here if elsewhere).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateIdentity } from '../../transport/identity.ts';

export type ArmArch = 'arm64' | 'armv7';

interface ArchSpec {
  /** Where scripts/ci-packages.sh unpacked the device's and the sysroot's packages. */
  dir: string;
  qemu: string[];
  /** The dynamic loader, under /lib. */
  loader: string;
  /** The multiarch directory of the libraries. */
  triplet: string;
  /** The libraries under /usr/lib/<triplet> besides those under /lib/<triplet>. */
  usrLibs: string[];
  /** Environment for tetherd: armv7 Node 20 starts 4x faster without io_uring (DESIGN §7). */
  env: Record<string, string>;
}

const ARCHES: Record<ArmArch, ArchSpec> = {
  arm64: {
    dir: process.env.ARM64_DIR ?? '/var/cache/tether-test/arm64',
    qemu: ['qemu-system-aarch64', '-M', 'virt', '-cpu', 'cortex-a57'],
    loader: 'ld-linux-aarch64.so.1',
    triplet: 'aarch64-linux-gnu',
    usrLibs: ['libstdc++.so.6'],
    env: {},
  },
  armv7: {
    dir: process.env.ARMV7_DIR ?? '/var/cache/tether-test/armv7',
    qemu: ['qemu-system-arm', '-M', 'virt', '-cpu', 'cortex-a15'],
    loader: 'ld-linux-armhf.so.3',
    triplet: 'arm-linux-gnueabihf',
    usrLibs: ['libstdc++.so.6', 'libatomic.so.1'],
    env: { UV_USE_IO_URING: '0' },
  },
};

/** Debian 12's coreutils, bash and dash with Debian 13's glibc, for `arch`: the view's root for
 *  the device's programs. */
export const armSysroot = (arch: ArmArch) => join(ARCHES[arch].dir, 'sysroot');
export const ARM64_SYSROOT = armSysroot('arm64');
export const ARMV7_SYSROOT = armSysroot('armv7');

/** The version of glibc in the device's own root (Debian 12) or in the sysroot (Debian 13). */
export function armGlibcVersion(arch: ArmArch, part: 'device' | 'sysroot'): string {
  const libc = join(ARCHES[arch].dir, part, 'lib', ARCHES[arch].triplet, 'libc.so.6');
  const m = /GNU C Library [^\n]* release version (\d+\.\d+)/.exec(readFileSync(libc, 'latin1'));
  if (!m) throw new Error(`no glibc version in ${libc}`);
  return m[1]!;
}

const MODULES = [
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
];
const LIBS = ['libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'libgcc_s.so.1'];

export interface ArmDevice {
  /** Environment for bin/tether: its default device is this one. */
  env: NodeJS.ProcessEnv;
  /** Where tetherd is reached from this host (qemu's forwarded port): 127.0.0.1:PORT. */
  address: string;
  /** The serial console so far (kernel, init and tetherd's log). */
  console: () => string;
  /** Seconds from qemu's start to tetherd listening. */
  bootSeconds: number;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The initramfs: busybox, glibc, the modules, tetherd and its state (keys, paired client). */
function initramfs(
  arch: ArmArch,
  spec: ArchSpec,
  dir: string,
  binary: string,
  state: string,
  kver: string,
  extraArgs: string[],
): string {
  const DEVICE = join(spec.dir, 'device');
  const root = join(dir, 'root');
  const L = `lib/${spec.triplet}`;
  for (const d of [
    'bin',
    'etc',
    'proc',
    'sys',
    'dev',
    'tmp',
    'root',
    'var/lib/tetherd',
    L,
    'modules',
    'state',
  ])
    mkdirSync(join(root, d), { recursive: true });
  copyFileSync(join(DEVICE, 'bin/busybox'), join(root, 'bin/busybox'));
  copyFileSync(join(DEVICE, 'lib', spec.loader), join(root, 'lib', spec.loader));
  for (const l of LIBS) copyFileSync(join(DEVICE, L, l), join(root, L, l));
  for (const l of spec.usrLibs) copyFileSync(join(DEVICE, 'usr', L, l), join(root, L, l));
  const builtin = readFileSync(join(DEVICE, 'lib/modules', kver, 'modules.builtin'), 'utf8');
  const mods = MODULES.filter((m) => !builtin.includes(`/${m}.ko`));
  for (const m of mods) {
    const found = execFileSync('find', [join(DEVICE, 'lib/modules', kver), '-name', `${m}.ko`], {
      encoding: 'utf8',
    }).trim();
    if (!found) throw new Error(`no ${m}.ko for kernel ${kver} under ${DEVICE}`);
    copyFileSync(found.split('\n')[0]!, join(root, 'modules', `${m}.ko`));
  }
  copyFileSync(binary, join(root, 'tetherd'));
  chmodSync(join(root, 'tetherd'), 0o755);
  for (const f of ['identity.pem', 'authorized_clients'])
    copyFileSync(join(state, f), join(root, 'state', f));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\ntty:x:5:\n');
  writeFileSync(
    join(root, 'init'),
    `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root${Object.entries(spec.env)
      .map(([k, v]) => ` ${k}=${v}`)
      .join('')}
hostname ${arch}-device
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts; mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp; mount -t tmpfs -o mode=0700 tmpfs /var/lib/tetherd
cp /state/* /var/lib/tetherd/
for m in ${mods.join(' ')}; do insmod /modules/$m.ko; done
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
echo "init: tetherd starts $(cut -d" " -f1 /proc/uptime) s after the kernel"
exec /tetherd --listen 0.0.0.0:1202 --state /var/lib/tetherd --user root --log-format json${extraArgs.map((a) => ` '${a}'`).join('')}
`,
  );
  chmodSync(join(root, 'init'), 0o755);
  const out = join(dir, 'initramfs.cpio');
  execFileSync('sh', [
    '-c',
    `cd "${root}" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > "${out}"`,
  ]);
  rmSync(root, { recursive: true, force: true });
  return out;
}

/** Boots the `arch` device with `binary` (tetherd-linux-arm64 or -armv7) paired with a fresh
 *  client identity; `extraArgs` go to tetherd (`--log-level trace` shows each syscall). */
export async function startArmDevice(
  arch: ArmArch,
  binary: string,
  extraArgs: string[] = [],
): Promise<ArmDevice> {
  const spec = ARCHES[arch];
  const DEVICE = join(spec.dir, 'device');
  const kver = readFileSync(join(DEVICE, '.kver'), 'utf8').trim();
  const dir = mkdtempSync(join(tmpdir(), `tether-${arch}-`));
  const state = join(dir, 'state');
  const home = join(dir, 'home');
  const [dev, client] = await Promise.all([
    loadOrCreateIdentity(state, `tetherd@${arch}`),
    loadOrCreateIdentity(home, 'tether@test'),
  ]);
  writeFileSync(join(state, 'authorized_clients'), `${client.fingerprint} test\n`);
  const cpio = initramfs(arch, spec, dir, binary, state, kver, extraArgs);
  const port = await freePort();
  const started = performance.now();
  const qemu: ChildProcess = spawn(
    spec.qemu[0]!,
    [
      ...spec.qemu.slice(1),
      ...['-smp', '2', '-m', '1536', '-accel', 'tcg'],
      ...['-kernel', join(DEVICE, 'boot', `vmlinuz-${kver}`), '-initrd', cpio],
      ...['-append', 'console=ttyAMA0 panic=-1 quiet'],
      ...['-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:1202`],
      ...['-device', 'virtio-net-pci,netdev=n0,romfile='],
      ...['-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  qemu.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  qemu.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const stop = async () => {
    if (qemu.exitCode === null && qemu.signalCode === null) {
      const gone = new Promise((resolve) => qemu.once('exit', resolve));
      qemu.kill('SIGKILL');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (out.includes('tetherd: listening on')) resolve();
      };
      qemu.stdout!.on('data', check);
      qemu.once('exit', (code) =>
        reject(new Error(`qemu exited with ${code}: ${out.slice(-2000)}`)),
      );
      setTimeout(
        () => reject(new Error(`the ${arch} device did not start: ${out.slice(-2000)}`)),
        120_000,
      ).unref();
    });
  } catch (e) {
    await stop();
    throw e;
  }
  const bootSeconds = (performance.now() - started) / 1000;
  writeFileSync(
    join(home, 'config'),
    `default arm\ndevice arm\n  address 127.0.0.1:${port}\n  fingerprint ${dev.fingerprint}\n`,
  );
  return {
    env: { ...process.env, TETHER_HOME: home, TETHER_DEVICE: '' },
    address: `127.0.0.1:${port}`,
    console: () => out,
    bootSeconds,
    stop,
  };
}
