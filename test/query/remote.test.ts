/**
 * The query engine on its own thread (ts/query/remote.ts): the same answers as the in-process
 * service over the same data folder, kept current by the changes the main thread's store
 * announces, `set` through it, a worker that dies replaced by the next query, and the event
 * loop turning while a query runs.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import test from 'ava';

import { QueryError } from '../../ts/query/errors.js';
import { RemoteQueryService } from '../../ts/query/remote.js';
import { QueryService } from '../../ts/query/service.js';
import { closeQueryService, queryServiceFor } from '../../ts/server/api/service.js';
import { SqliteStore } from '../../ts/store/sqlite.js';
import type { Project } from '../../ts/store/types.js';
import { sdkCrash } from './fixtures.js';

const who = { universe: 'local', user: 'admin' };

async function setup(t: { teardown: (fn: () => unknown) => void }, n: number): Promise<{ store: SqliteStore; dir: string; project: Project; now: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coroner-remote-'));
  const store = await SqliteStore.open({ dataDir: dir });
  t.teardown(async () => {
    closeQueryService(store);
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const universe = await store.createUniverse('local');
  const project = await store.createProject(universe.id, 'myproj');
  const now = Math.floor(Date.now() / 1000);
  for (let base = 0; base < n; base += 2000) {
    await Promise.all(Array.from({ length: Math.min(2000, n - base) }, (_, k) => store.insertCrash(sdkCrash(project.id, base + k, now))));
  }
  return { store, dir, project, now };
}

const grouped = { group: ['fingerprint'], fold: { hostname: [['histogram']], 'process.age': [['range']] }, order: [{ name: ';count', ordering: 'descending' }] };
const count = async (service: { query: QueryService['query'] }, project: Project, filter: unknown[] = []) => {
  const envelope = await service.query(project, { filter, fold: { timestamp: [['range']] } }, who);
  const values = (envelope.response as { values: Array<[string, unknown[], number]> }).values;
  return values[0]?.[2] ?? 0;
};

test('answers as the in-process service does, and follows inserts, deletes and set', async (t) => {
  const { store, dir, project, now } = await setup(t, 60);
  const remote = queryServiceFor(store);
  t.true(remote instanceof RemoteQueryService, 'the threaded store gets the engine on a worker');

  const inline = await SqliteStore.open({ dataDir: dir, workers: false });
  const local = new QueryService(inline);
  t.teardown(async () => {
    local.close();
    await inline.close();
  });
  const a = await remote.query(project, grouped, who);
  const b = await local.query(project, grouped, who);
  t.deepEqual(a.response, b.response);
  t.deepEqual(JSON.parse(Buffer.from(await remote.queryJson(project, grouped, who)).toString()).response, b.response);
  t.deepEqual((await remote.describe(project, who)).describe, (await local.describe(project, who)).describe);

  // Changes made through the main thread's store reach the worker's table.
  t.is(await count(remote, project), 60);
  await Promise.all([60, 61, 62].map((i) => store.insertCrash(sdkCrash(project.id, i, now))));
  t.is(await count(remote, project), 63);
  const ids = await remote.matchingIds(project, { filter: [{ hostname: [['equal', 'host1']] }] });
  t.true(ids.length > 0);
  await store.deleteObjects(project.id, ids);
  t.is(await count(remote, project), 63 - ids.length);
  t.deepEqual(await remote.matchingIds(project, { filter: [{ hostname: [['equal', 'host1']] }] }), []);

  // `set` runs on the worker's own connection; the main thread's store reads it back.
  const set = await remote.query(project, { filter: [{ fingerprint: [['equal', '2'.repeat(64)]] }], set: { state: 'resolved' } }, who);
  t.is((set.response as { groups: number }).groups, 1);
  t.is(await store.getGroupState(project.id, '2'.repeat(64)), 'resolved');
  t.true((await count(remote, project, [{ state: [['equal', 'resolved']] }])) > 0);
  remote.noteGroupState(project.id, '2'.repeat(64), 'open');
  t.is(await count(remote, project, [{ state: [['equal', 'resolved']] }]), 0);

  await t.throwsAsync(remote.query(project, { fold: { hostname: [['no-such-fold']] } }, who), { instanceOf: QueryError });
});

test('a query worker that dies fails only its own queries; the next query starts a new one', async (t) => {
  const { store, project } = await setup(t, 30);
  const remote = queryServiceFor(store) as RemoteQueryService;
  t.is(await count(remote, project), 30);
  const worker = (remote as unknown as { worker: { terminate(): Promise<number> } }).worker;
  const inFlight = remote.query(project, grouped, who);
  await worker.terminate();
  await inFlight.then(
    () => t.pass('the query was answered before the worker stopped'),
    (err: Error) => t.regex(err.message, /query worker stopped/),
  );
  t.is(await count(remote, project), 30);
});

test('the event loop keeps turning while a query runs on the worker', async (t) => {
  const { store, project } = await setup(t, 20_000);
  const remote = queryServiceFor(store);
  await remote.warm(project.id);
  const heavy = { group: ['hostname'], fold: { timestamp: [['bin', 64]], 'process.age': [['distribution', 16]], fingerprint: [['unique']] } };
  let turns = 0;
  let querying = true;
  const spin = (): void => {
    turns++;
    if (querying) setImmediate(spin);
  };
  const started = performance.now();
  setImmediate(spin);
  const answer = await remote.query(project, heavy, who);
  querying = false;
  const ms = performance.now() - started;
  t.true(((answer.response as { values: unknown[] }).values.length) > 0);
  // On the event loop, a query is one synchronous stretch: a handful of turns at most.
  t.true(turns > 5, `only ${turns} turns of the event loop in ${ms.toFixed(1)} ms of querying`);
});
