/**
 * The coroner query API on the wire, exactly as the vendor morgue speaks it
 * (backtrace-compat.md §1.1): every call goes to `<endpoint origin>/api/...`, the session token
 * rides in the query string (`?token=` first, except for login), login is a form post, queries
 * are JSON bodies, submissions are octet-stream or multipart. A 200 with `{"error": ...}` and any
 * non-200 are failures; both become one-line [[ServerError]]s. No answer at all is an
 * [[UnreachableError]].
 *
 * One client owns one connection pool; call `close()` when done so the process can exit.
 */

import { STATUS_CODES } from 'node:http';

import { Agent, FormData, request } from 'undici';

import { ServerError, SessionError, UnreachableError } from './errors.js';

export type Params = Array<[string, string]>;

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface ClientOptions {
  /** The URL given to `morgue login`; only its origin is used. */
  endpoint: string;
  /** The session token, added as `?token=` to every call but login. */
  token?: string;
  /** Gives up after this long without an answer (default 60 s). */
  timeoutMs?: number;
}

export class CoronerClient {
  readonly origin: string;
  token: string | undefined;
  private readonly agent: Agent;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions) {
    this.origin = originOf(options.endpoint);
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.agent = new Agent({ connect: { timeout: Math.min(this.timeoutMs, 15_000) } });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** `POST /api/login` with a form body; answers the login JSON. */
  async login(credentials: { username: string; password: string } | { token: string }): Promise<Record<string, unknown>> {
    const form = new URLSearchParams('token' in credentials ? { token: credentials.token } : credentials);
    const response = await this.send('POST', '/api/login', [], {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    return expectJson(response, false);
  }

  /** `GET path?token=...&params`, answering JSON. */
  async getJson(path: string, params: Params = []): Promise<Record<string, unknown>> {
    return expectJson(await this.send('GET', path, this.withToken(params)), true);
  }

  /** `GET path?token=...&params`, answering the raw bytes (for `/api/get`). */
  async getRaw(path: string, params: Params = []): Promise<RawResponse> {
    const response = await this.send('GET', path, this.withToken(params));
    if (response.status !== 200) expectJson(response, true);
    return response;
  }

  /** `POST path?token=...&params` with a JSON body (queries, describe, delete). */
  async postJson(path: string, params: Params, body: unknown): Promise<Record<string, unknown>> {
    const response = await this.send('POST', path, this.withToken(params), {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return expectJson(response, true);
  }

  /** `POST path?token=...&params` with raw bytes (`put`), optionally already compressed. */
  async postBinary(path: string, params: Params, body: Buffer, contentEncoding?: string): Promise<Record<string, unknown>> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (contentEncoding) headers['content-encoding'] = contentEncoding;
    const response = await this.send('POST', path, this.withToken(params), { headers, body });
    return expectJson(response, true);
  }

  /** `POST path?params&token=...` as multipart (`put` with attachments; the token goes last, as morgue sends it). */
  async postMultipart(path: string, params: Params, form: FormData): Promise<Record<string, unknown>> {
    const query: Params = [...params];
    if (this.token) query.push(['token', this.token]);
    const response = await this.send('POST', path, query, { body: form });
    return expectJson(response, true);
  }

  private withToken(params: Params): Params {
    return this.token ? [['token', this.token], ...params] : [...params];
  }

  private async send(
    method: 'GET' | 'POST',
    path: string,
    params: Params,
    init: { headers?: Record<string, string>; body?: string | Buffer | FormData } = {},
  ): Promise<RawResponse> {
    const url = new URL(path, this.origin);
    for (const [k, v] of params) url.searchParams.append(k, v);
    try {
      const response = await request(url, {
        method,
        headers: init.headers,
        body: init.body,
        dispatcher: this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const body = Buffer.from(await response.body.arrayBuffer());
      return { status: response.statusCode, headers: response.headers, body };
    } catch (err) {
      throw new UnreachableError(`cannot reach ${this.origin}: ${networkReason(err)}`);
    }
  }
}

/** `http://host:port` of a URL the user typed; a bare `host[:port]` means https. */
export function originOf(endpoint: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `https://${endpoint}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UnreachableError(`"${endpoint}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UnreachableError(`"${endpoint}" is not an http or https URL`);
  }
  return url.origin;
}

function networkReason(err: unknown): string {
  const e = err as (Error & { code?: string; cause?: Error & { code?: string } }) | undefined;
  const code = e?.code ?? e?.cause?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused (is coroner running there?)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return 'the connection was closed before an answer came';
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'timed out connecting';
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'timed out waiting for an answer';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'no route to host';
    default:
      return e?.message ?? String(err);
  }
}

/** Looks like the server no longer honours the session's token. */
function isSessionFailure(status: number, message: string): boolean {
  if (status === 401 || status === 403) return true;
  return /\b(invalid|expired|unknown|missing)\b.*\b(token|session)\b|\b(token|session)\b.*\b(invalid|expired)\b/i.test(message);
}

/**
 * The JSON body of a 200, or the failure as a ServerError. With `authenticated`, a refusal of the
 * token becomes a SessionError that says to log in again.
 */
export function expectJson(response: RawResponse, authenticated: boolean): Record<string, unknown> {
  const text = response.body.toString('utf8');
  let json: unknown;
  let parseError: string | undefined;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch (err) {
    parseError = (err as Error).message;
  }
  const serverMessage = errorMessageOf(json);
  if (response.status !== 200) {
    const base = `HTTP ${response.status}: ${STATUS_CODES[response.status] ?? 'Unknown status'}`;
    const message = serverMessage && serverMessage !== STATUS_CODES[response.status] ? `${base} (${serverMessage})` : base;
    if (authenticated && isSessionFailure(response.status, serverMessage ?? '')) {
      throw new SessionError(`${message}: the session is no longer valid; run \`morgue login\` again`);
    }
    throw new ServerError(message, response.status, errorCodeOf(json));
  }
  if (parseError !== undefined || json === undefined) {
    throw new ServerError(`the server sent invalid JSON (${parseError ?? 'an empty body'})`, response.status);
  }
  if (serverMessage !== undefined) {
    if (authenticated && isSessionFailure(200, serverMessage)) {
      throw new SessionError(`${serverMessage}: the session is no longer valid; run \`morgue login\` again`);
    }
    throw new ServerError(serverMessage, 200, errorCodeOf(json));
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ServerError(`the server answered ${JSON.stringify(json).slice(0, 80)} where an object was expected`, 200);
  }
  return json as Record<string, unknown>;
}

function errorMessageOf(json: unknown): string | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const error = (json as { error?: unknown }).error;
  if (error === undefined || error === null) return undefined;
  if (typeof error === 'string') return error;
  if (typeof error === 'object') {
    const message = (error as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return message;
    return JSON.stringify(json);
  }
  return String(error);
}

function errorCodeOf(json: unknown): number | undefined {
  const code = (json as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === 'number' ? code : undefined;
}
