// Entry of the single tetherd executable (npm run package): writes the addon the build
// embedded into an exec-permitted directory, loads it, removes the file, then starts tetherd.
// The directory is TETHER_ADDON_DIR, else the state directory (tetherd runs programs from it,
// so it is exec-permitted anyway): a noexec /tmp does not matter.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import addon from 'tether:addon';
import { defaultStateDir, makeDir } from './state.ts';

/** The --state of the command line, read before commander sees it. */
function stateArg(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--state') return argv[i + 1];
    if (a.startsWith('--state=')) return a.slice('--state='.length);
  }
  return undefined;
}

function extract(): string {
  const base = process.env.TETHER_ADDON_DIR || stateArg(process.argv.slice(2)) || defaultStateDir();
  try {
    makeDir(base);
    const dir = mkdtempSync(join(base, '.addon-'));
    writeFileSync(join(dir, 'tether.node'), addon, { mode: 0o500 });
    return dir;
  } catch (e) {
    process.stderr.write(
      `tetherd: cannot write its native addon under ${base}: ${(e as Error).message} (set TETHER_ADDON_DIR)\n`,
    );
    process.exit(1);
  }
}

const dir = extract();
process.env.TETHER_ADDON = join(dir, 'tether.node');
import('./native.ts')
  .finally(() => {
    // Loaded (or not): the file is not needed any more, nor seen by the programs tetherd runs.
    delete process.env.TETHER_ADDON;
    rmSync(dir, { recursive: true, force: true });
  })
  .then(() => import('./main.ts'))
  .catch((e: Error) => {
    process.stderr.write(`tetherd: ${e.message}\n`);
    process.exit(1);
  });
