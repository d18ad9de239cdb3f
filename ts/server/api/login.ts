/**
 * `POST /api/login` and `GET|POST /api/logout` as morgue 1.24 uses them (backtrace-compat.md §1.3).
 *
 * Login takes a form body (`application/x-www-form-urlencoded`, JSON accepted too) with either
 * `username` + `password` (checked and throttled by `verifyLogin`) or `token`: a live session
 * token (answered with that same session) or an API token whose capabilities include `login` or
 * `query:post` (a new session for the token's owner). A submission token alone does not log in.
 * The answer is the login object morgue stores verbatim in ~/.morgue/current.json; it needs
 * `token`, `universes` and `endpoints.post` (the one port this server listens on).
 */

import type { Session, User } from '../../store/types.js';
import { startSession, verifyLogin } from '../auth.js';
import { HttpError, type Handler, type RequestContext } from '../router.js';

function loginFields(ctx: RequestContext): URLSearchParams {
  const type = String(ctx.headers['content-type'] ?? '');
  if (type.startsWith('application/json')) {
    const body = ctx.json();
    const out = new URLSearchParams();
    if (body && typeof body === 'object' && !Array.isArray(body)) {
      for (const [k, v] of Object.entries(body)) if (typeof v === 'string') out.set(k, v);
    }
    return out;
  }
  const form = ctx.form();
  // morgue sends the fields in the body; a client that put them in the query string works too.
  for (const k of ['username', 'password', 'token']) if (!form.has(k) && ctx.query.has(k)) form.set(k, ctx.query.get(k)!);
  return form;
}

async function loginResponse(ctx: RequestContext, user: User, session: Session): Promise<Record<string, unknown>> {
  const universe = (await ctx.store.getUniverseById(user.universeId)) ?? ctx.universe;
  const u = { id: universe.id, name: universe.name };
  return {
    token: session.token,
    uid: user.uid,
    user: { uid: user.uid, username: user.username, email: user.email, superuser: user.superuser ? 1 : 0 },
    universe: u,
    universes: { [u.name]: u },
    endpoints: { post: ctx.endpoints.post.map((e) => ({ protocol: e.protocol, port: e.port })) },
    services: [],
    expires: session.expiresAt,
  };
}

export const login: Handler = async (ctx) => {
  const fields = loginFields(ctx);
  const token = fields.get('token');
  if (token !== null && token !== '') {
    const now = Math.floor(Date.now() / 1000);
    const session = await ctx.store.getSession(token);
    if (session && session.expiresAt > now) {
      const user = await ctx.store.getUserById(session.uid);
      if (user) return loginResponse(ctx, user, session);
    }
    if (/^[0-9a-fA-F]{16,128}$/.test(token)) {
      const api = await ctx.store.getToken(token.toLowerCase());
      if (api && api.revokedAt === undefined && (api.capabilities.includes('login') || api.capabilities.includes('query:post'))) {
        const user = await ctx.store.getUserById(api.ownerUid);
        if (user) return loginResponse(ctx, user, await startSession(ctx.store, user, ctx.sessionTtlSeconds));
      }
    }
    throw new HttpError(401, 'invalid token');
  }
  const username = fields.get('username');
  const password = fields.get('password');
  if (!username || password === null) throw new HttpError(400, 'Log in with username and password, or with token.');
  const universe = fields.get('universe') || ctx.universe.name;
  const result = await verifyLogin(ctx.store, universe, username, password, ctx.remoteAddress, { sessionTtlSeconds: ctx.sessionTtlSeconds });
  if (!result.ok) {
    const headers: Record<string, string> = result.retryAfterSeconds !== undefined ? { 'Retry-After': String(result.retryAfterSeconds) } : {};
    throw new HttpError(result.status, result.message, undefined, headers);
  }
  return loginResponse(ctx, result.user, result.session);
};

export const logout: Handler = async (ctx) => {
  const auth = await ctx.sessionFromRequest();
  if (auth) await ctx.store.deleteSession(auth.session.token);
  return { response: 'ok' };
};
