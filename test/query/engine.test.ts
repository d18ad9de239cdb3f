/**
 * The query engine over a hand-built table: every filter operator (with string values coerced to
 * the column type), every fold, grouping, ordering, paging, and the RLE selection encoding, each
 * checked against values worked out by hand from `sampleObjects()`.
 */

import test from 'ava';

import { execute, filterRows } from '../../ts/query/engine.js';
import { QueryError } from '../../ts/query/errors.js';
import { parseQuery } from '../../ts/query/parse.js';
import { ProjectTable } from '../../ts/query/table.js';
import { crash, morgueUnpack, morgueUnpackObject, sampleObjects } from './fixtures.js';

const fpA = 'a'.repeat(64);
const fpB = 'b'.repeat(64);
const fpC = 'c'.repeat(64);

function table(): ProjectTable {
  const t = new ProjectTable(1, [], 4); // tiny capacity: exercises growth
  for (const o of sampleObjects()) t.upsert(o);
  return t;
}

function ids(t: ProjectTable, filter: unknown): number[] {
  return Array.from(filterRows(t, parseQuery({ filter }).filter), (r) => t.ids[r]!);
}

function run(t: ProjectTable, q: unknown, states?: Map<string, 'open' | 'resolved' | 'ignored'>): any {
  return execute(t, parseQuery(q), { groupStates: states }).response;
}

test('numeric filters coerce string values to the column type', (t) => {
  const tb = table();
  t.deepEqual(ids(tb, [{ timestamp: [['at-least', '500']] }]), [5, 7, 8, 9]);
  t.deepEqual(ids(tb, [{ timestamp: [['at-most', '300']] }]), [1, 2, 3]);
  t.deepEqual(ids(tb, [{ timestamp: [['greater-than', 500]] }]), [7, 8, 9]);
  t.deepEqual(ids(tb, [{ timestamp: [['less-than', '300']] }]), [1, 2]);
  t.deepEqual(ids(tb, [{ 'process.age': [['equal', '30']] }]), [3]);
  // not-equal keeps rows without a value (5 has no process.age).
  t.deepEqual(ids(tb, [{ 'process.age': [['not-equal', '30']] }]), [1, 2, 4, 5, 7, 8, 9]);
  t.deepEqual(ids(tb, [{ 'process.age': [['is-set']] }]), [1, 2, 3, 4, 7, 8, 9]);
  t.deepEqual(ids(tb, [{ 'process.age': [['is-not-set']] }]), [5]);
  // _tx accepts hex, as morgue's --filter=_tx,equal,0x8 sends it.
  t.deepEqual(ids(tb, [{ _tx: [['equal', '0x8']] }]), [8]);
  t.deepEqual(ids(tb, [{ _tx: [['at-least', '0x7'], ['less-than', 9]] }]), [7, 8]);
  // Regular expressions and substrings on a number test its decimal text.
  t.deepEqual(ids(tb, [{ 'process.age': [['regular-expression', '^[78]0$']] }]), [7, 8]);
  t.deepEqual(ids(tb, [{ 'process.age': [['contains', '0']] }]), [1, 2, 3, 4, 7, 8, 9]);
  t.deepEqual(ids(tb, [{ 'process.age': [['not-contains', '9']] }]), [1, 2, 3, 4, 5, 7, 8]);
  t.deepEqual(ids(tb, [{ 'process.age': [['inverse-regular-expression', '^[1-4]']] }]), [5, 7, 8, 9]);
  // Dates are accepted for unix_timestamp columns.
  t.deepEqual(ids(tb, [{ timestamp: [['less-than', '1970-01-01T00:03:20Z']] }]), [1]);
});

test('string filters, case-insensitive flag and unset rows', (t) => {
  const tb = table();
  t.deepEqual(ids(tb, [{ hostname: [['equal', 'web1']] }]), [1, 3, 4]);
  t.deepEqual(ids(tb, [{ hostname: [['equal', 'web1', { case_insensitive: true }]] }]), [1, 3, 4, 8]);
  t.deepEqual(ids(tb, [{ hostname: [['not-equal', 'web1']] }]), [2, 5, 7, 8, 9]);
  t.deepEqual(ids(tb, [{ hostname: [['contains', 'eb']] }]), [1, 2, 3, 4, 9]);
  t.deepEqual(ids(tb, [{ hostname: [['contains', 'EB', { case_insensitive: true }]] }]), [1, 2, 3, 4, 8, 9]);
  t.deepEqual(ids(tb, [{ hostname: [['not-contains', 'web']] }]), [5, 7, 8]);
  t.deepEqual(ids(tb, [{ hostname: [['regular-expression', '^web[12]$']] }]), [1, 2, 3, 4, 9]);
  t.deepEqual(ids(tb, [{ hostname: [['inverse-regular-expression', '^web']] }]), [5, 7, 8]);
  t.deepEqual(ids(tb, [{ hostname: [['is-set']] }]), [1, 2, 3, 4, 5, 8, 9]);
  t.deepEqual(ids(tb, [{ hostname: [['is-not-set']] }]), [7]);
  t.deepEqual(ids(tb, [{ hostname: [['at-least', 'web1']] }]), [1, 2, 3, 4, 9]);
  t.deepEqual(ids(tb, [{ hostname: [['less-than', 'web']] }]), [5, 8]);
  t.deepEqual(ids(tb, [{ hostname: [['at-most', 'web1']] }]), [1, 3, 4, 5, 8]);
  t.deepEqual(ids(tb, [{ hostname: [['greater-than', 'web1']] }]), [2, 9]);
  // morgue --fingerprint=<prefix> sends a regular expression.
  t.deepEqual(ids(tb, [{ fingerprint: [['regular-expression', '^bbb']] }]), [3, 5, 9]);
  // Conditions on several columns are a conjunction; several filter objects a disjunction.
  t.deepEqual(ids(tb, [{ hostname: [['equal', 'web1']], application: [['equal', 'demo']] }]), [1, 3]);
  t.deepEqual(ids(tb, [{ hostname: [['equal', 'db1']] }, { _tx: [['equal', 1]] }]), [1, 5]);
});

test('labels (classifiers) filters look at each label', (t) => {
  const tb = table();
  t.deepEqual(ids(tb, [{ classifiers: [['contains', 'abort']] }]), [3, 5, 9]);
  t.deepEqual(ids(tb, [{ classifiers: [['equal', 'SIGSEGV']] }]), [1, 2, 4, 8]);
  t.deepEqual(ids(tb, [{ classifiers: [['not-equal', 'SIGSEGV']] }]), [3, 5, 7, 9]);
  t.deepEqual(ids(tb, [{ classifiers: [['regular-expression', '^null-']] }]), [1]);
  t.deepEqual(ids(tb, [{ classifiers: [['is-not-set']] }]), [7]);
  // callstack is filtered as its JSON text.
  t.deepEqual(ids(tb, [{ callstack: [['contains', '"check"']] }]), [3, 5, 9]);
});

test('bad filters are refused with a sentence', (t) => {
  const tb = table();
  const bad = (q: unknown, re: RegExp) => {
    const err = t.throws(() => execute(tb, parseQuery(q)), { instanceOf: QueryError });
    t.regex(err!.message, re);
  };
  bad({ filter: [{ timestamp: [['at-least', 'yesterday-ish']]}] }, /not a valid uint64/);
  bad({ filter: [{ nosuch: [['equal', 'x']] }] }, /Unknown attribute 'nosuch'/);
  bad({ filter: [{ hostname: [['like', 'x']] }] }, /Unknown filter operator 'like'/);
  bad({ filter: [{ hostname: [['regular-expression', '(']] }] }, /bad regular expression/);
  bad({ filter: [{ hostname: [['equal']] }] }, /needs a value/);
  bad({ fold: { hostname: [['sum']] } }, /needs a numeric attribute/);
  bad({ fold: { hostname: [['median']] } }, /Unknown fold operation/);
  bad({ select: ['hostname'], fold: { hostname: [['head']] } }, /selects or folds/);
  bad({ limit: -1 }, /limit must be a non-negative integer/);
  bad({ group: ['a', 'b'] }, /one factor/);
  bad({ fold: { timestamp: [['bin', 0]] } }, /number of bins/);
  bad({ table: 'metrics' }, /Unknown table/);
  bad({ fold: { timestamp: [['head']] }, order: [{ name: 'hostname;0', ordering: 'descending' }] }, /names no fold/);
  bad('[]', /JSON object/);
});

test('select: RLE objects and values in row order, decoded as morgue does', (t) => {
  const tb = table();
  const r = run(tb, { select: ['hostname', 'timestamp'], filter: [{ timestamp: [['at-least', '0']] }] });
  // Ids 1..5 are a run, then 7..9.
  t.deepEqual(r.objects, [['*', [[1, 4], [7, 2]]]]);
  t.deepEqual(r.columns, [['hostname', 'hostname'], ['timestamp', 'unix_timestamp']]);
  t.deepEqual(r.columns_desc, [
    { name: 'hostname', format: 'hostname', type: 'dictionary' },
    { name: 'timestamp', format: 'unix_timestamp', type: 'uint64' },
  ]);
  t.deepEqual(r.values[0], ['*', ['web1', 1], ['web2', 1], ['web1', 2], ['db1', 1], [null, 1], ['WEB1', 1], ['web2', 1]]);
  const rows = morgueUnpackObject(r)['*']!;
  t.deepEqual(rows.map((x) => [x.object, x.hostname, x.timestamp]), [
    [1, 'web1', 100], [2, 'web2', 200], [3, 'web1', 300], [4, 'web1', 400], [5, 'db1', 500], [7, null, 700], [8, 'WEB1', 800], [9, 'web2', 900],
  ]);
  t.is(r.encoding, 'rle');
  t.is(r.version, '1.2.0');
  t.is(r.seq, 9);
});

test('select: order (nulls last), limit and offset; callstack as {"frame":[...]}', (t) => {
  const tb = table();
  const r = run(tb, {
    select: ['hostname', 'timestamp', 'callstack'],
    order: [{ name: 'hostname', ordering: 'descending' }, { name: 'timestamp', ordering: 'ascending' }],
    limit: 4,
    offset: 1,
  });
  const rows = morgueUnpackObject(r)['*']!;
  // Descending: web2 (2, 9), web1 (1, 3, 4), db1, WEB1, then the row with no hostname.
  t.deepEqual(rows.map((x) => x.object), [9, 1, 3, 4]);
  t.deepEqual(JSON.parse(rows[0]!.callstack as string), { frame: ['abort', 'check', 'main'] });
  t.deepEqual(r.pagination, { limit: 4, offset: 1 });
  t.deepEqual(r.cardinalities.pagination, { rows: 4, groups: 1 });
  const last = run(tb, { select: ['hostname'], order: [{ name: 'hostname', ordering: 'ascending' }] });
  t.deepEqual(morgueUnpackObject(last)['*']!.map((x) => x.object), [8, 5, 1, 3, 4, 2, 9, 7]);
  // A large table takes the bounded-heap path of ordering; it must agree with a full sort.
  const big = new ProjectTable(1);
  for (let i = 1; i <= 5000; i++) big.upsert(crash(i, { timestamp: (i * 7919) % 5003 }));
  const top = run(big, { select: ['timestamp'], order: [{ name: 'timestamp', ordering: 'descending' }], limit: 5, offset: 2 });
  const all = Array.from({ length: 5000 }, (_, i) => ((i + 1) * 7919) % 5003).sort((a, b) => b - a);
  t.deepEqual(morgueUnpackObject(top)['*']!.map((x) => x.timestamp), all.slice(2, 7));
});

test('select_wildcard physical lists built-ins and every attribute', (t) => {
  const tb = table();
  const r = run(tb, { select_wildcard: { physical: true }, limit: 1 });
  const names = r.columns.map((c: string[]) => c[0]);
  for (const n of ['timestamp', 'fingerprint', 'callstack', 'classifiers', '_tx', 'hostname', 'application', 'process.age', 'uname.sysname']) {
    t.true(names.includes(n), n);
  }
  t.false(names.includes('first_seen'));
  const row = morgueUnpackObject(r)['*']![0]!;
  t.is(row.hostname, 'web1');
  t.is(row.classifiers, 'SIGSEGV null-dereference');
  t.is(row['uname.sysname'], 'Linux');
  const derived = run(tb, { select_wildcard: { physical: false, derived: true }, limit: 1 });
  t.deepEqual(derived.columns.map((c: string[]) => c[0]), ['first_seen', 'state']);
});

test('folds without a group: every operation', (t) => {
  const tb = table();
  const r = run(tb, {
    fold: {
      timestamp: [['range'], ['bin', 4, 0, 1000], ['min'], ['max']],
      hostname: [['head'], ['tail'], ['unique'], ['histogram'], ['distribution', 2], ['count'], ['first'], ['last'], ['min'], ['max'], ['range']],
      'process.age': [['sum'], ['mean'], ['bin'], ['unique'], ['histogram']],
      fingerprint: [['object']],
    },
  });
  const u = morgueUnpack(r)['*'];
  t.is(u.count, 8);
  t.deepEqual(u['range(timestamp)'], [100, 900]);
  t.deepEqual(u['bin(timestamp)'], [[0, 250, 2], [250, 500, 2], [500, 750, 2], [750, 1000, 2]]);
  t.deepEqual(u['min(timestamp)'], [100]);
  t.deepEqual(u['max(timestamp)'], [900]);
  t.deepEqual(u['head(hostname)'], ['web1']);
  t.deepEqual(u['tail(hostname)'], ['web2']);
  t.deepEqual(u['unique(hostname)'], [4]);
  t.deepEqual(u['histogram(hostname)'], [['web1', 3], ['web2', 2], ['WEB1', 1], ['db1', 1]]);
  t.deepEqual(u['distribution(hostname)'], [{ keys: 4, tail: 2, vals: [['web1', 3], ['web2', 2]] }]);
  t.deepEqual(u['count(hostname)'], [7]);
  t.deepEqual(u['first(hostname)'], ['web1']);
  t.deepEqual(u['last(hostname)'], ['web2']);
  t.deepEqual(u['min(hostname)'], ['WEB1']);
  t.deepEqual(u['max(hostname)'], ['web2']);
  t.deepEqual(u['range(hostname)'], ['WEB1', 'web2']);
  t.deepEqual(u['sum(process.age)'], [340]);
  t.deepEqual(u['mean(process.age)'], [340 / 7]);
  t.deepEqual(u['unique(process.age)'], [7]);
  t.is(u['histogram(process.age)'].length, 7);
  // ["bin"] alone: the default count of bins over the values' own range, zero bins included.
  const bins = u['bin(process.age)'] as Array<[number, number, number]>;
  t.is(bins.length, 8);
  t.is(bins[0]![0], 10);
  t.is(bins[7]![1], 90);
  t.is(bins.reduce((s, b) => s + b[2], 0), 7);
  t.deepEqual(u['object(fingerprint)'], ['1']);
  t.deepEqual(r.columns[0], ['range(timestamp)', 'unix_timestamp']);
  t.deepEqual(r.columns_desc[0], { name: 'timestamp', format: 'unix_timestamp', type: 'uint64', op: 'range' });
  t.is(r.factors_desc, undefined);
});

test('bin with explicit bounds returns every bin, also when nothing matches', (t) => {
  const tb = table();
  const r = run(tb, { group: ['fingerprint'], fold: { timestamp: [['bin', 32, 1000, 2000]] } });
  for (const [, cols] of r.values) {
    t.is(cols[0].length, 32);
    t.true(cols[0].every((b: number[]) => b.length === 3 && b[2] === 0));
  }
  // Values on the high bound go into the last bin.
  const edge = run(tb, { fold: { timestamp: [['bin', 2, 100, 900]] } });
  t.deepEqual(edge.values[0][1][0], [[100, 500, 4], [500, 900, 4]]);
});

test('group by fingerprint: keys, counts, factors_desc, default and explicit order', (t) => {
  const tb = table();
  const r = run(tb, {
    group: ['fingerprint'],
    fold: { timestamp: [['range']], callstack: [['head']], hostname: [['unique']] },
  });
  t.deepEqual(r.factors_desc, [{ name: 'fingerprint', format: 'sha256', type: 'dictionary' }]);
  // Default: most crashes first.
  t.deepEqual(r.values.map((v: any[]) => [v[0], v[2]]), [[fpA, 4], [fpB, 3], [fpC, 1]]);
  const u = morgueUnpack(r);
  t.deepEqual(u[fpA]['range(timestamp)'], [100, 800]);
  t.deepEqual(JSON.parse(u[fpB]['head(callstack)'][0]), { frame: ['abort', 'check', 'main'] });
  t.deepEqual(u[fpA]['unique(hostname)'], [3]);
  t.is(u[fpC].count, 1);
  t.deepEqual(r.cardinalities.initial, { rows: 8, groups: 3 });

  const byGroup = run(tb, { group: ['fingerprint'], fold: { timestamp: [['range']] }, order: [{ name: ';group', ordering: 'descending' }] });
  t.deepEqual(byGroup.values.map((v: any[]) => v[0]), [fpC, fpB, fpA]);
  const byCountAsc = run(tb, { group: ['fingerprint'], fold: { timestamp: [['range']] }, order: [{ name: ';count', ordering: 'ascending' }] });
  t.deepEqual(byCountAsc.values.map((v: any[]) => v[0]), [fpC, fpB, fpA]);
  // attr;idx: the second timestamp fold (max); a plain column name means its first fold.
  const byMax = run(tb, { group: ['fingerprint'], fold: { timestamp: [['min'], ['max']] }, order: [{ name: 'timestamp;1', ordering: 'descending' }] });
  t.deepEqual(byMax.values.map((v: any[]) => v[0]), [fpB, fpA, fpC]);
  const byMin = run(tb, { group: ['fingerprint'], fold: { timestamp: [['min'], ['max']] }, order: [{ name: 'timestamp', ordering: 'descending' }] });
  t.deepEqual(byMin.values.map((v: any[]) => v[0]), [fpC, fpB, fpA]);
});

test('grouped paging computes folds for the page only, with the same values', (t) => {
  const tb = table();
  const q = { group: ['hostname'], fold: { 'process.age': [['sum'], ['histogram']], timestamp: [['bin', 4, 0, 1000]] }, order: [{ name: ';group', ordering: 'ascending' }] };
  const all = run(tb, q);
  const page = run(tb, { ...q, limit: 2, offset: 2 });
  t.deepEqual(page.values, all.values.slice(2, 4));
  t.deepEqual(page.cardinalities.pagination.groups, 2);
  // The row without a hostname is in group '*'.
  t.true(all.values.some((v: any[]) => v[0] === '*' && v[2] === 1));
  t.deepEqual(all.values.map((v: any[]) => v[0]), ['WEB1', 'db1', 'web1', 'web2', '*']);
});

test('numeric factor and empty results', (t) => {
  const tb = table();
  const r = run(tb, { group: ['process.age'], fold: { hostname: [['head']] }, order: [{ name: ';group', ordering: 'ascending' }], limit: 3 });
  t.deepEqual(r.values.map((v: any[]) => v[0]), ['10', '20', '30']);
  t.deepEqual(r.factors_desc, [{ name: 'process.age', format: 'seconds', type: 'uint64' }]);
  const none = run(tb, { filter: [{ timestamp: [['greater-than', 10_000]] }], fold: { timestamp: [['range'], ['bin', 32, 0, 1]] } });
  t.deepEqual(none.values, []);
  const noneSel = run(tb, { filter: [{ timestamp: [['greater-than', 10_000]] }], select: ['hostname'] });
  t.deepEqual(noneSel.objects, []);
  t.deepEqual(noneSel.values, []);
  t.deepEqual(morgueUnpack(noneSel), {});
});

test('derived columns first_seen and state', (t) => {
  const tb = table();
  const states = new Map([[fpB, 'resolved' as const]]);
  const r = run(tb, { select: ['first_seen', 'state'], filter: [{ state: [['equal', 'resolved']] }] }, states);
  t.deepEqual(morgueUnpackObject(r)['*']!.map((x) => [x.object, x.first_seen, x.state]), [[3, 300, 'resolved'], [5, 300, 'resolved'], [9, 300, 'resolved']]);
  const open = run(tb, { group: ['state'], fold: { fingerprint: [['unique']] } }, states);
  t.deepEqual(open.values.map((v: any[]) => [v[0], v[1][0][0], v[2]]), [['open', 2, 5], ['resolved', 1, 3]]);
});

test('updates and deletes keep the table right; undeclared numbers meeting strings become strings', (t) => {
  const tb = table();
  tb.remove(3);
  tb.upsert(crash(2, { timestamp: 200, fingerprint: fpC, attributes: { hostname: 'moved' } }));
  t.deepEqual(ids(tb, [{ hostname: [['equal', 'moved']] }]), [2]);
  t.deepEqual(ids(tb, [{ fingerprint: [['equal', fpB]] }]), [5, 9]);
  // The rewrite cleared attributes the new version does not have.
  t.deepEqual(ids(tb, [{ 'process.age': [['equal', 20]] }]), []);
  tb.upsert(crash(10, { attributes: { 'process.age': 'old' } }));
  t.deepEqual(ids(tb, [{ 'process.age': [['equal', 'old']] }]), [10]);
  t.deepEqual(ids(tb, [{ 'process.age': [['equal', '10']] }]), [1]);
  t.is(tb.metaOf('process.age')!.type, 'dictionary');
});

test('declared attributes fix type and format', (t) => {
  const tb = new ProjectTable(1, [{ name: 'build', type: 'uint64', format: 'none', custom: true, description: 'Build number' }]);
  tb.upsert(crash(1, { attributes: { build: '41' } }));
  tb.upsert(crash(2, { attributes: { build: 'not-a-number' } }));
  tb.upsert(crash(3, { attributes: { build: 43 } }));
  t.deepEqual(ids(tb, [{ build: [['at-least', '42']] }]), [3]);
  t.deepEqual(ids(tb, [{ build: [['is-not-set']] }]), [2]);
  const meta = tb.metaOf('build')!;
  t.is(meta.type, 'uint64');
  t.true(meta.custom);
});
