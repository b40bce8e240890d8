// The daemon's status API (DESIGN §5): `tether status` while a run goes on, the
// same answers over HTTPS on the daemon's port (ALPN) for a paired client's key
// only, and on the unix socket in the state directory.
import { execFile } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import pkg from '../../package.json' with { type: 'json' };
import { loadOrCreateIdentity } from '../../transport/identity.ts';
import { startDaemon, tether } from '../lib/tetherd.ts';

const d = await startDaemon({ minimalRoot: true });
const tmp = mkdtempSync(join(tmpdir(), 'tether-status-'));
t.teardown(async () => {
  await d.stop();
  rmSync(tmp, { recursive: true, force: true });
});
const url = (path: string) => `https://${d.device.devAddr}:${d.port}${path}`;
const clientPem = join(d.home, 'identity.pem');

/** Polls an asynchronous condition until it holds or `ms` pass. */
async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

t.test('tether status shows a run while it goes on, and not after', async (t) => {
  const idle = await tether(d, ['status']);
  t.equal(idle.code, 0, idle.stderr);
  t.match(idle.stdout, `dev: tetherd ${pkg.version} (node ${process.version}, ${process.arch})`);
  t.match(idle.stdout, /\n\d+ connections?, 0 runs\n/);

  const running = tether(d, ['run', 'sleep', '30']);
  let shown = '';
  const seen = await until(async () => {
    shown = (await tether(d, ['status'])).stdout;
    return /running .* sleep 30$/m.test(shown);
  }, 15_000);
  t.ok(seen, 'the run shows up');
  t.match(shown, /\n\d+ connections?, 1 run\n/);
  const line = /^ {2}(\d+) +(\d+) +running +\d+s +test +sleep 30$/m.exec(shown);
  t.ok(line, `a line for the run:\n${shown}`);

  const json = await tether(d, ['status', '--json']);
  const { info, sessions } = JSON.parse(json.stdout);
  t.equal(info.runs, 1);
  t.equal(info.view, true);
  const runs = sessions.flatMap((s: { runs: { pid: number; argv: string[] }[] }) => s.runs);
  t.same(
    runs.map((r: { argv: string[] }) => r.argv),
    [['sleep', '30']],
  );
  t.equal(String(runs[0].pid), line?.[2], 'the pid shown is the run’s');
  t.ok(info.cache.misses > 0, 'the run fetched its program and libraries into the cache');

  running.child.kill('SIGTERM');
  await running;
  t.ok(
    await until(async () => /, 0 runs\n/.test((await tether(d, ['status'])).stdout), 10_000),
    'the run is gone from the status once it ended',
  );
});

t.test(
  'over HTTPS on the daemon port: a paired key gets answers, no key or another gets nothing',
  async (t) => {
    const ok = await curl(['-k', '--cert', clientPem, url('/health')]);
    t.equal(ok.code, 0, ok.stderr);
    t.same(JSON.parse(ok.stdout), { status: 'ok' });
    const info = JSON.parse((await curl(['-k', '--cert', clientPem, url('/v1/info')])).stdout);
    t.equal(info.version, pkg.version);
    t.equal(info.fingerprint, d.fingerprint);
    const metrics = await curl(['-k', '--cert', clientPem, url('/metrics')]);
    t.match(metrics.stdout, /^tetherd_runs_started_total \d+$/m);
    t.match(metrics.stdout, /^process_resident_memory_bytes \d+/m);

    const anonymous = await curl(['-k', url('/health')]);
    t.not(anonymous.code, 0, 'curl without a client certificate fails');
    t.equal(anonymous.stdout, '', 'and gets no byte of an answer');
    const stranger = await loadOrCreateIdentity(tmp, 'stranger');
    const other = await curl(['-k', '--cert', join(tmp, 'identity.pem'), url('/v1/sessions')]);
    t.not(other.code, 0, `a key not paired with the device (${stranger.fingerprint}) fails too`);
    t.equal(other.stdout, '');
    t.match(d.stderr(), /refused status request of an unknown client/);
  },
);

t.test("another paired client sees none of this client's runs; the unix socket all", async (t) => {
  // A second client paired with the same device, with a home of its own.
  const home = mkdtempSync(join(tmp, 'other-'));
  const other = await loadOrCreateIdentity(home, 'other');
  appendFileSync(join(d.stateDir, 'authorized_clients'), `${other.fingerprint} other\n`);
  copyFileSync(join(d.home, 'config'), join(home, 'config'));
  const otherEnv = { env: { ...d.env, TETHER_HOME: home } };
  const running = tether(d, ['run', 'sleep', '30']);
  const argvs = (json: string) =>
    (JSON.parse(json).sessions as { runs: { argv: string[] }[] }[]).flatMap((s) =>
      s.runs.map((r) => r.argv.join(' ')),
    );
  t.ok(
    await until(
      async () => argvs((await tether(d, ['status', '--json'])).stdout).length > 0,
      15_000,
    ),
    'the run shows up to its own client',
  );
  const theirs = await tether(otherEnv, ['status', '--json']);
  t.equal(theirs.code, 0, theirs.stderr);
  t.same(argvs(theirs.stdout), [], 'not to the other one (status stream)');
  const otherPem = join(home, 'identity.pem');
  const https = await curl(['-k', '--cert', otherPem, url('/v1/sessions')]);
  t.same(argvs(https.stdout), [], 'nor over HTTPS with its key');
  const mine = await curl(['-k', '--cert', clientPem, url('/v1/sessions')]);
  t.same(argvs(mine.stdout), ['sleep 30'], 'its own client sees it over HTTPS too');
  const all = await curl([
    '--unix-socket',
    join(d.stateDir, 'status.sock'),
    'http://d/v1/sessions',
  ]);
  t.same(argvs(all.stdout), ['sleep 30'], "the device's own socket sees every run");
  running.child.kill('SIGTERM');
  await running;
});

t.test('the unix socket in the state directory answers its owner', async (t) => {
  const sock = join(d.stateDir, 'status.sock');
  const st = statSync(sock);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o600, 'only its owner may connect');
  const r = await curl(['--unix-socket', sock, 'http://tetherd/v1/info']);
  t.equal(r.code, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).version, pkg.version);
  const missing = await curl([
    '--unix-socket',
    sock,
    'http://tetherd/v1/nothing',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
  ]);
  t.equal(missing.stdout, '404');
});

t.test('tether status of an unknown device is one line and exit 255', async (t) => {
  const r = await tether(d, ['status', 'nosuch']);
  t.equal(r.code, 255);
  t.match(r.stderr, /^tether: unknown device "nosuch"[^\n]*\n$/);
});
