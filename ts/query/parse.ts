/**
 * Query JSON as morgue 1.24 and backtrace-forensics send it (backtrace-compat.md §1.4), checked
 * and normalised. Everything a client can get wrong is refused here with a `QueryError` whose
 * message names the offending part; the engine only sees well-formed queries. Whether a column
 * exists is checked later, against the project's table.
 */

import type { AttributeValue } from '../store/types.js';
import { QueryError } from './errors.js';

import { FILTER_OPERATORS as FILTER_OPS, type FilterOperator as FilterOp } from '../protocol/filters.js';

export { FILTER_OPS, type FilterOp };

export const FOLD_OPS = [
  'head',
  'tail',
  'first',
  'last',
  'unique',
  'histogram',
  'distribution',
  'range',
  'bin',
  'quantize',
  'min',
  'max',
  'sum',
  'mean',
  'count',
  'object',
] as const;
export type FoldOp = (typeof FOLD_OPS)[number];

export interface FilterCondition {
  column: string;
  op: FilterOp;
  /** The operand as sent (coerced to the column's type by the engine); undefined for is-set/is-not-set. */
  value: AttributeValue | undefined;
  caseInsensitive: boolean;
}

export interface Fold {
  column: string;
  op: FoldOp;
  /** Integer modifiers as sent: `["bin", 32, lo, hi]` → [32, lo, hi]; `["distribution", 3]` → [3]. */
  args: number[];
  /** Index among this column's folds (the `idx` of an `attr;idx` order term). */
  index: number;
}

export interface OrderTerm {
  /** `;count`, `;group`, `attr;idx` or a plain column name. */
  name: string;
  descending: boolean;
}

export interface ParsedQuery {
  /** A disjunction of conjunctions (morgue always sends one conjunction). */
  filter: FilterCondition[][];
  select: string[] | undefined;
  selectWildcard: { physical: boolean; derived: boolean; virtual: boolean } | undefined;
  folds: Fold[];
  group: string | undefined;
  order: OrderTerm[];
  limit: number | undefined;
  offset: number;
  set: Record<string, AttributeValue> | undefined;
  table: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + '...' : s;
}

function nonNegativeInteger(v: unknown, what: string): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw new QueryError(`${what} must be a non-negative integer, not ${describe(v)}.`);
  }
  return n;
}

/** Parses a query body (already JSON-decoded). */
export function parseQuery(body: unknown): ParsedQuery {
  if (!isRecord(body)) throw new QueryError('The query must be a JSON object.');
  const known = new Set([
    'filter',
    'select',
    'select_wildcard',
    'fold',
    'group',
    'order',
    'limit',
    'offset',
    'set',
    'table',
    'virtual_columns',
    'action',
    'having',
    'template',
    'dynamic_select',
  ]);
  for (const key of Object.keys(body)) {
    if (!known.has(key)) throw new QueryError(`Unknown query field '${key}'.`);
  }

  const table = body.table === undefined ? 'objects' : body.table;
  if (table !== 'objects') throw new QueryError(`Unknown table ${describe(table)}: only 'objects' can be queried.`);

  if (body.virtual_columns !== undefined) {
    if (!Array.isArray(body.virtual_columns)) throw new QueryError('virtual_columns must be an array.');
    if (body.virtual_columns.length > 0) throw new QueryError('Virtual columns (quantize_uint, truncate_timestamp) are not supported.');
  }
  if (body.having !== undefined && !(Array.isArray(body.having) && body.having.length === 0)) {
    throw new QueryError('having is not supported.');
  }

  const filter = parseFilter(body.filter);

  let select: string[] | undefined;
  if (body.select !== undefined) {
    if (!Array.isArray(body.select) || body.select.some((s) => typeof s !== 'string' || s === '')) {
      throw new QueryError('select must be an array of column names.');
    }
    select = body.select as string[];
  }

  let selectWildcard: ParsedQuery['selectWildcard'];
  if (body.select_wildcard !== undefined) {
    if (!isRecord(body.select_wildcard)) throw new QueryError('select_wildcard must be an object such as {"physical":true}.');
    const w = body.select_wildcard;
    selectWildcard = { physical: w.physical === true, derived: w.derived === true, virtual: w.virtual === true };
  }

  const folds: Fold[] = [];
  if (body.fold !== undefined) {
    if (!isRecord(body.fold)) throw new QueryError('fold must be an object mapping columns to lists of operations.');
    for (const [column, ops] of Object.entries(body.fold)) {
      if (!Array.isArray(ops)) throw new QueryError(`fold.${column} must be a list of operations such as [["head"]].`);
      ops.forEach((spec, index) => folds.push(parseFold(column, spec, index)));
    }
  }
  if ((select || selectWildcard) && folds.length > 0) {
    throw new QueryError('A query selects or folds, not both: drop select or fold.');
  }

  let group: string | undefined;
  if (body.group !== undefined) {
    if (!Array.isArray(body.group) || body.group.some((g) => typeof g !== 'string' || g === '')) {
      throw new QueryError('group must be an array with one column name.');
    }
    if (body.group.length > 1) throw new QueryError('Only one factor can be grouped by.');
    group = body.group[0] as string | undefined;
    if (select || selectWildcard) throw new QueryError('A selection cannot be grouped: drop select or group.');
  }

  const order: OrderTerm[] = [];
  if (body.order !== undefined) {
    if (!Array.isArray(body.order)) throw new QueryError('order must be an array of {"name","ordering"} objects.');
    for (const term of body.order) {
      if (!isRecord(term) || typeof term.name !== 'string' || term.name === '') {
        throw new QueryError(`Bad order term ${describe(term)}: expected {"name":..., "ordering":"ascending"|"descending"}.`);
      }
      const ordering = term.ordering ?? 'ascending';
      if (ordering !== 'ascending' && ordering !== 'descending') {
        throw new QueryError(`Bad ordering ${describe(ordering)} for ${term.name}: use ascending or descending.`);
      }
      order.push({ name: term.name, descending: ordering === 'descending' });
    }
  }

  const limit = body.limit === undefined || body.limit === null ? undefined : nonNegativeInteger(body.limit, 'limit');
  const offset = body.offset === undefined || body.offset === null ? 0 : nonNegativeInteger(body.offset, 'offset');

  let set: Record<string, AttributeValue> | undefined;
  if (body.set !== undefined) {
    if (!isRecord(body.set) || Object.keys(body.set).length === 0) {
      throw new QueryError('set must be an object such as {"state":"resolved"}.');
    }
    set = {};
    for (const [k, v] of Object.entries(body.set)) {
      if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
        throw new QueryError(`set.${k} must be a string, number, boolean or null.`);
      }
      set[k] = v;
    }
  }

  return { filter, select, selectWildcard, folds, group, order, limit, offset, set, table };
}

function parseFilter(raw: unknown): FilterCondition[][] {
  if (raw === undefined || raw === null) return [];
  const conjunctions = Array.isArray(raw) ? raw : [raw];
  return conjunctions.map((conj) => {
    if (!isRecord(conj)) throw new QueryError('filter must be an array of objects mapping columns to conditions.');
    const conditions: FilterCondition[] = [];
    for (const [column, list] of Object.entries(conj)) {
      if (!Array.isArray(list)) throw new QueryError(`filter.${column} must be a list of conditions such as [["equal","x"]].`);
      for (const cond of list) conditions.push(parseCondition(column, cond));
    }
    return conditions;
  });
}

function parseCondition(column: string, cond: unknown): FilterCondition {
  if (!Array.isArray(cond) || typeof cond[0] !== 'string') {
    throw new QueryError(`Bad condition ${describe(cond)} on ${column}: expected [operator, value].`);
  }
  const op = cond[0];
  if (!(FILTER_OPS as readonly string[]).includes(op)) {
    throw new QueryError(`Unknown filter operator '${op}' on ${column}; known: ${FILTER_OPS.join(', ')}.`);
  }
  const needsValue = op !== 'is-set' && op !== 'is-not-set';
  const value = cond[1] as unknown;
  if (needsValue) {
    if (value === undefined) throw new QueryError(`Filter '${op}' on ${column} needs a value.`);
    if (value !== null && typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new QueryError(`Filter '${op}' on ${column}: the value must be a string or number, not ${describe(value)}.`);
    }
  }
  let caseInsensitive = false;
  const flags = cond[2] as unknown;
  if (flags !== undefined && flags !== null) {
    if (!isRecord(flags)) throw new QueryError(`Filter '${op}' on ${column}: flags must be an object such as {"case_insensitive":true}.`);
    caseInsensitive = flags.case_insensitive === true;
  }
  return { column, op: op as FilterOp, value: needsValue ? (value as AttributeValue) : undefined, caseInsensitive };
}

function parseFold(column: string, spec: unknown, index: number): Fold {
  if (!Array.isArray(spec) || typeof spec[0] !== 'string') {
    throw new QueryError(`Bad fold ${describe(spec)} on ${column}: expected [operation, ...integers].`);
  }
  const op = spec[0];
  if (!(FOLD_OPS as readonly string[]).includes(op)) {
    throw new QueryError(`Unknown fold operation '${op}' on ${column}; known: ${FOLD_OPS.join(', ')}.`);
  }
  const args = spec.slice(1).map((a: unknown) => {
    const n = typeof a === 'string' && a.trim() !== '' ? Number(a) : a;
    if (typeof n !== 'number' || !Number.isFinite(n)) {
      throw new QueryError(`Fold '${op}' on ${column}: modifiers must be numbers, not ${describe(a)}.`);
    }
    return n;
  });
  if (op === 'bin' || op === 'quantize') {
    if (args.length !== 0 && args.length !== 1 && args.length !== 3) {
      throw new QueryError(`Fold '${op}' on ${column} takes [bins] or [bins, low, high], not ${args.length} modifiers.`);
    }
    const bins = args[0];
    if (bins !== undefined && (!Number.isInteger(bins) || bins < 1 || bins > 4096)) {
      throw new QueryError(`Fold '${op}' on ${column}: the number of bins must be an integer from 1 to 4096.`);
    }
    if (args.length === 3 && !(args[2]! >= args[1]!)) {
      throw new QueryError(`Fold '${op}' on ${column}: the high bound must not be below the low bound.`);
    }
  }
  if (op === 'distribution' && args[0] !== undefined && (!Number.isInteger(args[0]) || args[0] < 1)) {
    throw new QueryError(`Fold 'distribution' on ${column}: the number of values must be a positive integer.`);
  }
  return { column, op: op as FoldOp, args, index };
}
