/**
 * The integrations' admin endpoints (for the web console): every one needs a superuser's session
 * (`?token=` or `X-Coroner-Token`) and acts on a project of that session's universe.
 *
 *   GET    /api/admin/projects/:project/integrations
 *          → { integrations: [IntegrationJson] }
 *   POST   /api/admin/projects/:project/integrations
 *          { type, url, secret?, triggers?: [string] | trigger?: string,
 *            jira?: { project_key, issue_type?, user, token } }
 *          → { integration: IntegrationJson, secret }   (the secret is shown this once)
 *   GET    /api/admin/projects/:project/integrations/:id          → { integration }
 *   DELETE /api/admin/projects/:project/integrations/:id          → { deleted: IntegrationJson }
 *   POST   /api/admin/projects/:project/integrations/:id/test     → { delivery: DeliveryJson }
 *   GET    /api/admin/projects/:project/integrations/:id/deliveries?limit=50&before=<id>
 *          → { deliveries: [DeliveryJson], next_before?: id }     (newest first)
 *   GET    /api/admin/projects/:project/integrations/:id/deliveries/:delivery
 *          → { delivery: DeliveryJson with body and attempt_log }
 *   POST   /api/admin/projects/:project/integrations/:id/deliveries/:delivery/retry
 *          → { delivery }   (a failed or pending delivery, due now)
 */

import { HttpError, type RequestContext, type Router } from '../server/router.js';
import type { Project } from '../store/types.js';
import { addIntegration, deliveryJson, integrationJson, IntegrationError, removeIntegration, requireIntegration, type IntegrationInput } from './admin.js';
import { workflowServiceFor, type WorkflowService } from './service.js';

const BASE = '/api/admin/projects/:project/integrations';

async function context(ctx: RequestContext): Promise<{ project: Project; service: WorkflowService }> {
  const auth = await ctx.requireSuperuser();
  const project = await ctx.requireProject(auth, ctx.params.project);
  const service = workflowServiceFor(ctx.store);
  if (!service) throw new HttpError(503, 'Workflow integrations are not running on this server.');
  return { project, service };
}

async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof IntegrationError) throw new HttpError(/^There is no /.test(err.message) ? 404 : 400, err.message);
    throw err;
  }
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `"${key}" must be a string.`);
  return v;
}

/** The POST body as `IntegrationInput`, or 400 saying which field is wrong. */
export function integrationInput(raw: unknown): IntegrationInput {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new HttpError(400, 'The request body must be a JSON object.');
  const body = raw as Record<string, unknown>;
  const input: IntegrationInput = { type: optionalString(body, 'type') ?? '', url: optionalString(body, 'url') ?? '' };
  if (!input.type) throw new HttpError(400, '"type" is required (webhook, slack or jira).');
  if (!input.url) throw new HttpError(400, '"url" is required.');
  const secret = optionalString(body, 'secret');
  if (secret !== undefined) input.secret = secret;
  const triggers = body.triggers ?? (body.trigger !== undefined ? [body.trigger] : undefined);
  if (triggers !== undefined) {
    if (!Array.isArray(triggers) || triggers.some((t) => typeof t !== 'string')) throw new HttpError(400, '"triggers" must be a list of strings.');
    input.triggers = triggers as string[];
  }
  if (body.jira !== undefined && body.jira !== null) {
    if (typeof body.jira !== 'object' || Array.isArray(body.jira)) throw new HttpError(400, '"jira" must be an object.');
    const j = body.jira as Record<string, unknown>;
    const jira: NonNullable<IntegrationInput['jira']> = {};
    const projectKey = optionalString(j, 'project_key');
    const issueType = optionalString(j, 'issue_type');
    const user = optionalString(j, 'user');
    const token = optionalString(j, 'token');
    if (projectKey !== undefined) jira.projectKey = projectKey;
    if (issueType !== undefined) jira.issueType = issueType;
    if (user !== undefined) jira.user = user;
    if (token !== undefined) jira.token = token;
    input.jira = jira;
  }
  return input;
}

function positiveInt(text: string | null, name: string): number | undefined {
  if (text === null || text === '') return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new HttpError(400, `"${name}" must be a positive whole number.`);
  return n;
}

export function mountIntegrations(router: Router): void {
  router.route('GET', BASE, async (ctx) => {
    const { project, service } = await context(ctx);
    const list = await service.workflows.listIntegrations(project.id);
    return { integrations: await Promise.all(list.map(async (i) => integrationJson(i, project.name, await service.workflows.countDeliveries(i.id)))) };
  });

  router.route('POST', BASE, async (ctx) => {
    const { project, service } = await context(ctx);
    const input = integrationInput(ctx.json());
    const { integration } = await run(() => addIntegration(service.workflows, project, input));
    return { integration: integrationJson(integration, project.name), secret: integration.secret };
  });

  router.route('GET', `${BASE}/:id`, async (ctx) => {
    const { project, service } = await context(ctx);
    const integration = await run(() => requireIntegration(service.workflows, project, ctx.params.id!));
    return { integration: integrationJson(integration, project.name, await service.workflows.countDeliveries(integration.id)) };
  });

  router.route('DELETE', `${BASE}/:id`, async (ctx) => {
    const { project, service } = await context(ctx);
    const removed = await run(() => removeIntegration(service.workflows, project, ctx.params.id!));
    return { deleted: integrationJson(removed, project.name) };
  });

  router.route('POST', `${BASE}/:id/test`, async (ctx) => {
    const { project, service } = await context(ctx);
    const integration = await run(() => requireIntegration(service.workflows, project, ctx.params.id!));
    const id = await service.sendTest(integration, project);
    const delivery = await service.workflows.getDelivery(id);
    if (!delivery) throw new HttpError(404, 'The test delivery is gone (the integration was removed meanwhile).');
    return { delivery: deliveryJson(delivery) };
  });

  router.route('GET', `${BASE}/:id/deliveries`, async (ctx) => {
    const { project, service } = await context(ctx);
    const integration = await run(() => requireIntegration(service.workflows, project, ctx.params.id!));
    const limit = positiveInt(ctx.query.get('limit'), 'limit') ?? 50;
    const beforeId = positiveInt(ctx.query.get('before'), 'before');
    const deliveries = await service.workflows.listDeliveries(integration.id, { limit, ...(beforeId !== undefined ? { beforeId } : {}) });
    const last = deliveries[deliveries.length - 1];
    return { deliveries: deliveries.map((d) => deliveryJson(d)), ...(deliveries.length === Math.min(limit, 1000) && last ? { next_before: last.id } : {}) };
  });

  const deliveryOf = async (ctx: RequestContext) => {
    const { project, service } = await context(ctx);
    const integration = await run(() => requireIntegration(service.workflows, project, ctx.params.id!));
    const id = positiveInt(ctx.params.delivery ?? null, 'delivery');
    const delivery = id === undefined ? undefined : await service.workflows.getDelivery(id);
    if (!delivery || delivery.integrationId !== integration.id) throw new HttpError(404, `There is no delivery ${ctx.params.delivery} of integration ${integration.id}.`);
    return { service, delivery };
  };

  router.route('GET', `${BASE}/:id/deliveries/:delivery`, async (ctx) => {
    const { service, delivery } = await deliveryOf(ctx);
    return { delivery: deliveryJson(delivery, { attempts: await service.workflows.listAttempts(delivery.id) }) };
  });

  router.route('POST', `${BASE}/:id/deliveries/:delivery/retry`, async (ctx) => {
    const { service, delivery } = await deliveryOf(ctx);
    if (delivery.status === 'delivered') throw new HttpError(400, `Delivery ${delivery.id} was delivered already.`);
    await service.workflows.retryDelivery(delivery.id, Date.now());
    service.poke();
    const now = await service.workflows.getDelivery(delivery.id);
    return { delivery: deliveryJson(now ?? delivery) };
  });
}
