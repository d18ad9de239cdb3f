/**
 * Decoding of query responses (backtrace-compat.md §1.5) into groups of rows or folded values,
 * the way the vendor morgue's crdb.Response unpacks them; `toUnpackedJson` is exactly what
 * `morgue list --json` prints.
 *
 * Selection: `objects: [[group, [[oid] | [base, n], ...]]]` lists the objects (base..base+n), and
 * `values` holds one `[group, [v, run], ...]` entry per column, per group, in row order.
 * Aggregation: `values: [[groupKey, [col0, col1, ...], count], ...]`.
 */

import { ServerError } from './errors.js';

export interface Column {
  name: string;
  format: string;
}

export interface SelectRow {
  /** Numeric object id. */
  object: number;
  /** The same id in hex, as morgue and `get` spell it. */
  id: string;
  values: Record<string, unknown>;
}

export interface SelectGroup {
  key: string;
  rows: SelectRow[];
}

export interface FoldGroup {
  key: string;
  count: number | undefined;
  /** Column name (`op(attr)`) → its value. */
  values: Record<string, unknown>;
}

export type Unpacked = { kind: 'select'; columns: Column[]; groups: SelectGroup[] } | { kind: 'fold'; columns: Column[]; groups: FoldGroup[]; factor?: string };

export interface QueryResult {
  response: Record<string, unknown>;
  _: {
    user?: string;
    universe?: string;
    project?: string;
    latency?: string;
    tx?: number;
    runtime?: { filter?: { rows?: number } };
  };
}

function malformed(what: string): ServerError {
  return new ServerError(`the server's query response is malformed: ${what}`, 200);
}

/** Checks the envelope: `response` and `_` must be objects. */
export function asQueryResult(json: Record<string, unknown>): QueryResult {
  const response = json.response;
  if (typeof response !== 'object' || response === null || Array.isArray(response)) throw malformed('no "response" object');
  const meta = json._;
  return {
    response: response as Record<string, unknown>,
    _: typeof meta === 'object' && meta !== null ? (meta as QueryResult['_']) : {},
  };
}

export function columnsOf(response: Record<string, unknown>): Column[] {
  const columns = response.columns;
  if (columns === undefined) return [];
  if (!Array.isArray(columns)) throw malformed('"columns" is not an array');
  return columns.map((c, i) => {
    if (!Array.isArray(c) || typeof c[0] !== 'string') throw malformed(`column ${i} is not [name, format]`);
    return { name: c[0], format: typeof c[1] === 'string' ? c[1] : 'none' };
  });
}

export function unpack(response: Record<string, unknown>): Unpacked {
  const columns = columnsOf(response);
  const values = response.values ?? [];
  if (!Array.isArray(values)) throw malformed('"values" is not an array');
  if (response.objects !== undefined) return { kind: 'select', columns, groups: unpackSelect(response.objects, columns, values) };
  const groups: FoldGroup[] = [];
  const byKey = new Map<string, FoldGroup>();
  for (const [i, entry] of values.entries()) {
    if (!Array.isArray(entry) || !Array.isArray(entry[1])) throw malformed(`values[${i}] is not [group, [columns...], count]`);
    const key = String(entry[0]);
    const count = typeof entry[2] === 'number' ? entry[2] : typeof entry[2] === 'string' && entry[2] !== '' ? Number(entry[2]) : undefined;
    let group = byKey.get(key);
    if (!group) {
      group = { key, count, values: {} };
      byKey.set(key, group);
      groups.push(group);
    }
    const cells = entry[1] as unknown[];
    columns.forEach((column, j) => {
      (group as FoldGroup).values[column.name] = cells[j];
    });
  }
  const factors = response.factors_desc;
  const factor = Array.isArray(factors) && typeof factors[0]?.name === 'string' ? (factors[0].name as string) : undefined;
  return { kind: 'fold', columns, groups, factor };
}

function unpackSelect(objects: unknown, columns: Column[], values: unknown[]): SelectGroup[] {
  if (!Array.isArray(objects)) throw malformed('"objects" is not an array');
  const groups: SelectGroup[] = [];
  const byKey = new Map<string, SelectGroup>();
  for (const [i, entry] of objects.entries()) {
    if (!Array.isArray(entry) || !Array.isArray(entry[1])) throw malformed(`objects[${i}] is not [group, [[oid] | [base, n], ...]]`);
    const key = String(entry[0]);
    let group = byKey.get(key);
    if (!group) {
      group = { key, rows: [] };
      byKey.set(key, group);
      groups.push(group);
    }
    for (const run of entry[1] as unknown[]) {
      if (!Array.isArray(run) || typeof run[0] !== 'number') throw malformed(`objects[${i}] has a run that is not [oid] or [base, n]`);
      const base = run[0];
      const extra = typeof run[1] === 'number' && run.length === 2 ? run[1] : 0;
      if (!Number.isSafeInteger(extra) || extra < 0 || extra > 10_000_000) throw malformed(`objects[${i}] has a run of ${String(run[1])} objects`);
      for (let k = 0; k <= extra; k++) group.rows.push({ object: base + k, id: (base + k).toString(16), values: {} });
    }
  }
  if (columns.length === 0) return groups;
  for (let i = 0; i < values.length; i += columns.length) {
    for (let j = 0; j < columns.length; j++) {
      const entry = values[i + j];
      const column = columns[j];
      if (!column) continue;
      if (!Array.isArray(entry)) throw malformed(`values[${i + j}] is not [group, [value, run]...]`);
      const group = byKey.get(String(entry[0]));
      if (!group) throw malformed(`values[${i + j}] names group "${String(entry[0])}", which "objects" does not list`);
      let row = 0;
      for (const run of entry.slice(1)) {
        if (!Array.isArray(run)) throw malformed(`values[${i + j}] has a run that is not [value, count]`);
        const times = typeof run[1] === 'number' ? run[1] : 1;
        for (let r = 0; r < times; r++) {
          const target = group.rows[row];
          if (!target) throw malformed(`column ${column.name} has more values than there are objects`);
          target.values[column.name] = run[0];
          row++;
        }
      }
    }
  }
  return groups;
}

/** `morgue list --json`: `{group: [{object, id, col...}]}` for selects, `{group: {count, "op(attr)": v}}` for folds. */
export function toUnpackedJson(unpacked: Unpacked): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (unpacked.kind === 'select') {
    for (const group of unpacked.groups) {
      out[group.key] = group.rows.map((row) => ({ object: row.object, id: row.id, ...row.values }));
    }
  } else {
    for (const group of unpacked.groups) {
      out[group.key] = group.count ? { count: group.count, ...group.values } : { ...group.values };
    }
  }
  return out;
}
