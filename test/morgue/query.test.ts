/** Flags → query JSON (ts/morgue/query.ts): every flag of list, set and delete, and the refusals. */

import test from 'ava';

import { UsageError } from '../../ts/cli/errors.js';
import { buildFilterOnlyQuery, buildListQuery, buildSetQuery, FILTER_OPERATORS, FOLD_OPERATORS, parseFilter, parseTimeRange, timespecToSeconds } from '../../ts/morgue/query.js';

const NOW = 1_795_680_000_500; // ms
const NOW_S = 1_795_680_000;
const MONTH = 30 * 86400;

test('no flags: the last month, with range and 32 bins of timestamp', (t) => {
  const built = buildListQuery({}, NOW);
  t.is(
    JSON.stringify(built.query),
    JSON.stringify({
      filter: [{ timestamp: [['at-least', NOW_S - MONTH]] }],
      virtual_columns: [],
      fold: { timestamp: [['range'], ['bin', 32, NOW_S - MONTH, NOW_S]] },
    }),
  );
  t.is(built.age, '1M');
  t.is(built.timeLabel, 'as of 1M ago');
  t.deepEqual(built.range, { start: NOW_S - MONTH, stop: NOW_S });
});

test('every one of the 12 filter operators', (t) => {
  for (const op of FILTER_OPERATORS) {
    const unary = op === 'is-set' || op === 'is-not-set';
    const { query } = buildListQuery({ filter: [unary ? `hostname,${op}` : `hostname,${op},web1`] }, NOW);
    t.deepEqual(query.filter[0]?.hostname, [unary ? [op] : [op, 'web1']], op);
  }
  t.is(FILTER_OPERATORS.length, 12);
});

test('filters: values stay strings, repeat per attribute in order, keep commas, take case-insensitive, _tx takes hex', (t) => {
  const { query } = buildListQuery(
    { filter: ['a,at-least,1', 'a,less-than,9', 'b,regular-expression,x,y', 'c,contains,Foo,case-insensitive', '_tx,equal,0x1f', '_tx,not-equal,12'] },
    NOW,
  );
  t.deepEqual(query.filter[0], {
    a: [
      ['at-least', '1'],
      ['less-than', '9'],
    ],
    b: [['regular-expression', 'x,y']],
    c: [['contains', 'Foo', { case_insensitive: true }]],
    _tx: [
      ['equal', 31],
      ['not-equal', '12'],
    ],
    timestamp: [['at-least', NOW_S - MONTH]],
  });
});

test('bad filters are usage errors that say what to write', (t) => {
  t.regex(t.throws(() => parseFilter('hostname'), { instanceOf: UsageError })?.message ?? '', /<attribute>,<operator>/);
  t.regex(t.throws(() => parseFilter('hostname,like,x'), { instanceOf: UsageError })?.message ?? '', /unknown operator "like"/);
  t.regex(t.throws(() => parseFilter('hostname,equal'), { instanceOf: UsageError })?.message ?? '', /needs a value/);
  t.regex(t.throws(() => parseFilter('hostname,is-set,x'), { instanceOf: UsageError })?.message ?? '', /takes no value/);
});

test('an explicit timestamp filter replaces the implicit month and the bins lose their bounds', (t) => {
  const built = buildListQuery({ filter: ['timestamp,at-least,1'] }, NOW);
  t.deepEqual(built.query.filter[0], { timestamp: [['at-least', '1']] });
  t.deepEqual(built.query.fold?.timestamp, [['range'], ['bin']]);
  t.is(built.age, null);
  t.throws(() => buildListQuery({ filter: ['timestamp,at-least,1'], age: '1d' }, NOW), { instanceOf: UsageError });
});

test('--age in every unit', (t) => {
  const units: Record<string, number> = { '2y': 2 * 365 * 86400, '1M': MONTH, '3w': 21 * 86400, '1d': 86400, '6h': 6 * 3600, '15m': 900, '30s': 30, '45': 45 };
  for (const [age, seconds] of Object.entries(units)) {
    t.is(timespecToSeconds(age), seconds, age);
    const built = buildListQuery({ age }, NOW);
    t.deepEqual(built.query.filter[0]?.timestamp, [['at-least', NOW_S - seconds]], age);
    t.deepEqual(built.query.fold?.timestamp?.[1], ['bin', 32, NOW_S - seconds, NOW_S], age);
    t.is(built.timeLabel, `as of ${age} ago`);
  }
  t.throws(() => timespecToSeconds('3 fortnights'), { instanceOf: UsageError });
});

test('--time ranges: ISO dates, unix seconds, now and ago', (t) => {
  const built = buildListQuery({ time: '2026-11-01 to 2026-11-02' }, NOW);
  const start = Date.parse('2026-11-01') / 1000;
  const stop = Date.parse('2026-11-02') / 1000;
  t.deepEqual(built.query.filter[0]?.timestamp, [
    ['at-least', start],
    ['less-than', stop],
  ]);
  t.is(built.timeLabel, 'with a time range of 2026-11-01 to 2026-11-02');
  t.is(built.age, null);
  t.deepEqual(parseTimeRange('1795000000..1795600000', NOW), { start: 1795000000, stop: 1795600000 });
  t.deepEqual(parseTimeRange('2d ago to now', NOW), { start: NOW_S - 2 * 86400, stop: NOW_S });
  t.deepEqual(parseTimeRange('1795000000', NOW), { start: 1795000000, stop: NOW_S });
  t.throws(() => parseTimeRange('yesterday-ish', NOW), { instanceOf: UsageError });
  t.throws(() => parseTimeRange('2026-11-02 to 2026-11-01', NOW), { instanceOf: UsageError });
  t.throws(() => buildListQuery({ time: '1d ago to now', age: '1d' }, NOW), { instanceOf: UsageError });
});

test('--select and --select-wildcard make a selection query without folds', (t) => {
  const { query } = buildListQuery({ select: ['hostname', 'timestamp'], selectWildcard: ['physical', 'derived'] }, NOW);
  t.deepEqual(query.select, ['hostname', 'timestamp']);
  t.deepEqual(query.select_wildcard, { physical: true, derived: true });
  t.is(query.fold, undefined);
  t.throws(() => buildListQuery({ selectWildcard: ['everything'] }, NOW), { instanceOf: UsageError });
});

test('every fold flag, with integer modifiers, in morgue operator order', (t) => {
  const folds = Object.fromEntries(FOLD_OPERATORS.map((op) => [op, [op === 'distribution' ? 'x,5' : op === 'bin' ? 'x,4,0,100' : 'x']]));
  const { query } = buildListQuery({ folds }, NOW);
  t.deepEqual(
    query.fold?.x,
    FOLD_OPERATORS.map((op) => (op === 'distribution' ? [op, 5] : op === 'bin' ? [op, 4, 0, 100] : [op])),
  );
  t.throws(() => buildListQuery({ folds: { distribution: ['x,five'] } }, NOW), { instanceOf: UsageError });
  t.throws(() => buildListQuery({ folds: { head: [''] } }, NOW), { instanceOf: UsageError });
});

test('--factor, --sort, --limit, --offset, --fingerprint', (t) => {
  const { query } = buildListQuery({ factor: 'fingerprint', sort: ['-;count', 'hostname;0'], limit: '20', offset: '40', fingerprint: 'abc' }, NOW);
  t.deepEqual(query.group, ['fingerprint']);
  t.deepEqual(query.order, [
    { name: ';count', ordering: 'descending' },
    { name: 'hostname;0', ordering: 'ascending' },
  ]);
  t.is(query.limit, 20);
  t.is(query.offset, 40);
  t.deepEqual(query.filter[0]?.fingerprint, [['regular-expression', '^abc']]);
  const full = 'f'.repeat(64);
  t.deepEqual(buildListQuery({ fingerprint: full }, NOW).query.filter[0]?.fingerprint, [['equal', full]]);
  t.throws(() => buildListQuery({ limit: 'ten' }, NOW), { instanceOf: UsageError });
  t.throws(() => buildListQuery({ offset: '-1' }, NOW), { instanceOf: UsageError });
  t.throws(() => buildListQuery({ sort: ['-'] }, NOW), { instanceOf: UsageError });
});

test('delete: no scope flags, no query; with a filter, a select of object and no implicit month', (t) => {
  t.is(buildFilterOnlyQuery({}, NOW), null);
  t.is(
    JSON.stringify(buildFilterOnlyQuery({ filter: ['hostname,equal,web1'] }, NOW)),
    JSON.stringify({ filter: [{ hostname: [['equal', 'web1']] }], virtual_columns: [], select: ['object'] }),
  );
  t.deepEqual(buildFilterOnlyQuery({ age: '1d' }, NOW)?.filter[0], { timestamp: [['at-least', NOW_S - 86400]] });
});

test('set: the filter plus set and table, as morgue sends it', (t) => {
  const fp = 'a'.repeat(64);
  t.is(
    JSON.stringify(buildSetQuery({ filter: [`fingerprint,equal,${fp}`] }, { state: 'resolved' }, NOW)),
    JSON.stringify({ filter: [{ fingerprint: [['equal', fp]] }], virtual_columns: [], set: { state: 'resolved' }, table: 'objects' }),
  );
  t.deepEqual(buildSetQuery({ age: '1h' }, { tag: null }, NOW).filter[0], { timestamp: [['at-least', NOW_S - 3600]] });
});
