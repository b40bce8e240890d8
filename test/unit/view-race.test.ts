// The host-side race of DESIGN §2: another process (a second run's client, or anything on the
// host) swaps a checked directory for a symlink to outside the view between the walk and the
// use. Every answer must still come from inside the exported root. Here a child process swaps
// as fast as it can while the view serves opens, lookups and listings of a path through it;
// scripts/view-race.ts runs the same for as many tries as asked (1M for the closing figure).
import t from 'tap';
import { raceView } from '../lib/view-race.ts';

for (const openat2 of [true, false]) {
  const how = openat2 ? 'openat2' : 'the /proc/self/fd check of kernels before 5.6';
  t.test(`a directory swapped for a symlink never leads the view outside (${how})`, async (t) => {
    const r = await raceView({ seconds: 3, openat2 });
    t.ok(r.tries > 1000, `${r.tries} tries, ${r.swaps} swaps`);
    t.ok(r.swaps > 1000, 'the swapper kept swapping');
    t.ok(r.inside > 0, 'some answers came from the real directory');
    t.equal(r.outside, 0, `answers from outside: ${JSON.stringify(r.hits)}`);
  });
}
