/**
 * Decoding and rendering of query responses (ts/morgue/response.ts, render.ts) on responses shaped
 * as backtrace-compat.md §1.5 shows them, checked line by line.
 */

import test from 'ava';

import { ServerError } from '../../ts/morgue/errors.js';
import { ago, bars, formatValue, renderDescribe, renderFooter, renderList, sparkline, toCsv } from '../../ts/morgue/render.js';
import { toUnpackedJson, unpack } from '../../ts/morgue/response.js';

const NOW_MS = 1795680000 * 1000;

test('the sparkline: one glyph per bin, empty bins lowest, the busiest bin full, any crash at least one step up', (t) => {
  const bins = Array.from({ length: 32 }, (_, i) => [i, i + 1, 0]);
  t.is(sparkline(bins), '▁'.repeat(32));
  bins[31] = [31, 32, 100];
  bins[30] = [30, 31, 1];
  bins[29] = [29, 30, 50];
  t.is(sparkline(bins), `${'▁'.repeat(29)}▅▂█`);
  t.is([...sparkline(bins)].length, 32);
  t.is(sparkline([]), '');
  t.is(sparkline('not bins'), '');
});

test('ago', (t) => {
  t.is(ago(NOW_MS - 5000, NOW_MS), '5 seconds ago');
  t.is(ago(NOW_MS - 60_000, NOW_MS), '1 minute ago');
  t.is(ago(NOW_MS - 3 * 86400_000, NOW_MS), '3 days ago');
  t.is(ago(NOW_MS + 120_000, NOW_MS), 'in 2 minutes');
  t.is(ago(NOW_MS, NOW_MS), 'just now');
});

test('an aggregation: sparkline, first and last occurrence, occurrences, each fold', (t) => {
  const bins = Array.from({ length: 32 }, (_, i) => [1795600000 + i * 2500, 1795600000 + (i + 1) * 2500, i === 31 ? 1 : 0]);
  const response = {
    version: '1.2.0',
    encoding: 'rle',
    columns: [
      ['range(timestamp)', 'unix_timestamp'],
      ['bin(timestamp)', 'unix_timestamp'],
      ['head(callstack)', 'callstack'],
      ['histogram(hostname)', 'hostname'],
      ['unique(hostname)', 'hostname'],
      ['distribution(hostname)', 'hostname'],
      ['sum(vm.rss)', 'bytes'],
      ['range(process.age)', 'seconds'],
      ['object(fingerprint)', 'sha256'],
      ['count(hostname)', 'hostname'],
      ['bin(process.age)', 'seconds'],
    ],
    values: [
      [
        '*',
        [
          [1795679995, 1795679995],
          bins,
          [JSON.stringify({ frame: ['abort', 'crash', 'main'] })],
          [
            ['web2', 1],
            ['web1', 3],
          ],
          [2],
          [{ keys: 2, tail: 1, vals: [['web1', 3]] }],
          ['4096'],
          [1, 7],
          ['1c'],
          [4],
          [
            [0, 5, 3],
            [5, 10, 1],
          ],
        ],
        4,
      ],
    ],
  };
  const text = renderList(unpack(response), { nowMs: NOW_MS, totalRows: 4 });
  const date = String(new Date(1795679995 * 1000));
  t.is(
    text,
    [
      `*                               ${'▁'.repeat(31)}█ 5 seconds ago`,
      `First Occurrence: ${date}`,
      ` Last Occurrence: ${date}`,
      '     Occurrences: 4',
      'head(callstack):',
      '    abort ← crash ← main',
      'histogram(hostname):',
      `  web1 ${'▆'.repeat(40)} 3`,
      `  web2 ${'▆'.repeat(13)}${' '.repeat(27)} 1`,
      'unique(hostname): 2',
      'distribution(hostname): 2 keys total, with a count of 4',
      `  web1 ${'▆'.repeat(40)} 3`,
      'sum(vm.rss): 4096 B',
      'range(process.age): 1 sec - 7 sec (6)',
      'object(fingerprint): 1c',
      'count(hostname): 4',
      'bin(process.age):',
      `  ${'0 sec'.padStart(20)} ${'5 sec'.padStart(20)} ${'▆'.repeat(10)} 3`,
      `  ${'5 sec'.padStart(20)} ${'10 sec'.padStart(20)} ${'▆'.repeat(3)}${' '.repeat(7)} 1`,
      '',
      '',
    ].join('\n'),
  );
});

test('grouped: long keys are cut, shares of the total are shown', (t) => {
  const fp = 'f'.repeat(64);
  const response = {
    columns: [['range(timestamp)', 'unix_timestamp']],
    factors_desc: [{ name: 'fingerprint', format: 'sha256', type: 'dictionary' }],
    values: [
      [fp, [[1795679000, 1795679990]], 3],
      ['short', [[1795679000, 1795679000]], 1],
    ],
  };
  const lines = renderList(unpack(response), { nowMs: NOW_MS, totalRows: 4, grouped: true }).split('\n');
  t.is(lines[0], `${'f'.repeat(28)}... 10 seconds ago`);
  t.is(lines[3], '     Occurrences: 3 (75.00%)');
  t.is(lines[5], `${'short'.padEnd(31)} 16 minutes ago`);
  t.is(lines[8], '     Occurrences: 1 (25.00%)');
  t.is(toCsv(unpack(response)), `fingerprint,count,range(timestamp)\n${fp},3,"[1795679000,1795679990]"\nshort,1,"[1795679000,1795679000]"\n`);
});

test('a selection: RLE objects and values decoded in row order; rows with id, date, attributes, callstack', (t) => {
  const response = {
    objects: [['*', [[1], [2], [5, 2]]]],
    columns: [
      ['hostname', 'hostname'],
      ['timestamp', 'unix_timestamp'],
      ['callstack', 'callstack'],
    ],
    values: [
      ['*', ['web1', 1], ['web2', 1], ['web,3', 3]],
      ['*', [1795676400, 1], [1795678200, 1], [1795679400, 3]],
      ['*', [JSON.stringify({ frame: ['raise', 'abort'] }), 5]],
    ],
  };
  const unpacked = unpack(response);
  t.deepEqual(
    toUnpackedJson(unpacked)['*'],
    [
      { object: 1, id: '1', hostname: 'web1', timestamp: 1795676400 },
      { object: 2, id: '2', hostname: 'web2', timestamp: 1795678200 },
      { object: 5, id: '5', hostname: 'web,3', timestamp: 1795679400 },
      { object: 6, id: '6', hostname: 'web,3', timestamp: 1795679400 },
      { object: 7, id: '7', hostname: 'web,3', timestamp: 1795679400 },
    ].map((r) => ({ ...r, callstack: JSON.stringify({ frame: ['raise', 'abort'] }) })),
  );
  const lines = renderList(unpacked, { nowMs: NOW_MS }).split('\n');
  t.is(lines[0], '*');
  t.is(lines[1], `#1       ${String(new Date(1795676400 * 1000))}     1 hour ago`);
  t.is(lines[2], '  hostname: web1');
  t.is(lines[3], '  callstack:');
  t.is(lines[4], '    raise ← abort');
  t.is(lines.filter((l) => l.startsWith('#')).length, 5);
  const csv = toCsv(unpacked).split('\n');
  t.is(csv[0], 'hostname,timestamp,callstack,object,id');
  t.is(csv[3], `"web,3",1795679400,"{""frame"":[""raise"",""abort""]}",5,5`);
});

test('empty results render nothing (the caller prints only the footer)', (t) => {
  t.is(renderList(unpack({ columns: [['range(timestamp)', 'unix_timestamp']], values: [] })), '');
  t.is(renderList(unpack({ objects: [], columns: [['hostname', 'none']], values: [] })), '');
  t.is(renderList(unpack({ objects: [['*', []]], columns: [['hostname', 'none']], values: [] })), '');
  t.deepEqual(toUnpackedJson(unpack({ columns: [], values: [] })), {});
});

test('the footer', (t) => {
  t.is(renderFooter({ user: 'jdoe', universe: 'yourcompany', project: 'blackhole', latency: '384 us' }, 'as of 1M ago'), 'jdoe: yourcompany/blackhole as of 1M ago [384 us]');
});

test('malformed responses are ServerErrors, not crashes', (t) => {
  t.throws(() => unpack({ columns: 'x' }), { instanceOf: ServerError });
  t.throws(() => unpack({ columns: [], values: [['*']] }), { instanceOf: ServerError });
  t.throws(() => unpack({ objects: [['*', [['x']]]], columns: [], values: [] }), { instanceOf: ServerError });
  t.throws(() => unpack({ objects: [['*', [[1, 1e12]]]], columns: [], values: [] }), { instanceOf: ServerError });
  t.throws(() => unpack({ objects: [['*', [[1]]]], columns: [['a', 'none']], values: [['*', ['x', 2]]] }), { instanceOf: ServerError });
  t.throws(() => unpack({ objects: [['*', [[1]]]], columns: [['a', 'none']], values: [['other', ['x', 1]]] }), { instanceOf: ServerError });
});

test('formats', (t) => {
  t.is(formatValue(3232235777, 'ipv4'), '192.168.1.1');
  t.is(formatValue('4096', 'memory_address'), '0x1000');
  t.is(formatValue('0123456789abcdef0123456789abcdef', 'uuid'), '01234567-89ab-cdef-0123-456789abcdef');
  t.is(formatValue(1795680000, 'unix_timestamp'), String(new Date(1795680000 * 1000)));
  t.is(formatValue(['a'], 'none'), '["a"]');
  t.is(bars([['', 1]], 4, false), '  -- ▆▆▆▆ 1');
});

test('describe: built-ins first then custom, by name; unused built-ins hidden unless --all; substring filter', (t) => {
  const attributes = [
    { name: 'timestamp', description: 'When', format: 'unix_timestamp', custom: false, statistics: { used: true } },
    { name: 'build', description: 'Build id', format: 'none', custom: true, statistics: { used: true } },
    { name: 'vm.rss', description: 'Resident', format: 'bytes', custom: false, statistics: { used: false } },
    { name: 'hostname', description: 'Host', format: 'hostname', custom: false, statistics: { used: true } },
    { name: 'old', description: '', custom: true, state: 'disabled', seen: 1795680000, value: 'x' },
  ];
  t.is(
    renderDescribe(attributes),
    [' hostname: Host [hostname]', 'timestamp: When [unix_timestamp]', '    build: Build id [none]', `      old: [disabled] (seen at ${String(new Date(1795680000 * 1000))} with a value of "x")`, '', 'Hiding 1 unused attributes (-a to list all).', ''].join('\n'),
  );
  t.true(renderDescribe(attributes, { all: true }).includes('vm.rss: [unused] Resident [bytes]'));
  t.is(renderDescribe(attributes, { filter: 'HOST' }), 'hostname: Host [hostname]\n');
});
