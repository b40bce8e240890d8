// Who may run programs (DESIGN §2): pinned keys both ways, pairing with a
// one-time code, tether's own errors as one line and exit 255, and a device
// reached through a command instead of TLS.
import { type ChildProcess, execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { fingerprintOf, fingerprintOfPem, loadOrCreateIdentity } from '../../transport/identity.ts';
import { connectTls, createTlsServer } from '../../transport/tls.ts';
import type { Device } from '../lib/device.ts';
import { waitFor } from '../lib/procs.ts';
import { ROOT, startDaemon, TETHERD, tether } from '../lib/tetherd.ts';

const [paired, stranger] = await Promise.all([startDaemon(), startDaemon({ unpaired: true })]);
const tmp = mkdtempSync(join(tmpdir(), 'tether-auth-'));
const own: OwnDaemon[] = [];
t.teardown(async () => {
  for (const o of own) await o.stop();
  await Promise.all([paired.stop(), stranger.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

let homes = 0;
/** A client home of its own (TETHER_HOME); `config` is its config file, if any. */
function freshHome(config?: string): { home: string; env: NodeJS.ProcessEnv } {
  const home = join(tmp, `home-${homes++}`);
  mkdirSync(home);
  if (config !== undefined) writeFileSync(join(home, 'config'), config);
  return { home, env: { ...process.env, TETHER_HOME: home, TETHER_DEVICE: '' } };
}

/** A copy of a daemon's paired client home, with its config passed through `edit`. */
function copyHome(d: { home: string }, edit: (config: string) => string) {
  const h = freshHome();
  cpSync(d.home, h.home, { recursive: true });
  const path = join(h.home, 'config');
  writeFileSync(path, edit(readFileSync(path, 'utf8')));
  return h;
}

/** The key a client home shows: the shared one, or the one it was given for `device` at pairing. */
function clientFp(home: string, device?: string): string {
  const file = device ? join('keys', `${device}.pem`) : 'identity.pem';
  return fingerprintOfPem(readFileSync(join(home, file), 'utf8'));
}

/** The client keys a daemon accepts. */
function authorizedKeys(stateDir: string): string[] {
  return authorized(stateDir).match(/SHA256:\S+/g) ?? [];
}

function authorized(stateDir: string): string {
  try {
    return readFileSync(join(stateDir, 'authorized_clients'), 'utf8');
  } catch {
    return '';
  }
}

function configOf(home: string): string {
  try {
    return readFileSync(join(home, 'config'), 'utf8');
  } catch {
    return '';
  }
}

/** The daemon's JSON log lines. */
function logOf(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Only tether's own one-line error: nothing else on stderr. */
function oneLine(t: Test, stderr: string, re: RegExp): void {
  t.equal(stderr.split('\n').length, 2, `one line: ${JSON.stringify(stderr)}`);
  t.match(stderr, re);
}

interface OwnDaemon {
  proc: ChildProcess;
  addr: string;
  stateDir: string;
  fingerprint: string;
  /** The code printed by `--pair`. */
  code: string | null;
  stderr: () => string;
  stop(): Promise<void>;
}

/** A tetherd of our own on `device`, for what startDaemon does not offer (--pair, a second key). */
async function ownDaemon(
  device: Device,
  port: number,
  extra: string[] = [],
  stateDir = mkdtempSync(join(tmp, 'state-')),
): Promise<OwnDaemon> {
  const addr = `${device.devAddr}:${port}`;
  const proc = device.exec(
    [
      TETHERD,
      '--listen',
      addr,
      '--state',
      stateDir,
      '--user',
      'root',
      '--log-format',
      'json',
    ].concat(extra),
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => {
    stderr += c;
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const o: OwnDaemon = {
    proc,
    addr,
    stateDir,
    fingerprint: '',
    code: null,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
  own.push(o);
  await new Promise<void>((resolve, reject) => {
    proc.stderr!.on('data', () => {
      if (stderr.includes('tetherd: listening on')) resolve();
    });
    exited.then(() => reject(new Error(`tetherd exited: ${stderr}`)));
    setTimeout(() => reject(new Error(`tetherd did not start: ${stderr}`)), 20_000).unref();
  });
  o.code = /tetherd: pairing code (\S+)/.exec(stderr)?.[1] ?? null;
  o.fingerprint = fingerprintOfPem(readFileSync(join(stateDir, 'identity.pem'), 'utf8'));
  return o;
}

/** A command that leaves `marker` behind if it ever runs. */
const touch = (marker: string) => ['run', 'sh', '-c', `touch ${marker}`];

t.test('an unknown client key is refused before anything runs', async (t) => {
  const marker = join(tmp, 'ran-unknown');
  const r = await tether(stranger, touch(marker));
  t.equal(r.code, 255);
  oneLine(t, r.stderr, /^tether: .*not authorized.*`tether pair/);
  const fp = clientFp(stranger.home);
  t.ok(
    await waitFor(
      () =>
        logOf(stranger.stderr()).some((l) => l.msg === 'refused unknown client' && l.client === fp),
      5000,
    ),
    'the daemon logged the refusal with the client key',
  );
  t.notOk(existsSync(marker), 'the program did not run');
  t.notOk(
    logOf(stranger.stderr()).some((l) => l.msg === 'started'),
    'the daemon started nothing',
  );
});

t.test('a changed device key is refused loudly', async (t) => {
  const banner = /WARNING: DEVICE IDENTIFICATION HAS CHANGED!/;

  t.test('another fingerprint pinned in the config', async (t) => {
    const other = fingerprintOf(Buffer.from('not the device certificate'));
    const h = copyHome(paired, (c) => c.replace(/fingerprint \S+/, `fingerprint ${other}`));
    const marker = join(tmp, 'ran-pinned');
    const r = await tether(h, touch(marker));
    t.equal(r.code, 255);
    t.match(r.stderr, banner);
    t.match(r.stderr, paired.fingerprint, 'names the key it saw');
    t.match(r.stderr, other, 'names the pinned key');
    t.notOk(existsSync(marker), 'nothing ran on the device');
  });

  t.test('a reinstalled device (fresh key) at the pinned address', async (t) => {
    // It would accept this client: only the client's pin can stop the run.
    const state = mkdtempSync(join(tmp, 'state-'));
    writeFileSync(join(state, 'authorized_clients'), `${clientFp(paired.home)} test\n`);
    const o = await ownDaemon(paired.device, paired.port + 1, [], state);
    const h = copyHome(paired, (c) => c.replace(/address \S+/, `address ${o.addr}`));
    const marker = join(tmp, 'ran-reinstalled');
    const r = await tether(h, touch(marker));
    t.equal(r.code, 255);
    t.match(r.stderr, banner);
    t.match(r.stderr, o.fingerprint, 'names the new key');
    t.notOk(existsSync(marker), 'nothing ran on the device');
    t.notOk(
      logOf(o.stderr()).some((l) => l.msg === 'started'),
      'the daemon started nothing',
    );

    // The same run with the new key pinned does run: the marker check can fail.
    const ok = copyHome(paired, (c) =>
      c
        .replace(/address \S+/, `address ${o.addr}`)
        .replace(/fingerprint \S+/, `fingerprint ${o.fingerprint}`),
    );
    const r2 = await tether(ok, touch(marker));
    t.equal(r2.code, 0, r2.stderr);
    t.ok(existsSync(marker), 'with the right pin it ran');
  });
  t.end();
});

t.test('pairing end to end', async (t) => {
  const o = await ownDaemon(stranger.device, stranger.port + 1, ['--pair']);
  t.match(o.code, /^[A-Z2-9]{5}-[A-Z2-9]{5}$/, 'tetherd --pair printed a code');
  const code = o.code!;
  const a = freshHome();

  // Pairing open lets a stranger pair, nothing more.
  const marker = join(tmp, 'ran-while-pairing');
  writeFileSync(
    join(a.home, 'config'),
    `default x\ndevice x\n  address ${o.addr}\n  fingerprint ${o.fingerprint}\n`,
  );
  const r1 = await tether(a, touch(marker));
  t.equal(r1.code, 255);
  oneLine(t, r1.stderr, /^tether: .*not authorized/);
  t.notOk(existsSync(marker), 'an unpaired client ran nothing while pairing was open');
  rmSync(join(a.home, 'config'));

  const wrong = await tether(a, ['pair', 'box', o.addr, '--code', 'AAAAA-AAAAA']);
  t.equal(wrong.code, 255);
  t.match(wrong.stderr, /\ntether: box: .*wrong pairing code\n$/, 'a wrong code says so');
  t.notMatch(configOf(a.home), /device box/, 'nothing pinned');
  t.same(authorizedKeys(o.stateDir), [], 'nothing authorized');

  const r = await tether(a, ['pair', 'box', o.addr, '--code', code]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, `key fingerprint is ${o.fingerprint}`, 'shows the device fingerprint');
  t.match(
    configOf(a.home),
    new RegExp(
      `device box\\n\\s+address ${o.addr}\\n\\s+fingerprint ${o.fingerprint.replace(/[+/]/g, '\\$&')}\\n`,
    ),
  );
  t.match(configOf(a.home), /\n\s+identityfile keys\/box\.pem\n/, 'a key of its own for box');
  t.equal(statSync(join(a.home, 'keys/box.pem')).mode & 0o777, 0o600);
  t.same(authorizedKeys(o.stateDir), [clientFp(a.home, 'box')], 'the daemon holds that key');

  const run = await tether(a, ['run', '-d', 'box', 'sh', '-c', 'echo ok']);
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, 'ok\n');

  // The code was for one client only.
  const b = freshHome();
  const again = await tether(b, ['pair', 'box', o.addr, '--code', code]);
  t.equal(again.code, 255, 'a used code pairs no second client');
  t.same(authorizedKeys(o.stateDir), [clientFp(a.home, 'box')], 'still only the first');
  t.notMatch(configOf(b.home), /device box/);

  // One stolen key opens one device: a second device paired from the same home gets another.
  const o2 = await ownDaemon(stranger.device, stranger.port + 4, ['--pair']);
  const r2 = await tether(a, ['pair', 'box2', o2.addr, '--code', o2.code!]);
  t.equal(r2.code, 0, r2.stderr);
  const k1 = clientFp(a.home, 'box');
  const k2 = clientFp(a.home, 'box2');
  t.not(k1, k2, 'two devices, two client keys');
  t.same(authorizedKeys(o2.stateDir), [k2], 'the second device holds only its own');
  const swapped = copyHome(a, (c) => c.replace('keys/box2.pem', 'keys/box.pem'));
  const stolen = await tether(swapped, ['run', '-d', 'box2', 'sh', '-c', 'echo ran']);
  t.equal(stolen.code, 255, "box's key does not open box2");
  oneLine(t, stolen.stderr, /^tether: .*not authorized/);
  t.equal(stolen.stdout, '');
});

t.test(
  'a relay in between (its own TLS key) pairs nothing, even with the right code',
  async (t) => {
    const o = await ownDaemon(stranger.device, stranger.port + 5, ['--pair']);
    const relayId = await loadOrCreateIdentity(mkdtempSync(join(tmp, 'relay-')), 'relay');
    const [host, port] = o.addr.split(':') as [string, string];
    const relay = createTlsServer(relayId);
    relay.on('secureConnection', (down) => {
      connectTls(relayId, host, Number(port)).then(
        (up) => {
          down.pipe(up).pipe(down);
          up.on('error', () => down.destroy());
          down.on('error', () => up.destroy());
        },
        () => down.destroy(),
      );
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    t.teardown(() => relay.close());
    const relayAddr = `127.0.0.1:${(relay.address() as AddressInfo).port}`;
    const h = freshHome();
    const r = await tether(h, ['pair', 'box', relayAddr, '--code', o.code!]);
    t.equal(r.code, 255, 'refused');
    t.match(
      r.stderr,
      `key fingerprint is ${relayId.fingerprint}`,
      "the client saw the relay's key",
    );
    oneLine(
      t,
      r.stderr.split('\n').slice(1).join('\n'),
      /^tether: box: pairing refused: wrong pairing code\n$/,
    );
    t.same(authorizedKeys(o.stateDir), [], 'the device authorized nobody');
    t.notMatch(configOf(h.home), /device box/, 'the client pinned nothing');
    // It cost one attempt of five: the user, connected directly, pairs.
    const direct = await tether(h, ['pair', 'box', o.addr, '--code', o.code!]);
    t.equal(direct.code, 0, direct.stderr);
    t.same(authorizedKeys(o.stateDir), [clientFp(h.home, 'box')]);
  },
);

t.test('five wrong codes burn the code', async (t) => {
  const o = await ownDaemon(stranger.device, stranger.port + 2, ['--pair']);
  const c = freshHome();
  // Four at once (the daemon serves no more pairing connections at a time), then one:
  // attempts under way together are each counted.
  const attempt = (i: number) => tether(c, ['pair', 'box', o.addr, '--code', `WRONG-CODE${i}`]);
  const wrong = [...(await Promise.all([1, 2, 3, 4].map(attempt))), await attempt(5)];
  wrong.forEach((r, i) => {
    t.equal(r.code, 255);
    t.match(r.stderr, /wrong pairing code/, `wrong code ${i + 1} refused`);
  });
  const r = await tether(c, ['pair', 'box', o.addr, '--code', o.code!]);
  t.equal(r.code, 255, 'the right code is refused now');
  t.same(authorizedKeys(o.stateDir), [], 'not authorized');
  t.notMatch(configOf(c.home), /device box/, 'not pinned');
});

t.test('pairing when pairing is not open fails with a clear line', async (t) => {
  const h = freshHome();
  const addr = `${stranger.device.devAddr}:${stranger.port}`;
  const r = await tether(h, ['pair', 'box', addr, '--code', 'AAAAA-AAAAA']);
  t.equal(r.code, 255);
  const last = r.stderr.trimEnd().split('\n').at(-1)!;
  // Not "pair it with `tether pair`", which is what the user just ran.
  t.match(last, /^tether: .*pairing is not open/, 'says pairing is not open');
  t.notMatch(configOf(h.home), /device box/);
});

t.test('`tetherd pair --state DIR` opens pairing for a running daemon', async (t) => {
  const o = await ownDaemon(stranger.device, stranger.port + 3);
  // A private /var/lib: were --state ignored, the default state dir of a
  // real daemon must not be left with an open pairing code.
  const out = await new Promise<string>((resolve, reject) =>
    execFile(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount -t tmpfs tmpfs /var/lib && exec "$0" pair --state "$1"',
        TETHERD,
        o.stateDir,
      ],
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
    ),
  );
  const code = /pairing code: (\S+)/.exec(out)?.[1];
  t.ok(code, `printed a code: ${out}`);
  t.ok(existsSync(join(o.stateDir, 'pairing.json')), 'the code is in the given state dir');
  const h = freshHome();
  const r = await tether(h, ['pair', 'box', o.addr, '--code', code ?? '']);
  t.equal(r.code, 0, r.stderr);
  t.same(authorizedKeys(o.stateDir), [clientFp(h.home, 'box')]);
});

t.test('bad input is one line and exit 255', async (t) => {
  const bogus = await tether(paired, ['run', '--bogus']);
  t.equal(bogus.code, 255);
  oneLine(t, bogus.stderr, /^tether: .*--bogus/);

  const none = await tether(paired, ['run']);
  t.equal(none.code, 255);
  oneLine(t, none.stderr, /^tether: .*program/);

  const dev = await tether(paired, ['run', '-d', 'nosuchdevice', 'true']);
  t.equal(dev.code, 255);
  oneLine(t, dev.stderr, /^tether: .*nosuchdevice/);

  const h = freshHome('default dev\ndevice dev\n  address 10.0.0.1\n  frobnicate yes\n');
  const kw = await tether(h, ['run', 'true']);
  t.equal(kw.code, 255);
  oneLine(t, kw.stderr, /frobnicate/);
  t.match(kw.stderr, `${join(h.home, 'config')}:4:`, 'names file:line');
});

t.test('a device reached through a command (as ssh ProxyCommand)', async (t) => {
  const ns = paired.device.ns;
  const h = freshHome(
    `device viacmd\n  command ip netns exec ${ns} ${join(ROOT, 'bin/tetherd')} --stdio --user root --log-level warn\n`,
  );
  const r = await tether(h, [
    'run',
    '-d',
    'viacmd',
    'sh',
    '-c',
    'readlink /proc/self/ns/net; seq 100000; echo err >&2; exit 7',
  ]);
  t.equal(r.code, 7, 'exit status intact');
  t.equal(r.stderr, 'err\n', 'stderr intact');
  const devNs = await paired.device.run(['readlink', '/proc/self/ns/net']);
  const [first, ...rest] = r.stdout.split('\n');
  t.equal(first, devNs.stdout.trim(), "it ran in the device's network namespace");
  t.equal(
    rest.join('\n'),
    `${Array.from({ length: 100000 }, (_, i) => i + 1).join('\n')}\n`,
    'stdout intact',
  );
});
