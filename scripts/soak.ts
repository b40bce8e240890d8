// The soak for as long as asked: N concurrent runs through one agent on a test device.
//   node scripts/soak.ts [SECONDS] [CONCURRENCY]      (default 600 s, 32)
// Prints samples of the agent's and tetherd's fds and RSS; exit 1 on any failed run.
import { soak } from '../test/lib/soak.ts';

const [seconds = 600, concurrency = 32] = process.argv.slice(2).map(Number);
const r = await soak({ seconds, concurrency, log: (l) => process.stdout.write(`${l}\n`) });
process.stdout.write(`${r.runs} runs, ${r.failures.length} failed\n`);
for (const f of r.failures.slice(0, 10)) process.stdout.write(`${f}\n`);
process.exit(r.failures.length === 0 ? 0 : 1);
