import { homedir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { configDir, parseConfig } from '../../client/config.ts';
import { sendEnvFilter } from '../../client/env-rules.ts';
import { cwdHint, hiddenPaths, viewMounts } from '../../client/view-config.ts';

const device = { name: 'board', setenv: [], binds: [] };

t.test('a cwd outside the writable mounts of a sysroot view gets a hint', async (t) => {
  const sysroot = viewMounts(device, { root: '/srv/sysroot', binds: ['/work'] }, '/home/me/src');
  t.equal(
    cwdHint(sysroot, '/home/me/src'),
    "the view's / is /srv/sysroot: show this directory with --bind /home/me/src",
  );
  t.equal(
    cwdHint(sysroot, '/tmp/build'),
    "the view's / is /srv/sysroot: show this directory with --bind /tmp/build",
    "under the device's /tmp",
  );
  t.equal(cwdHint(sysroot, '/work'), null, 'a bound directory');
  t.equal(cwdHint(sysroot, '/work/sub/dir'), null, 'below a bound directory');
  t.equal(
    cwdHint(sysroot, '/workshop'),
    "the view's / is /srv/sysroot: show this directory with --bind /workshop",
    'a name that only starts like a bind',
  );
});

t.test("no hint where the cwd is in the view: the host's / or no view", async (t) => {
  const host = viewMounts(device, { binds: [] }, '/home/me/src');
  t.equal(cwdHint(host, '/home/me/src'), null, "the host's / shows every directory");
  t.equal(cwdHint(null, '/anywhere'), null, "the device's own files");
});

t.test("the default view: the cwd's tree writable, $HOME not; the never-served list", async (t) => {
  const mounts = viewMounts(device, { binds: [] }, '/srv/proj') ?? [];
  const writable = mounts.filter((m) => 'host' in m && !m.readonly).map((m) => m.path);
  t.same(writable, ['/srv/proj'], 'only the working directory is writable');
  const hidden = hiddenPaths({ ...device, hide: ['/srv/secrets'] });
  for (const p of [join(homedir(), '.ssh'), join(homedir(), '.gnupg'), configDir(), '/srv/secrets'])
    t.ok(hidden.includes(p), `${p} is never served`);
});

t.test('sendenv rules: the defaults keep credentials back, a device may send them', async (t) => {
  const dflt = sendEnvFilter();
  for (const n of ['PATH', 'HOME', 'CC', 'LANG', 'MAKEFLAGS', 'TOKENIZERS_PARALLELISM'])
    t.ok(dflt(n), `${n} goes`);
  for (const n of [
    'SSH_AUTH_SOCK',
    'GITHUB_TOKEN',
    'npm_config__authToken',
    'AWS_PROFILE',
    'DB_PASSWORD',
  ])
    t.notOk(dflt(n), `${n} stays`);
  const cfg = parseConfig(
    'device a\n  sendenv GITHUB_TOKEN\ndevice b\n  sendenv -*\n  sendenv PATH LANG LC_*\n',
    'config',
    1202,
  );
  const a = sendEnvFilter(cfg.devices.get('a')!.sendEnv);
  t.ok(a('GITHUB_TOKEN'), 'a sendenv line sends what the defaults keep');
  t.notOk(a('GH_TOKEN'), 'and only that');
  const b = sendEnvFilter(cfg.devices.get('b')!.sendEnv);
  t.same(
    ['PATH', 'LANG', 'LC_ALL', 'HOME', 'CC'].filter(b),
    ['PATH', 'LANG', 'LC_ALL'],
    '`sendenv -*` then names: an allow-list',
  );
});

t.test('identityfile: relative to the config file, as written by pairing', async (t) => {
  const cfg = parseConfig('device a\n  identityfile keys/a.pem\n', '/h/tether/config', 1202);
  t.equal(cfg.devices.get('a')!.identityFile, '/h/tether/keys/a.pem');
});
