import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import t from 'tap';
import { cleanupStale, createDevice, type Device } from '../lib/device.ts';
import { startSshd } from '../lib/sshd.ts';

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

function hasNs(ns: string): boolean {
  return sh('ip', ['netns', 'list'])
    .split('\n')
    .some((l) => l.split(' ')[0] === ns);
}

function hasLink(ifname: string): boolean {
  try {
    execFileSync('ip', ['link', 'show', ifname], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function hostRules(): string {
  return sh('iptables-legacy', ['-w', '-t', 'mangle', '-S', 'PREROUTING']);
}

// Minimum and average of `ping -U` (user-to-user time: it includes the delay
// line's queue, which the kernel's receive stamp of plain ping would miss).
function pingRtt(addr: string): Promise<{ min: number; avg: number }> {
  return new Promise((resolve, reject) => {
    execFile('ping', ['-U', '-q', '-c', '20', '-i', '0.02', '-W', '2', addr], (err, out) => {
      const m = /= ([\d.]+)\/([\d.]+)\//.exec(out);
      if (err || !m) reject(err ?? new Error(out));
      else resolve({ min: Number(m[1]), avg: Number(m[2]) });
    });
  });
}

// spawnSync reaps the child, so its pid is free, not a zombie's.
function deadPid(): number {
  return spawnSync('true').pid!;
}

t.test('unshaped device: addresses, names, commands, teardown', async (t) => {
  const dev = await createDevice();
  t.teardown(() => dev.destroy());
  t.match(dev.ns, new RegExp(`^tether-${process.pid}-\\d+$`));
  t.ok(dev.hostIf.length <= 15 && dev.devIf.length <= 15, 'interface names fit IFNAMSIZ');
  t.ok(hasNs(dev.ns), 'namespace exists');

  const addr = await dev.run(['ip', '-o', '-4', 'addr', 'show']);
  t.equal(addr.code, 0);
  t.match(addr.stdout, /\blo\b.*inet 127\.0\.0\.1/, 'lo is up inside');
  t.match(addr.stdout, new RegExp(`${dev.devIf}.*inet ${dev.devAddr.replaceAll('.', '\\.')}/30`));

  const echo = await dev.run(['sh', '-c', 'cat; exit 3'], { input: 'in' });
  t.same([echo.code, echo.stdout], [3, 'in'], 'run passes stdin, stdout and exit code');

  const fromDev = await dev.run(['ping', '-c', '1', '-W', '2', dev.hostAddr]);
  t.equal(fromDev.code, 0, 'device reaches host end');
  const rtt = await pingRtt(dev.devAddr);
  t.ok(rtt.avg < 5, `unshaped RTT is small (${rtt.avg} ms)`);
  t.notMatch(hostRules(), dev.ns, 'no delay rule without a delay');

  const sleeper = dev.exec(['sleep', '1000']);
  const killed = new Promise((r) => sleeper.once('exit', (_c, sig) => r(sig)));
  await dev.destroy();
  t.equal(await killed, 'SIGKILL', 'destroy kills processes left in the namespace');
  t.notOk(hasNs(dev.ns), 'namespace removed');
  t.notOk(hasLink(dev.hostIf), 'veth removed');
  await dev.destroy();
  t.pass('destroy twice is harmless');
});

t.test('parallel devices get distinct names and subnets', async (t) => {
  const devs = await Promise.all([1, 2, 3, 4].map(() => createDevice()));
  t.teardown(() => Promise.all(devs.map((d) => d.destroy())));
  t.equal(new Set(devs.map((d) => d.ns)).size, 4, 'distinct namespaces');
  t.equal(new Set(devs.map((d) => d.hostIf)).size, 4, 'distinct interfaces');
  // A /30 is its address with the last two bits cleared.
  const subnets = devs.map((d) => {
    const [a, b, c, last] = d.devAddr.split('.').map(Number);
    return [a, b, c, last & ~3].join('.');
  });
  t.equal(new Set(subnets).size, 4, 'distinct subnets');
  for (const d of devs) t.equal((await d.run(['ping', '-c', '1', '-W', '2', d.hostAddr])).code, 0);
});

t.test('shaped device: delay and rate', async (t) => {
  const bare = await createDevice();
  t.teardown(() => bare.destroy());
  const shaped: Device = await createDevice({ delayMs: 10, rateMbit: 100 });
  t.teardown(() => shaped.destroy());
  t.equal(shaped.delayMs, 10);

  const htbHost = sh('tc', ['class', 'show', 'dev', shaped.hostIf]);
  const htbDev = sh('tc', ['-n', shaped.ns, 'class', 'show', 'dev', shaped.devIf]);
  t.match(htbHost, /htb 1:1 .*rate 100Mbit/, 'host end rate-limited');
  t.match(htbDev, /htb 1:1 .*rate 100Mbit/, 'device end rate-limited');
  t.match(hostRules(), new RegExp(`-i ${shaped.hostIf} .*--comment ${shaped.ns} .*NFQUEUE`));
  t.notMatch(hostRules(), /-A PREROUTING (?!.*-i tt).*NFQUEUE/, 'host rules stay on veths');

  const slow = await pingRtt(shaped.devAddr);
  const fast = await pingRtt(bare.devAddr);
  t.comment(`ping -U RTT: unshaped ${fast.avg} ms, 10 ms set ${slow.avg} ms`);
  t.ok(slow.min >= 9, `min RTT ${slow.min} ms reaches the set 10 ms`);
  t.ok(slow.min < 60, `min RTT ${slow.min} ms is not wildly off`);
  t.ok(fast.avg < slow.avg, 'the unshaped link is faster');

  const { hostIf, ns } = shaped;
  await shaped.destroy();
  t.notMatch(hostRules(), ns, 'host rule removed');
  t.notOk(hasLink(hostIf));
});

t.test('1 ms RTT device', async (t) => {
  const dev = await createDevice({ delayMs: 1 });
  t.teardown(() => dev.destroy());
  const rtt = await pingRtt(dev.devAddr);
  t.comment(`ping -U RTT with 1 ms set: min ${rtt.min} avg ${rtt.avg} ms`);
  t.ok(rtt.min >= 0.8, `min RTT ${rtt.min} ms reaches about 1 ms`);
  t.ok(rtt.min < 20, `min RTT ${rtt.min} ms is not wildly off`);
});

t.test('cleanupStale removes what a dead run left', async (t) => {
  const ns = `tether-${deadPid()}-0`;
  sh('ip', ['netns', 'add', ns]);
  t.teardown(() => {
    execFile('ip', ['netns', 'del', ns], () => {});
  });
  const rule = `-w -t mangle -A PREROUTING -i ttstale -m comment --comment ${ns} -j NFQUEUE --queue-num 19999`;
  sh('iptables-legacy', rule.split(' '));
  const claim = '/run/tether-test-devices/stale-test';
  mkdirSync(dirname(claim), { recursive: true });
  writeFileSync(claim, ns);
  cleanupStale();
  t.notOk(hasNs(ns), 'namespace removed');
  t.notMatch(hostRules(), ns, 'host rule removed');
  t.notOk(existsSync(claim), 'claim removed');
});

t.test('a forgotten device is destroyed when its process exits', async (t) => {
  const script = `import { createDevice } from ${JSON.stringify(new URL('../lib/device.ts', import.meta.url).href)};
    const d = await createDevice({ delayMs: 2 });
    d.exec(['sleep', '1000'], { stdio: 'ignore' }).unref();
    console.log(JSON.stringify({ ns: d.ns, hostIf: d.hostIf }));`;
  const out = sh(process.execPath, ['--input-type=module', '-e', script]);
  const { ns, hostIf } = JSON.parse(out);
  t.notOk(hasNs(ns), 'namespace removed');
  t.notOk(hasLink(hostIf), 'veth removed');
  t.notMatch(hostRules(), ns, 'host rule removed');
});

t.test('OpenSSH baseline in the device', async (t) => {
  const dev = await createDevice({ delayMs: 1 });
  t.teardown(() => dev.destroy());
  const sshd = await startSshd(dev);
  t.teardown(() => sshd.stop());
  t.equal(sshd.kex, 'curve25519-sha256');

  const ssh = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      execFile('ssh', args, (err, out, stderr) =>
        resolve({
          code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
          out,
          err: stderr,
        }),
      );
    });
  const r = await ssh([...sshd.sshArgs(), 'true']);
  t.equal(r.code, 0, `ssh true through a new connection ${r.err}`);
  const home = await ssh([...sshd.sshArgs(), 'echo "$HOME"; ls -A "$HOME" | wc -l']);
  const [homeDir, entries] = home.out.trim().split('\n');
  t.not(homeDir, '/root', 'HOME is not root’s');
  t.equal(entries.trim(), '0', 'HOME is empty');
  const netns = await ssh([...sshd.sshArgs(), 'ip -o -4 addr show']);
  t.match(netns.out, dev.devAddr, 'commands run inside the device namespace');

  const cm = await sshd.controlMaster();
  const viaCm = await ssh([...cm.args, 'true']);
  t.equal(viaCm.code, 0, `ssh true through the ControlMaster ${viaCm.err}`);
  t.equal((await ssh(['-O', 'check', ...cm.args])).code, 0, 'master answers');
  await cm.stop();
  t.not((await ssh(['-O', 'check', ...cm.args])).code, 0, 'stopped master is gone');

  const onHost = await startSshd(dev, { on: 'host', kex: 'sntrup761x25519-sha512@openssh.com' });
  t.teardown(() => onHost.stop());
  const back = await dev.run(['ssh', ...onHost.sshArgs(), 'true']);
  t.equal(back.code, 0, `the device reaches an sshd on the host end ${back.stderr}`);

  await sshd.stop();
  const refused = await ssh([...sshd.sshArgs(['-o', 'ConnectTimeout=2']), 'true']);
  t.not(refused.code, 0, 'stopped sshd refuses');
});
