/**
 * Admin endpoints for the web console: the operations of `coroner project|token|user` over HTTP
 * (the same functions, ts/coroner/admin.ts), plus grouping rules and the fingerprint explain
 * call. Every admin endpoint needs a superuser's session (`?token=` or `X-Coroner-Token`) and acts
 * on that session's universe; explain needs any session of the universe. docs/coroner.md lists them.
 */

import * as admin from '../coroner/admin.js';
import { CompiledGroupingRules, explainFingerprint } from '../grouping/fingerprint.js';
import { DEFAULT_GROUPING_RULES, GroupingRulesError, parseGroupingRules } from '../grouping/rules.js';
import type { ApiToken, Project, User } from '../store/types.js';
import { HttpError, type RequestContext, type Router } from './router.js';

const projectJson = (p: Project & { tokens?: ApiToken[] }) => ({
  id: p.id,
  name: p.name,
  created_at: p.createdAt,
  retention_seconds: p.retentionSeconds,
  ...(p.tokens ? { tokens: p.tokens.map(tokenJson) } : {}),
});
const tokenJson = (t: ApiToken & { project?: string }) => ({
  id: t.id,
  name: t.name,
  project_id: t.projectId,
  ...(t.project !== undefined ? { project: t.project } : {}),
  owner: t.ownerUid,
  capabilities: t.capabilities,
  created_at: t.createdAt,
});
const userJson = (u: User) => ({ uid: u.uid, username: u.username, email: u.email, superuser: u.superuser ? 1 : 0, created_at: u.createdAt });

function bodyObject(ctx: RequestContext): Record<string, unknown> {
  const body = ctx.json();
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'The request body must be a JSON object.');
  return body as Record<string, unknown>;
}

function stringField(body: Record<string, unknown>, key: string, required: true): string;
function stringField(body: Record<string, unknown>, key: string, required: false): string | undefined;
function stringField(body: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === '') {
    if (required) throw new HttpError(400, `"${key}" is required.`);
    return undefined;
  }
  if (typeof v !== 'string') throw new HttpError(400, `"${key}" must be a string.`);
  return v;
}

async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof admin.AdminError) throw new HttpError(/^There is no /.test(err.message) ? 404 : 400, err.message);
    if (err instanceof GroupingRulesError) throw new HttpError(400, err.message);
    throw err;
  }
}

export function mountAdmin(router: Router): void {
  // Projects.
  router.route('GET', '/api/admin/projects', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    return { projects: (await admin.listProjects(ctx.store, auth.universe)).map(projectJson) };
  });
  router.route('POST', '/api/admin/projects', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const body = bodyObject(ctx);
    const name = stringField(body, 'name', true);
    const { project, token } = await run(() => admin.createProject(ctx.store, auth.universe, name, { withToken: body.token !== false, ownerUid: auth.user.uid }));
    return { project: projectJson(project), ...(token ? { token: tokenJson(token) } : {}) };
  });
  router.route('DELETE', '/api/admin/projects/:name', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const project = await run(() => admin.deleteProject(ctx.store, auth.universe, ctx.params.name!));
    return { deleted: projectJson(project) };
  });

  router.route('PUT', '/api/admin/projects/:name/retention', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const body = bodyObject(ctx);
    const maxAge = body.max_age === null ? null : stringField(body, 'max_age', true);
    return { project: projectJson(await run(() => admin.setRetention(ctx.store, auth.universe, ctx.params.name!, maxAge))) };
  });

  // Tokens.
  router.route('GET', '/api/admin/tokens', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const project = ctx.query.get('project') || undefined;
    return { tokens: (await run(() => admin.listTokens(ctx.store, auth.universe, project))).map(tokenJson) };
  });
  router.route('POST', '/api/admin/tokens', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const body = bodyObject(ctx);
    const project = stringField(body, 'project', true);
    const name = stringField(body, 'name', false);
    const token = await run(() => admin.createToken(ctx.store, auth.universe, project, { ...(name ? { name } : {}), ownerUid: auth.user.uid }));
    return { token: tokenJson({ ...token, project }) };
  });
  router.route('DELETE', '/api/admin/tokens/:id', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    return { deleted: tokenJson(await run(() => admin.deleteToken(ctx.store, auth.universe, ctx.params.id!))) };
  });

  // Users.
  router.route('GET', '/api/admin/users', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    return { users: (await admin.listUsers(ctx.store, auth.universe)).map(userJson) };
  });
  router.route('POST', '/api/admin/users', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const body = bodyObject(ctx);
    const user = await run(() =>
      admin.createUser(ctx.store, auth.universe, {
        username: stringField(body, 'username', true),
        password: stringField(body, 'password', true),
        email: stringField(body, 'email', false) ?? '',
        superuser: body.superuser === true || body.superuser === 1,
      }),
    );
    return { user: userJson(user) };
  });
  router.route('DELETE', '/api/admin/users/:username', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    return { deleted: userJson(await run(() => admin.deleteUser(ctx.store, auth.universe, ctx.params.username!))) };
  });

  // Grouping rules of a project: the rules in force, and new versions of them.
  router.route('GET', '/api/admin/grouping', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const project = await ctx.requireProject(auth);
    const { version, rules } = await ctx.store.getGroupingRules(project.id);
    return { project: project.name, version, custom: rules !== null, rules: parseGroupingRules(rules), defaults: DEFAULT_GROUPING_RULES };
  });
  router.route('PUT', '/api/admin/grouping', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const project = await ctx.requireProject(auth);
    const body = ctx.json();
    // Validate (and fill in defaults) before storing: a stored version always compiles.
    const rules = await run(async () => parseGroupingRules(body));
    const { version } = await ctx.store.setGroupingRules(project.id, rules);
    return { project: project.name, version, rules };
  });

  // Explain a fingerprint: of a stored object (GET ?object=<hex id or _rxid>) or of a report in
  // the body (POST), with the project's current rules.
  const explainStored = async (ctx: RequestContext) => {
    const auth = await ctx.requireSession();
    const project = await ctx.requireProject(auth);
    const ref = ctx.query.get('object');
    if (!ref) throw new HttpError(400, 'Name the object to explain (object=<id in hex> or object=<_rxid>).');
    const object =
      (await ctx.store.findObjectByRxid(project.id, ref)) ??
      (/^[0-9a-fA-F]{1,13}$/.test(ref) ? await ctx.store.getObject(project.id, parseInt(ref, 16)) : undefined);
    if (!object) throw new HttpError(404, `There is no object "${ref}" in project "${project.name}".`);
    if (!object.processed) throw new HttpError(400, `Object ${object.id.toString(16)} is a minidump that has not been processed; it has no frames yet.`);
    const body = await ctx.store.getReportBody(project.id, object.id);
    if (!body) throw new HttpError(404, `The report of object ${object.id.toString(16)} is gone.`);
    const report = JSON.parse(Buffer.from(body.body).toString('utf8')) as Record<string, unknown>;
    const explanation = explainFingerprint({ ...report, attributes: object.attributes }, await rulesOf(ctx, project.id));
    return { object: object.id.toString(16), stored_fingerprint: object.fingerprint, ...explanation };
  };
  router.route('GET', '/api/fingerprint/explain', explainStored);
  router.route('POST', '/api/fingerprint/explain', async (ctx) => {
    if (ctx.query.get('object')) return explainStored(ctx);
    const auth = await ctx.requireSession();
    const project = await ctx.requireProject(auth);
    const report = ctx.json();
    if (typeof report !== 'object' || report === null || Array.isArray(report)) throw new HttpError(400, 'The report must be a JSON object.');
    return explainFingerprint(report as Record<string, unknown>, await rulesOf(ctx, project.id));
  });
}

async function rulesOf(ctx: RequestContext, projectId: number): Promise<CompiledGroupingRules> {
  const stored = await ctx.store.getGroupingRules(projectId);
  return run(async () => CompiledGroupingRules.fromStored(stored));
}
