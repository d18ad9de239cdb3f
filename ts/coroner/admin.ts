/**
 * The administrative operations of coroner (projects, tokens, users, first start), written once
 * over a `Store` and used both by the command line (`coroner project|token|user ...`, acting on
 * the store directly) and by the HTTP admin endpoints (ts/server/admin.ts) for the web console.
 * Every failure the user can fix is an AdminError whose message is a sentence.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ini from 'ini';
import { parseDuration } from '../config/units.js';
import { createSubmissionToken, hashPassword, newPassword } from '../server/auth.js';
import { StoreError, type ApiToken, type Project, type Store, type Universe, type User } from '../store/types.js';

export class AdminError extends Error {
  override name = 'AdminError';
}

export const DEFAULT_UNIVERSE = 'local';
export const DEFAULT_LISTEN = '127.0.0.1:6097';
export const FIRST_PROJECT = 'blackhole';

/** `$XDG_DATA_HOME/coresnap/coroner`, or `~/.local/share/coresnap/coroner`. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_DATA_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.local', 'share');
  return path.join(base, 'coresnap', 'coroner');
}

export async function requireUniverse(store: Store, name: string): Promise<Universe> {
  const u = await store.getUniverse(name);
  if (!u) throw new AdminError(`There is no universe "${name}" in this data folder (has "coroner serve" run once?).`);
  return u;
}

export async function requireProject(store: Store, universe: Universe, name: string): Promise<Project> {
  const p = await store.getProject(universe.id, name);
  if (!p) throw new AdminError(`There is no project "${name}" in universe "${universe.name}".`);
  return p;
}

/** The first superuser of a universe: the owner of tokens made from the command line. */
async function defaultOwner(store: Store, universe: Universe): Promise<number> {
  const users = await store.listUsers(universe.id);
  return (users.find((u) => u.superuser) ?? users[0])?.uid ?? 0;
}

export interface ProjectWithTokens extends Project {
  tokens: ApiToken[];
}

export async function listProjects(store: Store, universe: Universe): Promise<ProjectWithTokens[]> {
  const projects = await store.listProjects(universe.id);
  return Promise.all(projects.map(async (p) => ({ ...p, tokens: (await store.listTokens(p.id)).filter((t) => t.revokedAt === undefined) })));
}

/** Creates a project and (unless `withToken` is false) a submission token named after it. */
export async function createProject(
  store: Store,
  universe: Universe,
  name: string,
  options: { withToken?: boolean; ownerUid?: number } = {},
): Promise<{ project: Project; token?: ApiToken }> {
  const project = await wrap(() => store.createProject(universe.id, name));
  if (options.withToken === false) return { project };
  const token = await createSubmissionToken(store, project.id, name, options.ownerUid ?? (await defaultOwner(store, universe)));
  return { project, token };
}

export async function deleteProject(store: Store, universe: Universe, name: string): Promise<Project> {
  const project = await requireProject(store, universe, name);
  await wrap(() => store.deleteProject(project.id));
  return project;
}

/**
 * Sets how long a project keeps its crashes: a duration as coresnap.conf writes them (`90d`,
 * `12h`, `2w`, `6M`), or `off` (null) to keep them for ever. ts/coroner/retention.ts deletes what
 * is older.
 */
export async function setRetention(store: Store, universe: Universe, name: string, maxAge: string | null): Promise<Project> {
  const project = await requireProject(store, universe, name);
  let seconds: number | null = null;
  if (maxAge !== null && maxAge.trim().toLowerCase() !== 'off') {
    const parsed = parseDuration(maxAge);
    if (parsed === null || parsed < 1) {
      throw new AdminError(`"${maxAge}" is not a retention: give a duration such as 90d, 12h, 2w or 6M (s, m, h, d, w, M), or off.`);
    }
    seconds = Math.round(parsed);
  }
  await wrap(() => store.setProjectRetention(project.id, seconds));
  return { ...project, retentionSeconds: seconds };
}

export async function createToken(
  store: Store,
  universe: Universe,
  projectName: string,
  options: { name?: string; ownerUid?: number } = {},
): Promise<ApiToken> {
  const project = await requireProject(store, universe, projectName);
  return wrap(async () => createSubmissionToken(store, project.id, options.name ?? project.name, options.ownerUid ?? (await defaultOwner(store, universe))));
}

export interface TokenWithProject extends ApiToken {
  project: string;
}

/** Live tokens of one project, or of every project of the universe. */
export async function listTokens(store: Store, universe: Universe, projectName?: string): Promise<TokenWithProject[]> {
  const projects = projectName ? [await requireProject(store, universe, projectName)] : await store.listProjects(universe.id);
  const out: TokenWithProject[] = [];
  for (const p of projects) {
    for (const t of await store.listTokens(p.id)) if (t.revokedAt === undefined) out.push({ ...t, project: p.name });
  }
  return out;
}

/** Revokes a token of this universe (it stops working at once). */
export async function deleteToken(store: Store, universe: Universe, id: string): Promise<TokenWithProject> {
  const token = /^[0-9a-fA-F]{16,128}$/.test(id) ? await store.getToken(id.toLowerCase()) : undefined;
  const project = token && (await store.getProjectById(token.projectId));
  if (!token || !project || project.universeId !== universe.id || token.revokedAt !== undefined) {
    throw new AdminError(`There is no token ${id} in universe "${universe.name}".`);
  }
  await wrap(() => store.revokeToken(token.id));
  return { ...token, project: project.name };
}

export async function createUser(
  store: Store,
  universe: Universe,
  user: { username: string; email?: string; password: string; superuser?: boolean },
): Promise<User> {
  if (user.password.length < 8) throw new AdminError('A password must be at least 8 characters long.');
  const email = user.email ?? '';
  if (email && !/^[^\s@]+@[^\s@]+$/.test(email)) throw new AdminError(`"${email}" is not an email address.`);
  const hash = await hashPassword(user.password);
  return wrap(() => store.createUser(universe.id, user.username, email, hash, user.superuser ?? false));
}

export async function listUsers(store: Store, universe: Universe): Promise<User[]> {
  return store.listUsers(universe.id);
}

/** Deletes a user; the last superuser of a universe stays (someone must be able to administer it). */
export async function deleteUser(store: Store, universe: Universe, username: string): Promise<User> {
  const user = await store.getUser(universe.id, username);
  if (!user) throw new AdminError(`There is no user "${username}" in universe "${universe.name}".`);
  if (user.superuser) {
    const superusers = (await store.listUsers(universe.id)).filter((u) => u.superuser);
    if (superusers.length <= 1) throw new AdminError(`"${username}" is the last superuser of universe "${universe.name}" and cannot be deleted.`);
  }
  await wrap(() => store.deleteUser(user.uid));
  const { passwordHash: _, ...plain } = user;
  return plain;
}

export interface BootstrapResult {
  universe: Universe;
  /** Set on first start only. */
  created?: { admin: User; password: string; passwordGenerated: boolean; project: Project; token: ApiToken };
}

/**
 * First start of a universe: creates it, the superuser `admin` (password from
 * CORONER_ADMIN_PASSWORD, or generated: the caller prints it once) and the project `blackhole`
 * with a submission token. An existing universe is left as it is. The caller writes coroner.cf
 * with `syncClientConfig` once it knows the address it listens on.
 */
export async function bootstrap(store: Store, universeName: string, env: NodeJS.ProcessEnv = process.env): Promise<BootstrapResult> {
  const existing = await store.getUniverse(universeName);
  if (existing) return { universe: existing };
  const universe = await wrap(() => store.createUniverse(universeName));
  const given = env.CORONER_ADMIN_PASSWORD;
  const password = given && given.length > 0 ? given : newPassword();
  const admin = await store.createUser(universe.id, 'admin', '', await hashPassword(password), true);
  const { project, token } = await createProject(store, universe, FIRST_PROJECT, { ownerUid: admin.uid });
  return { universe, created: { admin, password, passwordGenerated: !given, project, token: token! } };
}

/** Where a data folder's client configuration is. */
export function clientConfigPath(dataDir: string): string {
  return path.join(dataDir, 'coroner.cf');
}

/**
 * `<data>/coroner.cf`: written whole on first start (`firstToken` given), after that only its
 * `write` address is kept current (the user may have edited the rest).
 */
export function syncClientConfig(dataDir: string, universe: string, writeUrl: string, firstToken?: ApiToken): string {
  const file = clientConfigPath(dataDir);
  if (firstToken) writeClientConfig(file, universe, writeUrl, { [firstToken.name]: firstToken.id });
  else updateClientConfig(file, universe, writeUrl);
  return file;
}

/** Writes a coroner.cf that `coroner put` (and coresnapd) can use as is. */
export function writeClientConfig(file: string, universe: string, writeUrl: string, tokens: Record<string, string>): void {
  const text =
    `; coroner client configuration, written by "coroner serve" on first start.\n` +
    `; Use it as is:  coroner -c ${file} put blackhole blackhole <snapshot>\n` +
    ini.stringify({ universe: { name: universe, write: writeUrl }, tokens });
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function updateClientConfig(file: string, universe: string, writeUrl: string): void {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return; // removed by the user: not ours to bring back with stale tokens
  }
  const parsed = ini.parse(text) as { universe?: { name?: string; write?: string } };
  if (parsed.universe?.name !== universe || parsed.universe.write === writeUrl) return;
  // Only the write line changes; comments and other sections stay as the user left them.
  const updated = text.replace(/^(\s*write\s*=\s*).*$/m, `$1${writeUrl}`);
  fs.writeFileSync(file, updated, { mode: 0o600 });
}

async function wrap<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StoreError) throw new AdminError(err.message);
    throw err;
  }
}
