/**
 * Browser-test helpers for the web console: a coroner server in this process with the console
 * mounted (the same `mountWeb` the server calls), Debian's chromium through playwright-core, a
 * wait that knows when a console page has finished rendering, and screenshots kept under
 * test-artifacts/web/.
 */

import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { packageRoot, startServer, type TestServer } from '../coroner/helpers.js';

export { ADMIN_PASSWORD } from '../coroner/helpers.js';

// What the callbacks below use of the page's globals (they run in the browser, not in Node).
declare const document: { body: { dataset: Record<string, string | undefined> } };

export const ARTIFACTS = path.join(packageRoot, 'test-artifacts', 'web');

/**
 * A test server (test/coroner/helpers.ts) with the console mounted, as `coroner serve` mounts it
 * (server.ts calls mountWeb); fails if the console is not built.
 */
export async function startWebServer(): Promise<TestServer> {
  const assets = path.join(packageRoot, 'dist', 'web', 'app.js');
  if (!fs.existsSync(assets)) throw new Error(`The console is not built (${assets} is missing): run npm run build:web.`);
  const s = await startServer();
  if (!s.server.router.list().some((r) => r.method === 'GET' && r.path === '/console/app.js')) {
    await s.close();
    throw new Error('The server did not mount the web console (server.ts mounts ts/web/index.ts mountWeb).');
  }
  return s;
}

/**
 * Runs `action` (a click, a goto) and waits until the console has rendered page `name` anew.
 * Throws with the page's error box when the page ended in an error.
 */
export async function navigate(page: Page, name: string, action: () => Promise<unknown>): Promise<void> {
  const before = await page.evaluate(() => document.body?.dataset.ready ?? '').catch(() => '');
  await action();
  await page.waitForFunction(
    ([b, n]) => Boolean(document.body.dataset.ready) && document.body.dataset.ready !== b && document.body.dataset.page === n,
    [before, name] as const,
    { timeout: 60_000 },
  );
  const error = await page.$('main .error[role=alert]:not([hidden])');
  if (error) throw new Error(`The ${name} page shows an error: ${await error.textContent()}`);
}

/** Waits for page `name` to have rendered (after a goto or a reload). */
export async function ready(page: Page, name: string): Promise<void> {
  await page.waitForFunction((n) => Boolean(document.body.dataset.ready) && document.body.dataset.page === n, name, { timeout: 60_000 });
}

/** The whole page (or only what the window shows, `fullPage: false`) as test-artifacts/web/<name>.png. */
export async function screenshot(page: Page, name: string, options: { fullPage?: boolean } = {}): Promise<string> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: options.fullPage ?? true });
  return file;
}

export async function renderMs(page: Page): Promise<number> {
  return Number(await page.evaluate(() => document.body.dataset.renderMs ?? 'NaN'));
}
