// Configuration, as the vendor guide walks through it: projects (create), a project's tokens
// (create, copy with the clipboard icon, revoke), users (create), a project's attributes
// (declare name, type, format). Workflow integrations have their own module (integrations.ts),
// which shares this one's shell and clipboard button; both build their forms with actions.ts.

import { actionForm } from '../actions.js';
import { apiJson, session } from '../api.js';
import { h, link, type Child } from '../dom.js';
import { formatTime } from '../format.js';
import type { PageContext } from '../main.js';
import { formatDuration } from '../../../ts/config/units.js';
import { projectHeader } from '../project.js';
import { href } from '../route.js';

interface Token {
  id: string;
  name: string;
  project?: string;
  owner: number;
  capabilities: string[];
  created_at: number;
}
export interface Project {
  id: number;
  name: string;
  created_at: number;
  /** Seconds after receipt that crashes are kept; null: for ever. */
  retention_seconds: number | null;
  tokens?: Token[];
}

/** `90d`, `12h`, `off`: a retention as `coroner project retention` takes it. */
const retentionText = (seconds: number | null): string => (seconds === null ? 'off' : formatDuration(seconds));

/** A project's retention, changed in place: a duration (90d, 12h, 2w, 6M) or off. */
function retentionForm(ctx: PageContext, p: Project): HTMLFormElement {
  const input = h('input', {
    name: 'max_age',
    value: retentionText(p.retention_seconds),
    size: 6,
    'aria-label': `how long ${p.name} keeps its crashes`,
    title: 'Crashes received longer ago than this are deleted: 90d, 12h, 2w, 6M… or off to keep them all.',
  });
  return actionForm('retention', [input], 'Set', async () => {
    const text = input.value.trim();
    // The server reads `off` (and what else it takes) itself.
    await apiJson('PUT', `/api/admin/projects/${encodeURIComponent(p.name)}/retention`, {}, { max_age: text === '' ? null : text });
    ctx.refresh();
  });
}
interface User {
  uid: number;
  username: string;
  email: string;
  superuser: number;
  created_at: number;
}
interface Declaration {
  name: string;
  type: string;
  format: string;
  description: string;
}

export function adminShell(ctx: PageContext, active: string, ...content: Child[]): void {
  const item = (key: string, label: string, target: string) => h('li', null, h('a', { href: target, class: key === active ? 'active' : '' }, label));
  ctx.main.append(
    h(
      'div',
      { class: 'admin' },
      h('nav', { class: 'side' }, h('h3', null, 'Configuration'), h('ul', null, item('projects', 'Projects', '#/admin'), item('users', 'Users', '#/admin/users'), item('integrations', 'Workflow integrations', '#/admin/integrations'))),
      h('div', { class: 'admin-content' }, ...content),
    ),
  );
}

export function needSuperuser(ctx: PageContext): boolean {
  if (session()?.user.superuser) return true;
  ctx.main.append(h('div', { class: 'error', role: 'alert' }, 'Configuration needs a superuser; ask an administrator of this universe.'));
  return false;
}

/** Copies text to the clipboard; over plain http to another host (no Clipboard API) by selection. */
export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = h('textarea', { readonly: true, style: 'position:fixed;left:-9999px' });
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand('copy');
  area.remove();
}

const CLIPBOARD_ICON =
  '<svg width="16" height="16" viewBox="0 0 16 16" aria-hidden="true"><rect x="4" y="3" width="9" height="11" rx="1.5" fill="none" stroke="currentColor" stroke-width="1.4"/><path d="M6 3V2h5v1" fill="none" stroke="currentColor" stroke-width="1.4"/><path d="M2.5 12V1.5H10" fill="none" stroke="currentColor" stroke-width="1.2" opacity=".5"/></svg>';

export function clipboardButton(text: string, what = 'the token'): HTMLButtonElement {
  const title = `copy ${what} to the clipboard`;
  const button = h('button', { type: 'button', class: 'icon copy', title, 'aria-label': title });
  button.innerHTML = CLIPBOARD_ICON;
  button.addEventListener('click', async () => {
    try {
      await copyText(text);
      button.classList.add('copied');
      button.title = 'copied';
      setTimeout(() => {
        button.classList.remove('copied');
        button.title = title;
      }, 1500);
    } catch (err) {
      button.title = `could not copy: ${(err as Error).message}`;
    }
  });
  return button;
}

export async function adminProjectsPage(ctx: PageContext): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const { projects } = await apiJson<{ projects: Project[] }>('GET', '/api/admin/projects');
  if (!ctx.live()) return;
  const name = h('input', { name: 'name', placeholder: 'project name', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9_.-]*', 'aria-label': 'project name' });
  adminShell(
    ctx,
    'projects',
    h('h1', null, 'Projects'),
    actionForm('create-project', [name], 'Create a new project', async () => {
      await apiJson('POST', '/api/admin/projects', {}, { name: name.value.trim(), token: false });
      location.hash = href(['admin', 'p', name.value.trim(), 'tokens']);
    }),
    h(
      'table',
      { class: 'list admin-projects' },
      h('thead', null, h('tr', null, h('th', null, 'Project'), h('th', null, 'Created'), h('th', null, 'Keeps crashes for'), h('th', { class: 'num' }, 'Tokens'), h('th', null, ''))),
      h(
        'tbody',
        null,
        projects.map((p) =>
          h(
            'tr',
            { 'data-project': p.name },
            h('td', null, link(href(['p', p.name]), p.name)),
            h('td', null, formatTime(p.created_at)),
            h('td', null, retentionForm(ctx, p)),
            h('td', { class: 'num' }, String(p.tokens?.length ?? 0)),
            h(
              'td',
              null,
              link(href(['admin', 'p', p.name, 'tokens']), 'Tokens'),
              ' · ',
              link(href(['admin', 'p', p.name, 'attributes']), 'Attributes'),
              ' · ',
              link(href(['admin', 'p', p.name, 'integrations']), 'Integrations'),
            ),
          ),
        ),
      ),
    ),
  );
}

export async function tokensPage(ctx: PageContext, project: string): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const [{ tokens }, { users }] = await Promise.all([
    apiJson<{ tokens: Token[] }>('GET', '/api/admin/tokens', { project }),
    apiJson<{ users: User[] }>('GET', '/api/admin/users'),
  ]);
  if (!ctx.live()) return;
  const owners = new Map(users.map((u) => [u.uid, u.username]));
  const name = h('input', { name: 'name', placeholder: `token name (default: ${project})`, 'aria-label': 'token name' });
  ctx.main.append(projectHeader(project, 'tokens', 'tokens'));
  adminShell(
    ctx,
    'projects',
    h('h1', null, `Tokens of ${project}`),
    h('p', { class: 'muted' }, 'A submission token lets coresnapd, coroner put and the SDKs send crashes to this project. Put it in coroner.cf under [tokens] as ', h('code', null, `${project} = <token>`), '.'),
    actionForm('create-token', [name], 'Create a new token', async () => {
      await apiJson('POST', '/api/admin/tokens', {}, { project, ...(name.value.trim() ? { name: name.value.trim() } : {}) });
      ctx.refresh();
    }),
    tokens.length === 0
      ? h('p', { class: 'muted' }, 'This project has no live token: nothing can submit to it yet.')
      : h(
          'table',
          { class: 'list tokens' },
          h('thead', null, h('tr', null, h('th', null, ''), h('th', null, 'Token'), h('th', null, 'Name'), h('th', null, 'Owner'), h('th', null, 'Created'), h('th', null, ''))),
          h(
            'tbody',
            null,
            tokens.map((t) =>
              h(
                'tr',
                { 'data-token': t.id },
                h('td', null, clipboardButton(t.id)),
                h('td', { class: 'mono token-id' }, t.id),
                h('td', null, t.name),
                h('td', null, owners.get(t.owner) ?? String(t.owner)),
                h('td', null, formatTime(t.created_at)),
                h(
                  'td',
                  null,
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'danger revoke',
                      onclick: async () => {
                        if (!confirm(`Revoke token ${t.id.slice(0, 12)}…? Whatever submits with it is refused from now on.`)) return;
                        await apiJson('DELETE', `/api/admin/tokens/${encodeURIComponent(t.id)}`);
                        ctx.refresh();
                      },
                    },
                    'Revoke',
                  ),
                ),
              ),
            ),
          ),
        ),
  );
}

export async function adminUsersPage(ctx: PageContext): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const { users } = await apiJson<{ users: User[] }>('GET', '/api/admin/users');
  if (!ctx.live()) return;
  const username = h('input', { name: 'username', placeholder: 'username', required: true, autocomplete: 'off', 'aria-label': 'username' });
  const email = h('input', { name: 'email', type: 'email', placeholder: 'email (optional)', 'aria-label': 'email' });
  const password = h('input', { name: 'password', type: 'password', placeholder: 'password (8 or more characters)', required: true, minlength: 8, autocomplete: 'new-password', 'aria-label': 'password' });
  const superuser = h('input', { name: 'superuser', type: 'checkbox' });
  adminShell(
    ctx,
    'users',
    h('h1', null, 'Users'),
    actionForm('create-user', [username, email, password, h('label', { class: 'check' }, superuser, ' superuser')], 'Create a new user', async () => {
      await apiJson('POST', '/api/admin/users', {}, { username: username.value.trim(), email: email.value.trim(), password: password.value, superuser: superuser.checked });
      ctx.refresh();
    }),
    h(
      'table',
      { class: 'list users' },
      h('thead', null, h('tr', null, h('th', null, 'Username'), h('th', null, 'Email'), h('th', null, 'Role'), h('th', null, 'Created'))),
      h(
        'tbody',
        null,
        users.map((u) => h('tr', { 'data-user': u.username }, h('td', null, u.username), h('td', null, u.email || '—'), h('td', null, u.superuser ? 'superuser' : 'member'), h('td', null, formatTime(u.created_at)))),
      ),
    ),
  );
}

export async function attributesPage(ctx: PageContext, project: string): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const data = await apiJson<{ attributes: Declaration[]; types: string[]; formats: string[] }>('GET', '/api/web/attributes', { project });
  if (!ctx.live()) return;
  const name = h('input', { name: 'name', placeholder: 'name (as in BACKTRACE_DEFAULTS)', required: true, 'aria-label': 'attribute name' });
  const type = h('select', { name: 'type', 'aria-label': 'type' }, data.types.map((t) => h('option', { value: t }, t)));
  type.value = 'string';
  const format = h('select', { name: 'format', 'aria-label': 'format' }, data.formats.map((f) => h('option', { value: f }, f)));
  const description = h('input', { name: 'description', placeholder: 'description (optional)', 'aria-label': 'description' });
  ctx.main.append(projectHeader(project, 'attributes', 'attributes'));
  adminShell(
    ctx,
    'projects',
    h('h1', null, `Attributes of ${project}`),
    h('p', { class: 'muted' }, 'Declared attributes get a fixed type and format in queries, morgue and this console. Name them exactly as the key set in BACKTRACE_DEFAULTS.'),
    actionForm('create-attribute', [name, type, format, description], 'Create a new attribute', async () => {
      await apiJson('POST', '/api/web/attributes', { project }, { name: name.value.trim(), type: type.value, format: format.value, description: description.value });
      ctx.refresh();
    }),
    data.attributes.length === 0
      ? h('p', { class: 'muted' }, 'No attribute is declared yet; the built-in ones (hostname, application, uname.*...) need no declaration.')
      : h(
          'table',
          { class: 'list attributes' },
          h('thead', null, h('tr', null, h('th', null, 'Name'), h('th', null, 'Type'), h('th', null, 'Format'), h('th', null, 'Description'))),
          h('tbody', null, data.attributes.map((a) => h('tr', { 'data-attribute': a.name }, h('td', { class: 'mono' }, a.name), h('td', null, a.type), h('td', null, a.format), h('td', null, a.description || '—')))),
        ),
  );
}
