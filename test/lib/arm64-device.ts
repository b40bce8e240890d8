// The emulated arm64 device (DESIGN §7): qemu-system-aarch64 (virt, cortex-a57, TCG) boots
// Debian's arm64 kernel with an initramfs holding only busybox, the libraries the packaged
// tetherd links, the virtio-net modules and tetherd-linux-arm64 (npm run package). Every
// program a test runs there comes from the host's arm64 sysroot through the view.
// scripts/ci-packages.sh unpacks the Debian packages into ARM64_DIR.
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

export const ARM64_DIR = process.env.ARM64_DIR ?? '/var/cache/tether-test/arm64';
/** Debian arm64 coreutils, bash, dash and glibc: the view's root for the device's programs. */
export const ARM64_SYSROOT = join(ARM64_DIR, 'sysroot');
const DEVICE = join(ARM64_DIR, 'device');
const MODULES = [
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
];
const LIBS = ['libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'libgcc_s.so.1'];

export interface Arm64Device {
  /** Environment for bin/tether: its default device is this one. */
  env: NodeJS.ProcessEnv;
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
function initramfs(dir: string, binary: string, state: string, kver: string): string {
  const root = join(dir, 'root');
  const L = 'lib/aarch64-linux-gnu';
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
  copyFileSync(join(DEVICE, 'lib/ld-linux-aarch64.so.1'), join(root, 'lib/ld-linux-aarch64.so.1'));
  for (const l of LIBS) copyFileSync(join(DEVICE, L, l), join(root, L, l));
  copyFileSync(join(DEVICE, 'usr', L, 'libstdc++.so.6'), join(root, L, 'libstdc++.so.6'));
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
export PATH=/bin HOME=/root
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts; mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp; mount -t tmpfs -o mode=0700 tmpfs /var/lib/tetherd
cp /state/* /var/lib/tetherd/
for m in ${mods.join(' ')}; do insmod /modules/$m.ko; done
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
exec /tetherd --listen 0.0.0.0:1202 --state /var/lib/tetherd --user root --log-format json
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

/** Boots the device with `binary` (tetherd-linux-arm64) paired with a fresh client identity. */
export async function startArm64Device(binary: string): Promise<Arm64Device> {
  const kver = readFileSync(join(DEVICE, '.kver'), 'utf8').trim();
  const dir = mkdtempSync(join(tmpdir(), 'tether-arm64-'));
  const state = join(dir, 'state');
  const home = join(dir, 'home');
  const [dev, client] = await Promise.all([
    loadOrCreateIdentity(state, 'tetherd@arm64'),
    loadOrCreateIdentity(home, 'tether@test'),
  ]);
  writeFileSync(join(state, 'authorized_clients'), `${client.fingerprint} test\n`);
  const cpio = initramfs(dir, binary, state, kver);
  const port = await freePort();
  const started = performance.now();
  const qemu: ChildProcess = spawn(
    'qemu-system-aarch64',
    [
      ...['-M', 'virt', '-cpu', 'cortex-a57', '-smp', '2', '-m', '1536', '-accel', 'tcg'],
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
        () => reject(new Error(`the arm64 device did not start: ${out.slice(-2000)}`)),
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
    console: () => out,
    bootSeconds,
    stop,
  };
}
