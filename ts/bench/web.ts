// `npm run bench` (web part): the console over a project of 1,000,000 crashes in 2,000 groups.
//
// What it checks, in Debian's chromium (playwright-core) against a real coroner server:
// - the last page of crash groups loads within 2x of the first (the console asks the query API
//   for one page, grouped, ordered and paged by the engine, so the offset must not cost);
// - the charts draw the query API's counts: the overview histogram's bins are the API's bins for
//   the same fold, and add up to every crash; each row's histogram is its group's bins.
// The project is filled straight through the Store in large batches (ts/bench/web-fill.ts), then
// the query table is built (warm) before anything is timed. Each page is loaded several times,
// alternating first and last, and the medians are compared. Results go to
// bench-results/web.json; the exit status is 1 when a check fails.
//
//   node dist/ts/bench/web.js [--crashes N] [--groups N] [--hosts N] [--runs N]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bootstrap } from '../coroner/admin.js';
import { queryServiceFor } from '../server/api/service.js';
import { createCoronerServer } from '../server/server.js';
import { openSqliteStore } from '../store/sqlite.js';
import { launchChromium } from '../web/chromium.js';
import { mountWeb } from '../web/index.js';
import { fillSynthetic } from './web-fill.js';

declare const document: { body: { dataset: Record<string, string | undefined> } };

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} needs a positive whole number`);
  return n;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<number> {
  const crashes = option('crashes', 1_000_000);
  const groups = option('groups', 2_000);
  const hosts = option('hosts', 50);
  const runs = option('runs', 5);
  const pageSize = 25;
  const password = 'bench password 1';
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coresnap-web-bench-'));
  const log = (line: string) => process.stdout.write(`bench web: ${line}\n`);
  if (!fs.existsSync(path.join(repo, 'dist', 'web', 'app.js'))) throw new Error('The console is not built: run npm run build:web.');

  const store = await openSqliteStore({ dataDir, maxBatch: 5000 });
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let server: Awaited<ReturnType<typeof createCoronerServer>> | undefined;
  try {
    const { universe } = await bootstrap(store, 'local', { CORONER_ADMIN_PASSWORD: password });
    const project = await store.createProject(universe.id, 'bench');
    const now = Math.floor(Date.now() / 1000);
    log(`filling ${crashes.toLocaleString('en-US')} crashes in ${groups} groups over ${hosts} hosts…`);
    let lastReport = Date.now();
    const fill = await fillSynthetic(store, project, {
      crashes,
      groups,
      hosts,
      from: now - 30 * 86400,
      to: now - 60,
      onProgress: (done) => {
        if (Date.now() - lastReport > 15_000) {
          lastReport = Date.now();
          log(`  ${done.toLocaleString('en-US')} inserted`);
        }
      },
    });
    log(`filled in ${(fill.ms / 1000).toFixed(1)} s`);
    const tWarm = performance.now();
    await queryServiceFor(store).warm(project.id);
    log(`query table built in ${((performance.now() - tWarm) / 1000).toFixed(1)} s`);

    // The server mounts the console itself (server.ts → mountWeb); older servers did not.
    server = await createCoronerServer({ store, universe: universe.name, port: 0, log: () => {} });
    if (!server.router.list().some((r) => r.path === '/console/app.js')) mountWeb(server.router);
    await server.listen();
    const base = server.url();

    browser = await launchChromium();
    const page = await browser.newPage();
    page.setDefaultTimeout(120_000);
    const waitFor = async (name: string, action: () => Promise<unknown>) => {
      const before = await page.evaluate(() => document.body?.dataset.ready ?? '').catch(() => '');
      const t0 = performance.now();
      await action();
      await page.waitForFunction(([b, n]) => Boolean(document.body.dataset.ready) && document.body.dataset.ready !== b && document.body.dataset.page === n, [before, name] as const);
      const wall = performance.now() - t0;
      const error = await page.$('main .error[role=alert]');
      if (error) throw new Error(`the ${name} page shows an error: ${await error.textContent()}`);
      return { wall, render: Number(await page.evaluate(() => document.body.dataset.renderMs)) };
    };
    await page.goto(`${base}/#/login`);
    await page.waitForSelector('form.login');
    await page.fill('input[name=username]', 'admin');
    await page.fill('input[name=password]', password);
    const projectsPage = await waitFor('projects', () => page.click('form.login button[type=submit]'));
    log(`projects page: ${projectsPage.render.toFixed(0)} ms`);

    const lastPage = Math.ceil(groups / pageSize) - 1;
    const first: number[] = [];
    const last: number[] = [];
    // One load of each first, not counted: the browser's own first-time costs.
    await waitFor('groups', () => page.goto(`${base}/#/p/bench`));
    await waitFor('groups', () => page.goto(`${base}/#/p/bench?page=${lastPage}`));
    for (let i = 0; i < runs; i++) {
      first.push((await waitFor('groups', () => page.goto(`${base}/#/p/bench`))).render);
      last.push((await waitFor('groups', () => page.goto(`${base}/#/p/bench?page=${lastPage}`))).render);
    }
    const lastRows = await page.$$eval('table.groups tbody tr[data-fingerprint]', (r) => r.length);
    await waitFor('groups', () => page.goto(`${base}/#/p/bench`));

    // Charts against the API.
    const session = await page.evaluate(() => (globalThis as unknown as { localStorage: { getItem(k: string): string | null } }).localStorage.getItem('coresnap.console.session'));
    const token = (JSON.parse(session ?? '{}') as { token?: string }).token ?? '';
    const api = async (body: unknown) => {
      const res = await fetch(`${base}/api/query?project=bench`, { method: 'POST', headers: { 'X-Coroner-Token': token, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`query failed: HTTP ${res.status} ${await res.text()}`);
      return ((await res.json()) as { response: { values: Array<[string, unknown[], number]> } }).response;
    };
    const drawn = JSON.parse((await page.getAttribute('svg.overview-histogram', 'data-counts')) ?? '[]') as number[];
    const apiBins = ((await api({ fold: { timestamp: [['range'], ['bin', 48]] } })).values[0]?.[1][1] as Array<[number, number, number]>).map((b) => b[2]);
    const overviewMatches = JSON.stringify(drawn) === JSON.stringify(apiBins) && drawn.reduce((a, b) => a + b, 0) === crashes;
    const lo = Number(await page.getAttribute('table.groups', 'data-lo'));
    const hi = Number(await page.getAttribute('table.groups', 'data-hi'));
    const apiRows = (await api({ group: ['fingerprint'], fold: { timestamp: [['bin', 24, lo, hi]] }, limit: pageSize })).values;
    let rowMismatches = 0;
    for (const [fp, folds] of apiRows) {
      const rowDrawn = (await page.getAttribute(`tr[data-fingerprint="${fp}"] svg.row-histogram`, 'data-counts')) ?? '';
      if (rowDrawn !== JSON.stringify((folds[0] as Array<[number, number, number]>).map((b) => b[2]))) rowMismatches++;
    }

    const firstMedian = median(first);
    const lastMedian = median(last);
    const ratio = lastMedian / firstMedian;
    const checks = {
      lastWithin2x: ratio <= 2,
      lastPageRows: lastRows === groups - lastPage * pageSize,
      overviewBinsEqualApi: overviewMatches,
      rowBinsEqualApi: rowMismatches === 0 && apiRows.length === pageSize,
    };
    const result = {
      crashes,
      groups,
      hosts,
      fillSeconds: fill.ms / 1000,
      projectsPageMs: projectsPage.render,
      firstPageMs: first,
      lastPageMs: last,
      firstMedianMs: firstMedian,
      lastMedianMs: lastMedian,
      ratio,
      checks,
    };
    fs.mkdirSync(path.join(repo, 'bench-results'), { recursive: true });
    fs.writeFileSync(path.join(repo, 'bench-results', 'web.json'), JSON.stringify(result, null, 2) + '\n');
    log(`groups page 1: median ${firstMedian.toFixed(0)} ms; page ${lastPage + 1} (last): median ${lastMedian.toFixed(0)} ms; ratio ${ratio.toFixed(2)} (bound 2)`);
    log(`overview bins equal the API's: ${checks.overviewBinsEqualApi}; row bins equal the API's: ${checks.rowBinsEqualApi}; last page rows right: ${checks.lastPageRows}`);
    const ok = Object.values(checks).every(Boolean);
    log(ok ? 'ok' : `FAILED: ${Object.entries(checks).filter(([, v]) => !v).map(([k]) => k).join(', ')}`);
    return ok ? 0 : 1;
  } finally {
    await browser?.close();
    await server?.close();
    await store.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench web: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
