// One crash group: its state (open / resolved / ignored), counts, a histogram over time, its
// frames, the distributions of its classifiers and chosen attributes, and its crashes, newest
// first, one page at a time.

import { decodeSelect, query, type FoldResponse, type SelectResponse } from '../api.js';
import { distributionBars, timeHistogram, type Bin } from '../charts.js';
import { h, link } from '../dom.js';
import { callstackFrames, formatAgo, formatCount, formatTime, formatValue } from '../format.js';
import { apiFilter, parseFilterState } from '../filters.js';
import type { PageContext } from '../main.js';
import { chosenAttrs, columnsOf, intParam, pager, projectHeader } from '../project.js';
import { href } from '../route.js';
import { OVERVIEW_BINS, viewParams, type GroupsView } from './groups.js';

type Distribution = Array<{ keys?: number; vals?: Array<[unknown, number]> }>;
const STATES = ['open', 'resolved', 'ignored'] as const;
const PAGE = 25;

export async function groupPage(ctx: PageContext, project: string, fingerprint: string): Promise<void> {
  const p = ctx.route.params;
  const columns = await columnsOf(project);
  if (!ctx.live()) return;
  const state = parseFilterState(p);
  const attrs = chosenAttrs(p, columns);
  const page = intParam(p, 'page', 0, 0, 1e9);
  const formats = new Map(columns.map((c) => [c.name, c.format]));
  const filter = apiFilter(state, [{ attr: 'fingerprint', op: 'equal', value: fingerprint }]);
  const back: GroupsView = { state, sort: p.get('sort') ?? 'count', dir: p.get('dir') === 'asc' ? 'asc' : 'desc', page: 0, size: 25, attrs };

  const fold: Record<string, unknown[]> = {
    timestamp: [['range'], ['bin', OVERVIEW_BINS]],
    first_seen: [['min']],
    callstack: [['head']],
    state: [['head']],
    classifiers: [['distribution', 10]],
  };
  for (const a of attrs) if (a !== 'classifiers') fold[a] = [['distribution', 10]];
  const summary = await query<FoldResponse>(project, { filter, fold });
  if (!ctx.live()) return;
  const row = summary.response.values[0];
  if (!row) {
    ctx.main.append(projectHeader(project, 'groups', 'group'), h('p', { class: 'muted' }, `No crashes of group ${fingerprint} match this filter.`));
    return;
  }
  const [, folds, count] = row;
  const range = folds[0] as [number, number];
  const bins = folds[1] as Bin[];
  const firstSeen = (folds[2] as [number] | undefined)?.[0];
  const frames = callstackFrames((folds[3] as [string] | undefined)?.[0]);
  const groupState = String((folds[4] as [string] | undefined)?.[0] ?? 'open');
  const distAttrs = ['classifiers', ...attrs.filter((a) => a !== 'classifiers')];

  const listColumns = ['timestamp', 'hostname', 'application', 'classifiers', ...attrs].filter((c, i, all) => all.indexOf(c) === i && formats.has(c));
  const list = await query<SelectResponse>(project, { filter, select: listColumns, order: [{ name: 'timestamp', ordering: 'descending' }], limit: PAGE, offset: page * PAGE });
  if (!ctx.live()) return;
  const crashes = decodeSelect(list.response);
  const total = list.response.cardinalities.initial.rows;

  const setState = async (s: string) => {
    await query(project, { filter: [{ fingerprint: [['equal', fingerprint]] }], set: { state: s } });
    ctx.refresh();
  };

  ctx.main.append(
    projectHeader(project, 'groups', 'group'),
    h('p', null, link(href(['p', project], viewParams(back)), '← all groups')),
    h(
      'section',
      { class: 'group-summary card', 'data-fingerprint': fingerprint },
      h('h2', { class: 'frames' }, frames.length ? frames.slice(0, 4).join(' ← ') : '(no frames)'),
      h('div', { class: 'mono muted fp' }, fingerprint),
      h(
        'div',
        { class: 'state-switch', role: 'group', 'aria-label': 'group state' },
        'State: ',
        STATES.map((s) => h('button', { type: 'button', class: `state ${s} ${s === groupState ? 'active' : 'secondary'}`, 'data-state': s, 'aria-pressed': String(s === groupState), onclick: () => void setState(s) }, s)),
      ),
      h(
        'dl',
        { class: 'facts' },
        h('dt', null, 'Crashes'), h('dd', { class: 'count' }, formatCount(count)),
        h('dt', null, 'First seen'), h('dd', null, `${formatTime(firstSeen)} (${formatAgo(firstSeen)})`),
        h('dt', null, 'Last seen'), h('dd', null, `${formatTime(range?.[1])} (${formatAgo(range?.[1])})`),
      ),
      timeHistogram(bins, { width: 640, height: 110, className: 'group-histogram' }),
      h('details', { open: true }, h('summary', null, 'Frames of the faulting thread'), h('ol', { class: 'callstack mono', start: 0 }, frames.map((f) => h('li', null, f)))),
      h(
        'div',
        { class: 'distributions' },
        distAttrs.map((a) => {
          const d = (folds[5 + distAttrs.indexOf(a)] as Distribution | undefined)?.[0];
          return distributionBars(a, d?.vals ?? [], count, { format: formats.get(a) ?? 'none' });
        }),
      ),
    ),
    h('h2', null, `Crashes (${formatCount(total)})`),
    h(
      'table',
      { class: 'list crashes' },
      h('thead', null, h('tr', null, h('th', null, 'Object'), listColumns.map((c) => h('th', null, c)))),
      h(
        'tbody',
        null,
        crashes.map((c) =>
          h(
            'tr',
            { 'data-object': c.id.toString(16) },
            h('td', { class: 'mono' }, link(href(['p', project, 'o', c.id.toString(16)]), c.id.toString(16))),
            listColumns.map((col) => h('td', null, formatValue(c.values[col], formats.get(col)))),
          ),
        ),
      ),
    ),
    pager(['p', project, 'g', fingerprint], viewParams(back), page, PAGE, total, 'crashes'),
  );
}
