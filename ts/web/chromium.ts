/**
 * Debian's chromium, driven by playwright-core, for the console's browser tests and benchmark.
 *
 * What the caller does: `launchChromium()`, then `newPage()` pages; `close()` at the end.
 * What this does: starts `/usr/bin/chromium` (or `$CORESNAP_CHROMIUM`) headless with a new empty
 * profile folder, and with the switches that keep it off the network (no background requests,
 * component updates or sync) and working as root (no sandbox). No browser is downloaded:
 * playwright-core only drives the one Debian installed (scripts/install-deps.sh).
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-dev-shm-usage',
];

export class ChromiumMissingError extends Error {
  override name = 'ChromiumMissingError';
}

export interface Chromium {
  context: BrowserContext;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.CORESNAP_CHROMIUM || '/usr/bin/chromium';
}

export async function launchChromium(options: { viewport?: { width: number; height: number } } = {}): Promise<Chromium> {
  const executablePath = chromiumPath();
  if (!fs.existsSync(executablePath)) {
    throw new ChromiumMissingError(`There is no chromium at ${executablePath}: install Debian's (scripts/install-deps.sh installs it) or set CORESNAP_CHROMIUM.`);
  }
  const { chromium } = await import('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'coresnap-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: options.viewport ?? { width: 1400, height: 900 },
      acceptDownloads: true,
      timeout: 60_000,
    });
  } catch (err) {
    fs.rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  return {
    context,
    newPage: () => context.newPage(),
    async close() {
      await context.close().catch(() => undefined);
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
