/**
 * The web console, served by coroner itself from the port of its API.
 *
 * What the caller (the server) does: `mountWeb(router)` once at start-up, after the query API.
 * What this module does: mounts `GET /` and `GET /console` (the page), `GET /console/<asset>`
 * (the bundle `npm run build:web` wrote to dist/web: one script, one style sheet, an icon) and the
 * few read/declare endpoints the console needs that the API lacks (`/api/web/...`, api.ts). Every
 * asset is read into memory at mount time and served with its own `Content-Type`; nothing is read
 * by a path the client names, and the page loads nothing from another origin (its
 * `Content-Security-Policy` says so to the browser too), so the console works without a network.
 *
 * When the bundle has not been built, `/` answers 503 with a sentence saying how to build it; the
 * API is unaffected.
 */

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rawResponse, type Router } from '../server/router.js';
import { mountWebApi } from './api.js';

export interface WebOptions {
  /** Where the built console is (default: dist/web beside this compiled module's dist/ts). */
  assetsDir?: string;
}

/** The assets the bundle consists of, with the type each is served as. */
const ASSETS: ReadonlyArray<{ file: string; type: string }> = [
  { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  { file: 'app.css', type: 'text/css; charset=utf-8' },
  { file: 'icon.svg', type: 'image/svg+xml' },
];

/**
 * The browser may load only from this origin. Inline style attributes are allowed because the
 * charts size their bars with them; scripts are never inline.
 */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; " +
  "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

export function defaultAssetsDir(): string {
  // dist/ts/web/index.js → dist/web
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'web');
}

/** Mounts the console's page, its assets and its endpoints on `router`. */
export function mountWeb(router: Router, options: WebOptions = {}): void {
  const dir = options.assetsDir ?? defaultAssetsDir();
  const page = readAsset(dir, 'index.html');
  const common = {
    'Content-Security-Policy': CONTENT_SECURITY_POLICY,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
  };
  const servePage = () =>
    page
      ? rawResponse({ headers: { ...common, 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' }, body: page })
      : rawResponse({
          status: 503,
          headers: { ...common, 'Content-Type': 'text/plain; charset=utf-8' },
          body: `The web console is not built (no ${path.join(dir, 'index.html')}): run \`npm run build:web\` and restart coroner.\n`,
        });
  router.route('GET', '/', servePage);
  router.route('GET', '/console', servePage);
  for (const asset of ASSETS) {
    const body = readAsset(dir, asset.file);
    if (!body) continue;
    router.route('GET', `/console/${asset.file}`, () =>
      // The page is no-cache, so a rebuilt bundle is picked up on reload; the assets revalidate too.
      rawResponse({ headers: { ...common, 'Content-Type': asset.type, 'Cache-Control': 'no-cache' }, body }),
    );
  }
  mountWebApi(router);
}

function readAsset(dir: string, file: string): Buffer | undefined {
  try {
    return fs.readFileSync(path.join(dir, file));
  } catch {
    return undefined;
  }
}
