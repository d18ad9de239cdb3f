// A project's crash groups (fingerprints): a chart of the filtered crashes over time and the
// distributions of the chosen attributes, then one row per group (count, first and last seen, a
// histogram on the same time axis, top frames, top values, state), sortable, one page at a time.
// Two queries per view, both grouped/ordered/paged by the query API, so the 40,000th page costs
// what the first does.

import { query, type FoldResponse } from '../api.js';
import { distributionBars, timeHistogram, type Bin } from '../charts.js';
import { h, link } from '../dom.js';
import { callstackFrames, formatAgo, formatCount, formatTime, formatValue, shortFingerprint } from '../format.js';
import { apiFilter, filterBar, filterParams, parseFilterState, timeWindow, type FilterState } from '../filters.js';
import type { PageContext } from '../main.js';
import { attrChooser, chosenAttrs, columnsOf, intParam, pager, projectHeader } from '../project.js';
import { go, href, type Params } from '../route.js';

export const SORTS: Record<string, { label: string; order: string }> = {
  count: { label: 'Crashes', order: ';count' },
  last: { label: 'Last seen', order: 'timestamp;0' },
  first: { label: 'First seen', order: 'first_seen;0' },
  group: { label: 'Fingerprint', order: ';group' },
};

export const OVERVIEW_BINS = 48;

const plural = (n: number, one: string, many: string) => `${formatCount(n)} ${n === 1 ? one : many}`;
export const ROW_BINS = 24;

type Distribution = Array<{ keys?: number; tail?: number; vals?: Array<[unknown, number]> }>;

/** The list and the overview chart read the same state from the URL. */
export interface GroupsView {
  state: FilterState;
  sort: string;
  dir: 'asc' | 'desc';
  page: number;
  size: number;
  attrs: string[];
}

export function viewParams(v: GroupsView): Params {
  return {
    ...filterParams(v.state),
    sort: v.sort === 'count' ? undefined : v.sort,
    dir: v.dir === 'desc' ? undefined : v.dir,
    size: v.size === 25 ? undefined : v.size,
    attrs: v.attrs.join(',') === 'hostname,application' ? undefined : v.attrs.join(','),
  };
}

/** The overview query: range and bins of the timestamps, and each chosen attribute's distribution. */
export function overviewQuery(state: FilterState, attrs: string[]): Record<string, unknown> {
  const w = timeWindow(state);
  const bin = w?.from !== undefined && w.to !== undefined ? ['bin', OVERVIEW_BINS, w.from, w.to] : ['bin', OVERVIEW_BINS];
  const fold: Record<string, unknown[]> = { timestamp: [['range'], bin] };
  for (const a of attrs) fold[a] = [['distribution', 10]];
  return { filter: apiFilter(state), fold };
}

export function groupsQuery(state: FilterState, attrs: string[], lo: number, hi: number, sort: string, dir: 'asc' | 'desc', page: number, size: number): Record<string, unknown> {
  const fold: Record<string, unknown[]> = {
    timestamp: [['range'], ['bin', ROW_BINS, lo, hi]],
    first_seen: [['min']],
    callstack: [['head']],
    state: [['head']],
  };
  for (const a of attrs) fold[a] = [['distribution', 3]];
  return {
    filter: apiFilter(state),
    group: ['fingerprint'],
    fold,
    order: [{ name: (SORTS[sort] ?? SORTS.count!).order, ordering: dir === 'asc' ? 'ascending' : 'descending' }],
    limit: size,
    offset: page * size,
  };
}

export async function groupsPage(ctx: PageContext, project: string): Promise<void> {
  const p = ctx.route.params;
  const columns = await columnsOf(project);
  if (!ctx.live()) return;
  const view: GroupsView = {
    state: parseFilterState(p),
    sort: SORTS[p.get('sort') ?? ''] ? p.get('sort')! : 'count',
    dir: p.get('dir') === 'asc' ? 'asc' : 'desc',
    page: intParam(p, 'page', 0, 0, 1e9),
    size: [25, 50, 100].includes(Number(p.get('size'))) ? Number(p.get('size')) : 25,
    attrs: chosenAttrs(p, columns),
  };
  const formats = new Map(columns.map((c) => [c.name, c.format]));
  const navigate = (v: GroupsView) => go(['p', project], viewParams(v));

  const overview = await query<FoldResponse>(project, overviewQuery(view.state, view.attrs));
  if (!ctx.live()) return;
  const ov = overview.response.values[0];
  const totalCrashes = overview.response.cardinalities.initial.rows;
  const range = (ov?.[1][0] as [number, number] | undefined) ?? undefined;
  const bins = (ov?.[1][1] as Bin[] | undefined) ?? [];
  const w = timeWindow(view.state);
  let lo = w?.from ?? range?.[0] ?? 0;
  let hi = w?.to ?? range?.[1] ?? 0;
  if (!(hi > lo)) hi = lo + 1;

  const groups = await query<FoldResponse>(project, groupsQuery(view.state, view.attrs, lo, hi, view.sort, view.dir, view.page, view.size));
  if (!ctx.live()) return;
  const totalGroups = groups.response.cardinalities.initial.groups;

  const sortHeader = (key: string, cls = '') => {
    const activeSort = view.sort === key;
    const nextDir = activeSort ? (view.dir === 'desc' ? 'asc' : 'desc') : key === 'group' ? 'asc' : 'desc';
    const arrow = activeSort ? (view.dir === 'desc' ? ' ▼' : ' ▲') : '';
    return h('th', { class: `sortable ${cls} ${activeSort ? 'sorted' : ''}`.trim(), 'data-sort': key }, link(href(['p', project], viewParams({ ...view, sort: key, dir: nextDir, page: 0 })), SORTS[key]!.label + arrow));
  };

  const rows = groups.response.values.map(([fp, folds, count]) => {
    const trange = folds[0] as [number, number] | undefined;
    const rowBins = folds[1] as Bin[] | undefined;
    const firstSeen = (folds[2] as [number] | undefined)?.[0];
    const frames = callstackFrames((folds[3] as [string] | undefined)?.[0]);
    const state = String((folds[4] as [string] | undefined)?.[0] ?? 'open');
    const dists = view.attrs.map((_, i) => (folds[5 + i] as Distribution | undefined)?.[0]);
    return h(
      'tr',
      { 'data-fingerprint': fp, class: `state-${state}` },
      h(
        'td',
        { class: 'group' },
        link(
          href(['p', project, 'g', fp], viewParams({ ...view, page: 0 })),
          h('span', { class: 'frames' }, frames.length ? frames.slice(0, 3).join(' ← ') : '(no frames)'),
        ),
        h('div', { class: 'fp mono muted', title: fp }, shortFingerprint(fp)),
      ),
      h('td', null, h('span', { class: `state-badge ${state}` }, state)),
      h('td', { class: 'num count' }, formatCount(count)),
      h('td', { title: formatTime(firstSeen) }, formatAgo(firstSeen)),
      h('td', { title: formatTime(trange?.[1]) }, formatAgo(trange?.[1])),
      h('td', { class: 'activity' }, rowBins ? timeHistogram(rowBins, { width: 150, height: 26, axis: false, className: 'row-histogram' }) : null),
      dists.map((d, i) =>
        h(
          'td',
          { class: 'top-values', 'data-attr': view.attrs[i] },
          (d?.vals ?? []).map(([v, n]) => h('div', null, h('span', { class: 'value' }, formatValue(v, formats.get(view.attrs[i]!))), h('span', { class: 'muted' }, ` ${formatCount(n)}`))),
          d && (d.keys ?? 0) > (d.vals?.length ?? 0) ? h('div', { class: 'muted' }, `+${formatCount((d.keys ?? 0) - (d.vals?.length ?? 0))} more`) : null,
        ),
      ),
    );
  });

  const pathBase = ['p', project];
  ctx.main.append(
    projectHeader(project, 'groups'),
    filterBar(columns, view.state, (state) => navigate({ ...view, state, page: 0 })),
    h(
      'section',
      { class: 'overview' },
      h(
        'div',
        { class: 'overview-chart' },
        h('h2', null, `${plural(totalCrashes, 'crash', 'crashes')} in ${plural(totalGroups, 'group', 'groups')}`, h('span', { class: 'muted latency' }, ` · ${overview._.latency} + ${groups._.latency}`)),
        bins.length ? timeHistogram(bins, { width: 640, height: 120, className: 'overview-histogram' }) : h('p', { class: 'muted' }, 'No crashes match.'),
      ),
      h(
        'div',
        { class: 'distributions' },
        view.attrs.map((a, i) => {
          const d = (ov?.[1][2 + i] as Distribution | undefined)?.[0];
          return distributionBars(a, d?.vals ?? [], totalCrashes, { format: formats.get(a) ?? 'none' });
        }),
      ),
    ),
    h(
      'div',
      { class: 'list-tools' },
      attrChooser(columns, view.attrs, (attrs) => navigate({ ...view, attrs, page: 0 })),
      h(
        'label',
        { class: 'page-size' },
        'per page ',
        (() => {
          const sel = h('select', { 'aria-label': 'groups per page' }, [25, 50, 100].map((n) => h('option', { value: n }, String(n))));
          sel.value = String(view.size);
          sel.addEventListener('change', () => navigate({ ...view, size: Number(sel.value), page: 0 }));
          return sel;
        })(),
      ),
    ),
    h(
      'table',
      { class: 'list groups', 'data-total-groups': totalGroups, 'data-total-crashes': totalCrashes, 'data-lo': lo, 'data-hi': hi },
      h(
        'thead',
        null,
        h('tr', null, sortHeader('group'), h('th', null, 'State'), sortHeader('count', 'num'), sortHeader('first'), sortHeader('last'), h('th', null, 'Activity'), view.attrs.map((a) => h('th', null, a))),
      ),
      h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: 6 + view.attrs.length, class: 'muted' }, 'No crash groups match.'))),
    ),
    pager(pathBase, viewParams(view), view.page, view.size, totalGroups, 'groups'),
  );
}
