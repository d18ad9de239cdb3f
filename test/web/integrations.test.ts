/**
 * The console's workflow-integrations pages in a real browser (Debian's chromium, playwright-core)
 * against a real coroner server and a real HTTP receiver on 127.0.0.1: a new project and its
 * token, a webhook integration added from the page (its secret shown once), a test message
 * delivered and signed with that secret, a real ptrace snapshot of a corpus core announced as a
 * new group, one delivery opened (body and attempt log), a refused delivery retried from the log,
 * the overview of every project, and removal. Screenshots go to test-artifacts/web/.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import test from 'ava';
import type { Page } from 'playwright-core';
import { launchChromium, type Chromium } from '../../ts/web/chromium.js';
import { corpusSnapshot, http, tempDir, type TestServer } from '../coroner/helpers.js';
import { Receiver } from '../workflows/helpers.js';
import { ADMIN_PASSWORD, navigate, ready, screenshot, startWebServer } from './helpers.js';

let s: TestServer;
let browser: Chromium;
let page: Page;
let receiver: Receiver;

/** What a receiver computes to check a message: sha256=HMAC-SHA256(secret, raw body). */
function signatureOf(secret: string, body: string): string {
  return `sha256=${crypto.createHmac('sha256', secret).update(body).digest('hex')}`;
}

async function adminApi(method: 'GET' | 'POST' | 'DELETE', path: string): Promise<any> {
  const r = await http(`${s.url}${path}`, { method, headers: { 'X-Coroner-Token': s.adminSession } });
  if (r.status !== 200) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.text}`);
  return r.json;
}

test.before(async () => {
  receiver = await Receiver.start();
  s = await startWebServer();
  browser = await launchChromium();
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.url });
  page = await browser.newPage();
});

test.after.always(async () => {
  await browser?.close();
  await s?.close();
  await receiver?.stop();
});

test.serial('add a webhook integration from the console, test it, see a real crash announced, open a delivery, retry a refused one, remove it', async (t) => {
  // Log in, create the project "alerts" and its token from Configuration.
  await page.goto(`${s.url}/#/login`);
  await ready(page, 'login');
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', ADMIN_PASSWORD);
  await navigate(page, 'projects', () => page.click('form.login button[type=submit]'));
  await navigate(page, 'admin-projects', () => page.click('header nav a[href="#/admin"]'));
  await page.fill('form.create-project input[name=name]', 'alerts');
  await navigate(page, 'admin-tokens', () => page.click('form.create-project button[type=submit]'));
  await navigate(page, 'admin-tokens', () => page.click('form.create-token button[type=submit]'));
  const token = (await page.getAttribute('table.tokens tr[data-token]', 'data-token'))!;
  t.regex(token, /^[0-9a-f]{16,128}$/);

  // The project's Integrations tab: nothing yet.
  await navigate(page, 'admin-project-integrations', () => page.click('nav.tabs a[href="#/admin/p/alerts/integrations"]'));
  t.regex((await page.textContent('main .empty')) ?? '', /no integration yet/);
  t.is(await page.isVisible('form.add-integration .jira-fields'), false);
  // Jira asks for its fields; the server's sentence shows beside the button for a bad URL.
  await page.selectOption('form.add-integration select[name=type]', 'jira');
  t.true(await page.isVisible('form.add-integration input[name=jira-project]'));
  t.true(await page.$eval('form.add-integration input[name=jira-token]', (e) => (e as unknown as { required: boolean }).required));
  await page.selectOption('form.add-integration select[name=type]', 'webhook');
  t.is(await page.isVisible('form.add-integration .jira-fields'), false);
  await page.fill('form.add-integration input[name=url]', 'gopher://127.0.0.1/hook');
  await page.click('form.add-integration button[type=submit]');
  await page.waitForSelector('form.add-integration .error:not([hidden])');
  t.regex((await page.textContent('form.add-integration .error')) ?? '', /http/);
  t.deepEqual((await adminApi('GET', '/api/admin/projects/alerts/integrations')).integrations, []);

  // Add it for real: new group and regression, a secret the server makes.
  await page.fill('form.add-integration input[name=url]', receiver.url('/coresnap'));
  await page.check('form.add-integration input[name=trigger-regression]');
  await navigate(page, 'admin-project-integrations', () => page.click('form.add-integration button[type=submit]'));
  const secret = ((await page.textContent('.new-secret code.secret')) ?? '').trim();
  t.regex(secret, /^[0-9a-f]{48}$/);
  const row = 'table.integrations tr[data-integration="1"]';
  t.is(await page.getAttribute(row, 'data-type'), 'webhook');
  t.deepEqual(await page.$$eval(`${row} .chip.trigger`, (els) => els.map((e) => e.getAttribute('data-trigger'))), ['new-group', 'regression']);
  t.is((await page.textContent(`${row} td.url`))?.trim(), receiver.url('/coresnap'));
  const stored = (await adminApi('GET', '/api/admin/projects/alerts/integrations/1')).integration;
  t.like(stored, { id: 1, project: 'alerts', type: 'webhook', url: receiver.url('/coresnap'), triggers: ['new-group', 'regression'] });
  t.false(JSON.stringify(stored).includes(secret), 'the API never shows the secret again');
  await screenshot(page, 'integrations-01-added');
  // The secret is shown once: a reload of the page no longer has it.
  await navigate(page, 'admin-project-integrations', () => page.reload());
  t.is(await page.$('.new-secret'), null);
  t.false(((await page.textContent('main')) ?? '').includes(secret));

  // Send a test: the log page shows it pending, then delivered; the receiver got it, signed.
  await navigate(page, 'admin-integration-log', () => page.click(`${row} button.send-test`));
  await page.waitForSelector('table.deliveries tr[data-event=test][data-status=delivered]', { timeout: 20_000 });
  const [testMsg] = await receiver.waitFor(1);
  t.is(testMsg!.path, '/coresnap');
  t.is(testMsg!.headers['x-coresnap-event'], 'test');
  t.is(testMsg!.headers['x-coresnap-signature'], signatureOf(secret, testMsg!.body));
  t.is(testMsg!.json.project, 'alerts');
  t.is((await page.textContent('table.deliveries tr[data-event=test] td.attempts'))?.trim(), '1');

  // A real crash (ptrace of the c-segv-O2 corpus core) to the new project: a new group, announced.
  const snapFile = await corpusSnapshot('c-segv-O2', tempDir('web-integrations-'));
  const form = new FormData();
  form.append('upload_file', new Blob([fs.readFileSync(snapFile)], { type: 'application/json' }), 'snapshot.json');
  const res = await fetch(`${s.url}/post?format=json&token=${token}`, { method: 'POST', body: form });
  t.is(res.status, 200, await res.clone().text());
  const alerts = (await s.store.getProject(s.project.universeId, 'alerts'))!;
  const object = (await s.store.findObjectByRxid(alerts.id, ((await res.json()) as { _rxid: string })._rxid))!;
  const [announced] = await receiver.waitFor(1, 20_000, (r) => r.headers['x-coresnap-event'] === 'new-group');
  t.is(announced!.json.fingerprint, object.fingerprint);
  t.deepEqual(announced!.json.top_frames.slice(0, 4), ['level3', 'level2', 'level1', 'main']);
  t.true(String(announced!.json.link).endsWith(`#/p/alerts/g/${object.fingerprint}`), announced!.json.link);
  t.is(announced!.headers['x-coresnap-signature'], signatureOf(secret, announced!.body));
  await page.click('button.refresh');
  const newGroupRow = await page.waitForSelector('table.deliveries tr[data-event=new-group][data-status=delivered]', { timeout: 20_000 });
  t.is(await newGroupRow.$eval('td.group a', (a) => a.getAttribute('href')), `#/p/alerts/g/${object.fingerprint}`);
  // Newest first: the new-group message above the test.
  t.deepEqual(await page.$$eval('table.deliveries tbody tr', (rows) => rows.map((r) => r.getAttribute('data-event'))), ['new-group', 'test']);
  t.regex((await page.textContent('.integration-summary .counts')) ?? '', /2 delivered/);
  await screenshot(page, 'integrations-02-log');

  // Open it: the body is what the receiver got; one attempt, HTTP 200.
  await navigate(page, 'admin-delivery', () => newGroupRow.$eval('td:first-child a', (a) => (a as unknown as { click(): void }).click()));
  t.is(await page.getAttribute('.delivery-summary', 'data-status'), 'delivered');
  t.deepEqual(JSON.parse((await page.textContent('pre.delivery-body'))!), announced!.json);
  t.deepEqual(await page.$$eval('table.attempt-log tbody td.status', (tds) => tds.map((td) => td.textContent)), ['200']);
  t.is(await page.$('.delivery-summary button.retry'), null, 'a delivered message has no retry');
  await screenshot(page, 'integrations-03-delivery');

  // A receiver that refuses (a 4xx is final): the test fails; retried from the log once it takes it again.
  receiver.answer = () => ({ status: 400, body: 'no thanks' });
  await navigate(page, 'admin-integration-log', () => page.click('a:text("← delivery log of integration 1")'));
  await page.click('.list-tools button.send-test');
  const failed = await page.waitForSelector('table.deliveries tr[data-event=test][data-status=failed]', { timeout: 20_000 });
  const failedId = (await failed.getAttribute('data-delivery'))!;
  t.regex((await failed.$eval('td.last-error', (e) => e.textContent)) ?? '', /HTTP 400: no thanks/);
  t.regex((await page.textContent('.integration-summary .counts')) ?? '', /1 failed/);
  await screenshot(page, 'integrations-04-failed');
  receiver.answer = () => ({ status: 200, body: 'ok' });
  await page.click(`tr[data-delivery="${failedId}"] button.retry`);
  await page.waitForSelector(`tr[data-delivery="${failedId}"][data-status=delivered]`, { timeout: 20_000 });
  const retried = (await receiver.waitFor(3))[2];
  const detail = (await adminApi('GET', `/api/admin/projects/alerts/integrations/1/deliveries/${failedId}`)).delivery;
  t.is(retried!.headers['x-coresnap-delivery'], detail.uuid, 'the retry is the same delivery');
  t.is(retried!.headers['x-coresnap-signature'], signatureOf(secret, retried!.body));
  await navigate(page, 'admin-delivery', () => page.click(`tr[data-delivery="${failedId}"] td:first-child a`));
  t.deepEqual(await page.$$eval('table.attempt-log tbody td.status', (tds) => tds.map((td) => td.textContent)), ['400', '200']);
  t.is((await page.textContent('.delivery-summary dd.attempts'))?.trim(), '2');

  // The overview under Configuration: every project, its integrations, triggers and counts.
  await navigate(page, 'admin-integrations', () => page.click('nav.side a[href="#/admin/integrations"]'));
  t.is((await page.textContent('table.integration-projects tr[data-project=alerts] td.count'))?.trim(), '1');
  t.is((await page.textContent('table.integration-projects tr[data-project=blackhole] td.count'))?.trim(), '0');
  t.regex((await page.textContent('table.integration-projects tr[data-project=alerts]')) ?? '', /3 delivered/);
  await screenshot(page, 'integrations-05-overview');

  // Remove it (after the confirmation): gone from the page and from the API.
  await navigate(page, 'admin-project-integrations', () => page.click('table.integration-projects tr[data-project=alerts] a'));
  page.once('dialog', (d) => void d.accept());
  await navigate(page, 'admin-project-integrations', () => page.click(`${row} button.remove`));
  t.is(await page.$(row), null);
  t.deepEqual((await adminApi('GET', '/api/admin/projects/alerts/integrations')).integrations, []);
});
