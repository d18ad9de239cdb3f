/**
 * coroner's HTTP(S) server: one port for submissions, the API and (later) the web console.
 *
 * The caller opens a `Store`, then `createCoronerServer({ store, universe, ... })` and
 * `listen()`. The server turns requests into `RequestContext`s for the handlers of its `Router`
 * (router.ts has the contract), mounts the submission endpoints (submit.ts), the admin endpoints
 * (admin.ts) and, when the modules exist, the query API's `mountApi(router)` from
 * ts/server/api/index.ts and then the web console's `mountWeb(router)` from ts/web/index.ts, and
 * the workflow integrations (ts/workflows: admin endpoints, and alerts once it listens).
 * It never serves a file by a path the client names.
 */

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import zlib from 'node:zlib';
import { RetentionService, type RetentionOptions } from '../coroner/retention.js';
import { DiskFullError, StoreError, type Store, type Universe } from '../store/types.js';
import { mountAdmin } from './admin.js';
import { coresnapVersion } from '../native/index.js';
import { DEFAULT_SESSION_TTL_SECONDS } from './auth.js';
import {
  HttpError,
  jsonResponse,
  Router,
  sendError,
  sendJson,
  type AuthSession,
  type HandlerResult,
  type PostEndpoint,
  type RequestContext,
  type RouteMatch,
} from './router.js';
import { mountSubmissions, SubmissionLimiter, type SubmissionLimits } from './submit.js';
import { createWorkflowService, mountIntegrations, type WorkflowOptions } from '../workflows/index.js';

export interface ServerLimits extends SubmissionLimits {
  /** Largest body of a non-submission request (default 16 MiB). */
  maxApiBodyBytes: number;
  /**
   * Request bodies held in memory at once, over all requests (decompressed bytes included): a
   * request that would go past it is answered 429 with Retry-After, so many large uploads at once
   * slow clients down instead of exhausting the server's memory (0 = no limit).
   */
  maxBufferedBodyBytes: number;
}

/**
 * Why `limits` cannot work, or undefined: a body budget below the largest body accepted would
 * refuse such a body with 429 for ever, and its client would retry for ever.
 */
export function bodyBudgetProblem(limits: ServerLimits): string | undefined {
  const largest = Math.max(limits.maxSubmissionBytes, limits.maxApiBodyBytes);
  if (limits.maxBufferedBodyBytes > 0 && limits.maxBufferedBodyBytes < largest) {
    return `the body budget (${limits.maxBufferedBodyBytes} bytes) is below the largest body accepted (${largest})`;
  }
  return undefined;
}

/** What one request holds of the body budget; `released` once its response has ended. */
interface BudgetHolder {
  bytes: number;
  released: boolean;
}

/** The bytes of request bodies in memory now, against `ServerLimits.maxBufferedBodyBytes`. */
class BodyBudget {
  private used = 0;
  constructor(private readonly limit: number) {}

  /**
   * Takes `n` bytes for `holder` (given back when its response ends), or false when that would
   * pass the limit, or when the holder's response has already ended (a client that went away
   * while its body was being decompressed: nothing would give those bytes back).
   */
  take(holder: BudgetHolder, n: number): boolean {
    if (holder.released) return false;
    if (this.limit > 0 && this.used + n > this.limit) return false;
    this.used += n;
    holder.bytes += n;
    return true;
  }

  giveBack(holder: BudgetHolder): void {
    this.used -= holder.bytes;
    holder.bytes = 0;
    holder.released = true;
  }
}

/** The client closed its connection before its body was complete: nobody to answer, nothing to log. */
class ClientGoneError extends Error {
  override name = 'ClientGoneError';
}

const BUSY_WITH_UPLOADS = () =>
  new HttpError(429, 'The server is busy receiving other large uploads; retry shortly.', undefined, { 'Retry-After': '5' });

/** What a 507 (the disk is full) suggests as `Retry-After`. */
const DISK_FULL_RETRY_SECONDS = 60;

export const DEFAULT_LIMITS: ServerLimits = {
  maxSubmissionBytes: 64 * 1024 * 1024,
  maxApiBodyBytes: 16 * 1024 * 1024,
  maxBufferedBodyBytes: 512 * 1024 * 1024,
  maxInFlightSubmissions: 2048,
  submissionsPerMinutePerProject: 0,
};

export interface CoronerServerOptions {
  store: Store;
  /** The universe served (created by bootstrap). */
  universe: string;
  host?: string;
  port?: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  limits?: Partial<ServerLimits>;
  sessionTtlSeconds?: number;
  /** Where errors that are not the client's go (default: stderr). */
  log?: (line: string) => void;
  /** Mount the query API from ts/server/api/index.ts when it exists (default true). */
  mountQueryApi?: boolean;
  /** Mount the web console from ts/web/index.ts when it exists, after the query API (default true). */
  mountWebConsole?: boolean;
  /** Workflow integrations (ts/workflows): tuning, or false to run none (default on). */
  workflows?: WorkflowOptions | false;
  /** The base URL people reach the console at, for links in messages (default: the listen address). */
  publicUrl?: string;
  /** Project retention (ts/coroner/retention.ts): tuning, or false to delete nothing (default on). */
  retention?: RetentionOptions | false;
}

export interface CoronerServer {
  readonly router: Router;
  readonly store: Store;
  readonly universe: Universe;
  readonly limits: ServerLimits;
  /** Starts listening; resolves with the bound port (useful with port 0). */
  listen(): Promise<number>;
  /** The base URL clients use, e.g. `http://127.0.0.1:6097`. */
  url(): string;
  readonly endpoints: { post: PostEndpoint[] };
  /** Deletes crashes past their project's retention; undefined when turned off. */
  readonly retention: RetentionService | undefined;
  close(): Promise<void>;
}

export async function createCoronerServer(options: CoronerServerOptions): Promise<CoronerServer> {
  const { store } = options;
  const universe = await store.getUniverse(options.universe);
  if (!universe) throw new StoreError(`There is no universe named "${options.universe}" in this data folder.`);
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const tooSmall = bodyBudgetProblem(limits);
  if (tooSmall) throw new RangeError(tooSmall);
  const sessionTtlSeconds = options.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS;
  const log = options.log ?? ((line: string) => process.stderr.write(`coroner: ${line}\n`));
  const router = new Router();
  const protocol: 'http' | 'https' = options.tls ? 'https' : 'http';
  const endpoints = { post: [] as PostEndpoint[] };

  mountSubmissions(router, new SubmissionLimiter(limits), limits);
  mountAdmin(router);
  const queryApi = options.mountQueryApi !== false ? await mountQueryApi(router, log) : undefined;
  if (options.mountWebConsole !== false) await mountWebConsole(router, log);
  mountIntegrations(router);
  const retention = options.retention === false ? undefined : new RetentionService(store, { log, ...options.retention });
  const workflows =
    options.workflows === false
      ? undefined
      : createWorkflowService({
          ...options.workflows,
          store,
          log,
          publicUrl: () => options.publicUrl ?? (host === '0.0.0.0' || host === '::' ? `${protocol}://${os.hostname()}:${port}` : api.url()),
          onGroupReopened: (projectId, fingerprint) => queryApi?.queryServiceFor?.(store).noteGroupState(projectId, fingerprint, 'open'),
        });

  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      log(`request ${req.method} ${req.url}: ${(err as Error).stack ?? String(err)}`);
      if (!res.headersSent) sendError(res, new HttpError(500, 'Internal server error.'));
      else res.destroy();
    });
  };
  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, listener) : http.createServer(listener);
  // Slow clients must not hold sockets forever; submissions of a few MB still fit.
  server.requestTimeout = 5 * 60 * 1000;
  server.headersTimeout = 60 * 1000;
  server.keepAliveTimeout = 65 * 1000;

  const bodyBudget = new BodyBudget(limits.maxBufferedBodyBytes);

  // A full disk refuses every write until there is room: say so in the log once a minute, not
  // once per refused request.
  let diskFullLoggedAt = 0;
  let diskFullRefusals = 0;
  const noteDiskFull = (err: DiskFullError): void => {
    diskFullRefusals++;
    const now = Date.now();
    if (now - diskFullLoggedAt < 60_000) return;
    log(`the data folder's disk is full (${err.detail}): writes are answered 507 until there is room; ${diskFullRefusals} refused so far`);
    diskFullLoggedAt = now;
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://coroner.invalid');
    } catch {
      return sendError(res, new HttpError(400, 'The request URL is malformed.'));
    }
    const method = req.method ?? 'GET';
    const match = router.match(method, url.pathname);
    if (match === undefined) return drainThen(req, () => sendError(res, new HttpError(404, `There is no endpoint ${url.pathname}.`)));
    if (match === 'method') return drainThen(req, () => sendError(res, new HttpError(405, `${method} is not allowed on ${url.pathname}.`)));

    let body: Buffer;
    // The body's bytes stay counted until the answer has gone (or the connection has).
    const held: BudgetHolder = { bytes: 0, released: false };
    res.once('close', () => bodyBudget.giveBack(held));
    try {
      body = match.route.options.streamBody
        ? Buffer.alloc(0)
        : await readBody(req, match.route.options.maxBodyBytes ?? limits.maxApiBodyBytes, (n) => bodyBudget.take(held, n));
    } catch (err) {
      if (err instanceof ClientGoneError) return;
      if (err instanceof HttpError) {
        // The rest of an oversized body is not read: close the connection after answering.
        res.setHeader('Connection', 'close');
        sendError(res, err);
        req.resume();
        return;
      }
      throw err;
    }
    const ctx = makeContext(req, url, match, body);
    let result: HandlerResult;
    try {
      result = await match.route.handler(ctx);
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err);
      if (err instanceof DiskFullError) {
        noteDiskFull(err);
        return sendError(res, new HttpError(507, err.message, undefined, { 'Retry-After': String(DISK_FULL_RETRY_SECONDS) }));
      }
      if (err instanceof StoreError) return sendError(res, new HttpError(400, err.message));
      throw err;
    }
    send(res, result, method === 'HEAD');
  }

  // For monitors and load balancers: 200 when the store answers and takes writes, 503 otherwise.
  const startedAt = Date.now();
  router.route('GET', '/api/health', async () => {
    const facts = { version: coresnapVersion(), uptime_seconds: Math.floor((Date.now() - startedAt) / 1000) };
    const health = store.health ? await store.health() : { ok: true as const };
    if (!health.ok) return jsonResponse({ status: health.status, ...facts, error: health.error }, 503);
    return { status: 'ok', ...facts };
  });

  function makeContext(req: http.IncomingMessage, url: URL, match: RouteMatch, body: Buffer): RequestContext {
    let cachedSession: Promise<AuthSession | undefined> | undefined;
    const ctx: RequestContext = {
      method: req.method ?? 'GET',
      url,
      query: url.searchParams,
      params: match.params,
      headers: req.headers,
      body,
      remoteAddress: req.socket.remoteAddress ?? '',
      store,
      universe: universe!,
      endpoints,
      sessionTtlSeconds,
      request: req,
      json(): unknown {
        if (body.length === 0) return {};
        try {
          return JSON.parse(body.toString('utf8'));
        } catch (err) {
          throw new HttpError(400, `The request body is not valid JSON: ${(err as Error).message}.`);
        }
      },
      form(): URLSearchParams {
        return new URLSearchParams(body.toString('utf8'));
      },
      sessionFromRequest(): Promise<AuthSession | undefined> {
        cachedSession ??= resolveSession(store, sessionTokenOf(req, url));
        return cachedSession;
      },
      async requireSession(): Promise<AuthSession> {
        const auth = await ctx.sessionFromRequest();
        if (!auth) throw new HttpError(401, 'invalid token');
        return auth;
      },
      async requireSuperuser(): Promise<AuthSession> {
        const auth = await ctx.requireSession();
        if (!auth.user.superuser) throw new HttpError(403, 'This needs a superuser.');
        return auth;
      },
      async requireProject(auth: AuthSession, name?: string) {
        const u = url.searchParams.get('universe');
        if (u !== null && u !== '' && u !== auth.universe.name) throw new HttpError(403, `You are not a member of universe "${u}".`);
        const projectName = name ?? url.searchParams.get('project');
        if (!projectName) throw new HttpError(400, 'The request names no project (project=...).');
        const project = await store.getProject(auth.universe.id, projectName);
        if (!project) throw new HttpError(404, `There is no project "${projectName}" in universe "${auth.universe.name}".`);
        return project;
      },
      async submissionToken(id: string) {
        if (!/^[0-9a-fA-F]{16,128}$/.test(id)) return undefined;
        const token = await store.getToken(id.toLowerCase());
        return token && token.revokedAt === undefined ? token : undefined;
      },
    };
    return ctx;
  }

  let port = options.port ?? 6097;
  const host = options.host ?? '127.0.0.1';
  const api: CoronerServer = {
    router,
    store,
    universe,
    limits,
    endpoints,
    retention,
    listen() {
      return new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          port = (server.address() as AddressInfo).port;
          endpoints.post.splice(0, endpoints.post.length, { protocol, port });
          resolve(port);
        });
      }).then(async (bound) => {
        // Before any request is read: the evaluator must see every insert. A broken workflow
        // store must not stop the server from taking crashes.
        await workflows?.start().catch((err: unknown) => log(`workflow integrations are off: ${(err as Error).message}`));
        retention?.start();
        return bound;
      });
    },
    url() {
      const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
      return `${protocol}://${h}:${port}`;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await retention?.close();
      await workflows?.close();
      queryApi?.closeQueryService?.(store);
    },
  };
  return api;
}

function sessionTokenOf(req: http.IncomingMessage, url: URL): string | undefined {
  const header = req.headers['x-coroner-token'];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  return url.searchParams.get('token') ?? fromHeader ?? undefined;
}

async function resolveSession(store: Store, token: string | undefined): Promise<AuthSession | undefined> {
  if (!token || token.length > 256) return undefined;
  const session = await store.getSession(token);
  if (!session) return undefined;
  const user = await store.getUserById(session.uid);
  const universe = await store.getUniverseById(session.universeId);
  if (!user || !universe || user.universeId !== universe.id) return undefined;
  return { session, user, universe };
}

/**
 * Reads the body whole, undoing Content-Encoding; 413 past `limit` bytes (before or after
 * decoding), 429 when `take` (the server's memory budget) refuses the bytes.
 */
async function readBody(req: http.IncomingMessage, limit: number, take: (bytes: number) => boolean): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new HttpError(413, `The body is larger than the limit of ${limit} bytes.`);
  const raw = await collect(req, limit, take);
  const encoding = String(req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  return decode(raw, encoding, limit, take);
}

/**
 * The request's bytes; a 413 past `limit`, a 429 when `take` refuses a chunk. Reading stops
 * there (the caller answers, then drains the rest unbuffered). Plain 'data' events, not
 * `for await`: every submission comes through here, and the async iterator costs the event loop
 * a promise per chunk.
 */
function collect(req: http.IncomingMessage, limit: number, take: (bytes: number) => boolean): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      const refusal =
        size > limit ? new HttpError(413, `The body is larger than the limit of ${limit} bytes.`) : take(chunk.length) ? undefined : BUSY_WITH_UPLOADS();
      if (!refusal) {
        chunks.push(chunk);
        return;
      }
      cleanup();
      req.pause();
      reject(refusal);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    // The request stream fails only when its connection does.
    const onError = (err: Error) => {
      cleanup();
      reject(new ClientGoneError(`The client's connection failed before the body was complete: ${err.message}`));
    };
    // A client that goes away mid-body: 'aborted' may come without 'error' or 'end'.
    const onClose = () => {
      cleanup();
      reject(new ClientGoneError('The client closed the connection before the body was complete.'));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Undoes Content-Encoding as a stream, so that the budget (`take`) and the size limit see each
 * piece of output as it is made, before a gzip bomb has been inflated whole.
 */
async function decode(raw: Buffer, encoding: string, limit: number, take: (bytes: number) => boolean): Promise<Buffer> {
  if (encoding === 'identity' || encoding === '') return raw;
  if (encoding === 'gzip' || encoding === 'x-gzip') return inflate(raw, zlib.createGunzip(), encoding, limit, take);
  if (encoding === 'deflate') {
    // HTTP's deflate is zlib-wrapped, but some clients send it raw.
    try {
      return await inflate(raw, zlib.createInflate(), encoding, limit, take);
    } catch (err) {
      if (err instanceof HttpError && err.status !== 400) throw err;
      return inflate(raw, zlib.createInflateRaw(), encoding, limit, take);
    }
  }
  throw new HttpError(400, `Content-Encoding "${encoding}" is not supported (use gzip or deflate).`);
}

function inflate(raw: Buffer, stream: zlib.Gunzip | zlib.Inflate | zlib.InflateRaw, encoding: string, limit: number, take: (bytes: number) => boolean): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      stream.destroy();
      reject(err);
    };
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(new HttpError(413, `The body is larger than the limit of ${limit} bytes once decompressed.`));
      if (!take(chunk.length)) return fail(BUSY_WITH_UPLOADS());
      chunks.push(chunk);
    });
    stream.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks, size));
    });
    stream.on('error', (err: Error) => fail(new HttpError(400, `The body is not valid ${encoding} data: ${err.message}.`)));
    stream.end(raw);
  });
}

function drainThen(req: http.IncomingMessage, fn: () => void): void {
  req.resume();
  fn();
}

function send(res: http.ServerResponse, result: HandlerResult, head: boolean): void {
  const r = result as { kind?: unknown };
  if (r.kind === 'raw') {
    const raw = result as { status: number; headers: Record<string, string>; body: Uint8Array | string };
    const body = typeof raw.body === 'string' ? Buffer.from(raw.body) : raw.body;
    res.writeHead(raw.status, { ...raw.headers, 'Content-Length': String(body.length) });
    res.end(head ? undefined : body);
    return;
  }
  if (r.kind === 'json') {
    const j = result as { status: number; value: unknown; headers: Record<string, string> };
    return sendJson(res, j.status, j.value, j.headers);
  }
  sendJson(res, 200, result);
}

interface QueryApiModule {
  mountApi?: (router: Router) => void | Promise<void>;
  closeQueryService?: (store: Store) => void;
  queryServiceFor?: (store: Store) => { noteGroupState(projectId: number, fingerprint: string, state: 'open'): void };
}

/**
 * Mounts ts/server/api/index.ts's `mountApi(router)` when that module has been written; its
 * `closeQueryService(store)`, if exported, runs when the server closes.
 */
async function mountQueryApi(router: Router, log: (line: string) => void): Promise<QueryApiModule | undefined> {
  const url = new URL('./api/index.js', import.meta.url);
  if (!fs.existsSync(url)) return undefined;
  const mod = (await import(url.href)) as QueryApiModule;
  if (typeof mod.mountApi !== 'function') {
    log('ts/server/api/index.ts exports no mountApi(router); the query API is not mounted.');
    return undefined;
  }
  await mod.mountApi(router);
  return mod;
}

/** Mounts ts/web/index.ts's `mountWeb(router)` (the console on the same port) when it has been written. */
async function mountWebConsole(router: Router, log: (line: string) => void): Promise<void> {
  const url = new URL('../web/index.js', import.meta.url);
  if (!fs.existsSync(url)) return;
  const mod = (await import(url.href)) as { mountWeb?: (router: Router) => void | Promise<void> };
  if (typeof mod.mountWeb !== 'function') {
    log('ts/web/index.ts exports no mountWeb(router); the web console is not mounted.');
    return;
  }
  await mod.mountWeb(router);
}
