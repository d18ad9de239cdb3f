/**
 * What `morgue list` and `morgue describe` print, as in the vendor guide and morgue 1.24.11:
 *
 *   fingerprint-or-*                ▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁█ 5 seconds ago
 *   First Occurrence: Mon Jan 23 2017 17:25:12 GMT-0500 (EST)
 *    Last Occurrence: Mon Jan 23 2017 17:25:12 GMT-0500 (EST)
 *        Occurrences: 1
 *   histogram(hostname):
 *     web1 ▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆ 3
 *
 *   jdoe: yourcompany/blackhole as of 1M ago [384 us]
 *
 * Every function returns text; nothing here writes. Colour is on only when asked for.
 */

import type { Column, FoldGroup, SelectGroup, Unpacked } from './response.js';

export interface Palette {
  bold(s: string): string;
  label(s: string): string;
  good(s: string): string;
  footer(s: string): string;
  dim(s: string): string;
  bar(level: number, s: string): string;
}

const plain = (s: string): string => s;
export const PLAIN: Palette = { bold: plain, label: plain, good: plain, footer: plain, dim: plain, bar: (_l, s) => s };

const sgr = (code: string) => (s: string) => `\u001b[${code}m${s}\u001b[0m`;
export const COLOR: Palette = {
  bold: sgr('1'),
  label: sgr('33'),
  good: sgr('32'),
  footer: sgr('34'),
  dim: sgr('90'),
  bar: (level, s) => (level === 0 ? sgr('90')(s) : level < 3 ? sgr('34')(s) : level < 6 ? sgr('33')(s) : sgr('31')(s)),
};

/** Colour when writing to a terminal, unless NO_COLOR is set (https://no-color.org). */
export function paletteFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): Palette {
  return stream.isTTY && !env.NO_COLOR ? COLOR : PLAIN;
}

const GLYPHS = ['\u2581', '\u2582', '\u2583', '\u2584', '\u2585', '\u2586', '\u2587', '\u2588'];

/**
 * One glyph per bin: an empty bin is the lowest block, any crash at least one step higher (so a
 * lone crash beside a spike still shows without colour), the busiest bin the full block.
 */
export function sparkline(bins: unknown, palette: Palette = PLAIN): string {
  if (!Array.isArray(bins)) return '';
  const counts = bins.map((b) => (Array.isArray(b) ? toNumber(b[2]) || 0 : 0));
  const ceiling = Math.max(0, ...counts);
  const steps = GLYPHS.length - 2;
  return counts
    .map((c) => {
      const level = c > 0 && ceiling > 0 ? 1 + Math.round((c / ceiling) * steps) : 0;
      return palette.bar(level, GLYPHS[level] ?? '');
    })
    .join('');
}

/** "5 seconds ago", "3 hours ago", "in 2 minutes". */
export function ago(thenMs: number, nowMs: number = Date.now()): string {
  const seconds = Math.round((nowMs - thenMs) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  if (s < 1) return 'just now';
  const units: Array<[string, number]> = [
    ['year', 365 * 86400],
    ['month', 30 * 86400],
    ['week', 7 * 86400],
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60],
    ['second', 1],
  ];
  for (const [name, size] of units) {
    if (s >= size) {
      const n = Math.floor(s / size);
      const phrase = `${n} ${name}${n === 1 ? '' : 's'}`;
      return future ? `in ${phrase}` : `${phrase} ago`;
    }
  }
  return 'just now';
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '') return Number(v);
  return Number.NaN;
}

function uuidOf(v: string): string {
  if (!/^[0-9a-f]{32}$/i.test(v)) return v;
  return `${v.slice(0, 8)}-${v.slice(8, 12)}-${v.slice(12, 16)}-${v.slice(16, 20)}-${v.slice(20)}`;
}

/** A value in its column's format (morgue's fieldFormat). */
export function formatValue(value: unknown, format: string | undefined): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object') return JSON.stringify(value);
  const n = toNumber(value);
  switch (format) {
    case 'unix_timestamp':
    case 'gps_timestamp':
      return Number.isFinite(n) ? String(new Date(n * 1000)) : String(value);
    case 'js_timestamp':
      return Number.isFinite(n) ? String(new Date(n)) : String(value);
    case 'memory_address':
      return Number.isFinite(n) ? `0x${Math.trunc(n).toString(16)}` : String(value);
    case 'bytes':
      return `${String(value)} B`;
    case 'kilobytes':
      return `${String(value)} kB`;
    case 'megabytes':
      return `${String(value)} MB`;
    case 'gigabytes':
      return `${String(value)} GB`;
    case 'seconds':
      return `${String(value)} sec`;
    case 'milliseconds':
      return `${String(value)} ms`;
    case 'nanoseconds':
      return `${String(value)} ns`;
    case 'ipv4':
      return Number.isFinite(n) ? [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.') : String(value);
    case 'uuid':
      return uuidOf(String(value));
    default:
      return String(value);
  }
}

/** Frames of a `callstack` value: a JSON string `{"frame": [...]}` (innermost first). */
export function callstackFrames(value: unknown): string[] | undefined {
  let parsed: unknown = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch {
      return undefined;
    }
  }
  const frames = (parsed as { frame?: unknown } | null)?.frame;
  if (!Array.isArray(frames)) return undefined;
  return frames.map((f) => String(f));
}

/** Frames joined by ` ← `, wrapped before column 76 and indented four spaces, on the lines after the label. */
export function renderCallstack(value: unknown): string {
  const frames = callstackFrames(value);
  if (!frames) return ` ${value === undefined || value === null ? '' : String(value)}\n`;
  if (frames.length === 0) return '\n';
  let out = '\n    ';
  let width = 4;
  frames.forEach((frame, i) => {
    width += frame.length + 4;
    if (i !== 0 && width >= 76) {
      out += '\n    ';
      width = frame.length + 4;
    }
    out += i === frames.length - 1 ? frame : `${frame} ← `;
  });
  return `${out}\n`;
}

/** Horizontal bars, one line per key: `  key ▆▆▆▆ count`, keys right-aligned. */
export function bars(entries: Array<[string, number]>, width: number, sort: boolean): string {
  if (entries.length === 0) return '';
  const rows = entries.map(([k, v]): [string, number] => [k === '' ? '--' : k, v]);
  if (sort) rows.sort((a, b) => b[1] - a[1]);
  const keyWidth = Math.max(...rows.map(([k]) => k.length));
  const max = Math.max(...rows.map(([, v]) => v));
  return rows
    .map(([k, v]) => {
      const shown = max > 0 ? Math.round((width * v) / max) : width;
      return `  ${k.padStart(keyWidth)} ${'\u2586'.repeat(shown)}${' '.repeat(width - shown)} ${v}`;
    })
    .join('\n');
}

function renderHistogram(value: unknown, format: string): string {
  if (!Array.isArray(value)) return `${JSON.stringify(value)}\n`;
  const entries: Array<[string, number]> = [];
  for (const pair of value) {
    if (Array.isArray(pair) && pair.length >= 2) entries.push([formatValue(pair[0], format), toNumber(pair[1])]);
  }
  if (entries.length === 0) return '\n';
  return `\n${bars(entries, 40, true)}\n`;
}

function renderDistribution(value: unknown, format: string): string {
  const d = Array.isArray(value) ? (value[0] as { keys?: unknown; tail?: unknown; vals?: unknown } | undefined) : undefined;
  if (!d || !Array.isArray(d.vals)) return `${JSON.stringify(value)}\n`;
  const tail = toNumber(d.tail ?? 0) || 0;
  const total = tail + d.vals.reduce((s: number, v: unknown) => s + (Array.isArray(v) ? toNumber(v[1]) || 0 : 0), 0);
  return `${String(d.keys)} keys total, with a count of ${total}${renderHistogram(d.vals, format)}`;
}

function renderBins(value: unknown, format: string): string {
  if (!Array.isArray(value)) return `${JSON.stringify(value)}\n`;
  const entries: Array<[string, number]> = [];
  for (const bin of value) {
    if (!Array.isArray(bin) || bin.length < 3) continue;
    const label = `${formatValue(bin[0], format).padStart(20)} ${formatValue(bin[1], format).padStart(20)}`;
    entries.push([label, toNumber(bin[2])]);
  }
  if (entries.length === 0) return `${JSON.stringify(value)}\n`;
  return `\n${bars(entries, 10, false)}\n`;
}

function opOf(columnName: string): string {
  const paren = columnName.indexOf('(');
  return paren > 0 ? columnName.slice(0, paren) : columnName;
}

/** One folded column's value, after its `label: `. */
export function renderFoldValue(column: Column, value: unknown): string {
  const op = opOf(column.name);
  if (column.format === 'callstack' && ['head', 'tail', 'first', 'last'].includes(op)) {
    return renderCallstack(Array.isArray(value) ? value[0] : value);
  }
  const first = Array.isArray(value) ? value[0] : value;
  switch (op) {
    case 'head':
    case 'tail':
    case 'first':
    case 'last':
    case 'sum':
    case 'min':
    case 'max':
      return `${formatValue(first, column.format)}\n`;
    case 'unique':
    case 'mean':
    case 'object':
    case 'count':
      return `${String(first)}\n`;
    case 'range':
      if (Array.isArray(value) && value.length >= 2) {
        const [lo, hi] = [toNumber(value[0]), toNumber(value[1])];
        const span = Number.isFinite(lo) && Number.isFinite(hi) ? ` (${hi - lo})` : '';
        return `${formatValue(value[0], column.format)} - ${formatValue(value[1], column.format)}${span}\n`;
      }
      return `${JSON.stringify(value)}\n`;
    case 'histogram':
      return renderHistogram(value, column.format);
    case 'distribution':
      return renderDistribution(value, column.format);
    case 'bin':
    case 'quantize':
      return renderBins(value, column.format);
    default:
      return `${JSON.stringify(value)}\n`;
  }
}

function groupLabel(key: string): string {
  return key.length > 28 ? `${key.slice(0, 28)}...` : key.padEnd(31);
}

export interface ListRenderOptions {
  palette?: Palette;
  nowMs?: number;
  /** `_.runtime.filter.rows`, for the share of each group when the query is grouped. */
  totalRows?: number;
  grouped?: boolean;
}

function renderFoldGroup(group: FoldGroup, columns: Column[], options: ListRenderOptions): string {
  const p = options.palette ?? PLAIN;
  const now = options.nowMs ?? Date.now();
  let out = `${p.bold(groupLabel(group.key))} `;
  const bin = group.values['bin(timestamp)'];
  const range = group.values['range(timestamp)'];
  if (bin !== undefined) out += `${sparkline(bin, p)} `;
  const rangeOk = Array.isArray(range) && range.length >= 2 && Number.isFinite(toNumber(range[0])) && Number.isFinite(toNumber(range[1]));
  if (rangeOk) {
    const [first, last] = [toNumber(range[0]), toNumber(range[1])];
    out += `${p.good(ago(last * 1000, now))}\n`;
    out += `${p.label('First Occurrence: ')}${String(new Date(first * 1000))}\n`;
    out += `${p.label(' Last Occurrence: ')}${String(new Date(last * 1000))}\n`;
  } else {
    out = `${out.trimEnd()}\n`;
  }
  if (group.count !== undefined) {
    let label = String(group.count);
    if (options.grouped && options.totalRows && options.totalRows > 0) {
      label += ` (${((group.count / options.totalRows) * 100).toFixed(2)}%)`;
    }
    out += `${p.label('     Occurrences: ')}${label}\n`;
  }
  for (const column of columns) {
    if (column.name === 'bin(timestamp)' || column.name === 'range(timestamp)') continue;
    out += `${p.label(`${column.name}:`)}`;
    const rendered = renderFoldValue(column, group.values[column.name]);
    out += rendered.startsWith('\n') ? rendered : ` ${rendered}`;
  }
  return out;
}

function renderSelectGroup(group: SelectGroup, columns: Column[], options: ListRenderOptions): string {
  const p = options.palette ?? PLAIN;
  const now = options.nowMs ?? Date.now();
  if (group.rows.length === 0) return '';
  let out = `${p.bold(group.key)}\n`;
  for (const row of group.rows) {
    const ts = toNumber(row.values.timestamp);
    if (row.values.timestamp !== undefined && Number.isFinite(ts)) {
      out += `${p.good(p.bold(`#${row.id.padEnd(7)} `))}${String(new Date(ts * 1000))}     ${p.bold(ago(ts * 1000, now))}\n`;
    } else {
      out += `${p.good(p.bold(`#${row.id}`))}\n`;
    }
    for (const column of columns) {
      if (column.name === 'timestamp') continue;
      if (column.format === 'callstack' || column.name === 'callstack') continue;
      out += `  ${p.label(column.name)}: ${formatValue(row.values[column.name], column.format)}\n`;
    }
    for (const column of columns) {
      if (column.format !== 'callstack' && column.name !== 'callstack') continue;
      out += `  ${p.label(`${column.name}:`)}${renderCallstack(row.values[column.name])}`;
    }
  }
  return out;
}

/** Every group, each followed by a blank line; nothing at all for an empty result. */
export function renderList(unpacked: Unpacked, options: ListRenderOptions = {}): string {
  let out = '';
  if (unpacked.kind === 'select') {
    for (const group of unpacked.groups) {
      const text = renderSelectGroup(group, unpacked.columns, options);
      if (text) out += `${text}\n`;
    }
  } else {
    for (const group of unpacked.groups) out += `${renderFoldGroup(group, unpacked.columns, options)}\n`;
  }
  return out;
}

/** `user: universe/project as of 1M ago [384 us]`. */
export function renderFooter(meta: { user?: string; universe?: string; project?: string; latency?: string }, timeLabel: string, palette: Palette = PLAIN): string {
  return palette.footer(`${meta.user ?? '?'}: ${meta.universe ?? '?'}/${meta.project ?? '?'} ${timeLabel} [${meta.latency ?? '?'}]`);
}

function csvCell(value: unknown): string {
  const text = value === undefined || value === null ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * CSV of a result: a select gives one line per object (its columns, then `object` and `id`, as
 * morgue's --csv); an aggregation gives one line per group (the group, its count, then every
 * folded column but the sparkline's bins, lists as JSON).
 */
export function toCsv(unpacked: Unpacked): string {
  const lines: string[] = [];
  if (unpacked.kind === 'select') {
    lines.push([...unpacked.columns.map((c) => c.name), 'object', 'id'].map(csvCell).join(','));
    for (const group of unpacked.groups) {
      for (const row of group.rows) {
        lines.push([...unpacked.columns.map((c) => row.values[c.name]), row.object, row.id].map(csvCell).join(','));
      }
    }
  } else {
    // bin(timestamp) only feeds the sparkline; range(timestamp) already says when.
    const columns = unpacked.columns.filter((c) => c.name !== 'bin(timestamp)');
    lines.push([unpacked.factor ?? 'group', 'count', ...columns.map((c) => c.name)].map(csvCell).join(','));
    for (const group of unpacked.groups) {
      const cells = columns.map((c) => {
        const v = group.values[c.name];
        return Array.isArray(v) && v.length === 1 && (typeof v[0] !== 'object' || v[0] === null) ? v[0] : v;
      });
      lines.push([group.key, group.count, ...cells].map(csvCell).join(','));
    }
  }
  return `${lines.join('\n')}\n`;
}

export interface DescribedAttribute {
  name: string;
  description?: string;
  format?: string;
  type?: string;
  custom?: boolean;
  state?: string;
  statistics?: { used?: boolean };
  seen?: number;
  value?: unknown;
}

/** Enabled before disabled, built-in before custom, then by name (morgue's order). */
export function sortDescribe(attributes: DescribedAttribute[]): DescribedAttribute[] {
  return [...attributes].sort((a, b) => {
    if (a.state === 'disabled' && b.state !== 'disabled') return 1;
    if (a.state !== 'disabled' && b.state === 'disabled') return -1;
    if (a.custom && !b.custom) return 1;
    if (!a.custom && b.custom) return -1;
    return a.name.localeCompare(b.name);
  });
}

/** `  name: description [format]` lines; unused built-ins are hidden unless `all`. */
export function renderDescribe(attributes: DescribedAttribute[], options: { filter?: string; all?: boolean; palette?: Palette } = {}): string {
  const p = options.palette ?? PLAIN;
  const shown = sortDescribe(attributes).filter((a) => !options.filter || a.name.toLowerCase().includes(options.filter.toLowerCase()));
  const width = Math.max(0, ...shown.map((a) => a.name.length));
  let hidden = 0;
  let out = '';
  for (const a of shown) {
    const unused = a.statistics?.used === false;
    if (unused && !a.custom && !options.all) {
      hidden++;
      continue;
    }
    const name = a.name.padStart(width);
    const description = a.description ?? '';
    if (a.state === 'disabled') {
      out += p.dim(`${name}: [disabled]${a.seen ? ` (seen at ${String(new Date(a.seen * 1000))} with a value of "${String(a.value)}")` : ''}`);
    } else if (unused) {
      out += p.dim(`${name}: [unused] ${description}`);
    } else {
      out += `${a.custom ? p.footer(name) : p.label(name)}: ${description}`;
    }
    if (a.format && a.state !== 'disabled') out += p.dim(` [${a.format}]`);
    out += '\n';
  }
  if (hidden > 0) out += p.dim(`\nHiding ${hidden} unused attributes (-a to list all).\n`);
  return out;
}
