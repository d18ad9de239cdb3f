/**
 * The ingestion path of SqliteStore as the benchmark drives it: many submitters at once share
 * transactions and WAL syncs (sqlite-worker.ts), ids stay consecutive, duplicates in one batch
 * resolve to the first, receipts are time-ordered UUIDs, and the WAL is copied into the database
 * file by the checkpointer thread rather than by the writer or the event loop.
 */

import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import test from 'ava';
import { openSqliteStore } from '../../ts/store/sqlite.js';
import type { NewCrash } from '../../ts/store/types.js';
import { tempDir } from './helpers.js';

const crash = (projectId: number, uuid: string, body: Buffer): NewCrash => ({
  projectId,
  uuid,
  timestamp: 1_700_000_000,
  fingerprint: 'f'.repeat(64),
  callstack: ['inner', 'outer'],
  classifiers: ['SIGSEGV'],
  attributes: { hostname: `h-${uuid.slice(-2)}`, n: 1 },
  format: 'json',
  processed: true,
  body,
  contentType: 'application/json',
  attachments: [],
});

const uuidOf = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;

test('concurrent submitters share commits: consecutive ids, in-batch duplicates, time-ordered receipts, all readable afterwards', async (t) => {
  const dataDir = tempDir();
  const store = await openSqliteStore({ dataDir });
  const u = await store.createUniverse('local');
  const p = await store.createProject(u.id, 'proj');
  const inserted: number[] = [];
  store.onChange((e) => {
    if (e.kind === 'insert') inserted.push(...e.ids);
  });

  // 40 waves of 50 at once; every wave re-sends one uuid of the wave (a retrying client).
  const results = [];
  for (let wave = 0; wave < 40; wave++) {
    const sends = [];
    for (let k = 0; k < 50; k++) sends.push(store.insertCrash(crash(p.id, uuidOf(wave * 50 + k), Buffer.from(`{"wave":${wave},"k":${k}}`))));
    sends.push(store.insertCrash(crash(p.id, uuidOf(wave * 50 + 7), Buffer.from('{"again":true}'))));
    results.push(...(await Promise.all(sends)));
  }
  const fresh = results.filter((r) => !r.existing);
  const repeats = results.filter((r) => r.existing);
  t.is(fresh.length, 2000);
  t.is(repeats.length, 40);
  t.deepEqual(fresh.map((r) => r.object.id), Array.from({ length: 2000 }, (_, i) => i + 1), 'ids count up with no gaps');
  for (const r of repeats) {
    const first = fresh.find((f) => f.object.uuid === r.object.uuid)!;
    t.is(r.object.id, first.object.id);
    t.is(r.object.rxid, first.object.rxid);
  }
  t.deepEqual([...inserted].sort((a, b) => a - b), fresh.map((r) => r.object.id), 'one insert event per new crash');

  // Receipts: version 7 UUIDs whose leading 48 bits are the time they were made.
  const rxids = fresh.map((r) => r.object.rxid);
  t.is(new Set(rxids).size, rxids.length);
  const now = Date.now();
  for (const rxid of rxids) {
    t.regex(rxid, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ms = parseInt(rxid.slice(0, 8) + rxid.slice(9, 13), 16);
    t.true(ms <= now && ms > now - 120_000, `rxid ${rxid} carries a recent time`);
  }

  // What the store returned is what another connection reads back.
  const stored = await store.getObject(p.id, 1234);
  const returned = fresh[1233]!.object;
  t.deepEqual(stored, returned);
  await store.close();

  const db = new Database(path.join(dataDir, 'coroner.db'), { readonly: true });
  const row = db.prepare('SELECT count(*) AS n, max(id) AS max FROM objects WHERE project_id = ?').get(p.id) as { n: number; max: number };
  t.deepEqual(row, { n: 2000, max: 2000 });
  db.close();
});

async function ingestFiveKbReports(checkpointEveryMs: number) {
  const dataDir = tempDir();
  const store = await openSqliteStore({ dataDir, checkpointEveryMs });
  const u = await store.createUniverse('local');
  const p = await store.createProject(u.id, 'proj');
  const dbFile = path.join(dataDir, 'coroner.db');
  const before = fs.statSync(dbFile).size;
  const body = Buffer.alloc(5000, 0x41);
  // ~20 MB of reports, 32 at a time like the benchmark's submitters.
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < 4000) {
        const i = next++;
        await store.insertCrash(crash(p.id, uuidOf(i), body));
      }
    }),
  );
  return { store, project: p, dbFile, before, dataDir };
}

test('the checkpointer thread, and no other connection, copies the WAL into the database file', async (t) => {
  // With the checkpointer held off, nothing else checkpoints: the writer and the event loop's
  // connection run with wal_autocheckpoint=0, so the database file stays as it was.
  const idle = await ingestFiveKbReports(3_600_000);
  await new Promise((r) => setTimeout(r, 300));
  const unchanged = fs.statSync(idle.dbFile).size - idle.before;
  t.true(unchanged < 1_000_000, `the database file grew by ${unchanged} bytes with no checkpointer running`);
  t.true(fs.statSync(path.join(idle.dataDir, 'coroner.db-wal')).size > 15_000_000, 'the reports are in the WAL');
  t.is(await idle.store.countObjects(idle.project.id), 4000);
  await idle.store.close();

  const active = await ingestFiveKbReports(100);
  const deadline = Date.now() + 10_000;
  while (fs.statSync(active.dbFile).size < active.before + 15_000_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const grown = fs.statSync(active.dbFile).size - active.before;
  t.true(grown >= 15_000_000, `the database file grew by ${grown} bytes while the store was open`);
  t.is(await active.store.countObjects(active.project.id), 4000);
  await active.store.close();
});

test('a writer thread that dies is replaced: what it held fails, nothing answered is lost, the next crashes are stored', async (t) => {
  const dataDir = tempDir();
  const store = await openSqliteStore({ dataDir });
  t.teardown(() => store.close());
  const u = await store.createUniverse('local');
  const p = await store.createProject(u.id, 'proj');
  const body = Buffer.from('{}');
  await store.insertCrash(crash(p.id, uuidOf(0), body));
  // A worker younger than a second is replaced only after a pause (a crash loop); this one is not.
  await new Promise((r) => setTimeout(r, 1100));

  // The writer is killed while 40 crashes are on their way.
  const writer = (store as unknown as { writer: { worker: { terminate(): Promise<number> } } }).writer;
  const outcomes = Array.from({ length: 40 }, (_, i) => store.insertCrash(crash(p.id, uuidOf(i + 1), body)).then(
    (stored) => ({ ok: true as const, uuid: stored.object.uuid }),
    (err: Error) => ({ ok: false as const, message: err.message }),
  ));
  // They reach the writer on the next turn of the event loop: kill it right after.
  await new Promise((r) => setImmediate(r));
  await writer.worker.terminate();
  const settled = await Promise.all(outcomes);
  const failed = settled.filter((o) => !o.ok);
  t.true(failed.length > 0, 'some crashes were in the dead thread');
  for (const f of failed) t.regex((f as { message: string }).message, /The store's writer thread exited/);

  // The next crashes start a new writer; every crash answered ok, before or after, is stored.
  for (let i = 41; i <= 45; i++) t.is((await store.insertCrash(crash(p.id, uuidOf(i), body))).existing, false);
  const answered = [uuidOf(0), ...settled.flatMap((o) => (o.ok ? [o.uuid] : [])), ...[41, 42, 43, 44, 45].map(uuidOf)];
  const stored = new Set<string>();
  for await (const o of store.scanObjects(p.id)) stored.add(o.uuid);
  for (const uuid of answered) t.true(stored.has(uuid), `crash ${uuid} was answered and is stored`);
  // A crash whose answer was lost with the thread may be stored all the same: its retry is then a
  // duplicate, never a second row.
  const retried = await store.insertCrash(crash(p.id, uuidOf(1), body));
  t.is(retried.existing, stored.has(uuidOf(1)));
  let rows = 0;
  for await (const o of store.scanObjects(p.id)) if (o.uuid === uuidOf(1)) rows++;
  t.is(rows, 1);
});
