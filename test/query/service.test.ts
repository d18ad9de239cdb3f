/**
 * The query service over the real SqliteStore: every /api/query request morgue 1.24.11 sent in
 * the captures answered in the shape morgue reads (backtrace-compat.md §1.5, §1.6), and the
 * columnar cache kept current through inserts, attribute changes, deletes and `set`.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import test from 'ava';

import { QueryError } from '../../ts/query/errors.js';
import { QueryService } from '../../ts/query/service.js';
import { SqliteStore } from '../../ts/store/sqlite.js';
import type { Project } from '../../ts/store/types.js';
import { capturedRequests, morgueUnpack, morgueUnpackObject, sdkCrash } from './fixtures.js';

async function setup(t: { teardown: (fn: () => unknown) => void }, n = 30): Promise<{ store: SqliteStore; service: QueryService; project: Project; now: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coroner-query-'));
  const store = await SqliteStore.open({ dataDir: dir });
  const service = new QueryService(store, { flushAfterMs: 10 });
  t.teardown(async () => {
    service.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const universe = await store.createUniverse('local');
  const project = await store.createProject(universe.id, 'myproj');
  const now = Math.floor(Date.now() / 1000);
  await Promise.all(Array.from({ length: n }, (_, i) => store.insertCrash(sdkCrash(project.id, i, now))));
  return { store, service, project, now };
}

const who = { universe: 'local', user: 'admin' };

/** morgue's implicit time filter is relative to when it ran; move it to now. */
function retime(body: any, now: number): any {
  const s = JSON.stringify(body).replace(/179\d{7}/g, (m) => String(Number(m) - 1_795_680_440 + now));
  return JSON.parse(s);
}

function checkEnvelope(t: any, result: any): void {
  const u = result._;
  t.is(typeof u.tx, 'number');
  t.is(u.universe, 'local');
  t.is(u.project, 'myproj');
  t.is(u.user, 'admin');
  t.regex(u.latency, /^\d+ us$/);
  for (const k of ['filter', 'group_by', 'aggregate', 'sort']) t.is(typeof u.runtime[k].time, 'number', k);
  t.is(typeof u.runtime.filter.rows, 'number');
  t.is(typeof u.runtime.group_by.groups, 'number');
  t.is(typeof u.runtime.total_time, 'number');
}

test('every captured morgue query gets the response shape morgue 1.24.11 reads', async (t) => {
  const { service, project, now } = await setup(t);
  const queries = capturedRequests().filter((r) => r.path.startsWith('/api/query'));
  t.is(queries.length, 5);
  for (const req of queries) {
    const params = new URL(req.path, 'http://x').searchParams;
    const body = retime(JSON.parse(req.body), now);
    if (params.get('action') === 'describe') {
      const r: any = await service.describe(project, who);
      checkEnvelope(t, r);
      const names = r.describe.map((d: any) => d.name);
      for (const n of ['timestamp', 'fingerprint', 'callstack', 'classifiers', 'hostname', 'application', 'uname.sysname', 'process.age', 'first_seen', 'state', '_tx']) {
        t.true(names.includes(n), n);
      }
      for (const d of r.describe) {
        t.is(typeof d.name, 'string');
        t.is(typeof d.description, 'string');
        t.is(typeof d.format, 'string');
        t.is(typeof d.type, 'string');
        t.is(typeof d.custom, 'boolean');
        t.is(d.state, 'enabled');
        t.is(typeof d.statistics.used, 'boolean');
        t.true(Array.isArray(d.filter) && Array.isArray(d.aggregate));
      }
      t.is(r.describe.find((d: any) => d.name === 'vm.rss.size').format, 'bytes');
      continue;
    }
    const r: any = await service.query(project, body, who);
    checkEnvelope(t, r);
    const resp = r.response;
    t.is(resp.version, '1.2.0');
    t.is(resp.encoding, 'rle');
    t.true(Array.isArray(resp.columns_desc));
    t.is(resp.columns.length, resp.columns_desc.length);
    if (body.select || body.select_wildcard) {
      const rows = morgueUnpackObject(resp)['*']!;
      t.is(rows.length, body.limit);
      for (const row of rows) {
        t.is(typeof row.object, 'number');
        if ('timestamp' in row) t.is(typeof row.timestamp, 'number');
        if ('callstack' in row) t.true(Array.isArray(JSON.parse(row.callstack as string).frame));
      }
      if (body.select) {
        t.deepEqual(resp.columns.map((c: string[]) => c[0]), body.select);
        // The capture filters classifiers contains abort, hostname set, ascending time.
        t.true(rows.every((x) => typeof x.hostname === 'string'));
        t.true((rows[0]!.timestamp as number) <= (rows[1]!.timestamp as number));
      } else {
        t.true(resp.columns.length > 40, 'select_wildcard physical returns every attribute');
      }
      continue;
    }
    // Aggregations.
    const folds = Object.entries(body.fold as Record<string, unknown[][]>).flatMap(([attr, ops]) => ops.map((op) => `${op[0]}(${attr})`));
    t.deepEqual(resp.columns.map((c: string[]) => c[0]), folds);
    t.true(resp.values.length > 0);
    if (body.limit !== undefined) t.true(resp.values.length <= body.limit);
    if (body.group) t.deepEqual(resp.factors_desc, [{ name: 'fingerprint', format: 'sha256', type: 'dictionary' }]);
    for (const v of resp.values) {
      t.is(v.length, 3);
      t.is(typeof v[0], 'string');
      t.is(v[1].length, folds.length);
      t.is(typeof v[2], 'number');
    }
    const unpacked = morgueUnpack(resp);
    for (const group of Object.values(unpacked) as any[]) {
      const bins = group['bin(timestamp)'];
      t.is(bins.length, 32);
      t.true(bins.every((b: unknown[]) => b.length === 3));
      const range = group['range(timestamp)'];
      t.is(range.length, 2);
      t.true(range[0] <= range[1]);
      t.is(bins.reduce((s: number, b: number[]) => s + b[2]!, 0), group.count);
      if (group['head(callstack)']) t.true(Array.isArray(JSON.parse(group['head(callstack)'][0]).frame));
      if (group['object(fingerprint)']) t.regex(group['object(fingerprint)'][0], /^[0-9a-f]+$/);
      if (group['histogram(hostname)']) t.true(group['histogram(hostname)'].every((h: unknown[]) => h.length === 2));
      if (group['distribution(hostname)']) {
        const d = group['distribution(hostname)'][0];
        t.is(typeof d.keys, 'number');
        t.is(typeof d.tail, 'number');
        t.true(d.vals.length <= 3);
      }
      if (group['unique(hostname)']) t.is(typeof group['unique(hostname)'][0], 'number');
      if (group['count(hostname)']) t.is(group['count(hostname)'][0], group.count);
      if (group['sum(process.age)']) t.is(typeof group['sum(process.age)'][0], 'number');
    }
  }
});

test('the cache follows inserts, attribute changes and deletes', async (t) => {
  const { store, service, project, now } = await setup(t, 6);
  const count = async (filter: unknown = []) => ((await service.query(project, { filter, fold: { timestamp: [['count']] } }, who)) as any).response.values[0]?.[2] ?? 0;
  t.is(await count(), 6);
  await store.insertCrash(sdkCrash(project.id, 100, now));
  t.is(await count(), 7, 'an insert acknowledged before the query is visible to it');
  const r: any = await service.query(project, { select: ['_tx'], order: [{ name: '_tx', ordering: 'descending' }], limit: 1 }, who);
  const newest = r.response.objects[0][1][0][0] as number;
  await store.setObjectAttributes(project.id, [newest], { hostname: 'renamed' });
  t.is(await count([{ hostname: [['equal', 'renamed']] }]), 1);
  await store.deleteObjects(project.id, [newest]);
  t.is(await count(), 6);
  t.is(await count([{ hostname: [['equal', 'renamed']] }]), 0);
});

test('set: attributes through the store, group state through setGroupState', async (t) => {
  const { store, service, project } = await setup(t, 9);
  const fp2 = '2'.repeat(64);
  const res: any = await service.query(project, { filter: [{ fingerprint: [['equal', fp2]] }], set: { state: 'resolved' } }, who);
  t.is(res.response.result, 'success');
  t.is(res.response.groups, 1);
  t.is(await store.getGroupState(project.id, fp2), 'resolved');
  const resolved: any = await service.query(project, { filter: [{ state: [['equal', 'resolved']] }], group: ['fingerprint'], fold: { timestamp: [['range']] } }, who);
  t.deepEqual(resolved.response.values.map((v: any[]) => v[0]), [fp2]);
  const tagged: any = await service.query(project, { filter: [{ hostname: [['equal', 'host1']] }], set: { ticket: 'BUG-1' } }, who);
  t.is(tagged.response.result, 'success');
  const sel: any = await service.query(project, { filter: [{ ticket: [['equal', 'BUG-1']] }], select: ['hostname'] }, who);
  const rows = morgueUnpackObject(sel.response)['*']!;
  t.true(rows.length > 0);
  t.true(rows.every((x) => x.hostname === 'host1'));
  await t.throwsAsync(service.query(project, { set: { fingerprint: 'x' } }, who), { instanceOf: QueryError, message: /cannot be set/ });
  await t.throwsAsync(service.query(project, { set: { state: 'done' } }, who), { instanceOf: QueryError, message: /state must be one of/ });
  // Clearing the state (morgue --clear state) reopens the group.
  await service.query(project, { filter: [{ fingerprint: [['equal', fp2]] }], set: { state: null } }, who);
  t.is(await store.getGroupState(project.id, fp2), 'open');
});

test('delete by query finds the matching ids', async (t) => {
  const { service, project } = await setup(t, 9);
  const ids = await service.matchingIds(project, { filter: [{ classifiers: [['contains', 'abort']] }] });
  t.is(ids.length, 3);
  await t.throwsAsync(service.matchingIds(project, { filter: [{ nosuch: [['equal', 1]] }] }), { instanceOf: QueryError });
});
