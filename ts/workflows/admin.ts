/**
 * Managing integrations: what `coroner integration` and the admin HTTP endpoints share, so both
 * validate the same way and print the same facts. Secrets and Jira tokens never leave through
 * `integrationJson`; the secret is shown once, when the integration is added.
 */

import { randomBytes } from 'node:crypto';
import type { Project } from '../store/types.js';
import {
  INTEGRATION_TYPES,
  type Delivery,
  type DeliveryAttempt,
  type DeliveryStatus,
  type Integration,
  type IntegrationType,
  type JiraSettings,
  type WorkflowStore,
} from './store.js';
import { formatTrigger, parseTrigger, TriggerError, type Trigger } from './triggers.js';
import type { DeliveryJson, IntegrationJson } from './wire.js';

export type { DeliveryJson, IntegrationJson } from './wire.js';

/** A request to add an integration that cannot be honoured; the message says why. */
export class IntegrationError extends Error {
  override name = 'IntegrationError';
}

export interface IntegrationInput {
  type: string;
  url: string;
  /** Generated (and shown once) when absent. */
  secret?: string;
  /** Default `['new-group']`. */
  triggers?: string[];
  jira?: Partial<JiraSettings>;
}

const MAX_SECRET = 512;
const MAX_URL = 2048;

/** Checks an integration as a person wrote it and turns it into what the store keeps. */
export function validateIntegration(input: IntegrationInput): { type: IntegrationType; url: string; secret: string; secretGenerated: boolean; triggers: Trigger[]; jira?: JiraSettings } {
  const type = input.type?.trim().toLowerCase() as IntegrationType;
  if (!INTEGRATION_TYPES.includes(type)) throw new IntegrationError(`"${input.type}" is not an integration type: use ${INTEGRATION_TYPES.join(', ')}.`);
  const url = (input.url ?? '').trim();
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new IntegrationError(`"${url}" is not a URL (e.g. https://hooks.example.com/coresnap).`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new IntegrationError(`The URL must be http:// or https://, not ${parsed.protocol}//.`);
  if (url.length > MAX_URL) throw new IntegrationError(`The URL is longer than ${MAX_URL} characters.`);
  if (parsed.username || parsed.password) throw new IntegrationError('Put no credentials in the URL (Jira takes --user and --token).');

  const secretGiven = input.secret !== undefined && input.secret !== '';
  const secret = secretGiven ? input.secret! : randomBytes(24).toString('hex');
  if (secret.length > MAX_SECRET) throw new IntegrationError(`The secret is longer than ${MAX_SECRET} characters.`);

  const triggers: Trigger[] = [];
  for (const text of input.triggers?.length ? input.triggers : ['new-group']) {
    let trigger: Trigger;
    try {
      trigger = parseTrigger(text);
    } catch (err) {
      if (err instanceof TriggerError) throw new IntegrationError(err.message);
      throw err;
    }
    if (triggers.some((t) => formatTrigger(t) === formatTrigger(trigger))) continue;
    if (trigger.kind === 'threshold' && triggers.some((t) => t.kind === 'threshold')) {
      throw new IntegrationError('One integration takes one threshold trigger; add another integration for a second threshold.');
    }
    triggers.push(trigger);
  }

  const result: ReturnType<typeof validateIntegration> = { type, url, secret, secretGenerated: !secretGiven, triggers };
  if (type === 'jira') {
    const j = input.jira ?? {};
    const missing = (['projectKey', 'user', 'token'] as const).filter((k) => !j[k]);
    const flag = { projectKey: 'the Jira project key (--jira-project)', user: 'the Jira user (--user)', token: 'the Jira API token (--token)' };
    if (missing.length) throw new IntegrationError(`A Jira integration needs ${missing.map((k) => flag[k]).join(', ')}.`);
    result.jira = { projectKey: j.projectKey!, issueType: j.issueType || 'Bug', user: j.user!, token: j.token! };
  } else if (input.jira && Object.values(input.jira).some((v) => v)) {
    throw new IntegrationError('Jira settings only go with --type jira.');
  }
  return result;
}

export async function addIntegration(workflows: WorkflowStore, project: Project, input: IntegrationInput): Promise<{ integration: Integration; secretGenerated: boolean }> {
  const v = validateIntegration(input);
  const integration = await workflows.addIntegration({
    projectId: project.id,
    type: v.type,
    url: v.url,
    secret: v.secret,
    triggers: v.triggers,
    ...(v.jira ? { jira: v.jira } : {}),
  });
  return { integration, secretGenerated: v.secretGenerated };
}

/** A project's integration by id, or IntegrationError naming what is missing. */
export async function requireIntegration(workflows: WorkflowStore, project: Project, id: number | string): Promise<Integration> {
  const n = typeof id === 'number' ? id : Number(id);
  const integration = Number.isSafeInteger(n) ? await workflows.getIntegration(n) : undefined;
  if (!integration || integration.projectId !== project.id) throw new IntegrationError(`There is no integration ${id} in project "${project.name}".`);
  return integration;
}

export async function removeIntegration(workflows: WorkflowStore, project: Project, id: number | string): Promise<Integration> {
  const integration = await requireIntegration(workflows, project, id);
  await workflows.removeIntegration(integration.id);
  return integration;
}

export function integrationJson(i: Integration, project: string, counts?: Record<DeliveryStatus, number>): IntegrationJson {
  const out: IntegrationJson = { id: i.id, project, type: i.type, url: i.url, triggers: i.triggers.map(formatTrigger), created_at: i.createdAt };
  if (i.jira) out.jira = { project_key: i.jira.projectKey, issue_type: i.jira.issueType, user: i.jira.user };
  if (counts) out.deliveries = counts;
  return out;
}

const seconds = (ms: number): number => Math.floor(ms / 1000);

export function deliveryJson(d: Delivery, detail?: { attempts: DeliveryAttempt[] }): DeliveryJson {
  const out: DeliveryJson = {
    id: d.id,
    uuid: d.uuid,
    integration: d.integrationId,
    event: d.event,
    fingerprint: d.fingerprint,
    status: d.status,
    attempts: d.attempts,
    created_at: seconds(d.createdAt),
  };
  if (d.status === 'pending') out.next_attempt_at = seconds(d.nextAttemptAt);
  if (d.lastAttemptAt !== undefined) out.last_attempt_at = seconds(d.lastAttemptAt);
  if (d.deliveredAt !== undefined) out.delivered_at = seconds(d.deliveredAt);
  if (d.lastStatus !== undefined) out.last_status = d.lastStatus;
  if (d.lastError !== undefined) out.last_error = d.lastError;
  if (detail) {
    try {
      out.body = JSON.parse(d.body);
    } catch {
      out.body = d.body;
    }
    out.attempt_log = detail.attempts.map((a) => ({
      at: seconds(a.at),
      ...(a.status !== undefined ? { status: a.status } : {}),
      ...(a.error !== undefined ? { error: a.error } : {}),
      duration_ms: a.durationMs,
    }));
  }
  return out;
}
