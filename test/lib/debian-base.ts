// A fresh Debian 12 root as a podman image, for the tests that install or build in one (the
// Dockerfile build, scripts/ci-packages.sh): made here with mmdebstrap from the Debian archives
// this machine's own apt sources name, since no image registry is reachable. Made once and kept.
import { execFileSync, spawnSync } from 'node:child_process';

/** The image: Debian 12 minbase with updates and security updates, as Docker Hub's debian:bookworm. */
export const BASE = 'localhost/debian:bookworm';

/**
 * podman with runc: Debian 12's default crun refuses a hybrid cgroup layout whose cgroup2 has a
 * controller (hugetlb on this kind of VM), runc does not.
 */
export function podman(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('podman', ['--runtime', 'runc', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 2 ** 20,
  });
  if (r.error) throw new Error(`podman: ${r.error.message} (scripts/ci-packages.sh installs it)`);
  return { status: r.status, output: r.stdout + r.stderr };
}

/**
 * One `deb URI SUITE COMPONENTS` line per Debian archive of this machine's apt sources (whatever
 * mirror and format they use; other vendors' entries are left out: the root has not their keys).
 */
export function debianSources(): string[] {
  const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
  const targets = execFileSync(
    'apt-get',
    [
      'indextargets',
      '--format',
      '$(REPO_URI) $(RELEASE) $(COMPONENT)',
      'Origin: Debian',
      'Identifier: Packages',
      `Architecture: ${arch}`,
    ],
    { encoding: 'utf8' },
  );
  const components = new Map<string, Set<string>>();
  for (const line of targets.split('\n')) {
    const [uri, suite, component] = line.trim().split(' ');
    if (!uri || !suite || !component) continue;
    const key = `${uri} ${suite}`;
    components.set(key, (components.get(key) ?? new Set()).add(component));
  }
  if (components.size === 0)
    throw new Error('no Debian archive in the apt sources with an index (apt-get update first)');
  return [...components].map(([key, c]) => `deb ${key} ${[...c].join(' ')}`);
}

/**
 * Makes the base image unless it exists; test files running in parallel wait for the one making
 * it (flock). Returns the image's name.
 */
export function debianBase(): string {
  const make = [
    `podman --runtime runc image exists ${BASE} && exit 0`,
    'tar=$(mktemp --suffix .tar)',
    'trap \'rm -f "$tar"\' EXIT',
    'mmdebstrap --variant=minbase --quiet bookworm "$tar" "$@"',
    `podman --runtime runc import --quiet "$tar" ${BASE} >/dev/null`,
  ].join('\n');
  const r = spawnSync(
    'flock',
    ['/run/lock/tether-debian-base', 'sh', '-ec', make, 'make-base', ...debianSources()],
    { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] },
  );
  if (r.status !== 0) throw new Error(`making ${BASE}: ${r.stderr || r.error?.message}`);
  return BASE;
}
