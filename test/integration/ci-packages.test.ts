// scripts/ci-packages.sh on a fresh Debian 12 root (minbase, from this machine's own apt sources:
// test/lib/debian-base.ts) brings everything the build, the demo and the tests use, without
// Recommends and without what this machine happens to have: then the addons and the launcher
// build with each compiler npm run package uses (their real build scripts, every header they
// include), the delay line builds, and every program the tests start is there.
import { mkdirSync } from 'node:fs';
import t from 'tap';
import { debianBase, podman } from '../lib/debian-base.ts';
import { ROOT } from '../lib/tetherd.ts';

/** Each compiler of npm run package's targets (scripts/package.ts): x64, arm64, armv7. */
const COMPILERS = ['cc', 'aarch64-linux-gnu-gcc', 'arm-linux-gnueabihf-gcc'];
/**
 * The programs the build, the demo and the tests start by name (beyond a minbase root's own),
 * each from a package of scripts/ci-packages.sh.
 */
const PROGRAMS = [
  // test devices, their links and the OpenSSH baseline
  'ip',
  'tc',
  'iptables-legacy',
  'modprobe',
  'ping',
  'pgrep',
  'sshd',
  'ssh',
  'ssh-keygen',
  // builds: the addons, the delay line, musl and GNU hello through the view
  'gcc',
  'cc',
  'strip',
  'aarch64-linux-gnu-strip',
  'arm-linux-gnueabihf-strip',
  'make',
  'musl-gcc',
  'python3',
  'bc',
  'ldd',
  // the emulated devices and npm run package
  'qemu-system-aarch64',
  'qemu-system-arm',
  'qemu-aarch64-static',
  'qemu-arm-static',
  'cpio',
  'curl',
  // the Dockerfile test and the unit example
  'podman',
  'runc',
  'mmdebstrap',
  'systemd-analyze',
];

// apt-get installs a few hundred packages and fetches both devices' files: minutes.
t.setTimeout(1_800_000);

const image = debianBase();
// Downloaded .debs are kept across runs (installed state is not: each run starts from the base).
const debs = '/var/cache/tether-test/fresh-root-debs';
mkdirSync(debs, { recursive: true });
const name = `tether-fresh-${process.pid}`;
const started = podman([
  'run',
  '--detach',
  '--rm',
  '--name',
  name,
  '--network',
  'host',
  // podman's default limits are above what a root without CAP_SYS_RESOURCE may set (this kind
  // of sandbox): runc fails with "error setting rlimit". Lower ones are enough for apt.
  '--ulimit',
  'nofile=1024:4096',
  '--ulimit',
  'nproc=4096:4096',
  '--volume',
  `${ROOT}:/src:ro`,
  '--volume',
  `${debs}:/var/cache/apt/archives`,
  image,
  'sleep',
  'infinity',
]);
if (started.status !== 0) throw new Error(`podman run: ${started.output}`);
t.teardown(() => podman(['rm', '--force', '--time', '0', name]));

/** Runs a shell script in the root, as root, without stdin (as CI does). */
const inRoot = (script: string) => podman(['exec', name, 'sh', '-euc', script]);

t.test('scripts/ci-packages.sh succeeds on a fresh root', async (t) => {
  const t0 = Date.now();
  const r = inRoot('CI=true sh /src/scripts/ci-packages.sh </dev/null');
  t.equal(r.status, 0, 'exits 0');
  if (r.status !== 0) t.comment(r.output.slice(-4000));
  t.comment(`ci-packages.sh took ${Math.round((Date.now() - t0) / 1000)} s`);
});

t.test('the build scripts work with each compiler', async (t) => {
  // A copy of the sources the C builds read: /src stays read-only.
  const copy = inRoot(
    'mkdir -p /w && cd /src && tar -c scripts daemon/native client/native client/launcher ' +
      'node_modules/node-api-headers | tar -x -C /w',
  );
  t.equal(copy.status, 0, `copy of the C sources: ${copy.output}`);
  for (const cc of COMPILERS) {
    const addon = inRoot(`cd /w && CC=${cc} OUTDIR=/tmp/addon-${cc} sh scripts/build-addon.sh`);
    t.equal(addon.status, 0, `${cc}: the addons build`);
    if (addon.status !== 0) t.comment(addon.output.slice(-3000));
    const launcher = inRoot(`cd /w && rm -rf build && CC=${cc} sh scripts/build-launcher.sh`);
    t.equal(launcher.status, 0, `${cc}: the launcher builds`);
    if (launcher.status !== 0) t.comment(launcher.output.slice(-3000));
  }
  const delay = inRoot('cd /w && sh scripts/build-delayline.sh');
  t.equal(delay.status, 0, 'the delay line builds (libnetfilter-queue)');
  if (delay.status !== 0) t.comment(delay.output.slice(-3000));
});

t.test('every program the tests start is installed', async (t) => {
  const missing = inRoot(
    `for p in ${PROGRAMS.join(' ')}; do command -v "$p" >/dev/null || echo "$p"; done`,
  );
  t.equal(missing.status, 0);
  t.equal(missing.output.trim(), '', 'none missing');
});
