// The filter bar's state: conditions over any attribute and a time range, kept in the URL
// (`f=attr:op:value`, `range=7d` or `from=&to=`), turned into the query API's filter.

import type { ColumnDescription, Filter } from './api.js';
import { h } from './dom.js';
import type { Params } from './route.js';

export interface Condition {
  attr: string;
  op: string;
  value: string;
}

export interface FilterState {
  conditions: Condition[];
  /** `all`, `1h`, `24h`, `7d`, `30d`, `90d` or `custom` (then from/to). */
  range: string;
  from?: number;
  to?: number;
}

export const RANGES: Array<[string, string, number]> = [
  ['all', 'All time', 0],
  ['1h', 'Last hour', 3600],
  ['24h', 'Last 24 hours', 86400],
  ['7d', 'Last 7 days', 7 * 86400],
  ['30d', 'Last 30 days', 30 * 86400],
  ['90d', 'Last 90 days', 90 * 86400],
  ['custom', 'Custom range', 0],
];

const NO_VALUE_OPS = new Set(['is-set', 'is-not-set']);

export function parseFilterState(params: URLSearchParams): FilterState {
  const conditions: Condition[] = [];
  for (const f of params.getAll('f')) {
    const a = f.indexOf(':');
    const b = a >= 0 ? f.indexOf(':', a + 1) : -1;
    if (a <= 0 || b < 0) continue;
    conditions.push({ attr: f.slice(0, a), op: f.slice(a + 1, b), value: f.slice(b + 1) });
  }
  const range = params.get('range') ?? 'all';
  const num = (k: string) => {
    const v = params.get(k);
    const n = v === null || v === '' ? NaN : Number(v);
    return Number.isFinite(n) ? n : undefined;
  };
  const from = num('from');
  const to = num('to');
  return { conditions, range: RANGES.some((r) => r[0] === range) ? range : 'all', ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) };
}

export function filterParams(state: FilterState): Params {
  return {
    f: state.conditions.map((c) => `${c.attr}:${c.op}:${c.value}`),
    range: state.range === 'all' ? undefined : state.range,
    from: state.range === 'custom' ? state.from : undefined,
    to: state.range === 'custom' ? state.to : undefined,
  };
}

/** The time window a state means, in seconds since the epoch, or undefined for all time. */
export function timeWindow(state: FilterState, now = Math.floor(Date.now() / 1000)): { from?: number; to?: number } | undefined {
  if (state.range === 'all') return undefined;
  if (state.range === 'custom') {
    if (state.from === undefined && state.to === undefined) return undefined;
    return { ...(state.from !== undefined ? { from: state.from } : {}), ...(state.to !== undefined ? { to: state.to } : {}) };
  }
  const span = RANGES.find((r) => r[0] === state.range)?.[2] ?? 0;
  return { from: now - span, to: now };
}

/** The query API's filter: one conjunction of every condition and the time window. */
export function apiFilter(state: FilterState, extra: Condition[] = []): Filter {
  const conj: Record<string, Array<[string, unknown]>> = {};
  const add = (attr: string, op: string, value: unknown) => (conj[attr] ??= []).push([op, value]);
  for (const c of [...state.conditions, ...extra]) add(c.attr, c.op, NO_VALUE_OPS.has(c.op) ? '' : c.value);
  const w = timeWindow(state);
  if (w?.from !== undefined) add('timestamp', 'at-least', String(w.from));
  if (w?.to !== undefined) add('timestamp', 'at-most', String(w.to));
  return Object.keys(conj).length ? [conj] : [];
}

const toLocalInput = (seconds: number | undefined) => {
  if (seconds === undefined) return '';
  const d = new Date(seconds * 1000 - new Date().getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
};
const fromLocalInput = (text: string) => {
  if (!text) return undefined;
  const t = new Date(text).getTime();
  return Number.isFinite(t) ? Math.floor(t / 1000) : undefined;
};

/** The filter bar: condition rows, the time range, Apply. Calls `apply` with the new state. */
export function filterBar(columns: ColumnDescription[], state: FilterState, apply: (state: FilterState) => void): HTMLElement {
  const filterable = columns.filter((c) => c.filter.length > 0).sort((a, b) => a.name.localeCompare(b.name));
  const rowsBox = h('div', { class: 'conditions' });
  const rows: Array<() => Condition | undefined> = [];

  const addRow = (c?: Condition) => {
    const attrSel = h('select', { class: 'attr', 'aria-label': 'attribute' }, filterable.map((col) => h('option', { value: col.name }, col.name)));
    const opSel = h('select', { class: 'op', 'aria-label': 'operator' });
    const valueIn = h('input', { class: 'value', type: 'text', placeholder: 'value', 'aria-label': 'value' });
    const fillOps = () => {
      const col = filterable.find((x) => x.name === attrSel.value);
      const ops = col?.filter ?? [];
      opSel.replaceChildren(...ops.map((op) => h('option', { value: op }, op)));
      if (ops.includes('equal')) opSel.value = 'equal';
    };
    attrSel.addEventListener('change', fillOps);
    if (c && filterable.some((x) => x.name === c.attr)) attrSel.value = c.attr;
    else if (!c && filterable.some((x) => x.name === 'hostname')) attrSel.value = 'hostname';
    fillOps();
    if (c) {
      if (![...opSel.options].some((o) => o.value === c.op)) opSel.append(h('option', { value: c.op }, c.op));
      opSel.value = c.op;
      valueIn.value = c.value;
    }
    const row = h('div', { class: 'condition' }, attrSel, opSel, valueIn);
    const read = () => (row.isConnected ? { attr: attrSel.value, op: opSel.value, value: valueIn.value } : undefined);
    row.append(h('button', { type: 'button', class: 'icon', title: 'remove this condition', onclick: () => row.remove() }, '×'));
    rows.push(read);
    rowsBox.append(row);
  };
  for (const c of state.conditions) addRow(c);

  const rangeSel = h('select', { class: 'range', 'aria-label': 'time range' }, RANGES.map(([v, label]) => h('option', { value: v }, label)));
  rangeSel.value = state.range;
  const fromIn = h('input', { type: 'datetime-local', class: 'from', 'aria-label': 'from', value: toLocalInput(state.from) });
  const toIn = h('input', { type: 'datetime-local', class: 'to', 'aria-label': 'to', value: toLocalInput(state.to) });
  const custom = h('span', { class: 'custom-range' }, fromIn, ' – ', toIn);
  const syncCustom = () => (custom.hidden = rangeSel.value !== 'custom');
  rangeSel.addEventListener('change', syncCustom);
  syncCustom();

  const form = h(
    'form',
    {
      class: 'filter-bar',
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        const conditions = rows.map((r) => r()).filter((c): c is Condition => c !== undefined && c.attr !== '' && c.op !== '');
        const from = fromLocalInput(fromIn.value);
        const to = fromLocalInput(toIn.value);
        apply({ conditions, range: rangeSel.value, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) });
      },
    },
    rowsBox,
    h(
      'div',
      { class: 'filter-actions' },
      h('button', { type: 'button', class: 'secondary add-condition', onclick: () => addRow() }, '+ condition'),
      rangeSel,
      custom,
      h('button', { type: 'submit', class: 'apply' }, 'Apply'),
    ),
  );
  return form;
}
