// The console's one way to the server: coroner's own API (the one morgue uses), its admin
// endpoints and /api/web/*. The session token lives in localStorage and goes in the
// X-Coroner-Token header, never in a URL.

export interface LoginUser {
  uid: number;
  username: string;
  email: string;
  superuser: number;
}

export interface Login {
  token: string;
  user: LoginUser;
  universe: { id: number; name: string };
  expires?: number;
}

const KEY = 'coresnap.console.session';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The session, read from localStorage every time: every tab of the console shares one session,
 * so logging in or out in one is seen by the others (main.ts re-renders on the storage event).
 */
export function session(): Login | undefined {
  try {
    const text = localStorage.getItem(KEY);
    if (!text) return undefined;
    const parsed = JSON.parse(text) as Login;
    if (typeof parsed.token !== 'string' || !parsed.user) return undefined;
    return parsed;
  } catch {
    return undefined;
  }
}

export const SESSION_KEY = KEY;

export function forgetSession(): void {
  localStorage.removeItem(KEY);
}

/** Called when the server says the session is gone: the app shows the login page. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export async function login(username: string, password: string): Promise<Login> {
  const res = await fetch('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username, password }).toString(),
  });
  const body = (await res.json().catch(() => ({}))) as Partial<Login> & { error?: { message?: string } };
  if (!res.ok || typeof body.token !== 'string') throw new ApiError(res.status, body.error?.message ?? `Login failed (HTTP ${res.status}).`);
  const login: Login = { token: body.token, user: body.user!, universe: body.universe!, ...(body.expires !== undefined ? { expires: body.expires } : {}) };
  localStorage.setItem(KEY, JSON.stringify(login));
  return login;
}

export async function logout(): Promise<void> {
  const s = session();
  forgetSession();
  if (s) await fetch('/api/logout', { method: 'POST', headers: { 'X-Coroner-Token': s.token } }).catch(() => undefined);
}

function urlOf(path: string, params: Record<string, string | number | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}

async function send(method: string, path: string, params: Record<string, string | number | undefined>, body?: unknown): Promise<Response> {
  const s = session();
  const headers: Record<string, string> = {};
  if (s) headers['X-Coroner-Token'] = s.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(urlOf(path, params), { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  if (res.status === 401) {
    forgetSession();
    onUnauthorized();
    throw new ApiError(401, 'Your session has ended; log in again.');
  }
  if (!res.ok) {
    const err = (await res.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
    throw new ApiError(res.status, err?.error?.message ?? `${method} ${path} failed (HTTP ${res.status}).`);
  }
  return res;
}

export async function apiJson<T>(method: string, path: string, params: Record<string, string | number | undefined> = {}, body?: unknown): Promise<T> {
  const res = await send(method, path, params, body);
  const json = (await res.json()) as T & { error?: { message?: string } };
  // morgue-style "200 with error".
  if (json && typeof json === 'object' && 'error' in json && json.error) throw new ApiError(res.status, json.error.message ?? 'The server refused.');
  return json;
}

export async function apiBytes(path: string, params: Record<string, string | number | undefined>): Promise<{ blob: Blob; filename: string | undefined }> {
  const res = await send('GET', path, params);
  const disposition = res.headers.get('Content-Disposition') ?? '';
  const m = /filename="([^"]+)"/.exec(disposition);
  return { blob: await res.blob(), filename: m?.[1] };
}

/** Saves bytes as a file through a temporary object URL (the token stays out of the URL). */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function download(path: string, params: Record<string, string | number | undefined>, fallbackName: string): Promise<void> {
  const { blob, filename } = await apiBytes(path, params);
  saveBlob(blob, filename ?? fallbackName);
}

// ---- the query API

export type Filter = Array<Record<string, Array<[string, unknown]>>>;

export interface FoldResponse {
  values: Array<[string, unknown[], number]>;
  cardinalities: { initial: { rows: number; groups: number }; pagination: { rows: number; groups: number } };
  columns: Array<[string, string]>;
}

export interface SelectResponse {
  objects: Array<[string, number[][]]>;
  values: Array<unknown[]>;
  columns: Array<[string, string]>;
  cardinalities: { initial: { rows: number; groups: number } };
}

export interface QueryEnvelope<R> {
  response: R;
  _: { latency: string; tx: number };
}

export function query<R>(project: string, body: unknown): Promise<QueryEnvelope<R>> {
  return apiJson<QueryEnvelope<R>>('POST', '/api/query', { project }, body);
}

export interface ColumnDescription {
  name: string;
  type: string;
  format: string;
  description: string;
  custom: boolean;
  filter: string[];
  aggregate: string[];
  statistics: { used: boolean };
}

export async function describe(project: string): Promise<ColumnDescription[]> {
  const r = await apiJson<{ describe: ColumnDescription[] }>('POST', '/api/query', { project, action: 'describe' }, {});
  return r.describe;
}

/** Rows of a select answer: `{id, values}` in answer order, runs and id ranges undone. */
export function decodeSelect(r: SelectResponse): Array<{ id: number; values: Record<string, unknown> }> {
  const ids: number[] = [];
  for (const [, runs] of r.objects) {
    for (const run of runs) {
      const base = run[0] ?? 0;
      const extra = run[1] ?? 0;
      for (let i = 0; i <= extra; i++) ids.push(base + i);
    }
  }
  const rows = ids.map((id) => ({ id, values: {} as Record<string, unknown> }));
  r.columns.forEach(([name], c) => {
    const col = r.values[c] ?? [];
    let row = 0;
    for (let i = 1; i < col.length; i++) {
      const [value, count] = col[i] as [unknown, number];
      for (let k = 0; k < count && row < rows.length; k++) rows[row++]!.values[name] = value;
    }
  });
  return rows;
}
