/**
 * `coroner integration add|list|remove|log|retry`: workflow integrations of a project (alerts to
 * a webhook, Slack or Jira), acting on the data folder directly; a running `coroner serve` picks
 * changes up at its next evaluation (new integrations) or dispatch (retries, within 5 s).
 *
 *   coroner integration add <project> --type webhook|slack|jira --url URL [--secret S]
 *       [--trigger new-group|threshold:N/WINDOW|regression]... [--jira-project KEY --issue-type T
 *       --user U --token T] [--data DIR]
 *   coroner integration list <project>
 *   coroner integration remove <project> <id>
 *   coroner integration log <project> <id> [--limit N] [--attempts]
 *   coroner integration retry <project> <id> <delivery>
 */

import type { Command } from 'commander';
import { requireProject } from '../coroner/admin.js';
import { addIntegration, deliveryJson, integrationJson, IntegrationError, removeIntegration, requireIntegration } from '../workflows/admin.js';
import { openWorkflowStore, WorkflowStoreError, type WorkflowStore } from '../workflows/store.js';
import { date, print, storeOptions, withStore, type StoreOptions } from './coroner-common.js';
import type { SqliteStore } from '../store/sqlite.js';
import type { Project, Universe } from '../store/types.js';
import { InputError, UsageError } from './errors.js';

interface AddOptions extends StoreOptions {
  type: string;
  url: string;
  secret?: string;
  trigger?: string[];
  jiraProject?: string;
  issueType?: string;
  user?: string;
  token?: string;
}

/** Opens the store and its workflow state, resolves the project, runs `fn`. */
async function withProject<T>(
  opts: StoreOptions,
  projectName: string,
  fn: (workflows: WorkflowStore, project: Project, store: SqliteStore, universe: Universe) => Promise<T>,
): Promise<T> {
  try {
    return await withStore(opts, async (store, universe) => {
      const project = await requireProject(store, universe, projectName);
      const workflows = await openWorkflowStore(store);
      try {
        return await fn(workflows, project, store, universe);
      } finally {
        await workflows.close();
      }
    });
  } catch (err) {
    if (err instanceof IntegrationError || err instanceof WorkflowStoreError) throw new InputError(err.message);
    throw err;
  }
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function wholeNumber(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} ${text}: expected a positive whole number`);
  return n;
}

export function registerIntegration(program: Command): void {
  const integration = program.command('integration').description('alerts on new, spiking and regressed crash groups: webhook, Slack, Jira');

  storeOptions(integration.command('add <project>').description('add an integration to a project'))
    .requiredOption('--type <type>', 'webhook, slack or jira')
    .requiredOption('--url <url>', 'where to POST (Jira: the site, e.g. https://example.atlassian.net)')
    .option('--secret <secret>', 'HMAC-SHA256 key of X-Coresnap-Signature (default: generated and printed)')
    .option('--trigger <trigger>', 'new-group (default), threshold:N/WINDOW (e.g. threshold:100/10m) or regression; repeat for several', collect)
    .option('--jira-project <key>', 'Jira: the project key issues go to')
    .option('--issue-type <name>', 'Jira: the issue type (default Bug)')
    .option('--user <user>', 'Jira: the user (e-mail on Jira Cloud)')
    .option('--token <token>', 'Jira: the API token or password')
    .action(async (projectName: string, opts: AddOptions) => {
      const jira = {
        ...(opts.jiraProject ? { projectKey: opts.jiraProject } : {}),
        ...(opts.issueType ? { issueType: opts.issueType } : {}),
        ...(opts.user ? { user: opts.user } : {}),
        ...(opts.token ? { token: opts.token } : {}),
      };
      const result = await withProject(opts, projectName, (workflows, project) =>
        addIntegration(workflows, project, {
          type: opts.type,
          url: opts.url,
          ...(opts.secret !== undefined ? { secret: opts.secret } : {}),
          ...(opts.trigger ? { triggers: opts.trigger } : {}),
          ...(Object.keys(jira).length ? { jira } : {}),
        }),
      );
      const json = { ...integrationJson(result.integration, projectName), secret: result.integration.secret };
      print(opts, json, (i) => [
        `added integration ${i.id} to ${i.project}: ${i.type} ${i.url} on ${i.triggers.join(', ')}`,
        result.secretGenerated ? `signing secret: ${i.secret}  (shown once; receivers check X-Coresnap-Signature with it)` : 'signing with the given secret',
      ]);
    });

  storeOptions(integration.command('list <project>').description("list a project's integrations")).action(async (projectName: string, opts: StoreOptions) => {
    const list = await withProject(opts, projectName, async (workflows, project) =>
      Promise.all((await workflows.listIntegrations(project.id)).map(async (i) => integrationJson(i, project.name, await workflows.countDeliveries(i.id)))),
    );
    print(opts, list, (is) =>
      is.length === 0
        ? [`no integrations in ${projectName}`]
        : is.map(
            (i) =>
              `${i.id}  ${i.type}  ${i.url}  ${i.triggers.join(', ')}${i.jira ? `  jira ${i.jira.project_key}/${i.jira.issue_type} as ${i.jira.user}` : ''}` +
              `  created ${date(i.created_at)}  deliveries: ${i.deliveries?.delivered ?? 0} delivered, ${i.deliveries?.pending ?? 0} pending, ${i.deliveries?.failed ?? 0} failed`,
          ),
    );
  });

  storeOptions(integration.command('remove <project> <id>').description('remove an integration with its queue and log')).action(
    async (projectName: string, id: string, opts: StoreOptions) => {
      const removed = await withProject(opts, projectName, (workflows, project) => removeIntegration(workflows, project, wholeNumber('id', id)));
      print(opts, integrationJson(removed, projectName), (i) => [`removed integration ${i.id} (${i.type} ${i.url}) from ${i.project}`]);
    },
  );

  storeOptions(integration.command('log <project> <id>').description("an integration's deliveries, newest first"))
    .option('--limit <n>', 'how many (default 20)')
    .option('--attempts', 'show every attempt of each delivery')
    .action(async (projectName: string, id: string, opts: StoreOptions & { limit?: string; attempts?: boolean }) => {
      const limit = opts.limit ? wholeNumber('--limit', opts.limit) : 20;
      const log = await withProject(opts, projectName, async (workflows, project) => {
        const integration = await requireIntegration(workflows, project, wholeNumber('id', id));
        const deliveries = await workflows.listDeliveries(integration.id, { limit });
        return Promise.all(deliveries.map(async (d) => deliveryJson(d, opts.attempts ? { attempts: await workflows.listAttempts(d.id) } : undefined)));
      });
      print(opts, log, (ds) =>
        ds.length === 0
          ? [`no deliveries yet for integration ${id}`]
          : ds.flatMap((d) => {
              const outcome =
                d.status === 'delivered'
                  ? `delivered ${date(d.delivered_at ?? d.created_at)}`
                  : d.status === 'pending'
                    ? `pending, next try ${date(d.next_attempt_at ?? d.created_at)}`
                    : 'failed';
              const line = `${d.id}  ${date(d.created_at)}  ${d.event}  ${d.fingerprint.slice(0, 16)}  ${outcome}  attempts ${d.attempts}${d.last_error ? `  last error: ${d.last_error}` : ''}`;
              const attempts = (d.attempt_log ?? []).map((a) => `    ${date(a.at)}  ${a.status ?? '-'}  ${a.duration_ms} ms${a.error ? `  ${a.error}` : ''}`);
              return [line, ...attempts];
            }),
      );
    });

  storeOptions(integration.command('retry <project> <id> <delivery>').description('send a failed or pending delivery again now')).action(
    async (projectName: string, id: string, deliveryId: string, opts: StoreOptions) => {
      const d = await withProject(opts, projectName, async (workflows, project) => {
        const integration = await requireIntegration(workflows, project, wholeNumber('id', id));
        const delivery = await workflows.getDelivery(wholeNumber('delivery', deliveryId));
        if (!delivery || delivery.integrationId !== integration.id) throw new IntegrationError(`There is no delivery ${deliveryId} of integration ${id}.`);
        if (delivery.status === 'delivered') throw new IntegrationError(`Delivery ${deliveryId} was delivered already.`);
        await workflows.retryDelivery(delivery.id, Date.now());
        return deliveryJson((await workflows.getDelivery(delivery.id)) ?? delivery);
      });
      print(opts, d, (v) => [`delivery ${v.id} is queued again (a running coroner sends it within seconds)`]);
    },
  );
}
