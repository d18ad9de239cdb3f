/**
 * The query API over HTTP, on a real coroner server (SqliteStore, the server core's router and
 * submission endpoints) listening on 127.0.0.1:0: crashes go in through /post like an SDK's,
 * then every /api call morgue 1.24.11 makes is exercised, including the captured requests
 * replayed with this server's session token.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import test from 'ava';

import { bootstrap, createProject } from '../../ts/coroner/admin.js';
import { createCoronerServer, type CoronerServer } from '../../ts/server/server.js';
import { SqliteStore } from '../../ts/store/sqlite.js';
import { CAPTURES, capturedRequests, morgueUnpack, morgueUnpackObject } from './fixtures.js';

const PASSWORD = 'correct horse battery staple';

interface Harness {
  server: CoronerServer;
  store: SqliteStore;
  base: string;
  submitToken: string;
  now: number;
}

/** An @backtrace/node-shaped report (the captured one, varied). */
function report(i: number, now: number): Record<string, unknown> {
  const real = JSON.parse(fs.readFileSync(path.join(CAPTURES, 'backtrace-node-0.8.3-report.json'), 'utf8')) as Record<string, any>;
  const kind = i % 3;
  const frames = [
    [{ funcName: 'parseInput', library: '/app/parse.js', line: 10, column: 3 }, { funcName: 'main', library: '/app/main.js', line: 2, column: 1 }],
    [{ funcName: 'checkLimits', library: '/app/limits.js', line: 20, column: 5 }, { funcName: 'main', library: '/app/main.js', line: 2, column: 1 }],
    [{ funcName: 'render', library: '/app/view.js', line: 30, column: 7 }, { funcName: 'serve', library: '/app/http.js', line: 4, column: 1 }],
  ][kind]!;
  return {
    ...real,
    uuid: `9b2f0c4e-1111-4000-8000-${i.toString(16).padStart(12, '0')}`,
    timestamp: now - 3 * 86400 + i * 600,
    classifiers: [['TypeError'], ['RangeError', 'abort'], ['Error']][kind],
    threads: { main: { fault: true, name: 'main', stack: frames } },
    attributes: { ...real.attributes, hostname: `web${i % 2}`, 'process.age': i, application: 'demo' },
  };
}

async function start(t: { teardown: (fn: () => unknown) => void }, crashes = 12): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coroner-http-'));
  const store = await SqliteStore.open({ dataDir: dir });
  const { universe } = await bootstrap(store, 'local', { CORONER_ADMIN_PASSWORD: PASSWORD });
  const { token } = await createProject(store, universe, 'myproj');
  const server = await createCoronerServer({ store, universe: 'local', host: '127.0.0.1', port: 0, log: () => undefined });
  await server.listen();
  t.teardown(async () => {
    await server.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const base = server.url();
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < crashes; i++) {
    const res = await fetch(`${base}/post?format=json&token=${token!.id}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(report(i, now)) });
    if (res.status !== 200) throw new Error(`submission ${i} failed: ${res.status} ${await res.text()}`);
  }
  return { server, store, base, submitToken: token!.id, now };
}

async function login(h: Harness, form: Record<string, string>): Promise<Response> {
  return fetch(`${h.base}/api/login`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
}

async function session(h: Harness): Promise<string> {
  const res = await login(h, { username: 'admin', password: PASSWORD });
  return ((await res.json()) as { token: string }).token;
}

async function query(h: Harness, token: string, body: unknown, extra = ''): Promise<{ status: number; json: any; type: string | null }> {
  const res = await fetch(`${h.base}/api/query?token=${token}&universe=local&project=myproj${extra}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json(), type: res.headers.get('content-type') };
}

test('login with a password and with a token; logout ends the session', async (t) => {
  const h = await start(t, 0);
  const res = await login(h, { username: 'admin', password: PASSWORD });
  t.is(res.status, 200);
  t.is(res.headers.get('content-type'), 'application/json');
  const body = (await res.json()) as any;
  t.regex(body.token, /^[0-9a-f]{64}$/);
  t.is(body.user.username, 'admin');
  t.is(body.user.superuser, 1);
  t.is(body.uid, body.user.uid);
  t.deepEqual(body.universe.name, 'local');
  t.deepEqual(Object.keys(body.universes), ['local']);
  t.deepEqual(body.endpoints.post, [{ protocol: 'http', port: Number(new URL(h.base).port) }]);
  t.deepEqual(body.services, []);

  // morgue login --token=<session token>
  const again = await login(h, { token: body.token });
  t.is(again.status, 200);
  t.is(((await again.json()) as any).token, body.token);

  const out = await fetch(`${h.base}/api/logout?token=${body.token}`);
  t.is(out.status, 200);
  t.is((await query(h, body.token, {})).status, 401);
});

test('bad credentials, unknown tokens and expired sessions are 401; a submission token does not log in', async (t) => {
  const h = await start(t, 0);
  const bad = await login(h, { username: 'admin', password: 'wrong' });
  t.is(bad.status, 401);
  t.regex(((await bad.json()) as any).error.message, /Invalid username or password/);
  t.is((await login(h, { username: 'nobody', password: 'x' })).status, 401);
  t.is((await login(h, { token: '00'.repeat(32) })).status, 401);
  t.is((await login(h, { token: h.submitToken })).status, 401);
  t.is((await login(h, {})).status, 400);

  const admin = (await h.store.getUser((await h.store.getUniverse('local'))!.id, 'admin'))!;
  const expired = 'ab'.repeat(32);
  await h.store.createSession({ token: expired, uid: admin.uid, universeId: admin.universeId, expiresAt: Math.floor(Date.now() / 1000) - 5 });
  const r = await query(h, expired, {});
  t.is(r.status, 401);
  t.is(r.json.error.message, 'invalid token');
  t.is((await login(h, { token: expired })).status, 401);
  t.is((await query(h, 'cd'.repeat(32), {})).status, 401);
});

test('the captured morgue requests replayed against the server', async (t) => {
  const h = await start(t);
  const token = await session(h);
  const captured = capturedRequests().filter((r) => r.path.startsWith('/api/query') || r.path.startsWith('/api/get') || r.path.startsWith('/api/logout'));
  t.is(captured.length, 7);
  for (const req of captured) {
    const url = new URL(req.path, h.base);
    url.searchParams.set('token', token);
    if (url.pathname === '/api/get') url.searchParams.set('object', '3');
    // morgue's implicit time window is relative to when it ran: move it to now.
    const body = req.body.replace(/179\d{7}/g, (m) => String(Number(m) - 1_795_680_440 + h.now));
    const res = await fetch(url, { method: req.method, headers: req.method === 'POST' ? { 'Content-Type': req.headers['Content-Type']! } : {}, body: req.method === 'POST' ? body : undefined });
    t.is(res.status, 200, req.path);
    if (url.pathname === '/api/get') {
      t.regex(res.headers.get('content-disposition') ?? '', /^attachment; filename="3\.json"$/);
      t.is((JSON.parse(await res.text()) as any).uuid, report(2, h.now).uuid);
      continue;
    }
    t.is(res.headers.get('content-type'), 'application/json');
    const json = (await res.json()) as any;
    if (url.pathname === '/api/logout') continue;
    t.truthy(json._);
    t.is(json._.user, 'admin');
    t.is(json._.project, 'myproj');
    if (url.searchParams.get('action') === 'describe') {
      t.true(json.describe.some((d: any) => d.name === 'fingerprint' && d.format === 'sha256'));
      continue;
    }
    const q = JSON.parse(body);
    const resp = json.response;
    if (q.select || q.select_wildcard) {
      const rows = morgueUnpackObject(resp)['*']!;
      t.is(rows.length, q.limit);
      if (q.select) t.true(rows.every((r) => String(r.callstack).startsWith('{"frame":[')));
    } else {
      const u = morgueUnpack(resp);
      t.true(Object.keys(u).length > 0);
      for (const g of Object.values(u) as any[]) {
        t.is(g['bin(timestamp)'].length, 32);
        t.is(g['range(timestamp)'].length, 2);
      }
      if (q.group) {
        t.is(Object.keys(u).length, 3, 'three stacks, three fingerprints');
        t.true(Object.keys(u).every((k) => /^[0-9a-f]{64}$/.test(k)));
      }
    }
  }
});

test('list: filters, folds, group, order and paging over HTTP; X-Coroner-Token header', async (t) => {
  const h = await start(t);
  const token = await session(h);
  const full = await query(h, token, { group: ['hostname'], fold: { 'process.age': [['sum'], ['range']], timestamp: [['bin', 4, h.now - 4 * 86400, h.now]] }, order: [{ name: ';group', ordering: 'ascending' }] });
  t.is(full.status, 200);
  // 12 crashes, hostnames alternate: web0 has process.age 0,2,...,10, web1 has 1,3,...,11.
  t.deepEqual(full.json.response.values.map((v: any[]) => [v[0], v[1][0][0], v[1][1], v[2]]), [
    ['web0', 30, [0, 10], 6],
    ['web1', 36, [1, 11], 6],
  ]);
  const page = await query(h, token, { group: ['hostname'], fold: { 'process.age': [['max']] }, order: [{ name: 'process.age;0', ordering: 'descending' }], limit: 1, offset: 1 });
  t.deepEqual(page.json.response.values, [['web0', [[10]], 6]]);
  const sel = await query(h, token, {
    filter: [{ 'process.age': [['at-least', '4']], classifiers: [['contains', 'abort']] }],
    select: ['process.age', 'hostname'],
    order: [{ name: 'process.age', ordering: 'descending' }],
    limit: 2,
  });
  t.deepEqual(morgueUnpackObject(sel.json.response)['*']!.map((r) => r['process.age']), [10, 7]);

  const viaHeader = await fetch(`${h.base}/api/query?universe=local&project=myproj`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Coroner-Token': token },
    body: JSON.stringify({ fold: { timestamp: [['count']] } }),
  });
  t.is(viaHeader.status, 200);
  t.is(((await viaHeader.json()) as any).response.values[0][2], 12);
});

test('malformed queries are 400 with a message; wrong project or universe are refused', async (t) => {
  const h = await start(t, 2);
  const token = await session(h);
  const cases: Array<[unknown, RegExp]> = [
    ['{not json', /JSON/i],
    [{ filter: [{ timestamp: [['at-least', 'soon']] }] }, /not a valid uint64/],
    [{ filter: [{ nosuch: [['equal', '1']] }] }, /Unknown attribute 'nosuch'/],
    [{ fold: { hostname: [['bogus']] } }, /Unknown fold operation 'bogus'/],
    [{ order: 'timestamp' }, /order must be an array/],
  ];
  for (const [body, message] of cases) {
    const r = await query(h, token, body);
    t.is(r.status, 400, JSON.stringify(body));
    t.is(r.type, 'application/json');
    t.regex(r.json.error.message, message);
  }
  t.is((await fetch(`${h.base}/api/query?token=${token}&universe=local&project=nope`, { method: 'POST', body: '{}' })).status, 404);
  t.is((await fetch(`${h.base}/api/query?token=${token}&universe=other&project=myproj`, { method: 'POST', body: '{}' })).status, 403);
  t.is((await query(h, token, {}, '&action=explode')).status, 400);
});

test('get (raw, json.gz, attachments), list attachments', async (t) => {
  const h = await start(t, 1);
  const token = await session(h);
  // A multipart submission with an attachment, as @backtrace/node sends one.
  const form = new FormData();
  const r = report(50, h.now);
  form.append('upload_file', new Blob([JSON.stringify(r)], { type: 'application/json' }), 'upload_file.json');
  form.append('attachment_note.txt', new Blob(['hello attachment\n'], { type: 'text/plain' }), 'note.txt');
  const posted = await fetch(`${h.base}/post?format=json&token=${h.submitToken}`, { method: 'POST', body: form });
  t.is(posted.status, 200);
  const sel = await query(h, token, { filter: [{ uuid: [['equal', r.uuid as string]] }], select: ['_tx'] });
  const oid = (morgueUnpackObject(sel.json.response)['*']![0]!.object as number).toString(16);

  const get = (params: string) => fetch(`${h.base}/api/get?token=${token}&universe=local&project=myproj&object=${oid}${params}`);
  const raw = await get('');
  t.is(raw.status, 200);
  t.is(raw.headers.get('content-disposition'), `attachment; filename="${oid}.json"`);
  const rawText = await raw.text();
  t.is(JSON.parse(rawText).uuid, r.uuid);

  const gz = await get('&resource=json.gz');
  t.is(gz.headers.get('content-encoding'), 'gzip');
  // fetch undoes Content-Encoding itself, as morgue does by hand for json.gz.
  t.is(await gz.text(), rawText);

  const list = await fetch(`${h.base}/api/list?token=${token}&universe=local&project=myproj&object=${oid}`);
  const attachments = ((await list.json()) as any).attachments;
  t.is(attachments.length, 1);
  t.like(attachments[0], { name: 'note.txt', size: 17, inline: false });
  t.is(typeof attachments[0].content_type, 'string');

  for (const params of [`&resource=_attachment-${attachments[0].id}`, `&attachment_id=${attachments[0].id}`, '&attachment_name=note.txt', '&resource=note.txt']) {
    const a = await get(params);
    t.is(a.status, 200, params);
    t.is(await a.text(), 'hello attachment\n');
    t.is(a.headers.get('content-disposition'), 'attachment; filename="note.txt"');
  }
  const txt = await get('&resource=txt');
  t.regex(await txt.text(), new RegExp(`^Object ${oid} `));
  t.is((await get('&resource=missing.bin')).status, 404);
  t.is((await fetch(`${h.base}/api/get?token=${token}&universe=local&project=myproj&object=zz`)).status, 400);
  t.is((await fetch(`${h.base}/api/get?token=${token}&universe=local&project=myproj&object=fffff`)).status, 404);
});

test('set through /api/query, delete by ids and by query', async (t) => {
  const h = await start(t, 9);
  const token = await session(h);
  const count = async (filter: unknown = []) => (await query(h, token, { filter, fold: { timestamp: [['count']] } })).json.response.values[0]?.[2] ?? 0;

  const set = await query(h, token, { filter: [{ hostname: [['equal', 'web1']] }], set: { ticket: 'OPS-7' } });
  t.is(set.status, 200);
  t.is(set.json.response.result, 'success');
  t.is(await count([{ ticket: [['equal', 'OPS-7']] }]), 4);
  const resolve = await query(h, token, { filter: [{ classifiers: [['contains', 'abort']] }], set: { state: 'resolved' } });
  t.is(resolve.json.response.result, 'success');
  t.is(await count([{ state: [['equal', 'resolved']] }]), 3);

  const sel = await query(h, token, { select: ['_tx'], order: [{ name: '_tx', ordering: 'ascending' }], limit: 2 });
  const ids = morgueUnpackObject(sel.json.response)['*']!.map((r) => r.id);
  const del = await fetch(`${h.base}/api/delete?token=${token}&universe=local`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ universe: 'local', project: 'myproj', objects: ids, subsets: ['physical'] }),
  });
  t.is(del.status, 200);
  t.is(((await del.json()) as any).objects, 2);
  t.is(await count(), 7);

  const byQuery = await fetch(`${h.base}/api/delete?token=${token}&universe=local`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ universe: 'local', project: 'myproj', query: { filter: [{ hostname: [['equal', 'web1']] }] }, subsets: ['physical'] }),
  });
  t.is(byQuery.status, 200);
  t.is(await count([{ hostname: [['equal', 'web1']] }]), 0);
  t.is(await count(), 4);
  const bad = await fetch(`${h.base}/api/delete?token=${token}&universe=local`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ universe: 'other', project: 'myproj', objects: ['1'] }),
  });
  t.is(bad.status, 403);
});

test('morgue 1.24.11 reads what the server answers: a json.gz body stays gzip on the wire', async (t) => {
  const h = await start(t, 1);
  const token = await session(h);
  // morgue gunzips json.gz bodies itself; the bytes on the wire must really be gzip.
  const http = await import('node:http');
  const body = await new Promise<Buffer>((resolve, reject) => {
    http.get(`${h.base}/api/get?token=${token}&universe=local&project=myproj&object=1&resource=json.gz`, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    }).on('error', reject);
  });
  t.is(JSON.parse(zlib.gunzipSync(body).toString()).uuid, report(0, h.now).uuid);
});
