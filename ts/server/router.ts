/**
 * The router of coroner's one HTTP(S) port: the contract every endpoint is written against.
 *
 * How to add an endpoint (the query API in ts/server/api/ does exactly this):
 *
 * ```ts
 * import { HttpError, type Handler } from '../router.js';
 * export const query: Handler = async (ctx) => {
 *   const auth = await ctx.requireSession();          // 401 unless ?token= / X-Coroner-Token is a live session
 *   const project = await ctx.requireProject(auth);    // ?universe=&project= (universe defaults to the user's)
 *   const request = ctx.json();                        // the body as JSON, or HttpError 400
 *   return { response: 'ok', ... };                    // any JSON value: HTTP 200, Content-Type: application/json
 * };
 * // and in ts/server/api/index.ts, which the server (server.ts) imports and calls at start-up
 * // when the file exists:
 * export function mountApi(router: Router): void | Promise<void> { router.route('POST', '/api/query', query); }
 * // optional: called once when the server closes (drop caches, workers)
 * export function closeQueryService(store: Store): void { ... }
 * ```
 *
 * What the router does for every request before the handler runs:
 * - reads the whole body into `ctx.body` (a Buffer), undoing `Content-Encoding: gzip|deflate`
 *   (chunked transfer is undone by Node), refusing with 413 a body larger than the configured limit
 *   (before and after decompression), and with 400 a body that does not decompress;
 * - parses the URL (`ctx.url`, `ctx.query`) and, for a `:name` pattern, fills `ctx.params`;
 * - answers 404 (unknown path) / 405 (known path, other method) itself, as JSON errors.
 *
 * What a handler returns:
 * - a plain JSON value (object, array): sent with HTTP 200 and `Content-Type: application/json`
 *   exactly (no charset: backtrace-forensics refuses anything else);
 * - `jsonResponse(value, status)`: JSON with another status;
 * - `rawResponse({ status, headers, body })`: bytes as they are (`/api/get` uses this; set
 *   `Content-Disposition`, morgue 1.24 needs it);
 * - to fail, throw `new HttpError(status, message, code)`: the client gets
 *   `{"error":{"message":...,"code":N}}` with that status (use status 200 for morgue-style
 *   "200 with error" answers). Anything else thrown becomes a 500 with a generic message (the
 *   detail goes to the server log, not to the client).
 *
 * Authentication helpers on the context (all async, all backed by the `Store`):
 * - `sessionFromRequest()`: the live session named by `?token=` or `X-Coroner-Token`, with its
 *   user and universe, or undefined (expired sessions are undefined).
 * - `requireSession()`: the same, or HttpError 401 `invalid token`.
 * - `requireSuperuser()`: a live session of a superuser, or 401 / 403.
 * - `requireProject(auth, name?)`: the project named by `?project=` (or `name`) in the session's
 *   universe (`?universe=`, when given, must be the session's own), or 400 / 403 / 404.
 * - `submissionToken(id)`: the live (not revoked) submission token, or undefined.
 * Login itself (username/password → session, throttled) is `verifyLogin` in ts/server/auth.ts.
 */

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { ApiToken, Project, Session, Store, Universe, User } from '../store/types.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS';

/** A failure the client is told about: `{"error":{"message","code"}}` with `status`. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    /** The `error.code` number clients see; defaults to one per status (see `defaultErrorCode`). */
    readonly code: number = defaultErrorCode(status),
    /** Extra response headers (e.g. `Retry-After` on a 429). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * `error.code` numbers. Real coronerd's numbers are unknown (backtrace-compat.md §7); morgue only
 * reads `message`. These are stable within coresnap: 5 = invalid token (the one number the
 * reference quotes), the others follow HTTP.
 */
export function defaultErrorCode(status: number): number {
  switch (status) {
    case 400: return 2;
    case 401: return 5;
    case 403: return 6;
    case 404: return 7;
    case 405: return 8;
    case 413: return 9;
    case 429: return 10;
    case 507: return 11;
    default: return status >= 500 ? 1 : 3;
  }
}

/** A session resolved to its user and universe. */
export interface AuthSession {
  session: Session;
  user: User;
  universe: Universe;
}

/** The address clients should submit to (the login response's `endpoints.post`). */
export interface PostEndpoint {
  protocol: 'http' | 'https';
  port: number;
}

export interface RequestContext {
  readonly method: string;
  /** The request URL, resolved against the Host header. */
  readonly url: URL;
  /** `url.searchParams`. */
  readonly query: URLSearchParams;
  /** Values of `:name` segments of the route pattern. */
  readonly params: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** The whole body, Content-Encoding undone. Empty for GET. */
  readonly body: Buffer;
  readonly remoteAddress: string;
  readonly store: Store;
  /** The universe this server was started for (`coroner serve --universe`). */
  readonly universe: Universe;
  /** What the login response advertises: the one port this server listens on. */
  readonly endpoints: { post: PostEndpoint[] };
  /** How long a new session lives, in seconds (for the login endpoint). */
  readonly sessionTtlSeconds: number;
  /** The raw request, for handlers that need more (rarely). */
  readonly request: IncomingMessage;

  /** The body parsed as JSON (an empty body is `{}`), or HttpError 400. */
  json(): unknown;
  /** The body as `application/x-www-form-urlencoded` fields (how morgue sends login). */
  form(): URLSearchParams;

  sessionFromRequest(): Promise<AuthSession | undefined>;
  requireSession(): Promise<AuthSession>;
  requireSuperuser(): Promise<AuthSession>;
  requireProject(auth: AuthSession, name?: string): Promise<Project>;
  submissionToken(id: string): Promise<ApiToken | undefined>;
}

/** What a handler may return instead of a plain JSON value. */
export interface RawResponse {
  readonly kind: 'raw';
  status: number;
  headers: Record<string, string>;
  body: Uint8Array | string;
}

export interface JsonResponse {
  readonly kind: 'json';
  status: number;
  value: unknown;
  headers: Record<string, string>;
}

export type HandlerResult = RawResponse | JsonResponse | object;
export type Handler = (ctx: RequestContext) => Promise<HandlerResult> | HandlerResult;

export function jsonResponse(value: unknown, status = 200, headers: Record<string, string> = {}): JsonResponse {
  return { kind: 'json', status, value, headers };
}

export function rawResponse(response: { status?: number; headers?: Record<string, string>; body: Uint8Array | string }): RawResponse {
  return { kind: 'raw', status: response.status ?? 200, headers: response.headers ?? {}, body: response.body };
}

export interface RouteOptions {
  /**
   * Body size limit for this route in bytes (after decompression too); the server's default
   * otherwise. Submissions use the configurable submission limit.
   */
  maxBodyBytes?: number;
  /**
   * Leave the body unread: `ctx.body` is empty and the handler reads `ctx.request` itself.
   * Only for handlers that stream (none so far).
   */
  streamBody?: boolean;
}

interface Route {
  method: string;
  segments: string[];
  handler: Handler;
  options: RouteOptions;
}

export interface RouteMatch {
  route: Route;
  params: Record<string, string>;
}

/**
 * The routing table. Paths are exact (`/api/query`) or have `:name` segments
 * (`/:universe/:token/:format`); an exact route wins over a pattern; among patterns the one with
 * more literal segments wins, then the one mounted first.
 */
export class Router {
  private readonly routes: Route[] = [];

  /** Mounts `handler` for `method` on `path`. Mounting the same method and path twice is a bug and throws. */
  route(method: HttpMethod, path: string, handler: Handler, options: RouteOptions = {}): this {
    if (!path.startsWith('/')) throw new Error(`route path must start with '/': ${path}`);
    const segments = splitPath(path);
    const clash = this.routes.find((r) => r.method === method && r.segments.join('/') === segments.join('/'));
    if (clash) throw new Error(`route ${method} ${path} is already mounted`);
    this.routes.push({ method, segments, handler, options });
    return this;
  }

  /** The route for a request, `'method'` when the path exists under another method, or undefined. */
  match(method: string, pathname: string): RouteMatch | 'method' | undefined {
    const parts = splitPath(pathname);
    let best: { match: RouteMatch; literals: number } | undefined;
    let pathExists = false;
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts);
      if (!params) continue;
      pathExists = true;
      const wantMethod = method === 'HEAD' ? 'GET' : method;
      if (route.method !== wantMethod && route.method !== method) continue;
      const literals = route.segments.filter((s) => !s.startsWith(':')).length;
      if (!best || literals > best.literals) best = { match: { route, params }, literals };
    }
    if (best) return best.match;
    return pathExists ? 'method' : undefined;
  }

  /** Every mounted route, for docs and tests. */
  list(): Array<{ method: string; path: string }> {
    return this.routes.map((r) => ({ method: r.method, path: '/' + r.segments.join('/') }));
  }
}

function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const want = pattern[i]!;
    const got = parts[i]!;
    if (want.startsWith(':')) {
      let decoded: string;
      try {
        decoded = decodeURIComponent(got);
      } catch {
        return undefined;
      }
      params[want.slice(1)] = decoded;
    } else if (want !== got) {
      return undefined;
    }
  }
  return params;
}

/** Writes a JSON value with exactly `Content-Type: application/json`. */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
  res.end(body);
}

/** Writes `{"error":{"message","code"}}`. */
export function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: { message: err.message, code: err.code } }, err.headers);
}
