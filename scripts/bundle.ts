// Bundles each CLI into one ES module under dist/, so a start loads one
// plain JS file: stripping TypeScript types at run time costs ~150 ms.
import { build } from 'esbuild';

const entries = { tether: 'client/main.ts', tetherd: 'daemon/main.ts' };

await Promise.all(
  Object.entries(entries).map(([name, entry]) =>
    build({
      entryPoints: [entry],
      outfile: `dist/${name}.mjs`,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      sourcemap: 'linked',
      legalComments: 'none',
      logLevel: 'warning',
      // Bundled CommonJS dependencies call require(); give the ES module one.
      banner: {
        js: "import { createRequire as __tetherRequire } from 'node:module'; const require = __tetherRequire(import.meta.url);",
      },
    }),
  ),
);
