/**
 * The console's server side over HTTP, without a browser: what mountWeb serves and the
 * /api/web endpoints' answers, refusals and their agreement with the query API.
 */

import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { startSession } from '../../ts/server/auth.js';
import { Router } from '../../ts/server/router.js';
import { createUser } from '../../ts/coroner/admin.js';
import { mountWeb } from '../../ts/web/index.js';
import { http, report, tempDir, type TestServer } from '../coroner/helpers.js';
import { startWebServer } from './helpers.js';

let s: TestServer;
let member: string;
const auth = (token: string) => ({ headers: { 'X-Coroner-Token': token } });

test.before(async () => {
  s = await startWebServer();
  const universe = (await s.store.getUniverse('local'))!;
  const user = await createUser(s.store, universe, { username: 'member', password: 'member password' });
  member = (await startSession(s.store, user)).token;
  const now = Math.floor(Date.now() / 1000);
  // Three crashes today, one 40 days ago (outside a 30-day sparkline, inside the count).
  for (const ts of [now - 100, now - 3600, now - 7200, now - 40 * 86400]) {
    const r = await http(`${s.url}/post?format=json&token=${s.token}`, { body: JSON.stringify(report({ timestamp: ts })) });
    if (r.status !== 200) throw new Error(r.text);
  }
});

test.after.always(async () => {
  await s?.close();
});

test('/api/web/session names the user; without a live session it is 401', async (t) => {
  const r = await http(`${s.url}/api/web/session`, auth(member));
  t.is(r.status, 200);
  t.like(r.json, { user: { username: 'member', superuser: 0 }, universe: { name: 'local' } });
  t.is((await http(`${s.url}/api/web/session`)).status, 401);
  t.is((await http(`${s.url}/api/web/session`, auth('f'.repeat(32)))).status, 401);
});

test('/api/web/projects: counts every crash, bins the last N days as the query API does', async (t) => {
  const r = await http(`${s.url}/api/web/projects?days=30`, auth(member));
  t.is(r.status, 200);
  const p = (r.json.projects as Array<{ name: string; crashes: number; last_crash: number; bins: Array<[number, number, number]> }>).find((x) => x.name === 'blackhole')!;
  t.is(p.crashes, 4);
  t.is(p.bins.length, 30);
  t.is(p.bins.reduce((a, b) => a + b[2], 0), 3);
  t.is(p.bins[0]![0], r.json.from);
  t.is(p.bins[29]![1], r.json.to);
  const q = await http(`${s.url}/api/query?project=blackhole`, {
    ...auth(member),
    body: JSON.stringify({ filter: [{ timestamp: [['at-least', String(r.json.from)], ['at-most', String(r.json.to)]] }], fold: { timestamp: [['bin', 30, r.json.from, r.json.to], ['max']] } }),
  });
  t.deepEqual(p.bins, q.json.response.values[0][1][0]);
  t.is(p.last_crash, q.json.response.values[0][1][1][0]);
  for (const bad of ['0', '367', 'x', '1.5']) t.is((await http(`${s.url}/api/web/projects?days=${bad}`, auth(member))).status, 400, `days=${bad}`);
});

test('/api/web/attributes: anyone lists, a superuser declares, bad declarations are 400 with a sentence', async (t) => {
  const post = (token: string, body: unknown) => http(`${s.url}/api/web/attributes?project=blackhole`, { ...auth(token), body: JSON.stringify(body) });
  t.is((await post(member, { name: 'channel', type: 'dictionary' })).status, 403);
  const ok = await post(s.adminSession, { name: 'channel', type: 'dictionary', format: 'none', description: 'release channel' });
  t.is(ok.status, 200, ok.text);
  t.deepEqual(ok.json.attribute, { name: 'channel', type: 'dictionary', format: 'none', description: 'release channel', custom: true });
  const list = await http(`${s.url}/api/web/attributes?project=blackhole`, auth(member));
  t.true((list.json.attributes as Array<{ name: string }>).some((a) => a.name === 'channel'));
  t.true((list.json.types as string[]).includes('uint64'));
  const cases: Array<[unknown, RegExp]> = [
    [{ name: 'fingerprint', type: 'dictionary' }, /built-in/],
    [{ name: '1abc', type: 'string' }, /starts with a letter/],
    [{ name: 'ok', type: 'float' }, /type must be one of/],
    [{ name: 'ok', type: 'string', format: 'weird' }, /format must be one of/],
    [[1, 2], /JSON object/],
  ];
  for (const [body, message] of cases) {
    const r = await post(s.adminSession, body);
    t.is(r.status, 400, JSON.stringify(body));
    t.regex(r.json.error.message, message);
  }
  t.is((await http(`${s.url}/api/web/attributes?project=nope`, auth(member))).status, 404);
  // The query API takes the declaration: describe reports its type and description.
  const describe = await http(`${s.url}/api/query?project=blackhole&action=describe`, { ...auth(member), body: '{}' });
  t.like((describe.json.describe as Array<{ name: string }>).find((c) => c.name === 'channel'), { type: 'dictionary', description: 'release channel' });
});

test('an unbuilt console answers 503 saying how to build it; only the known assets are served', async (t) => {
  const empty = tempDir('web-assets-');
  const router = new Router();
  mountWeb(router, { assetsDir: empty });
  const match = router.match('GET', '/');
  t.true(typeof match === 'object');
  const res = (await (match as Exclude<typeof match, 'method' | undefined>).route.handler({} as never)) as { status: number; body: string };
  t.is(res.status, 503);
  t.regex(String(res.body), /npm run build:web/);
  t.is(router.match('GET', '/console/app.js'), undefined);
  // With the real bundle: the files dist/web holds, and nothing by a name the client makes up.
  t.is((await http(`${s.url}/console/../package.json`)).status, 404);
  t.is((await http(`${s.url}/console/index.html`)).status, 404);
  const icon = await http(`${s.url}/console/icon.svg`);
  t.is(icon.status, 200);
  t.is(icon.text, fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'web', 'icon.svg'), 'utf8'));
});
