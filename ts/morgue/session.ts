/**
 * The morgue session: `current.json` in `$MORGUE_CONFIG_DIR` (or `~/.morgue`), laid out as the
 * vendor morgue writes it (backtrace-compat.md §1.2), so either tool can read the other's login:
 *
 *   { "config": <the /api/login response, verbatim>,
 *     "endpoint": "http://host:port",
 *     "submissionEndpoint": "http://host:<post port>/post" }
 *
 * The folder is created 0700 and the file written 0600 (it holds a bearer token), atomically, so a
 * crash never leaves half a session behind.
 */

import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { UsageError } from '../cli/errors.js';
import { SessionError } from './errors.js';

/** The parts of the login response morgue reads; everything else is kept as the server sent it. */
export interface LoginConfig {
  token: string;
  uid?: number;
  user?: { uid?: number; username?: string; email?: string; superuser?: number | boolean };
  universe?: { id?: number; name?: string };
  universes?: Record<string, { id?: number; name?: string }>;
  endpoints?: { post?: Array<{ protocol?: string; port?: number | string }> };
  services?: unknown[];
  [key: string]: unknown;
}

export interface Session {
  config: LoginConfig;
  endpoint: string;
  submissionEndpoint?: string;
}

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.MORGUE_CONFIG_DIR;
  if (fromEnv) return fromEnv;
  return path.join(os.homedir(), '.morgue');
}

export function sessionFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(configDir(env), 'current.json');
}

/** The saved session, or null when there is none (no file, or an empty one). */
export function loadSession(env: NodeJS.ProcessEnv = process.env): Session | null {
  const file = sessionFile(env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (text.trim() === '') return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new SessionError(`${file} is not JSON (${(err as Error).message}); run \`morgue login <url>\` again`);
  }
  if (!isRecord(parsed) || !isRecord(parsed.config) || typeof parsed.endpoint !== 'string') return null;
  if (typeof parsed.config.token !== 'string' || parsed.config.token === '') return null;
  const session: Session = { config: parsed.config as LoginConfig, endpoint: parsed.endpoint };
  if (typeof parsed.submissionEndpoint === 'string') session.submissionEndpoint = parsed.submissionEndpoint;
  return session;
}

/** The saved session, or a SessionError telling the user to log in. */
export function requireSession(env: NodeJS.ProcessEnv = process.env): Session {
  const session = loadSession(env);
  if (!session) throw new SessionError('not logged in: run `morgue login <url>` first');
  return session;
}

export function saveSession(session: Session, env: NodeJS.ProcessEnv = process.env): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask and ignored for a folder that already exists.
  chmodSync(dir, 0o700);
  const file = sessionFile(env);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

export function removeSession(env: NodeJS.ProcessEnv = process.env): void {
  rmSync(sessionFile(env), { force: true });
}

/**
 * Where `put` submits: the first `https` entry of `config.endpoints.post`, else the first entry,
 * on the host the user logged in to (the vendor morgue's rule). Undefined when the server lists none.
 */
export function submissionEndpointFor(endpoint: string, config: LoginConfig): string | undefined {
  const posts = config.endpoints?.post;
  if (!Array.isArray(posts) || posts.length === 0) return undefined;
  const https = posts.findIndex((p) => p?.protocol === 'https');
  const chosen = posts[https >= 0 ? https : 0];
  if (!chosen || typeof chosen.protocol !== 'string' || chosen.port === undefined) return undefined;
  const host = new URL(endpoint).hostname;
  return `${chosen.protocol}://${host}:${chosen.port}/post`;
}

/** The session user's name, for messages. */
export function sessionUser(session: Session): string | undefined {
  return session.config.user?.username;
}

export interface ProjectRef {
  universe: string;
  project: string;
}

/** `universe/project`, or `project` in the session's first universe (as the vendor morgue does). */
export function resolveProject(arg: string, session: Session): ProjectRef {
  const parts = arg.split('/');
  if (parts.length === 2 && parts[0] && parts[1]) return { universe: parts[0], project: parts[1] };
  if (parts.length === 1 && arg !== '') {
    const universes = session.config.universes;
    const first = universes && typeof universes === 'object' ? Object.keys(universes)[0] : undefined;
    const universe = first ?? session.config.universe?.name;
    if (!universe) throw new UsageError(`the session names no universe; write the project as <universe>/${arg}`);
    return { universe, project: arg };
  }
  throw new UsageError(`"${arg}" is not a project: write <project> or <universe>/<project>`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
