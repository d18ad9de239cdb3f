/**
 * The query engine: evaluates a parsed query over a project's columnar table (table.ts) and
 * builds the response morgue 1.24 reads (backtrace-compat.md §1.5): the selection form (RLE
 * `objects` and `values`) or the aggregation form (`values: [[key, [col...], count], ...]`).
 *
 * Evaluation, in passes over typed arrays:
 * 1. filter: every live row, then one pass per condition that keeps the rows it accepts. For a
 *    dictionary column the condition is decided once per distinct value into a lookup table, so
 *    a regular expression over a million rows runs once per distinct string.
 * 2. group: each kept row gets a group index (the factor's dictionary code, remapped densely).
 * 3. order and page the groups. Folds that the order needs are computed for every group first;
 *    every other fold is computed only for the groups on the page.
 * 4. folds: one pass over the kept rows per fold, into per-group typed arrays (value counts per
 *    group go into one dense matrix when it is small enough, a Map otherwise).
 *
 * The engine is synchronous and never touches the store; the cache feeds it a table that is
 * current, and the API layer wraps the response in the `_` envelope.
 */

import type { AttributeValue, GroupState } from '../store/types.js';
import { QueryError } from './errors.js';
import type { FilterCondition, Fold, OrderTerm, ParsedQuery } from './parse.js';
import { DERIVED_COLUMNS, DictColumn, NumColumn, type Column, type ColumnMeta, type ProjectTable } from './table.js';

export interface Runtime {
  filter: { rows: number; time: number };
  group_by: { groups: number; time: number };
  aggregate: { time: number };
  sort: { time: number };
  set?: { time: number };
  total_time: number;
}

export interface EngineOptions {
  /** Group states by fingerprint (unlisted fingerprints are open). */
  groupStates?: ReadonlyMap<string, GroupState>;
}

export interface EngineResult {
  response: Record<string, unknown>;
  runtime: Runtime;
}

/** Default number of bins of `["bin"]` without a count, and of values of `["distribution"]`. */
export const DEFAULT_BINS = 8;
export const DEFAULT_DISTRIBUTION = 5;

const FILTER_OPS_NUMERIC = [
  'equal', 'not-equal', 'at-least', 'at-most', 'greater-than', 'less-than', 'is-set', 'is-not-set',
  'regular-expression', 'inverse-regular-expression', 'contains', 'not-contains',
];
const FILTER_OPS_STRING = FILTER_OPS_NUMERIC;
const FOLDS_NUMERIC = ['head', 'tail', 'first', 'last', 'unique', 'histogram', 'distribution', 'range', 'bin', 'min', 'max', 'sum', 'mean', 'count', 'object'];
const FOLDS_STRING = ['head', 'tail', 'first', 'last', 'unique', 'histogram', 'distribution', 'range', 'min', 'max', 'count', 'object'];

/** The filter and fold operations a column accepts (for describe and for validation). */
export function operationsFor(meta: ColumnMeta): { filter: string[]; aggregate: string[] } {
  return meta.type === 'uint64' || meta.type === 'int64' || meta.type === 'double' || meta.type === 'boolean'
    ? { filter: [...FILTER_OPS_NUMERIC], aggregate: [...FOLDS_NUMERIC] }
    : { filter: [...FILTER_OPS_STRING], aggregate: [...FOLDS_STRING] };
}

function now(): number {
  return performance.now();
}
function micros(fromMs: number): number {
  return Math.round((performance.now() - fromMs) * 1000);
}

// ------------------------------------------------------------------------------------- columns

/** Resolves the columns one query touches, materialising derived ones once. */
class Columns {
  private readonly derived = new Map<string, Column>();
  constructor(
    readonly table: ProjectTable,
    private readonly options: EngineOptions,
  ) {}

  get(name: string, role: string): Column {
    const stored = this.table.columns.get(name);
    if (stored) return stored;
    let d = this.derived.get(name);
    if (!d) {
      d = this.materialise(name);
      if (!d) throw new QueryError(`Unknown attribute '${name}' in ${role}.`);
      this.derived.set(name, d);
    }
    return d;
  }

  meta(name: string): ColumnMeta {
    const m = this.table.metaOf(name);
    if (!m) throw new QueryError(`Unknown attribute '${name}'.`);
    return m;
  }

  private materialise(name: string): Column | undefined {
    const spec = DERIVED_COLUMNS.find((c) => c.name === name);
    if (!spec) return undefined;
    const t = this.table;
    const meta: ColumnMeta = { ...spec, custom: false, builtin: true, derived: true, declared: true };
    const fpCodes = t.fingerprint.codes;
    if (name === 'first_seen') {
      const col = new NumColumn(meta, t.length);
      for (let r = 0; r < t.length; r++) {
        const fp = fpCodes[r]!;
        if (fp >= 0) col.data[r] = t.firstSeen[fp] ?? NaN;
      }
      return col;
    }
    // state: open unless the group's state says otherwise.
    const col = new DictColumn(meta, t.length);
    const states = this.options.groupStates;
    const byFp = new Int32Array(t.fingerprint.values.length);
    t.fingerprint.values.forEach((fp, code) => {
      byFp[code] = col.code(states?.get(fp) ?? 'open');
    });
    const open = col.code('open');
    for (let r = 0; r < t.length; r++) {
      const fp = fpCodes[r]!;
      col.codes[r] = fp >= 0 ? byFp[fp]! : open;
    }
    return col;
  }
}

// -------------------------------------------------------------------------------------- filter

function coerceNumber(cond: FilterCondition, meta: ColumnMeta): number {
  const v = cond.value;
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[+-]?0x[0-9a-f]+$/i.test(s)) {
      const neg = s.startsWith('-');
      const n = parseInt(s.replace(/^[+-]?0x/i, ''), 16);
      return neg ? -n : n;
    }
    if (meta.type === 'boolean') {
      if (/^(true|yes|on)$/i.test(s)) return 1;
      if (/^(false|no|off)$/i.test(s)) return 0;
    }
    const n = s === '' ? NaN : Number(s);
    if (Number.isFinite(n)) return n;
    if (meta.format === 'unix_timestamp') {
      const ms = Date.parse(s);
      if (Number.isFinite(ms)) return Math.floor(ms / 1000);
    }
  }
  throw new QueryError(`Filter '${cond.op}' on ${cond.column}: ${JSON.stringify(v)} is not a valid ${meta.type}.`);
}

function regexOf(cond: FilterCondition): RegExp {
  try {
    return new RegExp(String(cond.value ?? ''), cond.caseInsensitive ? 'i' : '');
  } catch (err) {
    throw new QueryError(`Filter '${cond.op}' on ${cond.column}: bad regular expression (${(err as Error).message}).`);
  }
}

/** A predicate over one string (a distinct value); labels columns test each label. */
function stringPredicate(cond: FilterCondition): (s: string) => boolean {
  const ci = cond.caseInsensitive;
  const want = cond.value === null || cond.value === undefined ? '' : String(cond.value);
  const w = ci ? want.toLowerCase() : want;
  const norm = ci ? (s: string) => s.toLowerCase() : (s: string) => s;
  const wn = Number(want);
  const cmp = (s: string): number => {
    const sn = Number(s);
    if (want.trim() !== '' && s.trim() !== '' && Number.isFinite(wn) && Number.isFinite(sn)) return sn - wn;
    const a = norm(s);
    return a < w ? -1 : a > w ? 1 : 0;
  };
  switch (cond.op) {
    case 'equal': return (s) => norm(s) === w;
    case 'not-equal': return (s) => norm(s) !== w;
    case 'contains': return (s) => norm(s).includes(w);
    case 'not-contains': return (s) => !norm(s).includes(w);
    case 'regular-expression': { const re = regexOf(cond); return (s) => re.test(s); }
    case 'inverse-regular-expression': { const re = regexOf(cond); return (s) => !re.test(s); }
    case 'at-least': return (s) => cmp(s) >= 0;
    case 'at-most': return (s) => cmp(s) <= 0;
    case 'greater-than': return (s) => cmp(s) > 0;
    case 'less-than': return (s) => cmp(s) < 0;
    case 'is-set': return () => true;
    case 'is-not-set': return () => false;
  }
}

/** Whether a row without a value passes: only the negative operators keep it. */
function unsetPasses(cond: FilterCondition): boolean {
  return cond.op === 'is-not-set' || cond.op === 'not-equal' || cond.op === 'not-contains' || cond.op === 'inverse-regular-expression';
}

/** Keeps, in place, the first `n` rows of `rows` that pass `cond`; returns the new count. */
function applyCondition(columns: Columns, rows: Uint32Array, n: number, cond: FilterCondition): number {
  const column = columns.get(cond.column, 'filter');
  const meta = columns.meta(cond.column);
  let kept = 0;
  if (column.kind === 'dict') {
    const unset = unsetPasses(cond);
    const pass = new Uint8Array(column.values.length);
    const isLabels = meta.type === 'labels';
    const test = stringPredicate(cond);
    const negative = cond.op === 'not-equal' || cond.op === 'not-contains' || cond.op === 'inverse-regular-expression';
    for (let c = 0; c < column.values.length; c++) {
      const value = column.values[c]!;
      if (isLabels && cond.op !== 'is-set' && cond.op !== 'is-not-set') {
        const labels = column.labelsOf(c);
        // A labels value passes a positive test if any label does, a negative one if every label does.
        pass[c] = (negative ? labels.every(test) : labels.some(test)) ? 1 : 0;
      } else {
        pass[c] = test(value) ? 1 : 0;
      }
    }
    const codes = column.codes;
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      const c = codes[r]!;
      if (c < 0 ? unset : pass[c] === 1) rows[kept++] = r;
    }
    return kept;
  }
  const data = column.data;
  const op = cond.op;
  if (op === 'is-set' || op === 'is-not-set') {
    const want = op === 'is-set';
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      if (!Number.isNaN(data[r]!) === want) rows[kept++] = r;
    }
    return kept;
  }
  if (op === 'regular-expression' || op === 'inverse-regular-expression' || op === 'contains' || op === 'not-contains') {
    const test = stringPredicate(cond);
    const unset = unsetPasses(cond);
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      const v = data[r]!;
      if (Number.isNaN(v) ? unset : test(String(column.valueAt(r)))) rows[kept++] = r;
    }
    return kept;
  }
  const x = coerceNumber(cond, meta);
  // NaN (not set) fails every comparison, so only not-equal needs care.
  switch (op) {
    case 'equal': for (let i = 0; i < n; i++) { const r = rows[i]!; if (data[r] === x) rows[kept++] = r; } break;
    case 'not-equal': for (let i = 0; i < n; i++) { const r = rows[i]!; if (data[r] !== x) rows[kept++] = r; } break;
    case 'at-least': for (let i = 0; i < n; i++) { const r = rows[i]!; if (data[r]! >= x) rows[kept++] = r; } break;
    case 'at-most': for (let i = 0; i < n; i++) { const r = rows[i]!; if (data[r]! <= x) rows[kept++] = r; } break;
    case 'greater-than': for (let i = 0; i < n; i++) { const r = rows[i]!; if (data[r]! > x) rows[kept++] = r; } break;
    case 'less-than': for (let i = 0; i < n; i++) { const r = rows[i]!; if (data[r]! < x) rows[kept++] = r; } break;
  }
  return kept;
}

/** The live rows that pass the query's filter, in row (= object id) order. */
export function filterRows(table: ProjectTable, filter: FilterCondition[][], options: EngineOptions = {}): Uint32Array {
  return filterWith(new Columns(table, options), filter);
}

function filterWith(columns: Columns, filter: FilterCondition[][]): Uint32Array {
  const table = columns.table;
  const live = (): { rows: Uint32Array; n: number } => {
    const rows = new Uint32Array(table.liveCount);
    let n = 0;
    const alive = table.alive;
    for (let r = 0; r < table.length; r++) if (alive[r] === 1) rows[n++] = r;
    return { rows, n };
  };
  const conjunction = (conds: FilterCondition[]): Uint32Array => {
    let { rows, n } = live();
    // Cheap, selective conditions first would be better; morgue's order is kept for simplicity.
    for (const cond of conds) n = applyCondition(columns, rows, n, cond);
    return rows.subarray(0, n);
  };
  if (filter.length === 0) return conjunction([]);
  if (filter.length === 1) return conjunction(filter[0]!);
  const mark = new Uint8Array(table.length);
  for (const conj of filter) for (const r of conjunction(conj)) mark[r] = 1;
  const out: number[] = [];
  for (let r = 0; r < table.length; r++) if (mark[r] === 1) out.push(r);
  return Uint32Array.from(out);
}

// ------------------------------------------------------------------------------------- groups

interface Grouping {
  /** Group index of each filtered row (parallel to `rows`). */
  groupOf: Int32Array;
  keys: Array<string>;
  /** Raw key values for ordering (number for numeric factors, string otherwise, null for '*'). */
  sortKeys: Array<string | number | null>;
  counts: Float64Array;
}

function groupRows(columns: Columns, rows: Uint32Array, factor: string | undefined): Grouping {
  const n = rows.length;
  const groupOf = new Int32Array(n);
  if (factor === undefined) {
    return { groupOf, keys: n > 0 ? ['*'] : [], sortKeys: n > 0 ? [null] : [], counts: Float64Array.of(n).subarray(0, n > 0 ? 1 : 0) };
  }
  const column = columns.get(factor, 'group');
  const keys: string[] = [];
  const sortKeys: Array<string | number | null> = [];
  let counts = new Float64Array(64);
  const add = (key: string, sortKey: string | number | null): number => {
    const g = keys.length;
    keys.push(key);
    sortKeys.push(sortKey);
    if (g >= counts.length) {
      const next = new Float64Array(counts.length * 2);
      next.set(counts);
      counts = next;
    }
    return g;
  };
  let unsetGroup = -1;
  if (column.kind === 'dict') {
    const byCode = new Int32Array(column.values.length).fill(-1);
    const codes = column.codes;
    for (let i = 0; i < n; i++) {
      const c = codes[rows[i]!]!;
      let g: number;
      if (c < 0) {
        if (unsetGroup < 0) unsetGroup = add('*', null);
        g = unsetGroup;
      } else {
        g = byCode[c]!;
        if (g < 0) {
          g = add(column.values[c]!, column.values[c]!);
          byCode[c] = g;
        }
      }
      groupOf[i] = g;
      counts[g]!++;
    }
  } else {
    const byValue = new Map<number, number>();
    const data = column.data;
    for (let i = 0; i < n; i++) {
      const v = data[rows[i]!]!;
      let g: number;
      if (Number.isNaN(v)) {
        if (unsetGroup < 0) unsetGroup = add('*', null);
        g = unsetGroup;
      } else {
        const found = byValue.get(v);
        if (found === undefined) {
          g = add(String(column.valueAt(rows[i]!)), v);
          byValue.set(v, g);
        } else {
          g = found;
        }
      }
      groupOf[i] = g;
      counts[g]!++;
    }
  }
  return { groupOf, keys, sortKeys, counts: counts.subarray(0, keys.length) };
}

// -------------------------------------------------------------------------------------- folds

/** Per group, a fold's value as the response carries it; undefined for groups not computed. */
type FoldValues = Array<unknown[] | undefined>;

interface FoldInput {
  column: Column;
  meta: ColumnMeta;
  rows: Uint32Array;
  /** Group of each row, or -1 to skip the row (its group is not on the page). */
  groupOf: Int32Array;
  nGroups: number;
  /** 1 for each group the fold is computed for: the groups with a row in `groupOf`. */
  computed: Uint8Array;
  table: ProjectTable;
}

/** Per group, `valueOf(g)` for the groups computed and undefined for the others. */
function perComputedGroup<T>(input: FoldInput, valueOf: (g: number) => T): Array<T | undefined> {
  return Array.from(input.computed, (c, g) => (c ? valueOf(g) : undefined));
}

function computeFold(fold: Fold, input: FoldInput): FoldValues {
  const { column, meta } = input;
  const numericOnly = fold.op === 'sum' || fold.op === 'mean' || fold.op === 'bin' || fold.op === 'quantize';
  if (numericOnly && column.kind !== 'num') {
    throw new QueryError(`Fold '${fold.op}' needs a numeric attribute; ${fold.column} is ${meta.type}.`);
  }
  switch (fold.op) {
    case 'head': return pickRow(input, 'min');
    case 'tail': return pickRow(input, 'max');
    case 'first': return pickRow(input, 'min', input.table.timestamp.data);
    case 'last': return pickRow(input, 'max', input.table.timestamp.data);
    case 'object': return foldObject(input);
    case 'count': return foldCount(input);
    case 'unique': return valueCounts(input).map((vc) => (vc ? [vc.codes.length] : undefined));
    case 'histogram': return valueCounts(input).map((vc) => (vc ? histogramOf(vc) : undefined));
    case 'distribution': {
      const top = fold.args[0] ?? DEFAULT_DISTRIBUTION;
      return valueCounts(input).map((vc) => {
        if (!vc) return undefined;
        const all = histogramOf(vc);
        const vals = all.slice(0, top);
        let tail = 0;
        for (let i = top; i < all.length; i++) tail += all[i]![1];
        return [{ keys: all.length, tail, vals }];
      });
    }
    case 'range': return minMax(input).map((mm) => (mm ? [mm.min, mm.max] : undefined));
    case 'min': return minMax(input).map((mm) => (mm ? [mm.min] : undefined));
    case 'max': return minMax(input).map((mm) => (mm ? [mm.max] : undefined));
    case 'sum': return sumMean(input, false);
    case 'mean': return sumMean(input, true);
    case 'bin':
    case 'quantize': return foldBin(input, fold.args);
  }
}

/**
 * Per group, the value of one of the rows where the column is set: the one with the least or
 * greatest `time`, or without `time` the first or last in row order.
 */
function pickRow(input: FoldInput, which: 'min' | 'max', time?: Float64Array): FoldValues {
  const { column, rows, groupOf, nGroups } = input;
  const chosen = new Int32Array(nGroups).fill(-1);
  const best = new Float64Array(nGroups).fill(NaN);
  const greatest = which === 'max';
  for (let i = 0; i < rows.length; i++) {
    const g = groupOf[i]!;
    if (g < 0) continue;
    const r = rows[i]!;
    if (!column.isSet(r)) continue;
    const key = time === undefined ? i : time[r]!;
    const b = best[g]!;
    if (chosen[g]! < 0 || (greatest ? key > b : key < b) || Number.isNaN(b)) {
      chosen[g] = r;
      best[g] = key;
    }
  }
  return perComputedGroup(input, (g) => {
    const r = chosen[g]!;
    return [r < 0 ? null : column.valueAt(r)];
  });
}

function foldObject(input: FoldInput): FoldValues {
  const { rows, groupOf, nGroups, table } = input;
  const chosen = new Int32Array(nGroups).fill(-1);
  for (let i = 0; i < rows.length; i++) {
    const g = groupOf[i]!;
    if (g >= 0 && chosen[g]! < 0) chosen[g] = rows[i]!;
  }
  return Array.from(chosen, (r) => (r < 0 ? undefined : [table.ids[r]!.toString(16)]));
}

function foldCount(input: FoldInput): FoldValues {
  const { column, rows, groupOf, nGroups } = input;
  const counts = new Float64Array(nGroups);
  for (let i = 0; i < rows.length; i++) {
    const g = groupOf[i]!;
    if (g >= 0 && column.isSet(rows[i]!)) counts[g]!++;
  }
  return perComputedGroup(input, (g) => [counts[g]!]);
}

interface ValueCounts {
  codes: number[];
  counts: number[];
  valueOf: (code: number) => AttributeValue;
}

/** Distinct values and their counts, per group. */
function valueCounts(input: FoldInput): Array<ValueCounts | undefined> {
  const { column, rows, groupOf, nGroups, computed } = input;
  const n = rows.length;
  // Codes per row: the dictionary's own, or a local dictionary of the numbers seen.
  let codeOf: Int32Array;
  let distinct: number;
  let valueOf: (code: number) => AttributeValue;
  if (column.kind === 'dict') {
    codeOf = new Int32Array(n);
    const codes = column.codes;
    for (let i = 0; i < n; i++) codeOf[i] = codes[rows[i]!]!;
    distinct = column.values.length;
    const values = column.values;
    valueOf = (c) => values[c]!;
  } else {
    codeOf = new Int32Array(n);
    const local = new Map<number, number>();
    const seenValues: number[] = [];
    const data = column.data;
    for (let i = 0; i < n; i++) {
      if (groupOf[i]! < 0) continue;
      const v = data[rows[i]!]!;
      if (Number.isNaN(v)) {
        codeOf[i] = -1;
        continue;
      }
      let c = local.get(v);
      if (c === undefined) {
        c = seenValues.length;
        seenValues.push(v);
        local.set(v, c);
      }
      codeOf[i] = c;
    }
    distinct = seenValues.length;
    const asBool = column.meta.type === 'boolean';
    valueOf = (c) => (asBool ? seenValues[c]! !== 0 : seenValues[c]!);
  }
  const out: Array<ValueCounts | undefined> = new Array(nGroups);
  for (let g = 0; g < nGroups; g++) if (computed[g]) out[g] = { codes: [], counts: [], valueOf };
  const cells = nGroups * distinct;
  if (cells <= 8_000_000) {
    const matrix = new Uint32Array(cells);
    for (let i = 0; i < n; i++) {
      const g = groupOf[i]!;
      const c = codeOf[i]!;
      if (g >= 0 && c >= 0) matrix[g * distinct + c]!++;
    }
    for (let g = 0; g < nGroups; g++) {
      const vc = out[g];
      if (!vc) continue;
      const base = g * distinct;
      for (let c = 0; c < distinct; c++) {
        const k = matrix[base + c]!;
        if (k > 0) {
          vc.codes.push(c);
          vc.counts.push(k);
        }
      }
    }
  } else {
    const cellCounts = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const g = groupOf[i]!;
      const c = codeOf[i]!;
      if (g < 0 || c < 0) continue;
      const key = g * distinct + c;
      cellCounts.set(key, (cellCounts.get(key) ?? 0) + 1);
    }
    for (const [key, k] of cellCounts) {
      const g = Math.floor(key / distinct);
      const vc = out[g]!;
      vc.codes.push(key - g * distinct);
      vc.counts.push(k);
    }
  }
  return out;
}

/** `[[value, count], ...]`, most frequent first (ties by value). */
function histogramOf(vc: ValueCounts): Array<[AttributeValue, number]> {
  const pairs: Array<[AttributeValue, number]> = vc.codes.map((c, i) => [vc.valueOf(c), vc.counts[i]!]);
  pairs.sort((a, b) => b[1] - a[1] || compareValues(a[0], b[0]));
  return pairs;
}

function minMax(input: FoldInput): Array<{ min: AttributeValue; max: AttributeValue } | undefined> {
  const { column, rows, groupOf, nGroups } = input;
  if (column.kind === 'num') {
    const { low, high } = numericBounds(input, column.data);
    const asBool = column.meta.type === 'boolean';
    const show = (v: number): AttributeValue => (Number.isFinite(v) ? (asBool ? v !== 0 : v) : null);
    return perComputedGroup(input, (g) => ({ min: show(low[g]!), max: show(high[g]!) }));
  }
  // Strings: compare each distinct value's rank once.
  const rank = rankOf(column);
  const lo = new Int32Array(nGroups).fill(-1);
  const hi = new Int32Array(nGroups).fill(-1);
  const codes = column.codes;
  for (let i = 0; i < rows.length; i++) {
    const g = groupOf[i]!;
    if (g < 0) continue;
    const c = codes[rows[i]!]!;
    if (c < 0) continue;
    if (lo[g]! < 0 || rank[c]! < rank[lo[g]!]!) lo[g] = c;
    if (hi[g]! < 0 || rank[c]! > rank[hi[g]!]!) hi[g] = c;
  }
  const show = (c: number): AttributeValue => (c < 0 ? null : column.values[c]!);
  return perComputedGroup(input, (g) => ({ min: show(lo[g]!), max: show(hi[g]!) }));
}

/** Per group, the least and greatest value set (Infinity and -Infinity where none is). */
function numericBounds(input: FoldInput, data: Float64Array): { low: Float64Array; high: Float64Array } {
  const { rows, groupOf, nGroups } = input;
  const low = new Float64Array(nGroups).fill(Infinity);
  const high = new Float64Array(nGroups).fill(-Infinity);
  for (let i = 0; i < rows.length; i++) {
    const g = groupOf[i]!;
    if (g < 0) continue;
    const v = data[rows[i]!]!;
    if (v < low[g]!) low[g] = v;
    if (v > high[g]!) high[g] = v;
  }
  return { low, high };
}

function sumMean(input: FoldInput, mean: boolean): FoldValues {
  const { column, rows, groupOf, nGroups } = input;
  const data = (column as NumColumn).data;
  const sums = new Float64Array(nGroups);
  const counts = new Float64Array(nGroups);
  for (let i = 0; i < rows.length; i++) {
    const g = groupOf[i]!;
    if (g < 0) continue;
    const v = data[rows[i]!]!;
    if (Number.isNaN(v)) continue;
    sums[g]! += v;
    counts[g]!++;
  }
  return perComputedGroup(input, (g) => {
    if (!mean) return [sums[g]!];
    return [counts[g]! > 0 ? sums[g]! / counts[g]! : null];
  });
}

/**
 * `[[lo, hi, count], ...]`: `bins` equal-width bins over [low, high] (the last one closed), every
 * bin present even when empty (morgue's sparkline needs them all). Without bounds, each group's
 * own minimum and maximum are the bounds.
 */
function foldBin(input: FoldInput, args: number[]): FoldValues {
  const { rows, groupOf, nGroups } = input;
  const data = (input.column as NumColumn).data;
  const bins = args[0] ?? DEFAULT_BINS;
  const { low, high } =
    args.length === 3
      ? { low: new Float64Array(nGroups).fill(args[1]!), high: new Float64Array(nGroups).fill(args[2]!) }
      : numericBounds(input, data);
  const counts = new Float64Array(nGroups * bins);
  for (let i = 0; i < rows.length; i++) {
    const g = groupOf[i]!;
    if (g < 0) continue;
    const v = data[rows[i]!]!;
    const lo = low[g]!;
    const hi = high[g]!;
    if (!(v >= lo && v <= hi)) continue;
    const width = hi - lo;
    let b = width > 0 ? Math.floor(((v - lo) * bins) / width) : 0;
    if (b >= bins) b = bins - 1;
    counts[g * bins + b]!++;
  }
  return perComputedGroup(input, (g) => {
    const lo = low[g]!;
    const hi = high[g]!;
    if (!Number.isFinite(lo)) return [];
    const width = (hi - lo) / bins;
    const out: Array<[number, number, number]> = [];
    for (let b = 0; b < bins; b++) {
      out.push([lo + b * width, b === bins - 1 ? hi : lo + (b + 1) * width, counts[g * bins + b]!]);
    }
    return out;
  });
}

// -------------------------------------------------------------------------------------- order

function compareValues(a: AttributeValue | undefined, b: AttributeValue | undefined): number {
  // Missing values sort last in either direction; the caller flips only present ones.
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

function isMissing(v: unknown): boolean {
  return v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v));
}

/** A comparable scalar for a fold's value (what `attr;idx` orders by). */
function foldSortKey(fold: Fold, value: unknown[] | undefined): AttributeValue {
  if (!value) return null;
  switch (fold.op) {
    case 'range': return (value[1] as AttributeValue) ?? null;
    case 'histogram': return value.length;
    case 'distribution': return (value[0] as { keys: number } | undefined)?.keys ?? 0;
    case 'bin':
    case 'quantize': return (value as Array<[number, number, number]>).reduce((s, b) => s + b[2], 0);
    case 'object': return parseInt(String(value[0]), 16);
    default: return (value[0] as AttributeValue) ?? null;
  }
}

/** Ranks of a dictionary's distinct values in sort order. */
function rankOf(column: DictColumn): Int32Array {
  const order = column.values.map((_, i) => i);
  order.sort((a, b) => compareValues(column.values[a]!, column.values[b]!));
  const rank = new Int32Array(column.values.length);
  order.forEach((code, i) => {
    rank[code] = i;
  });
  return rank;
}

/** Orders `items` with `cmp`, keeping only [offset, offset + limit) (a bounded heap when that is small). */
function orderAndPage(items: Uint32Array, cmp: ((a: number, b: number) => number) | undefined, offset: number, limit: number | undefined): Uint32Array {
  const end = limit === undefined ? items.length : Math.min(items.length, offset + limit);
  if (offset >= end) return new Uint32Array(0);
  if (!cmp) return items.slice(offset, end);
  if (end * 8 < items.length) {
    // Keep the `end` smallest in a max-heap, then sort them.
    const heap: number[] = [];
    const up = (i: number) => {
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (cmp(heap[i]!, heap[p]!) <= 0) break;
        [heap[i], heap[p]] = [heap[p]!, heap[i]!];
        i = p;
      }
    };
    const down = (i: number) => {
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && cmp(heap[l]!, heap[m]!) > 0) m = l;
        if (r < heap.length && cmp(heap[r]!, heap[m]!) > 0) m = r;
        if (m === i) return;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    };
    for (let i = 0; i < items.length; i++) {
      const x = items[i]!;
      if (heap.length < end) {
        heap.push(x);
        up(heap.length - 1);
      } else if (cmp(x, heap[0]!) < 0) {
        heap[0] = x;
        down(0);
      }
    }
    heap.sort(cmp);
    return Uint32Array.from(heap.slice(offset, end));
  }
  const sorted = Uint32Array.from(items).sort(cmp);
  return sorted.slice(offset, end);
}

// ------------------------------------------------------------------------------------ execute

function columnDesc(meta: ColumnMeta, op?: string): Record<string, string> {
  const d: Record<string, string> = { name: meta.name, format: meta.format, type: meta.type };
  if (op) d.op = op;
  return d;
}

/** Runs a query (not `set`: the API applies that through the store) and builds `response`. */
export function execute(table: ProjectTable, query: ParsedQuery, options: EngineOptions = {}): EngineResult {
  const t0 = now();
  const columns = new Columns(table, options);
  // Check every column up front, so a typo is reported whatever the filter leaves.
  for (const conj of query.filter) for (const c of conj) columns.get(c.column, 'filter');
  for (const f of query.folds) columns.get(f.column, 'fold');
  if (query.group) columns.get(query.group, 'group');
  for (const s of query.select ?? []) columns.get(s, 'select');

  const rows = filterWith(columns, query.filter);
  const filterTime = micros(t0);

  const base = { version: '1.2.0', seq: table.maxId, encoding: 'rle' };
  const filtered: Filtered = { table, query, columns, rows, base, t0, filterTime };
  return query.select || query.selectWildcard ? executeSelect(filtered) : executeFold(filtered);
}

/** A query with its filter applied: what both kinds of answer start from. */
interface Filtered {
  table: ProjectTable;
  query: ParsedQuery;
  columns: Columns;
  rows: Uint32Array;
  /** The response's leading fields. */
  base: Record<string, unknown>;
  /** When the query started, and how long the filter took (µs). */
  t0: number;
  filterTime: number;
}

/** Columns of `select_wildcard`: physical = stored columns, derived = first_seen and state. */
function wildcardColumns(table: ProjectTable, w: NonNullable<ParsedQuery['selectWildcard']>): string[] {
  const out: string[] = [];
  if (w.physical) {
    const builtins: string[] = [];
    const others: string[] = [];
    for (const [name, col] of table.columns) (col.meta.builtin ? builtins : others).push(name);
    others.sort();
    out.push(...builtins, ...others);
  }
  if (w.derived) out.push(...DERIVED_COLUMNS.map((c) => c.name));
  return out;
}

function executeSelect(filtered: Filtered): EngineResult {
  const { table, query, columns, rows, base, t0, filterTime } = filtered;
  const names = [...(query.select ?? [])];
  if (query.selectWildcard) for (const n of wildcardColumns(table, query.selectWildcard)) if (!names.includes(n)) names.push(n);

  const tSort = now();
  let cmp: ((a: number, b: number) => number) | undefined;
  if (query.order.length > 0) {
    const keys = query.order.map((term) => {
      if (term.name.startsWith(';') || term.name.includes(';')) {
        throw new QueryError(`Order term '${term.name}' needs a fold; a selection orders by columns.`);
      }
      const column = columns.get(term.name, 'order');
      const sign = term.descending ? -1 : 1;
      if (column.kind === 'num') {
        const data = column.data;
        return (a: number, b: number): number => {
          const va = data[a]!;
          const vb = data[b]!;
          const ma = Number.isNaN(va);
          const mb = Number.isNaN(vb);
          if (ma || mb) return ma === mb ? 0 : ma ? 1 : -1;
          return sign * (va - vb);
        };
      }
      const rank = rankOf(column);
      const codes = column.codes;
      return (a: number, b: number): number => {
        const ca = codes[a]!;
        const cb = codes[b]!;
        if (ca < 0 || cb < 0) return ca < 0 === cb < 0 ? 0 : ca < 0 ? 1 : -1;
        return sign * (rank[ca]! - rank[cb]!);
      };
    });
    cmp = (a, b) => {
      for (const k of keys) {
        const d = k(a, b);
        if (d !== 0) return d;
      }
      return a - b;
    };
  }
  const page = orderAndPage(rows, cmp, query.offset, query.limit);
  const sortTime = micros(tSort);

  const tAgg = now();
  // Objects: runs of consecutive ids become [base, n] (base..base+n).
  const objects: number[][] = [];
  for (let i = 0; i < page.length; ) {
    const first = table.ids[page[i]!]!;
    let j = i + 1;
    while (j < page.length && table.ids[page[j]!]! === first + (j - i)) j++;
    objects.push(j - i > 1 ? [first, j - i - 1] : [first]);
    i = j;
  }
  const values = names.map((name) => {
    const column = columns.get(name, 'select');
    const out: unknown[] = ['*'];
    let prev: AttributeValue | undefined;
    let run = 0;
    for (let i = 0; i < page.length; i++) {
      const v = column.valueAt(page[i]!);
      if (run > 0 && v === prev) {
        run++;
        continue;
      }
      if (run > 0) out.push([prev, run]);
      prev = v;
      run = 1;
    }
    if (run > 0) out.push([prev, run]);
    return out;
  });
  const metas = names.map((n) => columns.meta(n));
  const aggTime = micros(tAgg);

  const response = {
    ...base,
    pagination: { limit: query.limit ?? rows.length, offset: query.offset },
    objects: page.length > 0 ? [['*', objects]] : [],
    columns: metas.map((m) => [m.name, m.format]),
    columns_desc: metas.map((m) => columnDesc(m)),
    values: page.length > 0 ? values : [],
    cardinalities: {
      initial: { rows: rows.length, groups: rows.length > 0 ? 1 : 0 },
      having: { rows: rows.length, groups: rows.length > 0 ? 1 : 0 },
      pagination: { rows: page.length, groups: page.length > 0 ? 1 : 0 },
    },
  };
  return {
    response,
    runtime: {
      filter: { rows: rows.length, time: filterTime },
      group_by: { groups: rows.length > 0 ? 1 : 0, time: 0 },
      aggregate: { time: aggTime },
      sort: { time: sortTime },
      total_time: micros(t0),
    },
  };
}

function executeFold(filtered: Filtered): EngineResult {
  const { table, query, columns, rows, base, t0, filterTime } = filtered;
  const tGroup = now();
  const grouping = groupRows(columns, rows, query.group);
  const nGroups = grouping.keys.length;
  const groupTime = micros(tGroup);

  const foldInput = (fold: Fold, groupOf: Int32Array, computed: Uint8Array): FoldInput => ({
    column: columns.get(fold.column, 'fold'),
    meta: columns.meta(fold.column),
    rows,
    groupOf,
    nGroups,
    computed,
    table,
  });
  // Every group holds at least one row (a group is made by its first row).
  const allComputed = new Uint8Array(nGroups).fill(1);

  let aggTime = 0;
  const results = new Map<Fold, FoldValues>();

  // Order terms → comparators over group indexes.
  const tSort = now();
  const keys: Array<(a: number, b: number) => number> = [];
  const orderTerms: OrderTerm[] = query.order.length > 0 ? query.order : [{ name: ';count', descending: true }];
  for (const term of orderTerms) {
    const sign = term.descending ? -1 : 1;
    let values: Array<AttributeValue | undefined>;
    if (term.name === ';count') {
      const counts = grouping.counts;
      keys.push((a, b) => sign * (counts[a]! - counts[b]!));
      continue;
    }
    if (term.name === ';group' || (query.group !== undefined && term.name === query.group)) {
      values = grouping.sortKeys;
    } else {
      const [attr, idxText] = term.name.includes(';') ? term.name.split(';', 2) as [string, string] : [term.name, '0'];
      const idx = Number(idxText);
      const fold = query.folds.find((f) => f.column === attr && f.index === idx);
      if (!fold) {
        throw new QueryError(`Order term '${term.name}' names no fold: fold ${attr} first, or order by ';count' or ';group'.`);
      }
      let computed = results.get(fold);
      if (!computed) {
        const ta = now();
        computed = computeFold(fold, foldInput(fold, grouping.groupOf, allComputed));
        aggTime += micros(ta);
        results.set(fold, computed);
      }
      values = computed.map((v) => foldSortKey(fold, v));
    }
    keys.push((a, b) => {
      const va = values[a];
      const vb = values[b];
      const ma = isMissing(va);
      const mb = isMissing(vb);
      if (ma || mb) return ma === mb ? 0 : ma ? 1 : -1;
      return sign * compareValues(va, vb);
    });
  }
  const sortKeys = grouping.sortKeys;
  const cmp = (a: number, b: number): number => {
    for (const k of keys) {
      const d = k(a, b);
      if (d !== 0) return d;
    }
    const d = compareValues(sortKeys[a] ?? '', sortKeys[b] ?? '');
    return d !== 0 ? d : a - b;
  };
  const allGroups = new Uint32Array(nGroups);
  for (let g = 0; g < nGroups; g++) allGroups[g] = g;
  const page = orderAndPage(allGroups, cmp, query.offset, query.limit);
  const sortTime = micros(tSort) - aggTime;

  // Remaining folds: only the page's groups.
  const ta = now();
  let pageGroupOf: Int32Array = grouping.groupOf;
  let onPage = allComputed;
  if (page.length < nGroups) {
    onPage = new Uint8Array(nGroups);
    for (const g of page) onPage[g] = 1;
    pageGroupOf = grouping.groupOf.map((g) => (onPage[g] ? g : -1));
  }
  for (const fold of query.folds) {
    if (!results.has(fold)) results.set(fold, computeFold(fold, foldInput(fold, pageGroupOf, onPage)));
  }
  aggTime += micros(ta);

  const foldList = query.folds;
  let pageRows = 0;
  const values = Array.from(page, (g) => {
    pageRows += grouping.counts[g]!;
    return [grouping.keys[g]!, foldList.map((f) => results.get(f)![g] ?? []), grouping.counts[g]!];
  });

  const response: Record<string, unknown> = {
    ...base,
    pagination: { limit: query.limit ?? nGroups, offset: query.offset },
    columns: foldList.map((f) => [`${f.op}(${f.column})`, columns.meta(f.column).format]),
    columns_desc: foldList.map((f) => columnDesc(columns.meta(f.column), f.op)),
    values,
    cardinalities: {
      initial: { rows: rows.length, groups: nGroups },
      having: { rows: rows.length, groups: nGroups },
      pagination: { rows: pageRows, groups: page.length },
    },
  };
  if (query.group !== undefined) {
    const m = columns.meta(query.group);
    response.factors_desc = [{ name: m.name, format: m.format, type: m.type }];
  }
  return {
    response,
    runtime: {
      filter: { rows: rows.length, time: filterTime },
      group_by: { groups: nGroups, time: groupTime },
      aggregate: { time: aggTime },
      sort: { time: Math.max(0, sortTime) },
      total_time: micros(t0),
    },
  };
}

/** The `describe` entries of a project (for `action=describe`). */
export function describeColumns(table: ProjectTable): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const name of table.columnNames()) {
    const meta = table.metaOf(name);
    if (!meta) continue;
    const column = table.columns.get(name);
    let used = meta.derived;
    if (column) {
      for (let r = 0; r < table.length && !used; r++) if (table.alive[r] === 1 && column.isSet(r)) used = true;
    }
    const ops = operationsFor(meta);
    out.push({
      name,
      description: meta.description || (meta.custom ? 'A custom attribute.' : 'An attribute of the reports.'),
      format: meta.format,
      type: meta.type,
      custom: meta.custom,
      state: 'enabled',
      statistics: { used },
      filter: ops.filter,
      aggregate: ops.aggregate,
      group: true,
    });
  }
  return out;
}
