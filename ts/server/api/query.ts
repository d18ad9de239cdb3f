/**
 * `POST /api/query`: queries (select, fold, group, order, paging), `set`, and
 * `action=describe` (query string, or `"action":"describe"` in the body as backtrace-forensics
 * sends it). The session's user is confined to their universe; the project is `?project=`.
 * A malformed query is HTTP 400 with the engine's sentence as `error.message`.
 */

import { QueryError } from '../../query/errors.js';
import { HttpError, rawResponse, type Handler } from '../router.js';
import { queryServiceFor } from './service.js';

export const query: Handler = async (ctx) => {
  const auth = await ctx.requireSession();
  const project = await ctx.requireProject(auth);
  const body = ctx.json();
  const service = queryServiceFor(ctx.store);
  const who = { universe: auth.universe.name, user: auth.user.username };
  const bodyAction = body && typeof body === 'object' && !Array.isArray(body) ? (body as { action?: unknown }).action : undefined;
  const action = ctx.query.get('action') ?? bodyAction;
  try {
    if (action === 'describe') return await service.describe(project, who);
    if (action !== undefined && action !== null && action !== '') throw new QueryError(`Unknown query action ${JSON.stringify(action)}.`);
    // Serialized where the query ran, so a large answer costs the event loop only its bytes.
    return rawResponse({ headers: { 'Content-Type': 'application/json' }, body: await service.queryJson(project, body, who) });
  } catch (err) {
    if (err instanceof QueryError) throw new HttpError(400, err.message);
    throw err;
  }
};
