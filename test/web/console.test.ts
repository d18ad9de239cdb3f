/**
 * The web console in a real browser (Debian's chromium, playwright-core), against a real coroner
 * server: log in, create a project and a token (copied with the clipboard icon), submit a real
 * ptrace snapshot of a corpus core with that token, find its group, open the crash and check what
 * is shown against the snapshot itself; then group state, users, attributes, the integrations overview, logout.
 * Every page's screenshot is kept in test-artifacts/web/.
 */

import fs from 'node:fs';
import test from 'ava';
import type { Page, Request } from 'playwright-core';
import { launchChromium, type Chromium } from '../../ts/web/chromium.js';
import { corpusSnapshot, http, tempDir, type TestServer } from '../coroner/helpers.js';
import { ADMIN_PASSWORD, navigate, ready, screenshot, startWebServer } from './helpers.js';

// The page's globals that the callbacks below use (they run in the browser, not in Node).
declare const navigator: { clipboard: { readText(): Promise<string> } };
declare const localStorage: { getItem(key: string): string | null };

interface SnapshotFrame {
  funcName?: string;
  sourcePath?: string;
  line?: number;
}
interface Snapshot {
  uuid: string;
  timestamp: number;
  mainThread: string;
  threads: Record<string, { stack: SnapshotFrame[] }>;
  modules: Array<{ code_file: string; debug_identifier?: string }>;
  signal: { name: string };
  classifiers: string[];
}

let s: TestServer;
let browser: Chromium;
let page: Page;
const foreign: string[] = [];

test.before(async () => {
  s = await startWebServer();
  browser = await launchChromium();
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.url });
  page = await browser.newPage();
  // Works offline: every request the console makes goes to coroner itself.
  page.on('request', (r: Request) => {
    if (!r.url().startsWith(s.url) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) foreign.push(r.url());
  });
});

test.after.always(async () => {
  await browser?.close();
  await s?.close();
});

test.serial('the page and its assets are served by coroner with a same-origin policy', async (t) => {
  const root = await http(`${s.url}/`);
  t.is(root.status, 200);
  t.regex(String(root.headers['content-type']), /^text\/html/);
  t.regex(String(root.headers['content-security-policy']), /default-src 'self'/);
  t.regex(root.text, /\/console\/app\.js/);
  const js = await http(`${s.url}/console/app.js`);
  t.is(js.status, 200);
  t.regex(String(js.headers['content-type']), /^text\/javascript/);
  t.false(/https?:\/\/(?!127\.0\.0\.1)[a-z]/i.test(root.text), 'the page names no other origin');
  const css = await http(`${s.url}/console/app.css`);
  t.is(css.status, 200);
  t.false(/@import|url\(\s*['"]?https?:/i.test(css.text), 'the style sheet loads nothing from elsewhere');
  t.is((await http(`${s.url}/console/nope.js`)).status, 404);
  t.is((await http(`${s.url}/api/web/projects`)).status, 401);
});

test.serial('log in, create a project and a token, submit a real snapshot, find its group and open the crash', async (t) => {
  // Login: an unauthenticated visit lands on the login page; a wrong password says so.
  await page.goto(`${s.url}/`);
  await ready(page, 'login');
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'not the password');
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('form.login .error:not([hidden])');
  t.regex((await page.textContent('form.login .error')) ?? '', /./);
  await screenshot(page, '01-login');
  await page.fill('input[name=password]', ADMIN_PASSWORD);
  await navigate(page, 'projects', () => page.click('form.login button[type=submit]'));
  t.truthy(await page.$('tr[data-project=blackhole]'));
  await screenshot(page, '02-projects-empty');

  // Configuration → create the project (no token yet, as in the guide).
  await navigate(page, 'admin-projects', () => page.click('header nav a[href="#/admin"]'));
  await page.fill('form.create-project input[name=name]', 'webapp');
  await navigate(page, 'admin-tokens', () => page.click('form.create-project button[type=submit]'));
  t.truthy(await s.store.getProject(s.project.universeId, 'webapp'));
  t.regex((await page.textContent('main')) ?? '', /no live token/);
  await navigate(page, 'admin-tokens', () => page.click('form.create-token button[type=submit]'));
  const tokenRow = await page.waitForSelector('table.tokens tr[data-token]');
  const token = (await tokenRow.getAttribute('data-token'))!;
  t.regex(token, /^[0-9a-f]{16,128}$/);
  t.is((await tokenRow.$eval('td.token-id', (e) => e.textContent))?.trim(), token);
  const webapp = (await s.store.getProject(s.project.universeId, 'webapp'))!;
  t.deepEqual((await s.store.listTokens(webapp.id)).map((x) => x.id), [token]);
  // The clipboard icon copies the whole token.
  await tokenRow.$eval('button.copy', (b) => (b as unknown as { click(): void }).click());
  await page.waitForSelector('table.tokens button.copy.copied');
  t.is(await page.evaluate(() => navigator.clipboard.readText()), token);
  await screenshot(page, '03-tokens');

  // Back on Projects: webapp keeps its crashes for 90 days; a duration the server cannot read is
  // refused beside the form.
  await navigate(page, 'admin-projects', () => page.click('header nav a[href="#/admin"]'));
  const retention = 'tr[data-project=webapp] form.retention';
  t.is(await page.inputValue(`${retention} input[name=max_age]`), 'off');
  await page.fill(`${retention} input[name=max_age]`, 'soon');
  await page.click(`${retention} button[type=submit]`);
  await page.waitForSelector(`${retention} .error:not([hidden])`);
  t.regex((await page.textContent(`${retention} .error`)) ?? '', /"soon" is not a retention/);
  await page.fill(`${retention} input[name=max_age]`, '90d');
  await page.click(`${retention} button[type=submit]`);
  // The page redraws with the stored value (polled from here: the console's CSP forbids eval).
  for (let i = 0; i < 100 && (await page.inputValue(`${retention} input[name=max_age]`).catch(() => '')) !== '90d'; i++) await page.waitForTimeout(100);
  t.is(await page.inputValue(`${retention} input[name=max_age]`), '90d');
  t.is((await s.store.getProject(s.project.universeId, 'webapp'))!.retentionSeconds, 90 * 86_400);
  await screenshot(page, '03b-admin-projects');

  // A real snapshot (ptrace of the c-segv-O2 corpus core) with an attachment, submitted with that token.
  const dir = tempDir('web-test-');
  const snapFile = await corpusSnapshot('c-segv-O2', dir);
  const snapshotText = fs.readFileSync(snapFile, 'utf8');
  const snap = JSON.parse(snapshotText) as Snapshot;
  const form = new FormData();
  form.append('upload_file', new Blob([snapshotText], { type: 'application/json' }), 'snapshot.json');
  form.append('attachment_notes.txt', new Blob(['what the operator saw\n']), 'notes.txt');
  const res = await fetch(`${s.url}/post?format=json&token=${token}`, { method: 'POST', body: form });
  t.is(res.status, 200, await res.clone().text());
  const object = (await s.store.findObjectByRxid(webapp.id, ((await res.json()) as { _rxid: string })._rxid))!;
  t.truthy(object);

  // Projects: webapp counts its crash.
  await navigate(page, 'projects', () => page.click('header nav a[href="#/"]'));
  t.is((await page.textContent('tr[data-project=webapp] td.crashes'))?.trim(), '1');
  const spark = JSON.parse((await page.getAttribute('tr[data-project=webapp] svg.sparkline', 'data-counts'))!) as number[];
  t.is(spark.length, 30);
  const within30Days = snap.timestamp >= Math.floor(Date.now() / 1000) - 30 * 86400;
  t.is(spark.reduce((a, b) => a + b, 0), within30Days ? 1 : 0);
  await screenshot(page, '04-projects');

  // Its crash groups: one group, whose top frames are the snapshot's.
  await navigate(page, 'groups', () => page.click('tr[data-project=webapp] a'));
  const groupRows = await page.$$('table.groups tbody tr[data-fingerprint]');
  t.is(groupRows.length, 1);
  t.is(await groupRows[0]!.getAttribute('data-fingerprint'), object.fingerprint);
  t.regex((await groupRows[0]!.$eval('td.group .frames', (e) => e.textContent)) ?? '', /^level3 ← level2 ← level1$/);
  t.is((await groupRows[0]!.$eval('td.count', (e) => e.textContent))?.trim(), '1');
  const overview = JSON.parse((await page.getAttribute('svg.overview-histogram', 'data-counts'))!) as number[];
  t.is(overview.reduce((a, b) => a + b, 0), 1);
  await screenshot(page, '05-groups');

  // The group: its crashes.
  await navigate(page, 'group', () => page.click('table.groups td.group a'));
  t.is(await page.getAttribute('section.group-summary', 'data-fingerprint'), object.fingerprint);
  const crashRows = await page.$$('table.crashes tbody tr[data-object]');
  t.is(crashRows.length, 1);
  t.is(await crashRows[0]!.getAttribute('data-object'), object.id.toString(16));
  t.deepEqual(await page.$$eval('ol.callstack li', (lis) => lis.map((l) => l.textContent)), object.callstack);
  await screenshot(page, '06-group');

  // The crash, whole.
  await navigate(page, 'crash', () => page.click('table.crashes a'));
  const threads = await page.$$('details.thread');
  t.is(threads.length, Object.keys(snap.threads).length);
  t.is(await threads[0]!.getAttribute('data-thread'), snap.mainThread, 'the faulting thread comes first');
  t.regex((await threads[0]!.getAttribute('class')) ?? '', /\bfaulting\b/);
  const shown = await threads[0]!.$$eval('table.frames tbody tr', (rows) =>
    rows.map((r) => ({ name: r.querySelector('.name')?.textContent, source: r.querySelector('.source')?.textContent, trust: r.querySelector('.badge.trust')?.textContent })),
  );
  t.deepEqual(shown.slice(0, 4).map((f) => f.name), ['level3', 'level2', 'level1', 'main']);
  const faultingStack = snap.threads[snap.mainThread]!.stack;
  t.deepEqual(shown.map((f) => f.name), faultingStack.map((f) => f.funcName ?? '??'));
  const f0 = faultingStack[0]!;
  t.is(shown[0]!.source, `${f0.sourcePath!.split('/').pop()}:${f0.line}`);
  t.is(shown[0]!.trust, 'registers');
  t.is(shown[1]!.trust, 'CFI');
  t.truthy(await threads[0]!.$('.registers .register'), 'the faulting thread shows its registers');
  t.regex((await page.textContent('.crash-head')) ?? '', new RegExp(snap.signal.name));
  for (const c of snap.classifiers) t.truthy(await page.$(`.crash-head .badge.classifier >> text="${c}"`), `classifier ${c}`);
  const buildIds = await page.$$eval('table.modules td.build-id', (tds) => tds.map((td) => td.textContent));
  for (const m of snap.modules) if (m.debug_identifier) t.true(buildIds.includes(m.debug_identifier), `build-id of ${m.code_file}`);
  t.is((await page.textContent('tr[data-attr=hostname] td'))?.trim(), String(object.attributes.hostname));
  t.is((await page.textContent('tr[data-attr=fingerprint] td'))?.trim(), object.fingerprint);
  // Why this fingerprint: the explain endpoint's frames, the used ones the hashed ones.
  const used = await page.$$eval('table.explain-frames tr.used td.mono', (tds) => tds.map((td) => td.textContent));
  t.deepEqual(used, ['level3', 'level2', 'level1', 'main']);
  // The attachment and the raw snapshot download as stored.
  const [attachment] = await Promise.all([page.waitForEvent('download'), page.click('li[data-attachment="notes.txt"] button.download')]);
  t.is(attachment.suggestedFilename(), 'notes.txt');
  t.is(fs.readFileSync((await attachment.path())!, 'utf8'), 'what the operator saw\n');
  const [raw] = await Promise.all([page.waitForEvent('download'), page.click('section.raw button.download-raw')]);
  t.is(fs.readFileSync((await raw.path())!, 'utf8'), snapshotText);
  await page.click('section.raw details summary');
  t.is(JSON.parse((await page.textContent('pre.raw-json'))!).uuid, snap.uuid);
  await screenshot(page, '07-crash');
  await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
  await screenshot(page, 'readme-crash', { fullPage: false });

  // Group state: resolve it from the group page; the store and the list agree.
  await navigate(page, 'group', () => page.click('.crash-head a[href*="/g/"]'));
  await navigate(page, 'group', () => page.click('.state-switch button[data-state=resolved]'));
  t.is(await page.getAttribute('.state-switch button.active', 'data-state'), 'resolved');
  t.is(await s.store.getGroupState(webapp.id, object.fingerprint), 'resolved');
  await navigate(page, 'groups', () => page.click('a:text("← all groups")'));
  t.is((await page.textContent('table.groups .state-badge'))?.trim(), 'resolved');

  // Filter bar: a condition that matches nothing, then one that matches the crash.
  await page.click('button.add-condition');
  await page.selectOption('.condition select.attr', 'hostname');
  await page.selectOption('.condition select.op', 'equal');
  await page.fill('.condition input.value', 'no-such-host');
  await navigate(page, 'groups', () => page.click('form.filter-bar button.apply'));
  t.is(await page.$$eval('table.groups tbody tr[data-fingerprint]', (r) => r.length), 0);
  await page.fill('.condition input.value', String(object.attributes.hostname));
  await navigate(page, 'groups', () => page.click('form.filter-bar button.apply'));
  t.is(await page.$$eval('table.groups tbody tr[data-fingerprint]', (r) => r.length), 1);
  await screenshot(page, '08-groups-filtered');
});

test.serial('configuration: users, attributes and the integrations page', async (t) => {
  await navigate(page, 'admin-users', () => page.goto(`${s.url}/#/admin/users`));
  await page.fill('form.create-user input[name=username]', 'alice');
  await page.fill('form.create-user input[name=email]', 'alice@example.org');
  await page.fill('form.create-user input[name=password]', 'short');
  // The browser refuses a password under 8 characters before the server sees it.
  t.false(await page.$eval('form.create-user', (f) => (f as unknown as { checkValidity(): boolean }).checkValidity()));
  await page.fill('form.create-user input[name=password]', 'alice password 1');
  await navigate(page, 'admin-users', () => page.click('form.create-user button[type=submit]'));
  t.truthy(await page.$('tr[data-user=alice]'));
  const alice = await s.store.getUser(s.project.universeId, 'alice');
  t.is(alice?.email, 'alice@example.org');
  t.false(alice?.superuser);
  await screenshot(page, '09-users');

  await navigate(page, 'admin-attributes', () => page.goto(`${s.url}/#/admin/p/webapp/attributes`));
  await page.fill('form.create-attribute input[name=name]', 'build.channel');
  await page.selectOption('form.create-attribute select[name=type]', 'dictionary');
  await page.selectOption('form.create-attribute select[name=format]', 'none');
  await page.fill('form.create-attribute input[name=description]', 'release channel of the build');
  await navigate(page, 'admin-attributes', () => page.click('form.create-attribute button[type=submit]'));
  t.truthy(await page.$('tr[data-attribute="build.channel"]'));
  const webapp = (await s.store.getProject(s.project.universeId, 'webapp'))!;
  const declared = (await s.store.listAttributes(webapp.id)).find((a) => a.name === 'build.channel');
  t.like(declared, { type: 'dictionary', format: 'none', custom: true, description: 'release channel of the build' });
  // A built-in name is refused with the server's sentence.
  await page.fill('form.create-attribute input[name=name]', 'timestamp');
  await page.click('form.create-attribute button[type=submit]');
  await page.waitForSelector('form.create-attribute .error:not([hidden])');
  t.regex((await page.textContent('form.create-attribute .error')) ?? '', /built-in/);
  await screenshot(page, '10-attributes');

  await navigate(page, 'admin-integrations', () => page.click('nav.side a[href="#/admin/integrations"]'));
  // Every project is listed with its integrations (test/web/integrations.test.ts adds some).
  t.is((await page.textContent('table.integration-projects tr[data-project=webapp] td.count'))?.trim(), '0');
  await screenshot(page, '11-integrations');

  // A member (not a superuser) sees projects but no configuration.
  const member = await browser.newPage();
  await member.goto(`${s.url}/#/login`);
  await ready(member, 'login');
  await member.fill('input[name=username]', 'alice');
  await member.fill('input[name=password]', 'alice password 1');
  await navigate(member, 'projects', () => member.click('form.login button[type=submit]'));
  t.truthy(await member.$('tr[data-project=webapp]'));
  t.is(await member.$('header nav a[href="#/admin"]'), null);
  await member.goto(`${s.url}/#/admin/users`);
  await ready(member, 'admin-users');
  t.regex((await member.textContent('main .error')) ?? '', /superuser/);
  // The tabs share one session (localStorage): logging out here logs the other tab out too.
  await navigate(member, 'login', () => member.click('header button.logout'));
  await member.close();
  await ready(page, 'login');
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', ADMIN_PASSWORD);
  await navigate(page, 'admin-integrations', () => page.click('form.login button[type=submit]'));
});

test.serial('revoking a token from the console stops submissions with it; logout ends the session', async (t) => {
  const webapp = (await s.store.getProject(s.project.universeId, 'webapp'))!;
  await navigate(page, 'admin-tokens', () => page.goto(`${s.url}/#/admin/p/webapp/tokens`));
  const token = (await page.getAttribute('table.tokens tr[data-token]', 'data-token'))!;
  page.once('dialog', (d) => void d.accept());
  await navigate(page, 'admin-tokens', () => page.click(`tr[data-token="${token}"] button.revoke`));
  t.is(await page.$(`tr[data-token="${token}"]`), null);
  t.truthy((await s.store.listTokens(webapp.id)).find((x) => x.id === token)?.revokedAt);
  const refused = await http(`${s.url}/post?format=json&token=${token}`, { body: '{}' });
  t.true(refused.status === 401 || refused.status === 403, `status ${refused.status}`);

  const session = await page.evaluate(() => JSON.parse(localStorage.getItem('coresnap.console.session') ?? '{}').token as string);
  t.is((await http(`${s.url}/api/web/session`, { headers: { 'X-Coroner-Token': session } })).status, 200);
  await navigate(page, 'login', () => page.click('header button.logout'));
  t.is(await page.evaluate(() => localStorage.getItem('coresnap.console.session')), null);
  t.is((await http(`${s.url}/api/web/session`, { headers: { 'X-Coroner-Token': session } })).status, 401);
  // Anything else now leads back to the login page.
  await page.goto(`${s.url}/#/p/webapp`);
  await ready(page, 'login');
  t.pass();
});

test.serial('no request left coroner', (t) => {
  t.deepEqual(foreign, []);
});
