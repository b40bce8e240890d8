// The Dockerfile builds the release executables from source in a clean Debian 12 image: a real
// build with podman (no daemon), from a base image made here from Debian's packages with
// mmdebstrap (test/lib/debian-base.ts), since no image registry is reachable. What the build
// leaves is only the executables, each for its architecture, and the x64 tetherd runs here.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import pkg from '../../package.json' with { type: 'json' };
import { debianBase, podman } from '../lib/debian-base.ts';
import { elfMachine } from '../lib/elf.ts';
import { ROOT } from '../lib/tetherd.ts';

/** e_machine of each target architecture: x86-64, AArch64, ARM. */
const MACHINE: Record<string, number> = { x64: 62, arm64: 183, armv7: 40 };

// apt, npm ci and every packaged target: about 7 minutes on 2 cores, more beside other test
// files.
t.setTimeout(1_800_000);

const base = debianBase();
const work = mkdtempSync(join(tmpdir(), 'tether-dockerfile-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const release = join(work, 'release');
const iidfile = join(work, 'iid');
const started = Date.now();
// No intermediate images (--layers=false): a run leaves only the apt and npm cache mounts and
// the base image. The CA the host's Node is told to trust (that of a proxy that intercepts TLS)
// goes in as the Dockerfile's secret.
const ca = process.env.NODE_EXTRA_CA_CERTS;
const build = podman([
  'build',
  '--pull=never',
  '--layers=false',
  '--build-arg',
  `BASE=${base}`,
  ...(ca ? ['--secret', `id=ca,src=${ca}`] : []),
  '--iidfile',
  iidfile,
  '--output',
  `type=local,dest=${release}`,
  ROOT,
]);
t.teardown(() => {
  if (existsSync(iidfile)) podman(['rmi', readFileSync(iidfile, 'utf8').trim()]);
});

t.test('podman builds the Dockerfile', async (t) => {
  t.equal(build.status, 0, 'podman build exits 0');
  if (build.status !== 0) t.comment(build.output.slice(-4000));
  t.comment(`built in ${Math.round((Date.now() - started) / 1000)} s`);
});

t.test('the last stage holds only the executables, each for its architecture', async (t) => {
  const files = existsSync(release) ? readdirSync(release) : [];
  for (const arch of Object.keys(MACHINE)) t.ok(files.includes(`tetherd-linux-${arch}`), arch);
  for (const name of files) {
    const arch = /-linux-(\w+)$/.exec(name)?.[1] ?? '';
    const file = join(release, name);
    t.equal(elfMachine(file), MACHINE[arch] ?? 0, `${name} is built for its architecture`);
    t.equal(statSync(file).mode & 0o111, 0o111, `${name} is executable`);
  }
});

t.test('the x64 tetherd names its version, Node and architecture', async (t) => {
  const addonDir = mkdtempSync(join(tmpdir(), 'tether-addon-'));
  t.teardown(() => rmSync(addonDir, { recursive: true, force: true }));
  const r = spawnSync(join(release, 'tetherd-linux-x64'), ['--version'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TETHER_ADDON_DIR: addonDir },
  });
  t.equal(r.stdout, `tetherd ${pkg.version} (node v24.21.0, x64)\n`, r.stderr);
});
