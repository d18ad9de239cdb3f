/**
 * Shared by the query tests: crash objects with known attributes, and morgue 1.24.11's own
 * decoding of query responses (lib/crdb.js `Response.unpack` / `unpackObject`, restated here so
 * the tests read responses exactly the way the real client does, quirks included).
 */

import fs from 'node:fs';
import path from 'node:path';

import type { AttributeValue, CrashObject, NewCrash } from '../../ts/store/types.js';

export function crash(id: number, fields: Partial<Omit<CrashObject, 'attributes'>> & { attributes?: Record<string, AttributeValue> }): CrashObject {
  return {
    id,
    projectId: 1,
    uuid: `00000000-0000-4000-8000-${id.toString(16).padStart(12, '0')}`,
    rxid: `rx-${id}`,
    timestamp: 1_700_000_000 + id,
    receivedAt: 1_700_000_100 + id,
    fingerprint: 'f'.repeat(64),
    callstack: ['main'],
    classifiers: [],
    format: 'json',
    processed: true,
    ...fields,
    attributes: fields.attributes ?? {},
  };
}

/** The fixture most engine tests use: 8 crashes over 3 fingerprints and 3 hosts. */
export function sampleObjects(): CrashObject[] {
  const fpA = 'a'.repeat(64);
  const fpB = 'b'.repeat(64);
  const fpC = 'c'.repeat(64);
  return [
    crash(1, { timestamp: 100, fingerprint: fpA, callstack: ['crash', 'main'], classifiers: ['SIGSEGV', 'null-dereference'], attributes: { hostname: 'web1', application: 'demo', 'process.age': 10, 'uname.sysname': 'Linux' } }),
    crash(2, { timestamp: 200, fingerprint: fpA, callstack: ['crash', 'main'], classifiers: ['SIGSEGV'], attributes: { hostname: 'web2', application: 'demo', 'process.age': 20 } }),
    crash(3, { timestamp: 300, fingerprint: fpB, callstack: ['abort', 'check', 'main'], classifiers: ['SIGABRT', 'abort'], attributes: { hostname: 'web1', application: 'demo', 'process.age': 30 } }),
    crash(4, { timestamp: 400, fingerprint: fpA, callstack: ['crash', 'main'], classifiers: ['SIGSEGV'], attributes: { hostname: 'web1', application: 'other', 'process.age': 40 } }),
    crash(5, { timestamp: 500, fingerprint: fpB, callstack: ['abort', 'check', 'main'], classifiers: ['SIGABRT', 'abort'], attributes: { hostname: 'db1', application: 'demo' } }),
    crash(7, { timestamp: 700, fingerprint: fpC, callstack: ['loop', 'main'], classifiers: [], attributes: { application: 'demo', 'process.age': 70 } }),
    crash(8, { timestamp: 800, fingerprint: fpA, callstack: ['crash', 'main'], classifiers: ['SIGSEGV'], attributes: { hostname: 'WEB1', application: 'demo', 'process.age': 80 } }),
    crash(9, { timestamp: 900, fingerprint: fpB, callstack: ['abort', 'check', 'main'], classifiers: ['SIGABRT', 'abort'], attributes: { hostname: 'web2', application: 'demo', 'process.age': 90 } }),
  ];
}

type Row = Record<string, unknown> & { object: number; id: string };

/** morgue 1.24.11's `Response.unpackObject()` (selections). */
export function morgueUnpackObject(json: any): Record<string, Row[]> {
  const result: Record<string, Row[]> = {};
  for (const object of json.objects) {
    const label = object[0];
    const rle = object[1];
    if (result[label] === undefined) result[label] = [];
    const target = result[label]!;
    for (const run of rle) {
      target.push({ object: run[0], id: run[0].toString(16) });
      if (run.length === 2) for (let k = 1; k <= run[1]; k++) target.push({ object: run[0] + k, id: (run[0] + k).toString(16) });
    }
  }
  for (let i = 0; i < json.values.length; i += json.columns.length) {
    for (let j = 0; j < json.columns.length; j++) {
      const label = json.columns[j % json.columns.length][0];
      const values = json.values[i + j];
      const key = values[0];
      if (result[key] === undefined) throw new Error('Unknown key: ' + key);
      let counter = 0;
      for (let k = 1; k < values.length; k++) {
        for (let r = 0; r < values[k][1]; r++) {
          // morgue would throw a TypeError here on a row it does not have.
          result[key]![counter]![label] = values[k][0];
          counter++;
        }
      }
    }
  }
  return result;
}

/** morgue 1.24.11's `Response.unpack()` (aggregations; selections go to unpackObject). */
export function morgueUnpack(json: any): Record<string, any> {
  if (json.objects) return morgueUnpackObject(json);
  const result: Record<string, any> = {};
  for (const field of json.values) {
    const factor = field[0];
    const count = field.length > 2 ? field[2] : null;
    if (result[factor] === undefined) {
      result[factor] = {};
      if (count) result[factor].count = count;
    }
    for (let j = 0; j < json.columns.length; j++) result[factor][json.columns[j][0]] = field[1][j];
  }
  return result;
}

/**
 * The reference captures (backtrace-compat.md's neighbours): $CORESNAP_REFERENCE_DIR, or
 * ../shared/reference beside the repository (this file runs from dist/test/query/).
 */
export const CAPTURES = path.join(
  process.env.CORESNAP_REFERENCE_DIR ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../../shared/reference'),
  'backtrace-captures',
);

export interface CapturedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

export function capturedRequests(): CapturedRequest[] {
  const file = path.join(CAPTURES, 'morgue-1.24.11-requests.jsonl');
  if (!fs.existsSync(file)) throw new Error(`The morgue captures are missing: ${file} (backtrace-compat.md lists them).`);
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as CapturedRequest);
}

/** The real @backtrace/node report's attributes, varied per crash. */
export function sdkCrash(projectId: number, i: number, now: number): NewCrash {
  const report = JSON.parse(fs.readFileSync(path.join(CAPTURES, 'backtrace-node-0.8.3-report.json'), 'utf8')) as { attributes: Record<string, string | number> };
  const fingerprints = ['1'.repeat(64), '2'.repeat(64), '3'.repeat(64)];
  const classifiers = [['SIGSEGV'], ['SIGABRT', 'abort'], ['Error']];
  const k = i % 3;
  return {
    projectId,
    uuid: `5d7c3a1e-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
    // Spread over the last week, inside morgue's implicit one-month window.
    timestamp: now - 7 * 86400 + i * 3600,
    fingerprint: fingerprints[k]!,
    callstack: k === 1 ? ['abort', 'check_input', 'main'] : ['inner', 'outer', 'main'],
    classifiers: classifiers[k]!,
    attributes: { ...report.attributes, hostname: `host${i % 4}`, 'process.age': i * 10, application: i % 5 === 4 ? 'other' : 'demo' },
    format: 'json',
    processed: true,
    body: Buffer.from(JSON.stringify({ uuid: i })),
    contentType: 'application/json',
    attachments: [],
  };
}

