// Workflow integrations (docs/workflows.md), per project under Configuration: the projects and
// how many integrations each has; a project's integrations (add one, its secret shown once; send
// a test; remove); one integration's delivery log, newest first, paged with `before`, refreshed
// in place while something is pending; one delivery's body and attempt log, and its retry.

import { actionButton, actionForm } from '../actions.js';
import { apiJson } from '../api.js';
import { h, link, replace, type Child } from '../dom.js';
import { formatAgo, formatTime, shortFingerprint } from '../format.js';
import type { PageContext } from '../main.js';
import { projectHeader } from '../project.js';
import { href } from '../route.js';
import type { DeliveryJson, IntegrationJson } from '../../../ts/workflows/wire.js';
import { adminShell, clipboardButton, needSuperuser, type Project } from './admin.js';

type Integration = IntegrationJson;
type Delivery = DeliveryJson;

const base = (project: string) => `/api/admin/projects/${encodeURIComponent(project)}/integrations`;
const LOG_PAGE = 50;
/** How often a log with pending deliveries asks again. */
const PENDING_POLL_MS = 1500;

/**
 * The secret of the integration just added, kept only in memory until the page that shows it
 * once has rendered: it is never put in the URL or in storage.
 */
let justAdded: { project: string; integration: Integration; secret: string } | undefined;

function statusBadge(d: Delivery): HTMLElement {
  return h('span', { class: `delivery-status ${d.status}` }, d.status);
}

function countsOf(c: Integration['deliveries']): Child {
  if (!c) return '—';
  return h(
    'span',
    { class: 'delivery-counts' },
    h('span', { class: 'delivered', title: 'delivered' }, `${c.delivered} delivered`),
    c.pending ? [' · ', h('span', { class: 'pending', title: 'pending' }, `${c.pending} pending`)] : null,
    c.failed ? [' · ', h('span', { class: 'failed', title: 'failed' }, `${c.failed} failed`)] : null,
  );
}

function triggerList(triggers: string[]): HTMLElement {
  return h(
    'span',
    { class: 'triggers' },
    triggers.map((t) => h('span', { class: 'chip trigger', 'data-trigger': t }, t)),
  );
}

/** Why the console shows nothing when the server runs without workflows (503) or refuses. */
async function listOf(project: string): Promise<Integration[] | Error> {
  try {
    return (await apiJson<{ integrations: Integration[] }>('GET', base(project))).integrations;
  } catch (err) {
    return err as Error;
  }
}

/** `#/admin/integrations`: every project and its integrations at a glance. */
export async function adminIntegrationsPage(ctx: PageContext): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const { projects } = await apiJson<{ projects: Project[] }>('GET', '/api/admin/projects');
  const lists = await Promise.all(projects.map((p) => listOf(p.name)));
  if (!ctx.live()) return;
  const refused = lists.find((l): l is Error => l instanceof Error);
  adminShell(
    ctx,
    'integrations',
    h('h1', null, 'Workflow integrations'),
    h(
      'p',
      { class: 'muted' },
      'An integration tells a webhook, a Slack channel or Jira when a crash group is new, passes a threshold or comes back after it was resolved. Each project has its own; pick one to add, test or remove them and to read their delivery logs.',
    ),
    refused ? h('div', { class: 'error', role: 'alert' }, refused.message) : null,
    h(
      'table',
      { class: 'list integration-projects' },
      h('thead', null, h('tr', null, h('th', null, 'Project'), h('th', { class: 'num' }, 'Integrations'), h('th', null, 'Triggers'), h('th', null, 'Deliveries'))),
      h(
        'tbody',
        null,
        projects.map((p, k) => {
          const list = lists[k];
          const ok = Array.isArray(list) ? list : [];
          const totals = ok.reduce((a, i) => ({ pending: a.pending + (i.deliveries?.pending ?? 0), delivered: a.delivered + (i.deliveries?.delivered ?? 0), failed: a.failed + (i.deliveries?.failed ?? 0) }), {
            pending: 0,
            delivered: 0,
            failed: 0,
          });
          return h(
            'tr',
            { 'data-project': p.name },
            h('td', null, link(href(['admin', 'p', p.name, 'integrations']), p.name)),
            h('td', { class: 'num count' }, String(ok.length)),
            h('td', null, triggerList([...new Set(ok.flatMap((i) => i.triggers))])),
            h('td', null, ok.length ? countsOf(totals) : '—'),
          );
        }),
      ),
    ),
  );
}

/** The add form: type, URL, secret, triggers, and the Jira fields when the type is jira. */
function addForm(ctx: PageContext, project: string): HTMLFormElement {
  const type = h('select', { name: 'type', 'aria-label': 'type' }, ['webhook', 'slack', 'jira'].map((t) => h('option', { value: t }, t)));
  const url = h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://receiver.example.com/hook', 'aria-label': 'URL', class: 'url' });
  const secret = h('input', { name: 'secret', placeholder: 'signing secret (default: a new random one)', autocomplete: 'off', 'aria-label': 'signing secret' });
  const newGroup = h('input', { type: 'checkbox', name: 'trigger-new-group', checked: true });
  const regression = h('input', { type: 'checkbox', name: 'trigger-regression' });
  const threshold = h('input', { type: 'checkbox', name: 'trigger-threshold' });
  const count = h('input', { name: 'threshold-count', type: 'number', min: 1, value: '100', 'aria-label': 'threshold: crashes', class: 'short' });
  const window = h('input', { name: 'threshold-window', value: '10m', pattern: '[0-9]{1,9}[smhdw]', 'aria-label': 'threshold: window (30s, 10m, 1h, 1d, 1w)', class: 'short' });
  const jiraKey = h('input', { name: 'jira-project', placeholder: 'Jira project key', 'aria-label': 'Jira project key' });
  const jiraType = h('input', { name: 'jira-issue-type', placeholder: 'issue type (default: Bug)', 'aria-label': 'Jira issue type' });
  const jiraUser = h('input', { name: 'jira-user', placeholder: 'Jira user', autocomplete: 'off', 'aria-label': 'Jira user' });
  const jiraToken = h('input', { name: 'jira-token', type: 'password', placeholder: 'Jira API token', autocomplete: 'new-password', 'aria-label': 'Jira API token' });
  const jiraFields = h('div', { class: 'jira-fields', hidden: true }, jiraKey, jiraType, jiraUser, jiraToken);
  const jiraInputs = [jiraKey, jiraUser, jiraToken];
  const onType = () => {
    const jira = type.value === 'jira';
    jiraFields.hidden = !jira;
    for (const input of jiraInputs) input.required = jira;
    url.placeholder = jira ? 'https://yourcompany.atlassian.net' : type.value === 'slack' ? 'https://hooks.slack.com/services/…' : 'https://receiver.example.com/hook';
  };
  type.addEventListener('change', onType);
  const form = actionForm(
    'add-integration',
    [
      h('div', { class: 'row' }, type, url, secret),
      h(
        'div',
        { class: 'row triggers' },
        h('span', { class: 'muted' }, 'Triggers:'),
        h('label', { class: 'check' }, newGroup, ' new group'),
        h('label', { class: 'check' }, regression, ' regression'),
        h('label', { class: 'check' }, threshold, ' threshold:'),
        count,
        h('span', { class: 'muted' }, 'crashes within'),
        window,
      ),
      jiraFields,
    ],
    'Add the integration',
    async () => {
      const triggers: string[] = [];
      if (newGroup.checked) triggers.push('new-group');
      if (threshold.checked) triggers.push(`threshold:${count.value.trim()}/${window.value.trim()}`);
      if (regression.checked) triggers.push('regression');
      if (triggers.length === 0) throw new Error('Pick at least one trigger.');
      const body: Record<string, unknown> = { type: type.value, url: url.value.trim(), triggers };
      if (secret.value) body.secret = secret.value;
      if (type.value === 'jira') {
        body.jira = { project_key: jiraKey.value.trim(), user: jiraUser.value.trim(), token: jiraToken.value, ...(jiraType.value.trim() ? { issue_type: jiraType.value.trim() } : {}) };
      }
      const added = await apiJson<{ integration: Integration; secret: string }>('POST', base(project), {}, body);
      justAdded = { project, integration: added.integration, secret: added.secret };
      ctx.refresh();
    },
  );
  form.classList.add('card');
  return form;
}

/** The card that shows a new integration's secret, this once. */
function secretCard(added: { integration: Integration; secret: string }): HTMLElement {
  return h(
    'div',
    { class: 'card new-secret', role: 'status', 'data-integration': added.integration.id },
    h('p', null, `Integration ${added.integration.id} is added. Its signing secret is shown only now: receivers check `, h('code', null, 'X-Coresnap-Signature'), ' (sha256=HMAC-SHA256 of the body) with it.'),
    h('p', null, clipboardButton(added.secret, 'the secret'), ' ', h('code', { class: 'secret' }, added.secret)),
  );
}

async function sendTest(project: string, id: number): Promise<Delivery> {
  return (await apiJson<{ delivery: Delivery }>('POST', `${base(project)}/${id}/test`)).delivery;
}

async function removeIntegration(project: string, i: Integration): Promise<boolean> {
  if (!confirm(`Remove integration ${i.id} (${i.type} ${i.url})? Its queue and its delivery log go with it.`)) return false;
  await apiJson('DELETE', `${base(project)}/${i.id}`);
  return true;
}

/** `#/admin/p/<project>/integrations`: the project's integrations, and the form to add one. */
export async function projectIntegrationsPage(ctx: PageContext, project: string): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const { integrations } = await apiJson<{ integrations: Integration[] }>('GET', base(project));
  if (!ctx.live()) return;
  const added = justAdded?.project === project ? justAdded : undefined;
  justAdded = undefined;
  ctx.main.append(projectHeader(project, 'integrations', 'integrations'));
  adminShell(
    ctx,
    'integrations',
    h('h1', null, `Workflow integrations of ${project}`),
    added ? secretCard(added) : null,
    addForm(ctx, project),
    integrations.length === 0
      ? h('p', { class: 'muted empty' }, 'This project has no integration yet: nobody is told about its crashes.')
      : h(
          'table',
          { class: 'list integrations' },
          h('thead', null, h('tr', null, h('th', null, '#'), h('th', null, 'Type'), h('th', null, 'Sends to'), h('th', null, 'Triggers'), h('th', null, 'Deliveries'), h('th', null, 'Added'), h('th', null, ''))),
          h(
            'tbody',
            null,
            integrations.map((i) => {
              const logHref = href(['admin', 'p', project, 'integrations', i.id]);
              return h(
                'tr',
                { 'data-integration': i.id, 'data-type': i.type },
                h('td', null, link(logHref, String(i.id))),
                h('td', null, i.type, i.jira ? h('div', { class: 'muted' }, `${i.jira.project_key} · ${i.jira.issue_type} · ${i.jira.user}`) : null),
                h('td', { class: 'mono url' }, i.url),
                h('td', null, triggerList(i.triggers)),
                h('td', { class: 'counts' }, countsOf(i.deliveries)),
                h('td', null, formatTime(i.created_at)),
                h(
                  'td',
                  { class: 'actions' },
                  link(logHref, 'Delivery log'),
                  ' ',
                  actionButton('Send a test', 'secondary send-test', async () => {
                    await sendTest(project, i.id);
                    location.hash = logHref;
                  }),
                  ' ',
                  actionButton('Remove', 'danger remove', async () => {
                    if (await removeIntegration(project, i)) ctx.refresh();
                  }),
                ),
              );
            }),
          ),
        ),
  );
}

/** The group a delivery is about, linked; a test message names no real group. */
function groupOf(project: string, d: Delivery, show: (fp: string) => string): Child {
  if (d.event === 'test') return h('span', { class: 'muted' }, 'none (a test)');
  return d.fingerprint ? link(href(['p', project, 'g', d.fingerprint]), show(d.fingerprint)) : '—';
}

function deliveryRow(project: string, integration: number, d: Delivery, retry: (d: Delivery) => Promise<void>): HTMLElement {
  const open = href(['admin', 'p', project, 'integrations', integration, 'deliveries', d.id]);
  const when = d.status === 'delivered' ? d.delivered_at : (d.last_attempt_at ?? d.created_at);
  return h(
    'tr',
    { 'data-delivery': d.id, 'data-status': d.status, 'data-event': d.event, class: `status-${d.status}` },
    h('td', null, link(open, String(d.id))),
    h('td', { class: 'event' }, d.event),
    h('td', { class: 'mono group' }, groupOf(project, d, shortFingerprint)),
    h('td', null, statusBadge(d), d.status === 'pending' && d.next_attempt_at ? h('div', { class: 'muted' }, `next try ${formatTime(d.next_attempt_at)}`) : null),
    h('td', { class: 'num attempts' }, String(d.attempts)),
    h('td', { class: d.last_error ? 'last-answer last-error' : 'last-answer' }, d.last_error ?? (d.last_status !== undefined ? `HTTP ${d.last_status}` : '—')),
    h('td', { title: formatTime(when) }, formatTime(when), h('div', { class: 'muted' }, formatAgo(when))),
    h('td', null, d.status === 'delivered' ? null : actionButton('Retry now', 'secondary retry', () => retry(d))),
  );
}

/** `#/admin/p/<project>/integrations/<id>[?before=<delivery>]`: one integration and its log. */
export async function integrationLogPage(ctx: PageContext, project: string, idText: string): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const id = Number(idText);
  const before = ctx.route.params.get('before') ?? undefined;
  const url = `${base(project)}/${encodeURIComponent(idText)}`;
  const { integration } = await apiJson<{ integration: Integration }>('GET', url);
  if (!ctx.live()) return;

  const summary = h('dl', { class: 'facts' });
  const log = h('div', { class: 'delivery-log' });
  const fillSummary = (i: Integration) =>
    replace(
      summary,
      h('dt', null, 'Type'),
      h('dd', null, i.type, i.jira ? ` (Jira project ${i.jira.project_key}, ${i.jira.issue_type}, as ${i.jira.user})` : null),
      h('dt', null, 'Sends to'),
      h('dd', { class: 'mono' }, i.url),
      h('dt', null, 'Triggers'),
      h('dd', null, triggerList(i.triggers)),
      h('dt', null, 'Deliveries'),
      h('dd', { class: 'counts' }, countsOf(i.deliveries)),
      h('dt', null, 'Added'),
      h('dd', null, formatTime(i.created_at)),
    );
  fillSummary(integration);

  let timer: ReturnType<typeof setTimeout> | undefined;
  let loads = 0;
  // Reloads the summary and this page of the log in place; again soon while anything is pending.
  const load = async (): Promise<void> => {
    clearTimeout(timer);
    const [fresh, page] = await Promise.all([
      apiJson<{ integration: Integration }>('GET', url),
      apiJson<{ deliveries: Delivery[]; next_before?: number }>('GET', `${url}/deliveries`, { limit: LOG_PAGE, before }),
    ]);
    if (!ctx.live()) return;
    fillSummary(fresh.integration);
    const retry = async (d: Delivery) => {
      await apiJson('POST', `${url}/deliveries/${d.id}/retry`);
      await load();
    };
    replace(
      log,
      page.deliveries.length === 0
        ? h('p', { class: 'muted empty' }, before ? 'No older deliveries.' : 'Nothing was sent yet. Send a test, or wait for a trigger to fire.')
        : h(
            'table',
            { class: 'list deliveries', 'data-loads': ++loads },
            h('thead', null, h('tr', null, h('th', null, '#'), h('th', null, 'Event'), h('th', null, 'Group'), h('th', null, 'Status'), h('th', { class: 'num' }, 'Attempts'), h('th', null, 'Last answer'), h('th', null, 'Time'), h('th', null, ''))),
            h('tbody', null, page.deliveries.map((d) => deliveryRow(project, id, d, retry))),
          ),
      h(
        'div',
        { class: 'pager' },
        before ? h('a', { class: 'button secondary newest', href: href(['admin', 'p', project, 'integrations', id]) }, '« newest') : null,
        page.next_before !== undefined ? h('a', { class: 'button secondary older', href: href(['admin', 'p', project, 'integrations', id], { before: page.next_before }) }, 'older ›') : null,
      ),
    );
    if (page.deliveries.some((d) => d.status === 'pending')) {
      timer = setTimeout(() => {
        if (ctx.live()) void load().catch(() => undefined);
      }, PENDING_POLL_MS);
    }
  };
  await load();
  if (!ctx.live()) return;

  ctx.main.append(projectHeader(project, 'integrations', 'integrations'));
  adminShell(
    ctx,
    'integrations',
    h('p', null, link(href(['admin', 'p', project, 'integrations']), `← integrations of ${project}`)),
    h('h1', null, `Integration ${integration.id}: ${integration.type}`),
    h('section', { class: 'card integration-summary', 'data-integration': integration.id }, summary),
    h(
      'div',
      { class: 'list-tools' },
      h('h2', null, 'Delivery log'),
      h(
        'span',
        null,
        actionButton('Send a test', 'secondary send-test', async () => {
          await sendTest(project, id);
          // A test is the newest delivery: show the first page, where it is.
          if (before) location.hash = href(['admin', 'p', project, 'integrations', id]);
          else await load();
        }),
        ' ',
        actionButton('Refresh', 'secondary refresh', load),
        ' ',
        actionButton('Remove', 'danger remove', async () => {
          if (await removeIntegration(project, integration)) location.hash = href(['admin', 'p', project, 'integrations']);
        }),
      ),
    ),
    log,
  );
}

/** `#/admin/p/<project>/integrations/<id>/deliveries/<d>`: what was sent, and every attempt. */
export async function deliveryPage(ctx: PageContext, project: string, idText: string, deliveryText: string): Promise<void> {
  if (!needSuperuser(ctx)) return;
  const url = `${base(project)}/${encodeURIComponent(idText)}/deliveries/${encodeURIComponent(deliveryText)}`;
  const { delivery: d } = await apiJson<{ delivery: Delivery }>('GET', url);
  if (!ctx.live()) return;
  const logHref = href(['admin', 'p', project, 'integrations', idText]);
  const attempts = d.attempt_log ?? [];
  const body = typeof d.body === 'string' ? d.body : JSON.stringify(d.body, null, 2);
  ctx.main.append(projectHeader(project, 'integrations', 'integrations'));
  adminShell(
    ctx,
    'integrations',
    h('p', null, link(logHref, `← delivery log of integration ${idText}`)),
    h('h1', null, `Delivery ${d.id}: ${d.event}`),
    h(
      'section',
      { class: 'card delivery-summary', 'data-delivery': d.id, 'data-status': d.status },
      h(
        'dl',
        { class: 'facts' },
        h('dt', null, 'Status'),
        h('dd', null, statusBadge(d), d.status === 'pending' && d.next_attempt_at ? ` next try ${formatTime(d.next_attempt_at)}` : null, d.delivered_at ? ` ${formatTime(d.delivered_at)}` : null),
        h('dt', null, 'Attempts'),
        h('dd', { class: 'attempts' }, String(d.attempts)),
        h('dt', null, 'Group'),
        h('dd', { class: 'mono' }, groupOf(project, d, (fp) => fp)),
        h('dt', null, 'Queued'),
        h('dd', null, formatTime(d.created_at)),
        h('dt', null, 'Delivery id'),
        h('dd', { class: 'mono' }, d.uuid, h('span', { class: 'muted' }, ' (X-Coresnap-Delivery; retries keep it)')),
        d.last_error ? [h('dt', null, 'Last error'), h('dd', { class: 'last-error' }, d.last_error)] : null,
      ),
      d.status === 'delivered'
        ? null
        : actionButton('Retry now', 'retry', async () => {
            await apiJson('POST', `${url}/retry`);
            ctx.refresh();
          }),
    ),
    h('h2', null, 'Attempts'),
    attempts.length === 0
      ? h('p', { class: 'muted empty' }, 'Not tried yet.')
      : h(
          'table',
          { class: 'list attempt-log' },
          h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', null, 'HTTP status'), h('th', { class: 'num' }, 'Took'), h('th', null, 'Error'))),
          h(
            'tbody',
            null,
            attempts.map((a) =>
              h('tr', { 'data-status': a.status ?? '' }, h('td', null, formatTime(a.at)), h('td', { class: 'mono status' }, a.status !== undefined ? String(a.status) : '—'), h('td', { class: 'num' }, `${a.duration_ms} ms`), h('td', { class: 'error-text' }, a.error ?? '')),
            ),
          ),
        ),
    h('h2', null, 'Body sent'),
    h('pre', { class: 'raw-json delivery-body' }, body),
  );
}
