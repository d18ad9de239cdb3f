// What the project pages share: the project's columns (cached per page load of a project), its
// tabs, the chosen attribute columns, and paging links.

import { describe, session, type ColumnDescription } from './api.js';
import { h, link } from './dom.js';
import { formatCount } from './format.js';
import { href, type Params } from './route.js';

const describeCache = new Map<string, { at: number; columns: Promise<ColumnDescription[]> }>();

/** The project's columns (describe), reused for 30 s so paging does not ask again. */
export function columnsOf(project: string): Promise<ColumnDescription[]> {
  const hit = describeCache.get(project);
  if (hit && Date.now() - hit.at < 30_000) return hit.columns;
  const columns = describe(project);
  describeCache.set(project, { at: Date.now(), columns });
  columns.catch(() => describeCache.delete(project));
  return columns;
}

export const DEFAULT_ATTRS = ['hostname', 'application'];
/** Columns that make no sense as "top values" of a group. */
const NOT_CHOOSABLE = new Set(['timestamp', 'received', '_tx', 'fingerprint', 'callstack', 'uuid', 'first_seen', 'state']);

export function choosableColumns(columns: ColumnDescription[]): ColumnDescription[] {
  return columns.filter((c) => !NOT_CHOOSABLE.has(c.name) && c.aggregate.includes('distribution')).sort((a, b) => a.name.localeCompare(b.name));
}

export function chosenAttrs(params: URLSearchParams, columns: ColumnDescription[]): string[] {
  const names = new Set(choosableColumns(columns).map((c) => c.name));
  const raw = params.get('attrs');
  const wanted = raw === null ? DEFAULT_ATTRS : raw.split(',').filter((x) => x.length > 0);
  return wanted.filter((a) => names.has(a)).slice(0, 6);
}

export function projectHeader(project: string, active: 'groups' | 'tokens' | 'attributes' | 'integrations', title?: string): HTMLElement {
  const su = Boolean(session()?.user.superuser);
  const tab = (name: typeof active, label: string, target: string) => link(target, label) as HTMLAnchorElement;
  const tabs = [tab('groups', 'Crash groups', href(['p', project]))];
  if (su)
    tabs.push(
      tab('tokens', 'Tokens', href(['admin', 'p', project, 'tokens'])),
      tab('attributes', 'Attributes', href(['admin', 'p', project, 'attributes'])),
      tab('integrations', 'Integrations', href(['admin', 'p', project, 'integrations'])),
    );
  const names: Array<typeof active> = su ? ['groups', 'tokens', 'attributes', 'integrations'] : ['groups'];
  tabs.forEach((t, i) => {
    if (names[i] === active) t.className = 'active';
  });
  return h('div', { class: 'project-header' }, h('h1', null, link(href(['p', project]), project), title ? h('span', { class: 'subtitle' }, ` / ${title}`) : null), h('nav', { class: 'tabs' }, tabs));
}

/** "1–25 of 2,000" and first/previous/next/last links to the same route with another page. */
export function pager(path: Array<string>, params: Params, page: number, size: number, total: number, noun: string): HTMLElement {
  const pages = Math.max(1, Math.ceil(total / size));
  const at = (p: number) => href(path, { ...params, page: p > 0 ? p : undefined });
  const button = (label: string, p: number, cls: string, enabled: boolean) =>
    enabled ? h('a', { class: `button secondary ${cls}`, href: at(p) }, label) : h('span', { class: `button disabled ${cls}` }, label);
  const first = total === 0 ? 0 : page * size + 1;
  const last = Math.min(total, (page + 1) * size);
  return h(
    'div',
    { class: 'pager', 'data-page': page, 'data-pages': pages, 'data-total': total },
    button('« first', 0, 'first', page > 0),
    button('‹ previous', page - 1, 'prev', page > 0),
    h('span', { class: 'range' }, `${noun} ${formatCount(first)}–${formatCount(last)} of ${formatCount(total)} · page ${formatCount(page + 1)} of ${formatCount(pages)}`),
    button('next ›', page + 1, 'next', page + 1 < pages),
    button('last »', pages - 1, 'last', page + 1 < pages),
  );
}

export function intParam(params: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const n = Number(params.get(name) ?? '');
  return params.get(name) !== null && Number.isInteger(n) && n >= min && n <= max ? n : fallback;
}

/** The attribute columns chooser: chips with × and a select to add one. */
export function attrChooser(columns: ColumnDescription[], chosen: string[], change: (attrs: string[]) => void): HTMLElement {
  const available = choosableColumns(columns).filter((c) => !chosen.includes(c.name));
  const add = h('select', { class: 'add-attr', 'aria-label': 'add an attribute column' }, h('option', { value: '' }, '+ attribute column'), available.map((c) => h('option', { value: c.name }, c.name)));
  add.addEventListener('change', () => {
    if (add.value) change([...chosen, add.value]);
  });
  return h(
    'div',
    { class: 'attr-chooser' },
    h('span', { class: 'muted' }, 'Top values of: '),
    chosen.map((a) => h('span', { class: 'chip' }, a, h('button', { type: 'button', class: 'icon', title: `remove ${a}`, onclick: () => change(chosen.filter((x) => x !== a)) }, '×'))),
    available.length ? add : null,
  );
}
