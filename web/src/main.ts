// The console's shell: the header, the hash router and the page being shown. Each page is an
// async function that fills `main`; a newer navigation makes an older page's late answer void.

import { ApiError, logout, session, SESSION_KEY, setUnauthorizedHandler } from './api.js';
import { h, link, replace } from './dom.js';
import { adminProjectsPage, adminUsersPage, attributesPage, tokensPage } from './pages/admin.js';
import { crashPage } from './pages/crash.js';
import { groupPage } from './pages/group.js';
import { groupsPage } from './pages/groups.js';
import { adminIntegrationsPage, deliveryPage, integrationLogPage, projectIntegrationsPage } from './pages/integrations.js';
import { loginPage } from './pages/login.js';
import { projectsPage } from './pages/projects.js';
import { currentRoute, go, type Route } from './route.js';

export interface PageContext {
  route: Route;
  main: HTMLElement;
  /** False once the user has moved on: a page stops rendering then. */
  live(): boolean;
  /** Re-renders the current route (after a change the page made). */
  refresh(): void;
}

type Page = (ctx: PageContext, ...args: string[]) => Promise<void>;

function pick(route: Route): { name: string; page: Page; args: string[] } {
  const [a, b, c, d, e, f, g] = route.path;
  if (a === 'login') return { name: 'login', page: loginPage, args: [] };
  if (a === 'p' && b !== undefined && c === undefined) return { name: 'groups', page: groupsPage, args: [b] };
  if (a === 'p' && b !== undefined && c === 'g' && d !== undefined) return { name: 'group', page: groupPage, args: [b, d] };
  if (a === 'p' && b !== undefined && c === 'o' && d !== undefined) return { name: 'crash', page: crashPage, args: [b, d] };
  if (a === 'admin' && b === undefined) return { name: 'admin-projects', page: adminProjectsPage, args: [] };
  if (a === 'admin' && b === 'users') return { name: 'admin-users', page: adminUsersPage, args: [] };
  if (a === 'admin' && b === 'integrations') return { name: 'admin-integrations', page: adminIntegrationsPage, args: [] };
  if (a === 'admin' && b === 'p' && c !== undefined && d === 'tokens') return { name: 'admin-tokens', page: tokensPage, args: [c] };
  if (a === 'admin' && b === 'p' && c !== undefined && d === 'attributes') return { name: 'admin-attributes', page: attributesPage, args: [c] };
  if (a === 'admin' && b === 'p' && c !== undefined && d === 'integrations') {
    if (e === undefined) return { name: 'admin-project-integrations', page: projectIntegrationsPage, args: [c] };
    if (f === undefined) return { name: 'admin-integration-log', page: integrationLogPage, args: [c, e] };
    if (f === 'deliveries' && g !== undefined) return { name: 'admin-delivery', page: deliveryPage, args: [c, e, g] };
  }
  return { name: 'projects', page: projectsPage, args: [] };
}

const app = document.getElementById('app')!;
let generation = 0;

function header(): HTMLElement {
  const s = session();
  return h(
    'header',
    { class: 'top' },
    link('#/', h('img', { src: '/console/icon.svg', alt: '', width: 22, height: 22 }), h('span', { class: 'brand' }, 'coresnap')),
    s
      ? h(
          'nav',
          null,
          link('#/', 'Projects'),
          s.user.superuser ? link('#/admin', 'Configuration') : null,
          h('span', { class: 'who', title: `universe ${s.universe.name}` }, `${s.user.username} @ ${s.universe.name}`),
          h('button', { type: 'button', class: 'secondary logout', onclick: () => void logout().then(() => go(['login'])) }, 'Log out'),
        )
      : null,
  );
}

async function render(): Promise<void> {
  const mine = ++generation;
  const route = currentRoute();
  if (!session() && route.path[0] !== 'login') {
    go(['login'], { next: location.hash.replace(/^#/, '') || undefined });
    return;
  }
  const { name, page, args } = pick(route);
  const main = h('main', { class: `page page-${name}` });
  replace(app, header(), main);
  document.body.dataset.page = name;
  delete document.body.dataset.ready;
  const started = performance.now();
  const ctx: PageContext = { route, main, live: () => mine === generation, refresh: () => void render() };
  main.append(h('p', { class: 'loading' }, 'Loading…'));
  try {
    await page(ctx, ...args);
  } catch (err) {
    if (mine !== generation) return;
    const message = err instanceof ApiError || err instanceof Error ? err.message : String(err);
    main.querySelector('.loading')?.remove();
    main.append(h('div', { class: 'error', role: 'alert' }, message));
  }
  if (mine !== generation) return;
  main.querySelector(':scope > .loading')?.remove();
  // Tests and the benchmark wait for this, and read how long the page took.
  document.body.dataset.renderMs = (performance.now() - started).toFixed(1);
  document.body.dataset.ready = String(mine);
}

setUnauthorizedHandler(() => {
  if (currentRoute().path[0] !== 'login') go(['login']);
});
window.addEventListener('hashchange', () => void render());
// Another tab logged in or out: show this one as the user now is.
window.addEventListener('storage', (ev) => {
  if (ev.key === SESSION_KEY || ev.key === null) void render();
});
void render();
