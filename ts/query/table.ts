/**
 * The columnar table of one project: every crash of the project as one row, every attribute as
 * one typed column. The query engine (engine.ts) evaluates queries over it without touching the
 * store; cache.ts builds it from `Store.scanObjects` and keeps it current through
 * `Store.onChange`.
 *
 * Layout (docs/query.md has the reasoning):
 * - rows are appended in the order objects arrive (the store scans in id order, and later inserts
 *   have larger ids), so row order is id order; a deleted row is only marked dead;
 * - numeric columns (uint64, int64, double, boolean) are `Float64Array`s with NaN for "not set";
 * - string-like columns (string, dictionary, labels, callstack) are dictionary encoded: an
 *   `Int32Array` of codes (-1 for "not set") into a per-column table of distinct values, so a
 *   filter is decided once per distinct value and grouping is by code;
 * - the fingerprint column's code is the group id of a row.
 */

import type { AttributeDeclaration, AttributeType, AttributeValue, CrashObject } from '../store/types.js';

export type ColumnKind = 'num' | 'dict';

export interface ColumnMeta {
  name: string;
  type: AttributeType;
  format: string;
  description: string;
  /** Declared by a user (a custom attribute) rather than built in or merely seen in reports. */
  custom: boolean;
  /** Built into coroner (timestamp, fingerprint, ...). */
  builtin: boolean;
  /** Computed at query time rather than stored (first_seen, state). */
  derived: boolean;
  /** The type was declared (custom attribute); values of another type are not stored. */
  declared: boolean;
}

export class NumColumn {
  readonly kind = 'num' as const;
  data: Float64Array;
  /** Seen values, to infer a type for undeclared columns. */
  sawNegative = false;
  sawFraction = false;
  sawBoolean = false;
  sawNumber = false;
  constructor(
    public meta: ColumnMeta,
    capacity: number,
  ) {
    this.data = new Float64Array(capacity).fill(NaN);
  }
  grow(capacity: number): void {
    const next = new Float64Array(capacity).fill(NaN);
    next.set(this.data);
    this.data = next;
  }
  isSet(row: number): boolean {
    return !Number.isNaN(this.data[row]!);
  }
  /** The value as the API shows it, or null. */
  valueAt(row: number): AttributeValue {
    const v = this.data[row]!;
    if (Number.isNaN(v)) return null;
    return this.meta.type === 'boolean' ? v !== 0 : v;
  }
  inferredType(): AttributeType {
    if (this.meta.declared) return this.meta.type;
    if (this.sawBoolean && !this.sawNumber) return 'boolean';
    if (this.sawFraction) return 'double';
    if (this.sawNegative) return 'int64';
    return 'uint64';
  }
}

export class DictColumn {
  readonly kind = 'dict' as const;
  codes: Int32Array;
  readonly values: string[] = [];
  readonly index = new Map<string, number>();
  /** For labels columns: each distinct value split into its labels (filled lazily). */
  private labelCache: string[][] | undefined;
  constructor(
    public meta: ColumnMeta,
    capacity: number,
  ) {
    this.codes = new Int32Array(capacity).fill(-1);
  }
  grow(capacity: number): void {
    const next = new Int32Array(capacity).fill(-1);
    next.set(this.codes);
    this.codes = next;
  }
  code(value: string): number {
    let c = this.index.get(value);
    if (c === undefined) {
      c = this.values.length;
      this.values.push(value);
      this.index.set(value, c);
    }
    return c;
  }
  isSet(row: number): boolean {
    return this.codes[row]! >= 0;
  }
  valueAt(row: number): AttributeValue {
    const c = this.codes[row]!;
    return c < 0 ? null : this.values[c]!;
  }
  /** The labels of distinct value `code` (labels columns hold space-separated labels). */
  labelsOf(code: number): string[] {
    if (!this.labelCache) this.labelCache = [];
    let labels = this.labelCache[code];
    if (!labels) {
      labels = (this.values[code] ?? '').split(' ').filter((s) => s.length > 0);
      this.labelCache[code] = labels;
    }
    return labels;
  }
}

export type Column = NumColumn | DictColumn;

export function isNumericType(type: AttributeType): boolean {
  return type === 'uint64' || type === 'int64' || type === 'double' || type === 'boolean';
}

/** Built-in columns: name, type, format, description. Their values come from CrashObject fields. */
export const BUILTIN_COLUMNS: ReadonlyArray<Omit<ColumnMeta, 'custom' | 'builtin' | 'derived' | 'declared'>> = [
  { name: 'timestamp', type: 'uint64', format: 'unix_timestamp', description: 'When the crash happened (the report\'s own timestamp).' },
  { name: 'received', type: 'uint64', format: 'unix_timestamp', description: 'When coroner received the crash.' },
  { name: '_tx', type: 'uint64', format: 'none', description: 'The object id.' },
  { name: 'fingerprint', type: 'dictionary', format: 'sha256', description: 'The group of the crash: a hash of its normalised faulting frames.' },
  { name: 'callstack', type: 'callstack', format: 'callstack', description: 'The faulting thread\'s frames, innermost first.' },
  { name: 'classifiers', type: 'labels', format: 'labels', description: 'Labels that classify the crash (signal, assert, ...).' },
  { name: 'uuid', type: 'dictionary', format: 'uuid', description: 'The report\'s uuid.' },
];

/** Columns computed at query time from the fingerprint group. */
export const DERIVED_COLUMNS: ReadonlyArray<Omit<ColumnMeta, 'custom' | 'builtin' | 'derived' | 'declared'>> = [
  { name: 'first_seen', type: 'uint64', format: 'unix_timestamp', description: 'When the crash\'s group was first seen (earliest timestamp of its fingerprint).' },
  { name: 'state', type: 'dictionary', format: 'none', description: 'The state of the crash\'s group: open, resolved or ignored.' },
];

/** Formats of well-known attributes that reports carry (the SDKs' and ptrace's). */
const KNOWN_FORMATS: Record<string, string> = {
  hostname: 'hostname',
  'process.age': 'seconds',
  guid: 'uuid',
  'application.session': 'uuid',
};

/** The display format of an attribute nobody declared: by name, as the SDKs fill them. */
function formatByName(name: string): string {
  const known = KNOWN_FORMATS[name];
  if (known) return known;
  // @backtrace/node reports memory figures in bytes (system.memory.*, vm.*.size, gc.heap.*).
  if (name.startsWith('system.memory.') || name.startsWith('gc.heap.') || (name.startsWith('vm.') && /\.(size|peak)$/.test(name))) return 'bytes';
  return 'none';
}

const BUILTIN_NAMES = new Set(BUILTIN_COLUMNS.map((c) => c.name));
const DERIVED_NAMES = new Set(DERIVED_COLUMNS.map((c) => c.name));

export class ProjectTable {
  /** Rows in use (dead rows included). */
  length = 0;
  private capacity: number;
  ids: Float64Array;
  alive: Uint8Array;
  liveCount = 0;
  readonly rowById = new Map<number, number>();
  readonly columns = new Map<string, Column>();
  /** Per fingerprint code: the earliest timestamp of the group (first_seen). */
  firstSeen = new Float64Array(64).fill(NaN);
  /** The largest object id seen: the `_.tx` of responses. */
  maxId = 0;
  /** Bumped on every change, so derived data can tell it is stale. */
  version = 0;

  readonly timestamp: NumColumn;
  readonly fingerprint: DictColumn;

  constructor(
    readonly projectId: number,
    declarations: AttributeDeclaration[] = [],
    capacity = 1024,
  ) {
    this.capacity = Math.max(16, capacity);
    this.ids = new Float64Array(this.capacity);
    this.alive = new Uint8Array(this.capacity);
    for (const b of BUILTIN_COLUMNS) {
      const meta: ColumnMeta = { ...b, custom: false, builtin: true, derived: false, declared: true };
      this.columns.set(b.name, isNumericType(b.type) ? new NumColumn(meta, this.capacity) : new DictColumn(meta, this.capacity));
    }
    this.timestamp = this.columns.get('timestamp') as NumColumn;
    this.fingerprint = this.columns.get('fingerprint') as DictColumn;
    this.declare(declarations);
  }

  /** Applies declared attributes (name, type, format): they fix a column's type and format. */
  declare(declarations: AttributeDeclaration[]): void {
    for (const d of declarations) {
      if (BUILTIN_NAMES.has(d.name) || DERIVED_NAMES.has(d.name)) continue;
      const meta: ColumnMeta = {
        name: d.name,
        type: d.type,
        format: d.format || 'none',
        description: d.description ?? '',
        custom: d.custom,
        builtin: !d.custom,
        derived: false,
        declared: true,
      };
      const existing = this.columns.get(d.name);
      const wantNum = isNumericType(d.type);
      if (existing && (existing.kind === 'num') === wantNum) {
        existing.meta = meta;
        continue;
      }
      const column = wantNum ? new NumColumn(meta, this.capacity) : new DictColumn(meta, this.capacity);
      if (existing) {
        for (let r = 0; r < this.length; r++) setValue(column, r, existing.valueAt(r));
      }
      this.columns.set(d.name, column);
    }
  }

  /** Appends an object, or rewrites its row when it is already here. */
  upsert(object: CrashObject): void {
    const existing = this.rowById.get(object.id);
    if (existing !== undefined) {
      this.writeRow(existing, object, true);
      this.version++;
      return;
    }
    if (this.length === this.capacity) this.grow(this.capacity * 2);
    const row = this.length++;
    this.ids[row] = object.id;
    this.alive[row] = 1;
    this.liveCount++;
    this.rowById.set(object.id, row);
    if (object.id > this.maxId) this.maxId = object.id;
    this.writeRow(row, object, false);
    this.version++;
  }

  /** Marks an object's row dead. */
  remove(id: number): boolean {
    const row = this.rowById.get(id);
    if (row === undefined) return false;
    this.alive[row] = 0;
    this.liveCount--;
    this.rowById.delete(id);
    this.version++;
    return true;
  }

  private grow(capacity: number): void {
    const ids = new Float64Array(capacity);
    ids.set(this.ids);
    this.ids = ids;
    const alive = new Uint8Array(capacity);
    alive.set(this.alive);
    this.alive = alive;
    for (const c of this.columns.values()) c.grow(capacity);
    this.capacity = capacity;
  }

  private writeRow(row: number, o: CrashObject, clearOthers: boolean): void {
    const written = clearOthers ? new Set<string>() : undefined;
    const put = (name: string, value: AttributeValue | undefined) => {
      let column = this.columns.get(name);
      if (!column) {
        if (value === null || value === undefined) return;
        column = this.newColumnFor(name, value);
      }
      const replaced = setValue(column, row, value ?? null);
      if (replaced) this.columns.set(name, replaced);
      written?.add(name);
    };
    put('timestamp', o.timestamp);
    put('received', o.receivedAt);
    put('_tx', o.id);
    put('fingerprint', o.fingerprint || null);
    put('callstack', JSON.stringify({ frame: o.callstack }));
    put('classifiers', o.classifiers.length > 0 ? o.classifiers.join(' ') : null);
    put('uuid', o.uuid || null);
    for (const [name, value] of Object.entries(o.attributes)) {
      if (BUILTIN_NAMES.has(name) || DERIVED_NAMES.has(name)) continue;
      put(name, value);
    }
    if (written) {
      for (const [name, column] of this.columns) if (!written.has(name)) setValue(column, row, null);
    }
    const fp = this.fingerprint.codes[row]!;
    if (fp >= 0) {
      if (fp >= this.firstSeen.length) {
        const next = new Float64Array(Math.max(fp + 1, this.firstSeen.length * 2)).fill(NaN);
        next.set(this.firstSeen);
        this.firstSeen = next;
      }
      const t = this.timestamp.data[row]!;
      const seen = this.firstSeen[fp]!;
      if (!Number.isNaN(t) && (Number.isNaN(seen) || t < seen)) this.firstSeen[fp] = t;
    }
  }

  private newColumnFor(name: string, value: AttributeValue): Column {
    const meta: ColumnMeta = {
      name,
      type: typeof value === 'number' ? 'uint64' : typeof value === 'boolean' ? 'boolean' : 'dictionary',
      format: formatByName(name),
      description: '',
      custom: false,
      builtin: false,
      derived: false,
      declared: false,
    };
    const column = typeof value === 'string' ? new DictColumn(meta, this.capacity) : new NumColumn(meta, this.capacity);
    this.columns.set(name, column);
    return column;
  }

  /** Every column name: stored ones and derived ones. */
  columnNames(): string[] {
    return [...this.columns.keys(), ...DERIVED_COLUMNS.map((c) => c.name)];
  }

  /** The metadata a response shows for a column (with its inferred type when undeclared). */
  metaOf(name: string): ColumnMeta | undefined {
    const column = this.columns.get(name);
    if (column) return column.kind === 'num' ? { ...column.meta, type: column.inferredType() } : column.meta;
    const derived = DERIVED_COLUMNS.find((c) => c.name === name);
    if (derived) return { ...derived, custom: false, builtin: true, derived: true, declared: true };
    return undefined;
  }
}

/**
 * Stores `value` at `row`. Returns a replacement column when an undeclared numeric column met a
 * value that is not a number (it becomes a dictionary column holding every value as a string).
 */
export function setValue(column: Column, row: number, value: AttributeValue): Column | undefined {
  if (column.kind === 'num') {
    if (value === null) {
      column.data[row] = NaN;
      return undefined;
    }
    let n: number;
    if (typeof value === 'number') {
      n = value;
      column.sawNumber = true;
    } else if (typeof value === 'boolean') {
      n = value ? 1 : 0;
      column.sawBoolean = true;
    } else {
      const parsed = value.trim() === '' ? NaN : Number(value);
      if (Number.isNaN(parsed)) {
        if (column.meta.declared) {
          column.data[row] = NaN;
          return undefined;
        }
        return promoteToDict(column, row, value);
      }
      n = parsed;
      column.sawNumber = true;
    }
    if (!Number.isFinite(n)) {
      column.data[row] = NaN;
      return undefined;
    }
    if (n < 0) column.sawNegative = true;
    if (!Number.isInteger(n)) column.sawFraction = true;
    column.data[row] = n;
    return undefined;
  }
  column.codes[row] = value === null ? -1 : column.code(typeof value === 'string' ? value : String(value));
  return undefined;
}

function promoteToDict(column: NumColumn, row: number, value: string): DictColumn {
  const dict = new DictColumn({ ...column.meta, type: 'dictionary' }, column.data.length);
  for (let r = 0; r < column.data.length; r++) {
    const v = column.valueAt(r);
    if (v !== null) dict.codes[r] = dict.code(String(v));
  }
  dict.codes[row] = dict.code(value);
  return dict;
}
