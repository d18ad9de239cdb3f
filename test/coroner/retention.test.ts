/**
 * Project retention (ts/coroner/retention.ts): set from the admin endpoint and the command line,
 * it deletes what a project received before its horizon, oldest first and in batches, with the
 * query engine following; it leaves other projects and younger crashes alone; a data folder of
 * the previous schema is upgraded to carry it.
 */

import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import test from 'ava';
import { openSqliteStore } from '../../ts/store/sqlite.js';
import { http, report, runBin, startServer, tempDir } from './helpers.js';

const nowSeconds = () => Math.floor(Date.now() / 1000);

async function untilNextSecond(): Promise<number> {
  const start = nowSeconds();
  while (nowSeconds() === start) await new Promise((r) => setTimeout(r, 20));
  return nowSeconds();
}

test('a project past its retention loses its old crashes, oldest first and in batches; young ones, other projects and queries are right', async (t) => {
  const s = await startServer({ retention: { batch: 2 } });
  t.teardown(() => s.close());
  const admin = { 'content-type': 'application/json', 'x-coroner-token': s.adminSession };
  const submit = async (project: string, token: string, i: number) => {
    const r = await http(`${s.url}/post?format=json&token=${token}`, { body: JSON.stringify(report({ uuid: undefined, attributes: { n: i } })), headers: { 'content-type': 'application/json' } });
    t.is(r.status, 200, r.text);
  };
  // Another project with no retention, with an old crash of its own.
  const other = await http(`${s.url}/api/admin/projects`, { method: 'POST', body: JSON.stringify({ name: 'keeper' }), headers: admin });
  const otherToken = other.json.token.id as string;
  await submit('keeper', otherToken, 0);

  // Five old crashes, then (a second later) three young ones.
  for (let i = 0; i < 5; i++) await submit('blackhole', s.token, i);
  const youngFrom = await untilNextSecond();
  for (let i = 5; i < 8; i++) await submit('blackhole', s.token, i);

  const set = await http(`${s.url}/api/admin/projects/blackhole/retention`, { method: 'PUT', body: JSON.stringify({ max_age: '1h' }), headers: admin });
  t.is(set.status, 200, set.text);
  t.is(set.json.project.retention_seconds, 3600);
  const bad = await http(`${s.url}/api/admin/projects/blackhole/retention`, { method: 'PUT', body: JSON.stringify({ max_age: 'a while' }), headers: admin });
  t.is(bad.status, 400);
  t.regex(bad.json.error.message, /"a while" is not a retention: give a duration such as 90d/);

  // A pass an hour after the young ones' first second: everything received before it goes.
  const pass = await s.server.retention!.runOnce(youngFrom + 3600);
  t.deepEqual(pass, [{ project: 'local/blackhole', deleted: 5, receivedBefore: youngFrom }]);
  t.is(await s.store.countObjects(s.project.id), 3);
  const query = await http(`${s.url}/api/query?universe=local&project=blackhole`, { body: JSON.stringify({ select: ['n'], order: [{ name: 'n', ordering: 'ascending' }] }), headers: admin });
  t.is(query.status, 200, query.text);
  // A select answer is run-length encoded: ["*", [value, run], ...].
  t.deepEqual(query.json.response.values[0].slice(1), [[5, 1], [6, 1], [7, 1]]);
  const keeper = (await s.store.getProject(s.project.universeId, 'keeper'))!;
  t.is(await s.store.countObjects(keeper.id), 1, 'a project without retention keeps everything');
  // Nothing more to delete: a second pass reports nothing.
  t.deepEqual(await s.server.retention!.runOnce(youngFrom + 3600), []);

  // off: kept for ever again.
  const off = await http(`${s.url}/api/admin/projects/blackhole/retention`, { method: 'PUT', body: JSON.stringify({ max_age: null }), headers: admin });
  t.is(off.json.project.retention_seconds, null);
  t.deepEqual(await s.server.retention!.runOnce(youngFrom + 365 * 86_400), []);
  t.is(await s.store.countObjects(s.project.id), 3);
});

test('coroner project retention sets, shows and clears it; a bad duration is refused with a sentence', async (t) => {
  const dataDir = tempDir();
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const s = await startServer({ dataDir, retention: false });
  await s.close();
  const set = await runBin('coroner', ['project', 'retention', 'blackhole', '90d', '--data', dataDir]);
  t.is(set.code, 0, set.stderr);
  t.regex(set.stdout, /project blackhole keeps crashes for 90d/);
  const listed = await runBin('coroner', ['project', 'list', '--data', dataDir, '--json']);
  t.is(JSON.parse(listed.stdout).find((p: { name: string }) => p.name === 'blackhole').retentionSeconds, 90 * 86_400);
  const text = await runBin('coroner', ['project', 'list', '--data', dataDir]);
  t.regex(text.stdout, /blackhole .* keeps crashes for 90d/);
  const bad = await runBin('coroner', ['project', 'retention', 'blackhole', 'soon', '--data', dataDir]);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /"soon" is not a retention/);
  const off = await runBin('coroner', ['project', 'retention', 'blackhole', 'off', '--data', dataDir]);
  t.regex(off.stdout, /keeps crashes for ever/);
});

test('a data folder of schema 1 is upgraded: projects gain their retention, nothing else changes', async (t) => {
  const dataDir = tempDir();
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const first = await openSqliteStore({ dataDir });
  const u = await first.createUniverse('local');
  const p = await first.createProject(u.id, 'old');
  await first.close();
  // Make it what coroner wrote before retention existed.
  const db = new Database(path.join(dataDir, 'coroner.db'));
  db.exec(`ALTER TABLE projects DROP COLUMN retention_seconds; UPDATE meta SET value = '1' WHERE key = 'schema_version'`);
  db.close();

  const store = await openSqliteStore({ dataDir });
  t.teardown(() => store.close());
  t.deepEqual(await store.getProjectById(p.id), { ...p, retentionSeconds: null });
  await store.setProjectRetention(p.id, 86_400);
  t.is((await store.getProjectById(p.id))!.retentionSeconds, 86_400);
  const check = new Database(path.join(dataDir, 'coroner.db'), { readonly: true });
  t.is((check.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string }).value, '2');
  check.close();
});
