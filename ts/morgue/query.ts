/**
 * Command-line flags → query JSON, the same JSON the vendor morgue 1.24.11 builds
 * (backtrace-compat.md §1.4), key order included, so captured requests replay byte for byte
 * apart from the timestamps that depend on "now".
 *
 *   filter   one conjunction: attr → [[op, value?, flags?], ...]; values stay strings
 *            (the server coerces them), `_tx` accepts 0x hex
 *   age      `at-least now-age` on timestamp (default 1M); `--time A to B` instead gives
 *            `at-least A, less-than B`
 *   select   `select` / `select_wildcard`; without them, `fold.timestamp = [range, bin 32 lo hi]`
 *   folds    grouped by operator in morgue's order (last, first, tail, head, object, histogram,
 *            distribution, unique, mean, min, max, sum, bin, range, count), integer modifiers appended
 */

import { UsageError } from '../cli/errors.js';

import { FILTER_OPERATORS, type FilterOperator } from '../protocol/filters.js';

export { FILTER_OPERATORS, type FilterOperator };

/** Operators that take no value. */
const UNARY_OPERATORS: ReadonlySet<string> = new Set(['is-set', 'is-not-set']);

/** The fold flags, in the order morgue applies them (the order of `fold[attr]` entries). */
export const FOLD_OPERATORS = [
  'last',
  'first',
  'tail',
  'head',
  'object',
  'histogram',
  'distribution',
  'unique',
  'mean',
  'min',
  'max',
  'sum',
  'bin',
  'range',
  'count',
] as const;
export type FoldOperator = (typeof FOLD_OPERATORS)[number];

export type FilterTerm = [string] | [string, string | number] | [string, string | number, Record<string, boolean>];

export interface Query {
  limit?: number;
  offset?: number;
  filter: Array<Record<string, FilterTerm[]>>;
  order?: Array<{ name: string; ordering: 'ascending' | 'descending' }>;
  group?: string[];
  virtual_columns?: unknown[];
  select?: string[];
  select_wildcard?: Record<string, boolean>;
  fold?: Record<string, Array<Array<string | number>>>;
  set?: Record<string, string | null>;
  table?: string;
}

export interface QueryFlags {
  filter?: string[];
  age?: string;
  time?: string;
  select?: string[];
  selectWildcard?: string[];
  factor?: string;
  sort?: string[];
  limit?: string | number;
  offset?: string | number;
  fingerprint?: string;
  /** Fold flags, each a list of `attr[,int...]`. */
  folds?: Partial<Record<FoldOperator, string[]>>;
}

export interface BuiltQuery {
  query: Query;
  /** The age the implicit timestamp filter covers (`1M` by default), null with `--time` or an explicit timestamp filter. */
  age: string | null;
  /** The footer's time phrase: `as of 1M ago`, `with a time range of ...`, or `with a custom time filter`. */
  timeLabel: string;
  /** Seconds since the epoch the timestamp bins span, when the query has them. */
  range?: { start: number; stop: number };
}

const UNIT_SECONDS: Record<string, number> = {
  y: 3600 * 24 * 365,
  M: 3600 * 24 * 30,
  w: 3600 * 24 * 7,
  d: 3600 * 24,
  h: 3600,
  m: 60,
  s: 1,
};

/** `30d`, `1M` (30 days), `2h`, `90` (seconds): morgue's age syntax, units y M w d h m s. */
export function timespecToSeconds(spec: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([yMwdhms]?)\s*$/.exec(spec);
  if (!match?.[1]) throw new UsageError(`"${spec}" is not an age: write a number and one of the units y M w d h m s (M is 30 days, m is a minute), e.g. 1M or 12h`);
  const unit = match[2] || 's';
  return Number(match[1]) * (UNIT_SECONDS[unit] ?? 1);
}

/** One `--filter=attr,op[,value][,case-insensitive]`. Values keep their commas: `a,contains,x,y` looks for "x,y". */
export function parseFilter(input: string): { attribute: string; term: FilterTerm } {
  const parts = input.split(',');
  const attribute = parts[0] ?? '';
  const op = parts[1] ?? '';
  if (!attribute || !op) throw new UsageError(`--filter=${input}: write <attribute>,<operator>[,<value>]`);
  if (!(FILTER_OPERATORS as readonly string[]).includes(op)) {
    throw new UsageError(`--filter=${input}: unknown operator "${op}"; use one of ${FILTER_OPERATORS.join(', ')}`);
  }
  let rest = parts.slice(2);
  const flags: Record<string, boolean> = {};
  // A trailing case-insensitive flag (morgue's 4th field, which morgue itself cannot parse).
  while (rest.length > 1 && /^case[-_]insensitive$/.test(rest[rest.length - 1] ?? '')) {
    flags.case_insensitive = true;
    rest = rest.slice(0, -1);
  }
  let value: string | number | undefined = rest.length > 0 ? rest.join(',') : undefined;
  if (value === '') value = undefined;
  if (UNARY_OPERATORS.has(op)) {
    if (value !== undefined) throw new UsageError(`--filter=${input}: ${op} takes no value`);
    return { attribute, term: [op] };
  }
  if (value === undefined) throw new UsageError(`--filter=${input}: ${op} needs a value (<attribute>,${op},<value>)`);
  if (attribute === '_tx' && /^0x[0-9a-f]+$/i.test(value)) value = Number.parseInt(value.slice(2), 16);
  if (Object.keys(flags).length > 0) return { attribute, term: [op, value, flags] };
  return { attribute, term: [op, value] };
}

function parseSortTerm(term: string): { name: string; ordering: 'ascending' | 'descending' } {
  if (term === '' || term === '-') throw new UsageError('--sort needs a column: --sort=<column> or --sort=-<column> (descending)');
  if (term.startsWith('-')) return { name: term.slice(1), ordering: 'descending' };
  return { name: term, ordering: 'ascending' };
}

function parseCount(flag: string, value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${flag}=${value}: expected a whole number`);
  return n;
}

/** `--time` ranges: `A to B`, `A..B`, or `A` alone (until now). Each end: unix seconds, an ISO date/time, `now`, or `<age> ago`. */
export function parseTimeRange(spec: string, nowMs: number): { start: number; stop: number } {
  const pieces = spec.split(/\s+to\s+|\s*\.\.\s*/);
  if (pieces.length > 2) throw new UsageError(`--time="${spec}": give one range, "<start> to <end>"`);
  const start = parseInstant(pieces[0] ?? '', nowMs, spec);
  const stop = pieces.length === 2 ? parseInstant(pieces[1] ?? '', nowMs, spec) : Math.floor(nowMs / 1000);
  if (stop <= start) throw new UsageError(`--time="${spec}": the end is not after the start`);
  // A zero start would also match objects without a timestamp; morgue uses 1 for the same reason.
  return { start: start === 0 ? 1 : start, stop };
}

function parseInstant(text: string, nowMs: number, whole: string): number {
  const t = text.trim();
  if (t === 'now') return Math.floor(nowMs / 1000);
  if (/^\d{9,}$/.test(t)) return Number(t);
  const ago = /^(.+?)\s+ago$/.exec(t);
  if (ago?.[1]) return Math.floor(nowMs / 1000 - timespecToSeconds(ago[1]));
  const ms = Date.parse(t);
  if (t !== '' && Number.isFinite(ms)) return Math.floor(ms / 1000);
  throw new UsageError(`--time="${whole}": "${t}" is not a time; use unix seconds, an ISO date (2024-05-01 or 2024-05-01T12:00), now, or "<age> ago"`);
}

function filterFromFlags(flags: QueryFlags): Record<string, FilterTerm[]> {
  const conjunction: Record<string, FilterTerm[]> = {};
  for (const input of flags.filter ?? []) {
    const { attribute, term } = parseFilter(input);
    (conjunction[attribute] ??= []).push(term);
  }
  return conjunction;
}

function addFingerprint(conjunction: Record<string, FilterTerm[]>, fingerprint: string | undefined): void {
  if (fingerprint === undefined) return;
  if (!/^[0-9a-f]+$/i.test(fingerprint)) throw new UsageError(`--fingerprint=${fingerprint}: expected hex digits`);
  const term: FilterTerm = fingerprint.length === 64 ? ['equal', fingerprint] : ['regular-expression', `^${fingerprint}`];
  (conjunction.fingerprint ??= []).push(term);
}

function addFolds(query: Query, folds: QueryFlags['folds']): void {
  if (!folds) return;
  for (const op of FOLD_OPERATORS) {
    for (const spec of folds[op] ?? []) {
      const [attribute, ...modifierText] = spec.split(',');
      if (!attribute) throw new UsageError(`--${op}=${spec}: name an attribute, e.g. --${op}=hostname`);
      const modifiers = modifierText.map((m) => {
        if (!/^-?\d+$/.test(m.trim())) throw new UsageError(`--${op}=${spec}: modifiers must be integers`);
        return Number(m);
      });
      query.fold ??= {};
      (query.fold[attribute] ??= []).push([op, ...modifiers]);
    }
  }
}

/**
 * A query with the keys every command's query starts with (limit, offset, filter, order), and
 * the filter's one conjunction, which the caller goes on filling. Keys are assigned in morgue's
 * order so the JSON reads the same.
 */
function startQuery(flags: QueryFlags): { query: Query; conjunction: Record<string, FilterTerm[]> } {
  const query = {} as Query;
  const limit = parseCount('limit', flags.limit);
  const offset = parseCount('offset', flags.offset);
  // morgue leaves out a zero limit or offset.
  if (limit) query.limit = limit;
  if (offset) query.offset = offset;
  const conjunction = filterFromFlags(flags);
  query.filter = [conjunction];
  if (flags.sort && flags.sort.length > 0) query.order = flags.sort.map(parseSortTerm);
  return { query, conjunction };
}

/** The timestamp conditions of `--time`. */
function timeRangeTerms(spec: string, nowMs: number): FilterTerm[] {
  const { start, stop } = parseTimeRange(spec, nowMs);
  return [
    ['at-least', start],
    ['less-than', stop],
  ];
}

/** The query of `morgue list`. */
export function buildListQuery(flags: QueryFlags, nowMs: number = Date.now()): BuiltQuery {
  const { query, conjunction } = startQuery(flags);

  const explicitTimestamp = (conjunction.timestamp?.length ?? 0) > 0;
  conjunction.timestamp ??= [];
  let age: string | null = null;
  let timeLabel = 'with a custom time filter';
  let range: BuiltQuery['range'];

  if (flags.time !== undefined) {
    if (explicitTimestamp) throw new UsageError('--time cannot be mixed with a timestamp --filter');
    if (flags.age !== undefined) throw new UsageError('--time and --age cannot be used together');
    conjunction.timestamp = timeRangeTerms(flags.time, nowMs);
    timeLabel = `with a time range of ${flags.time}`;
  }
  if (flags.factor) query.group = [flags.factor];
  query.virtual_columns = [];

  const selecting = (flags.select?.length ?? 0) > 0 || (flags.selectWildcard?.length ?? 0) > 0;
  if (selecting) {
    if (flags.select && flags.select.length > 0) query.select = [...flags.select];
    if (flags.selectWildcard && flags.selectWildcard.length > 0) {
      query.select_wildcard = {};
      for (const kind of flags.selectWildcard) {
        if (!['physical', 'derived', 'virtual'].includes(kind)) {
          throw new UsageError(`--select-wildcard=${kind}: use physical, derived or virtual`);
        }
        query.select_wildcard[kind] = true;
      }
    }
  } else {
    query.fold = { timestamp: [['range'], ['bin']] };
  }
  addFingerprint(conjunction, flags.fingerprint);

  if (flags.age !== undefined) {
    if (explicitTimestamp) throw new UsageError('--age cannot be mixed with a timestamp --filter');
    age = flags.age;
  } else if (conjunction.timestamp.length === 0) {
    age = '1M';
  }
  if (age !== null) {
    const nowSeconds = nowMs / 1000;
    const oldest = Math.floor(nowSeconds - timespecToSeconds(age));
    const stop = Math.floor(nowSeconds);
    conjunction.timestamp = [['at-least', oldest]];
    range = { start: oldest, stop };
    const timestampFolds = query.fold?.timestamp;
    if (timestampFolds) {
      for (let i = 0; i < timestampFolds.length; i++) {
        if (timestampFolds[i]?.[0] === 'bin') timestampFolds[i] = ['bin', 32, oldest, stop];
      }
    }
    timeLabel = `as of ${age} ago`;
  } else if (flags.time !== undefined) {
    const [lo, hi] = [conjunction.timestamp[0]?.[1], conjunction.timestamp[1]?.[1]];
    if (typeof lo === 'number' && typeof hi === 'number') range = { start: lo, stop: hi };
  }
  if (conjunction.timestamp.length === 0) conjunction.timestamp.push(['greater-than', 0]);

  addFolds(query, flags.folds);
  return { query, age, timeLabel, range };
}

function hasScope(flags: QueryFlags): boolean {
  return (
    (flags.filter?.length ?? 0) > 0 ||
    flags.fingerprint !== undefined ||
    flags.age !== undefined ||
    flags.time !== undefined ||
    (flags.select?.length ?? 0) > 0 ||
    (flags.selectWildcard?.length ?? 0) > 0
  );
}

/**
 * The filter-only query of `delete` (morgue's argvQueryFilterOnly): null without any filter flag;
 * no implicit timestamp filter; selects `object` unless something else is selected.
 */
export function buildFilterOnlyQuery(flags: QueryFlags, nowMs: number = Date.now()): Query | null {
  if (!hasScope(flags)) return null;
  const select = (flags.select?.length ?? 0) > 0 || (flags.selectWildcard?.length ?? 0) > 0 ? flags.select : ['object'];
  return scopedQuery({ ...flags, select }, nowMs);
}

/**
 * The query of `set`: the filter plus `"set": {k: v}`; a timestamp filter only with --age or
 * --time (morgue's coronerSet).
 */
export function buildSetQuery(flags: QueryFlags, assignments: Record<string, string | null>, nowMs: number = Date.now()): Query {
  const query = scopedQuery({ ...flags, select: undefined, selectWildcard: undefined }, nowMs);
  query.set = assignments;
  query.table = 'objects';
  return query;
}

/** A filter (and select) query without morgue's implicit 1-month window. */
function scopedQuery(flags: QueryFlags, nowMs: number): Query {
  const { query, conjunction } = startQuery(flags);
  const explicitTimestamp = (conjunction.timestamp?.length ?? 0) > 0;
  if (flags.time !== undefined) {
    if (explicitTimestamp) throw new UsageError('--time cannot be mixed with a timestamp --filter');
    conjunction.timestamp = timeRangeTerms(flags.time, nowMs);
  }
  query.virtual_columns = [];
  if (flags.select && flags.select.length > 0) query.select = [...flags.select];
  if (flags.selectWildcard && flags.selectWildcard.length > 0) {
    query.select_wildcard = Object.fromEntries(flags.selectWildcard.map((k) => [k, true]));
  }
  addFingerprint(conjunction, flags.fingerprint);
  if (flags.age !== undefined) {
    if (explicitTimestamp || flags.time !== undefined) throw new UsageError('--age cannot be mixed with --time or a timestamp --filter');
    conjunction.timestamp = [['at-least', Math.floor(nowMs / 1000 - timespecToSeconds(flags.age))]];
  }
  return query;
}
