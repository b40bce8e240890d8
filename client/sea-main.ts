// Entry of the single tether executable (npm run package). The launcher copied this Node
// executable into the cache directory (which allows exec); the agent's addon, embedded by the
// build, is written next to it the first time the agent needs it. Then the CLI starts.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import addon from 'tether:addon';
import { useAddon } from './native.ts';

useAddon(() => {
  const id = createHash('sha256').update(addon).digest('hex').slice(0, 16);
  const file = join(dirname(process.execPath), `client-addon-${id}.node`);
  if (!existsSync(file)) {
    const tmp = `${file}.tmp${process.pid}`;
    writeFileSync(tmp, addon, { mode: 0o755 });
    renameSync(tmp, file);
    // Other versions' addons go (one still running writes its own again when it needs it).
    const dir = dirname(file);
    for (const name of readdirSync(dir))
      if (/^client-addon-[0-9a-f]{16}\.node$/.test(name) && name !== basename(file))
        rmSync(join(dir, name), { force: true });
  }
  return file;
});
import('./main.ts').catch((e: Error) => {
  process.stderr.write(`tether: ${e.message}\n`);
  process.exit(255);
});
