// The host-side race of DESIGN §2 for as long as asked: a process swaps a directory of the
// view for a symlink to outside it while the view server answers through it.
//   node scripts/view-race.ts [TRIES] [--no-openat2]      (default 1000000)
// Prints the tries, the swaps and the answers that came from outside (must be 0); exit 1 if any.
import { raceView } from '../test/lib/view-race.ts';

const tries = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 1_000_000);
const openat2 = !process.argv.includes('--no-openat2');
const t0 = Date.now();
const r = await raceView({ tries, openat2 });
const s = ((Date.now() - t0) / 1000).toFixed(0);
process.stdout.write(
  `${r.tries} tries in ${s} s (${openat2 ? 'openat2' : '/proc/self/fd check'}), ${r.swaps} swaps: ` +
    `${r.inside} answers from inside, ${r.outside} from outside ${JSON.stringify(r.hits)}\n`,
);
process.exit(r.outside === 0 ? 0 : 1);
