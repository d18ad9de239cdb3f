// `npm run build:web`: bundles the console (web/src, plain TypeScript) with esbuild into one
// script, and copies the page, the style sheet and the icon beside it, into dist/web. coroner
// (ts/web/index.ts) serves exactly these files; nothing is fetched from elsewhere at run time.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, '..', 'dist', 'web');
fs.mkdirSync(out, { recursive: true });

await build({
  entryPoints: [path.join(here, 'src', 'main.ts')],
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  outfile: path.join(out, 'app.js'),
  logLevel: 'warning',
});
for (const file of ['index.html', 'app.css', 'icon.svg']) fs.copyFileSync(path.join(here, file), path.join(out, file));
