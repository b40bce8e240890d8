import t from 'tap';
import { cwdHint, viewMounts } from '../../client/view-config.ts';

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
