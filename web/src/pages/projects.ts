import { apiJson } from '../api.js';
import { sparkline, type Bin } from '../charts.js';
import { h, link } from '../dom.js';
import { formatAgo, formatCount, formatTime } from '../format.js';
import type { PageContext } from '../main.js';
import { href } from '../route.js';

interface Overview {
  days: number;
  projects: Array<{ id: number; name: string; crashes: number; last_crash: number | null; bins: Bin[] }>;
}

export async function projectsPage(ctx: PageContext): Promise<void> {
  const days = 30;
  const data = await apiJson<Overview>('GET', '/api/web/projects', { days });
  if (!ctx.live()) return;
  ctx.main.append(
    h('h1', null, 'Projects'),
    data.projects.length === 0
      ? h('p', { class: 'muted' }, 'There are no projects yet.')
      : h(
          'table',
          { class: 'list projects' },
          h('thead', null, h('tr', null, h('th', null, 'Project'), h('th', { class: 'num' }, 'Crashes'), h('th', null, 'Last crash'), h('th', null, `Last ${days} days`))),
          h(
            'tbody',
            null,
            data.projects.map((p) =>
              h(
                'tr',
                { 'data-project': p.name },
                h('td', null, link(href(['p', p.name]), p.name)),
                h('td', { class: 'num crashes' }, formatCount(p.crashes)),
                h('td', { title: formatTime(p.last_crash) }, formatAgo(p.last_crash)),
                h('td', null, sparkline(p.bins, { width: 160, height: 26, label: `${p.name}: crashes per day` })),
              ),
            ),
          ),
        ),
  );
}
