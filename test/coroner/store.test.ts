/**
 * SqliteStore on its own: both modes (worker threads and inline) give the same answers; group
 * commit; duplicates; large blobs in files; deletes; change events; reopen; and ingestion that
 * keeps going while a long scan runs.
 */

import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { hashPassword, verifyLogin, verifyPassword, LoginThrottle } from '../../ts/server/auth.js';
import { openSqliteStore } from '../../ts/store/sqlite.js';
import { StoreError, type NewCrash } from '../../ts/store/types.js';
import { http, report, startServer, tempDir } from './helpers.js';

const crash = (projectId: number, uuid: string, extra: Partial<NewCrash> = {}): NewCrash => ({
  projectId,
  uuid,
  timestamp: 1_700_000_000,
  fingerprint: 'f'.repeat(64),
  callstack: ['a', 'b'],
  classifiers: ['SIGSEGV'],
  attributes: { hostname: 'h', n: 1 },
  format: 'json',
  processed: true,
  body: Buffer.from(`{"uuid":"${uuid}"}`),
  contentType: 'application/json',
  attachments: [],
  ...extra,
});

for (const workers of [true, false]) {
  test(`store (${workers ? 'worker threads' : 'inline'}): crashes, duplicates, blobs, attachments, deletes, events, reopen`, async (t) => {
    const dataDir = tempDir();
    let store = await openSqliteStore({ dataDir, workers });
    const u = await store.createUniverse('local');
    const p = await store.createProject(u.id, 'proj');
    await t.throwsAsync(store.createProject(u.id, 'proj'), { instanceOf: StoreError, message: /already exists/ });

    const events: string[] = [];
    store.onChange((e) => events.push(`${e.kind}:${e.ids.join(',')}`));
    const big = Buffer.alloc(600 * 1024, 7);
    const results = await Promise.all([
      store.insertCrash(crash(p.id, 'u1')),
      store.insertCrash(crash(p.id, 'u2', { body: big, attachments: [{ name: 'big.bin', contentType: 'application/octet-stream', data: big }] })),
      store.insertCrash(crash(p.id, 'u1')),
    ]);
    t.deepEqual(results.map((r) => r.existing), [false, false, true]);
    t.is(results[2]!.object.rxid, results[0]!.object.rxid);
    t.deepEqual(results.map((r) => r.object.id), [1, 2, 1]);
    t.is(await store.countObjects(p.id), 2);
    t.true(events.some((e) => e.startsWith('insert:')));
    // Large blobs live in files under blobs/, named by the store.
    const blobDirs = fs.readdirSync(path.join(dataDir, 'blobs'));
    t.true(blobDirs.length > 0);

    t.deepEqual(Buffer.from((await store.getReportBody(p.id, 2))!.body), big);
    const [att] = await store.listAttachments(p.id, 2);
    t.is(att!.size, big.length);
    t.deepEqual(Buffer.from((await store.getAttachment(p.id, 2, att!.id))!.data), big);
    const small = await store.addAttachment(p.id, 1, 'note.txt', 'text/plain', Buffer.from('hi'));
    t.is(small.name, 'note.txt');
    await t.throwsAsync(store.addAttachment(p.id, 99, 'x', 'text/plain', Buffer.from('x')), { instanceOf: StoreError });

    t.is(await store.setObjectAttributes(p.id, [1], { tag: 'triaged' }), 1);
    t.is((await store.getObject(p.id, 1))!.attributes.tag, 'triaged');
    const ids: number[] = [];
    for await (const o of store.scanObjects(p.id)) ids.push(o.id);
    t.deepEqual(ids, [1, 2]);

    await store.close();
    store = await openSqliteStore({ dataDir, workers });
    t.is(await store.countObjects(p.id), 2, 'everything is there after reopening');
    const filesBefore = fs.readdirSync(path.join(dataDir, 'blobs')).flatMap((d) => fs.readdirSync(path.join(dataDir, 'blobs', d)));
    t.is(filesBefore.length, 2);
    t.is(await store.deleteObjects(p.id, [2, 77]), 1);
    const filesAfter = fs.readdirSync(path.join(dataDir, 'blobs')).flatMap((d) => fs.readdirSync(path.join(dataDir, 'blobs', d)));
    t.is(filesAfter.length, 0, "a deleted crash's blob files are removed");
    t.is(await store.getReportBody(p.id, 2), undefined);
    // Ids are not reused.
    t.is((await store.insertCrash(crash(p.id, 'u3'))).object.id, 3);
    await store.close();
  });
}

test('users, tokens and sessions: scrypt hashes, expiry, revocation; login throttling', async (t) => {
  const store = await openSqliteStore({ dataDir: tempDir(), workers: false });
  const u = await store.createUniverse('local');
  const hash = await hashPassword('s3cret-pass');
  t.regex(hash, /^scrypt\$16384\$8\$1\$/);
  t.true(await verifyPassword('s3cret-pass', hash));
  t.false(await verifyPassword('wrong', hash));
  await store.createUser(u.id, 'ann', 'ann@example.com', hash, false);

  const ok = await verifyLogin(store, 'local', 'ann', 's3cret-pass', '10.0.0.1');
  t.true(ok.ok);
  if (ok.ok) {
    t.truthy(await store.getSession(ok.session.token));
    await store.deleteSession(ok.session.token);
    t.is(await store.getSession(ok.session.token), undefined);
  }
  await store.createSession({ token: 'expired', uid: 1, universeId: u.id, expiresAt: Math.floor(Date.now() / 1000) - 1 });
  t.is(await store.getSession('expired'), undefined);
  t.is(await store.deleteExpiredSessions(), 1);

  const throttle = new LoginThrottle({ freeFailures: 2, baseDelayMs: 60_000, maxDelayMs: 600_000, forgetAfterMs: 3_600_000 });
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await verifyLogin(store, 'local', 'ann', 'bad', '10.0.0.2', { throttle });
    statuses.push(r.ok ? 200 : r.status);
  }
  t.deepEqual(statuses, [401, 401, 401, 429]);
  const blocked = await verifyLogin(store, 'local', 'ann', 's3cret-pass', '10.0.0.2', { throttle });
  t.false(blocked.ok, 'even the right password waits while throttled');
  const unknownUser = await verifyLogin(store, 'local', 'nobody', 'x', '10.0.0.3');
  t.deepEqual(unknownUser.ok ? 'ok' : [unknownUser.status, unknownUser.message], [401, 'Invalid username or password.']);
  await store.close();
});

test('concurrency smoke: submissions keep being acknowledged quickly while long scans run', async (t) => {
  const s = await startServer();
  try {
    // Enough rows that a full scan takes a while.
    const fill: Array<Promise<unknown>> = [];
    for (let i = 0; i < 30_000; i++) fill.push(s.store.insertCrash(crash(s.project.id, `fill-${i}`, { attributes: { hostname: `h${i % 50}`, i } })));
    await Promise.all(fill);

    let scanning = true;
    let scans = 0;
    const scanner = (async () => {
      while (scanning) {
        let n = 0;
        for await (const _ of s.store.scanObjects(s.project.id)) n++;
        if (n >= 30_000) scans++;
      }
    })();
    const latencies: number[] = [];
    const submitter = async () => {
      for (let i = 0; i < 25; i++) {
        const started = Date.now();
        const res = await http(`${s.url}/post?format=json&token=${s.token}`, { body: JSON.stringify(report()) });
        latencies.push(Date.now() - started);
        if (res.status !== 200) throw new Error(`submission failed: ${res.status} ${res.text}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, submitter));
    scanning = false;
    await scanner;
    latencies.sort((a, b) => a - b);
    t.is(latencies.length, 200);
    t.true(scans >= 1, 'at least one full scan ran alongside');
    const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
    t.true(p99 < 2000, `p99 submission latency during scans was ${p99} ms`);
    t.is(await s.store.countObjects(s.project.id), 30_200);
  } finally {
    await s.close();
  }
});
