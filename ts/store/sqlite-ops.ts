/**
 * The SQLite schema and every statement of the embedded store, as plain functions over one
 * connection. SqliteStore (sqlite.ts) runs them on the calling thread (small reads, the CLI) or
 * in a worker that owns its own connection (ingestion batches, long scans): the same code either
 * way, so no behaviour depends on which thread ran it.
 *
 * Data layout under the data folder (no name here comes from a client):
 *   coroner.db (+ -wal, -shm)    everything but large blobs
 *   blobs/<2 hex>/<32 hex>      blobs over INLINE_BLOB_LIMIT (report bodies, attachments),
 *                               named by random ids this process generates
 */

import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CompiledGroupingRules } from '../grouping/fingerprint.js';
import { prepareSubmission } from '../ingest/prepare.js';
import { InvalidSubmissionError, StoreError } from './types.js';
import type {
  CrashFields,
  RawSubmission,
  ApiToken,
  AttachmentInfo,
  AttributeDeclaration,
  AttributeType,
  AttributeValue,
  CrashObject,
  GroupState,
  Project,
  Session,
  Universe,
  NewCrash,
  User,
} from './types.js';

/** 2: projects.retention_seconds. */
export const SCHEMA_VERSION = 2;
/** Blobs up to this size live in the database (one fsync per batch); larger ones in files. */
export const INLINE_BLOB_LIMIT = 256 * 1024;

export { StoreError };

export type Db = Database.Database;

const statements = new WeakMap<Db, Map<string, Database.Statement>>();

/** A prepared statement, compiled once per connection (preparing costs more than a small insert). */
function stmt(db: Db, sql: string): Database.Statement {
  let cache = statements.get(db);
  if (!cache) {
    cache = new Map();
    statements.set(db, cache);
  }
  let s = cache.get(sql);
  if (!s) {
    s = db.prepare(sql);
    cache.set(sql, s);
  }
  return s;
}

export interface OpenOptions {
  /** Create or upgrade the schema (default true; worker connections leave it to the first one). */
  migrate?: boolean;
  /**
   * `FULL` (default): a commit is on disk when it returns, which is what "acknowledged only once
   * durable" needs. `NORMAL`: a commit only reaches the WAL file; the caller must fdatasync that
   * file (`walPath`) before telling anyone the data is stored (the ingestion writer does, so that
   * one sync covers many commits and runs while the next batch is being written).
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** Let commits on this connection checkpoint the WAL (default true). False when a checkpointer thread does it. */
  autoCheckpoint?: boolean;
}

export function databasePath(dataDir: string): string {
  return path.join(dataDir, 'coroner.db');
}

export function walPath(dataDir: string): string {
  return path.join(dataDir, 'coroner.db-wal');
}

export function openDatabase(dataDir: string, options: OpenOptions = {}): Db {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(databasePath(dataDir));
  // WAL: readers never block the writer.
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
  db.pragma('busy_timeout = 10000');
  db.pragma('foreign_keys = ON');
  if (options.autoCheckpoint === false) db.pragma('wal_autocheckpoint = 0');
  if (options.migrate !== false) migrate(db);
  return db;
}

/** WAL frames past which a checkpoint waits for the writer to pause so the WAL can start over. */
const WAL_RESTART_FRAMES = 16_384;

/**
 * Copies committed WAL frames into the database file (the checkpointer thread, so that neither
 * the ingestion writer nor the event loop pays for it). Passive first: it never blocks the
 * writer; when the WAL has grown large under steady writes, a restart checkpoint briefly holds
 * the writer back so the WAL can be reused from its start.
 */
export function checkpoint(db: Db): { frames: number; copied: number; restarted: boolean } {
  const passive = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
  const p = passive[0] ?? { busy: 0, log: 0, checkpointed: 0 };
  if (p.log < WAL_RESTART_FRAMES) return { frames: p.log, copied: p.checkpointed, restarted: false };
  const restart = db.pragma('wal_checkpoint(RESTART)') as Array<{ busy: number; log: number; checkpointed: number }>;
  const r = restart[0] ?? p;
  return { frames: r.log, copied: r.checkpointed, restarted: r.busy === 0 };
}

function migrate(db: Db): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS universes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE IF NOT EXISTS projects (
      id INTEGER PRIMARY KEY,
      universe_id INTEGER NOT NULL REFERENCES universes(id),
      name TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      next_object_id INTEGER NOT NULL DEFAULT 1,
      retention_seconds INTEGER,
      UNIQUE (universe_id, name)
    );
    CREATE TABLE IF NOT EXISTS users (
      uid INTEGER PRIMARY KEY,
      universe_id INTEGER NOT NULL REFERENCES universes(id),
      username TEXT NOT NULL,
      email TEXT NOT NULL,
      password_hash TEXT NOT NULL,
      superuser INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      UNIQUE (universe_id, username)
    );
    CREATE TABLE IF NOT EXISTS tokens (
      id TEXT PRIMARY KEY,
      project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      name TEXT NOT NULL,
      owner_uid INTEGER NOT NULL,
      capabilities TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      revoked_at INTEGER
    );
    CREATE TABLE IF NOT EXISTS sessions (
      token_hash TEXT PRIMARY KEY,
      uid INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
      universe_id INTEGER NOT NULL,
      expires_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS attributes (
      project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      name TEXT NOT NULL,
      type TEXT NOT NULL,
      format TEXT NOT NULL,
      description TEXT,
      custom INTEGER NOT NULL,
      PRIMARY KEY (project_id, name)
    );
    CREATE TABLE IF NOT EXISTS grouping_rules (
      project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      version INTEGER NOT NULL,
      rules TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (project_id, version)
    );
    CREATE TABLE IF NOT EXISTS group_states (
      project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      fingerprint TEXT NOT NULL,
      state TEXT NOT NULL,
      PRIMARY KEY (project_id, fingerprint)
    );
    CREATE TABLE IF NOT EXISTS blobs (
      id INTEGER PRIMARY KEY,
      size INTEGER NOT NULL,
      data BLOB,
      file TEXT
    );
    CREATE TABLE IF NOT EXISTS objects (
      project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      id INTEGER NOT NULL,
      uuid TEXT NOT NULL,
      rxid TEXT NOT NULL UNIQUE,
      timestamp INTEGER NOT NULL,
      received_at INTEGER NOT NULL,
      fingerprint TEXT NOT NULL,
      callstack TEXT NOT NULL,
      classifiers TEXT NOT NULL,
      attributes TEXT NOT NULL,
      format TEXT NOT NULL,
      processed INTEGER NOT NULL,
      body_blob INTEGER NOT NULL,
      content_type TEXT NOT NULL,
      PRIMARY KEY (project_id, id),
      UNIQUE (project_id, uuid)
    );
    CREATE TABLE IF NOT EXISTS attachments (
      id INTEGER PRIMARY KEY,
      project_id INTEGER NOT NULL,
      object_id INTEGER NOT NULL,
      name TEXT NOT NULL,
      content_type TEXT NOT NULL,
      size INTEGER NOT NULL,
      blob_id INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      FOREIGN KEY (project_id, object_id) REFERENCES objects(project_id, id) ON DELETE CASCADE
    );
    CREATE INDEX IF NOT EXISTS attachments_by_object ON attachments(project_id, object_id);
    CREATE INDEX IF NOT EXISTS tokens_by_project ON tokens(project_id);
  `);
  const row = stmt(db, `SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string } | undefined;
  if (!row) {
    stmt(db, `INSERT INTO meta (key, value) VALUES ('schema_version', ?)`).run(String(SCHEMA_VERSION));
  } else if (Number(row.value) > SCHEMA_VERSION) {
    throw new StoreError(
      `The data folder was written by a newer coroner (schema ${row.value}; this one knows ${SCHEMA_VERSION}).`,
    );
  } else if (Number(row.value) < SCHEMA_VERSION) {
    upgrade(db, Number(row.value));
  }
}

/** Brings a data folder written by an older coroner up to SCHEMA_VERSION, in one transaction. */
function upgrade(db: Db, from: number): void {
  db.transaction(() => {
    if (from < 2) db.exec(`ALTER TABLE projects ADD COLUMN retention_seconds INTEGER`);
    stmt(db, `UPDATE meta SET value = ? WHERE key = 'schema_version'`).run(String(SCHEMA_VERSION));
  }).immediate();
}

const now = (): number => Math.floor(Date.now() / 1000);

// ---- rows -> interface objects

interface ProjectRow { id: number; universe_id: number; name: string; created_at: number; retention_seconds: number | null }
interface UserRow { uid: number; universe_id: number; username: string; email: string; password_hash: string; superuser: number; created_at: number }
interface TokenRow { id: string; project_id: number; name: string; owner_uid: number; capabilities: string; created_at: number; revoked_at: number | null }
interface ObjectRow {
  project_id: number; id: number; uuid: string; rxid: string; timestamp: number; received_at: number; fingerprint: string;
  callstack: string; classifiers: string; attributes: string; format: string; processed: number;
}
interface AttachmentRow { id: number; object_id: number; name: string; size: number; content_type: string }

const toProject = (r: ProjectRow): Project => ({
  id: r.id, universeId: r.universe_id, name: r.name, createdAt: r.created_at, retentionSeconds: r.retention_seconds,
});
const toUser = (r: UserRow): User => ({
  uid: r.uid, universeId: r.universe_id, username: r.username, email: r.email, superuser: r.superuser !== 0, createdAt: r.created_at,
});
const toToken = (r: TokenRow): ApiToken => {
  const token: ApiToken = {
    id: r.id, projectId: r.project_id, name: r.name, ownerUid: r.owner_uid,
    capabilities: parseJson<string[]>(r.capabilities, []), createdAt: r.created_at,
  };
  if (r.revoked_at !== null) token.revokedAt = r.revoked_at;
  return token;
};
export const toCrashObject = (r: ObjectRow): CrashObject => ({
  id: r.id,
  projectId: r.project_id,
  uuid: r.uuid,
  rxid: r.rxid,
  timestamp: r.timestamp,
  receivedAt: r.received_at,
  fingerprint: r.fingerprint,
  callstack: parseJson<string[]>(r.callstack, []),
  classifiers: parseJson<string[]>(r.classifiers, []),
  attributes: parseJson<Record<string, AttributeValue>>(r.attributes, {}),
  format: r.format,
  processed: r.processed !== 0,
});
const toAttachment = (r: AttachmentRow): AttachmentInfo => ({
  id: r.id, objectId: r.object_id, name: r.name, size: r.size, contentType: r.content_type,
});

function parseJson<T>(text: string, fallback: T): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/**
 * A receipt id: a version 7 UUID (48 bits of milliseconds, then random bits). Receipts made
 * together sort together, so the rxid index grows at its right edge instead of dirtying a
 * random page per crash.
 */
export function newRxid(now = Date.now()): string {
  const random = randomUUID();
  const ms = now.toString(16).padStart(12, '0').slice(-12);
  return `${ms.slice(0, 8)}-${ms.slice(8, 12)}-7${random.slice(15)}`;
}

export function hashSessionToken(token: string): string {
  // Sessions are stored hashed: a copy of the database does not hand out live sessions.
  return createHash('sha256').update(token).digest('hex');
}

function isUniqueViolation(err: unknown): boolean {
  return err instanceof Error && (err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT') === true;
}

// ---- universes, projects, users, tokens, sessions

export function getUniverse(db: Db, name: string): Universe | undefined {
  return stmt(db, `SELECT id, name FROM universes WHERE name = ?`).get(name) as Universe | undefined;
}
export function getUniverseById(db: Db, id: number): Universe | undefined {
  return stmt(db, `SELECT id, name FROM universes WHERE id = ?`).get(id) as Universe | undefined;
}
export function listUniverses(db: Db): Universe[] {
  return stmt(db, `SELECT id, name FROM universes ORDER BY id`).all() as Universe[];
}
export function createUniverse(db: Db, name: string): Universe {
  validateName('universe', name);
  try {
    const info = stmt(db, `INSERT INTO universes (name) VALUES (?)`).run(name);
    return { id: Number(info.lastInsertRowid), name };
  } catch (err) {
    if (isUniqueViolation(err)) throw new StoreError(`A universe named "${name}" already exists.`);
    throw err;
  }
}

export function listProjects(db: Db, universeId: number): Project[] {
  return (stmt(db, `SELECT id, universe_id, name, created_at, retention_seconds FROM projects WHERE universe_id = ? ORDER BY name`).all(universeId) as ProjectRow[]).map(toProject);
}
export function getProject(db: Db, universeId: number, name: string): Project | undefined {
  const r = stmt(db, `SELECT id, universe_id, name, created_at, retention_seconds FROM projects WHERE universe_id = ? AND name = ?`).get(universeId, name) as ProjectRow | undefined;
  return r && toProject(r);
}
export function getProjectById(db: Db, id: number): Project | undefined {
  const r = stmt(db, `SELECT id, universe_id, name, created_at, retention_seconds FROM projects WHERE id = ?`).get(id) as ProjectRow | undefined;
  return r && toProject(r);
}
export function createProject(db: Db, universeId: number, name: string): Project {
  validateName('project', name);
  if (!getUniverseById(db, universeId)) throw new StoreError(`There is no universe with id ${universeId}.`);
  const createdAt = now();
  try {
    const info = stmt(db, `INSERT INTO projects (universe_id, name, created_at) VALUES (?, ?, ?)`).run(universeId, name, createdAt);
    return { id: Number(info.lastInsertRowid), universeId, name, createdAt, retentionSeconds: null };
  } catch (err) {
    if (isUniqueViolation(err)) throw new StoreError(`A project named "${name}" already exists.`);
    throw err;
  }
}
export function setProjectRetention(db: Db, projectId: number, seconds: number | null): void {
  if (seconds !== null && !(Number.isSafeInteger(seconds) && seconds > 0)) throw new StoreError('A retention must be a whole number of seconds above zero, or none.');
  const info = stmt(db, `UPDATE projects SET retention_seconds = ? WHERE id = ?`).run(seconds, projectId);
  if (info.changes === 0) throw new StoreError(`There is no project with id ${projectId}.`);
}

/**
 * The ids of the project's oldest crashes received before `before` (seconds since the epoch), at
 * most `limit`. Walks the objects in id order and stops at the first one that is young enough:
 * ids count up as crashes arrive, so this reads only what it deletes, with no index on receipt
 * times (a crash received out of order only holds the purge back until it is old enough too).
 */
function expiredObjectIds(db: Db, projectId: number, before: number, limit: number): number[] {
  const rows = stmt(db, `SELECT id, received_at FROM objects WHERE project_id = ? ORDER BY id LIMIT ?`).all(projectId, limit) as Array<{ id: number; received_at: number }>;
  const ids: number[] = [];
  for (const r of rows) {
    if (r.received_at >= before) break;
    ids.push(r.id);
  }
  return ids;
}

/** Deletes the project and everything in it; returns the blob files to unlink once committed. */
export function deleteProject(db: Db, projectId: number): string[] {
  return db.transaction(() => {
    const files = (stmt(db, 
      `SELECT b.file FROM blobs b WHERE b.file IS NOT NULL AND (
         b.id IN (SELECT body_blob FROM objects WHERE project_id = ?) OR
         b.id IN (SELECT blob_id FROM attachments WHERE project_id = ?))`,
    ).all(projectId, projectId) as Array<{ file: string }>).map((r) => r.file);
    stmt(db, `DELETE FROM blobs WHERE id IN (SELECT body_blob FROM objects WHERE project_id = ?) OR id IN (SELECT blob_id FROM attachments WHERE project_id = ?)`).run(projectId, projectId);
    stmt(db, `DELETE FROM attachments WHERE project_id = ?`).run(projectId);
    stmt(db, `DELETE FROM objects WHERE project_id = ?`).run(projectId);
    const info = stmt(db, `DELETE FROM projects WHERE id = ?`).run(projectId);
    if (info.changes === 0) throw new StoreError(`There is no project with id ${projectId}.`);
    return files;
  }).immediate();
}

export function createUser(db: Db, universeId: number, username: string, email: string, passwordHash: string, superuser: boolean): User {
  if (!/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/.test(username)) {
    throw new StoreError(`"${username}" is not a valid user name: use 1 to 128 letters, digits, '.', '_', '@', '+' or '-'.`);
  }
  const createdAt = now();
  try {
    const info = stmt(db, 
      `INSERT INTO users (universe_id, username, email, password_hash, superuser, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
    ).run(universeId, username, email, passwordHash, superuser ? 1 : 0, createdAt);
    return { uid: Number(info.lastInsertRowid), universeId, username, email, superuser, createdAt };
  } catch (err) {
    if (isUniqueViolation(err)) throw new StoreError(`A user named "${username}" already exists.`);
    throw err;
  }
}
export function getUser(db: Db, universeId: number, username: string): (User & { passwordHash: string }) | undefined {
  const r = stmt(db, `SELECT * FROM users WHERE universe_id = ? AND username = ?`).get(universeId, username) as UserRow | undefined;
  return r && { ...toUser(r), passwordHash: r.password_hash };
}
export function getUserById(db: Db, uid: number): User | undefined {
  const r = stmt(db, `SELECT * FROM users WHERE uid = ?`).get(uid) as UserRow | undefined;
  return r && toUser(r);
}
export function listUsers(db: Db, universeId: number): User[] {
  return (stmt(db, `SELECT * FROM users WHERE universe_id = ? ORDER BY username`).all(universeId) as UserRow[]).map(toUser);
}
export function deleteUser(db: Db, uid: number): void {
  const info = stmt(db, `DELETE FROM users WHERE uid = ?`).run(uid);
  if (info.changes === 0) throw new StoreError(`There is no user with uid ${uid}.`);
}
export function setUserPassword(db: Db, uid: number, passwordHash: string): void {
  const info = stmt(db, `UPDATE users SET password_hash = ? WHERE uid = ?`).run(passwordHash, uid);
  if (info.changes === 0) throw new StoreError(`There is no user with uid ${uid}.`);
  stmt(db, `DELETE FROM sessions WHERE uid = ?`).run(uid);
}

export function createToken(db: Db, token: Omit<ApiToken, 'createdAt'>): ApiToken {
  if (!/^[0-9a-f]{16,128}$/.test(token.id)) throw new StoreError('A token id must be 16 to 128 lowercase hex digits.');
  validateName('token', token.name);
  if (!getProjectById(db, token.projectId)) throw new StoreError(`There is no project with id ${token.projectId}.`);
  const createdAt = now();
  try {
    stmt(db, `INSERT INTO tokens (id, project_id, name, owner_uid, capabilities, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)`)
      .run(token.id, token.projectId, token.name, token.ownerUid, JSON.stringify(token.capabilities), createdAt, token.revokedAt ?? null);
  } catch (err) {
    if (isUniqueViolation(err)) throw new StoreError('That token already exists.');
    throw err;
  }
  return { ...token, createdAt };
}
export function getToken(db: Db, id: string): ApiToken | undefined {
  const r = stmt(db, `SELECT * FROM tokens WHERE id = ?`).get(id) as TokenRow | undefined;
  return r && toToken(r);
}
export function listTokens(db: Db, projectId: number): ApiToken[] {
  return (stmt(db, `SELECT * FROM tokens WHERE project_id = ? ORDER BY created_at, id`).all(projectId) as TokenRow[]).map(toToken);
}
export function revokeToken(db: Db, id: string): void {
  const info = stmt(db, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`).run(now(), id);
  if (info.changes === 0) {
    if (!getToken(db, id)) throw new StoreError('There is no such token.');
  }
}

export function createSession(db: Db, session: Session): void {
  stmt(db, `INSERT INTO sessions (token_hash, uid, universe_id, expires_at) VALUES (?, ?, ?, ?)`)
    .run(hashSessionToken(session.token), session.uid, session.universeId, session.expiresAt);
}
export function getSession(db: Db, token: string): Session | undefined {
  const r = stmt(db, `SELECT uid, universe_id, expires_at FROM sessions WHERE token_hash = ?`).get(hashSessionToken(token)) as
    | { uid: number; universe_id: number; expires_at: number }
    | undefined;
  if (!r || r.expires_at <= now()) return undefined;
  return { token, uid: r.uid, universeId: r.universe_id, expiresAt: r.expires_at };
}
export function deleteSession(db: Db, token: string): void {
  stmt(db, `DELETE FROM sessions WHERE token_hash = ?`).run(hashSessionToken(token));
}
export function deleteExpiredSessions(db: Db): number {
  return stmt(db, `DELETE FROM sessions WHERE expires_at <= ?`).run(now()).changes;
}

// ---- attributes, grouping rules, group states

const ATTRIBUTE_TYPES: readonly AttributeType[] = ['string', 'uint64', 'int64', 'double', 'boolean', 'dictionary', 'labels', 'callstack'];

export function listAttributes(db: Db, projectId: number): AttributeDeclaration[] {
  const rows = stmt(db, `SELECT name, type, format, description, custom FROM attributes WHERE project_id = ? ORDER BY name`).all(projectId) as Array<{
    name: string; type: AttributeType; format: string; description: string | null; custom: number;
  }>;
  return rows.map((r) => {
    const d: AttributeDeclaration = { name: r.name, type: r.type, format: r.format, custom: r.custom !== 0 };
    if (r.description !== null) d.description = r.description;
    return d;
  });
}
export function declareAttribute(db: Db, projectId: number, d: AttributeDeclaration): void {
  if (!ATTRIBUTE_TYPES.includes(d.type)) throw new StoreError(`"${d.type}" is not an attribute type (${ATTRIBUTE_TYPES.join(', ')}).`);
  if (!d.name || d.name.length > 256) throw new StoreError('An attribute name must be 1 to 256 characters long.');
  stmt(db, 
    `INSERT INTO attributes (project_id, name, type, format, description, custom) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (project_id, name) DO UPDATE SET type = excluded.type, format = excluded.format, description = excluded.description, custom = excluded.custom`,
  ).run(projectId, d.name, d.type, d.format, d.description ?? null, d.custom ? 1 : 0);
}

export function getGroupingRules(db: Db, projectId: number): { version: number; rules: unknown } {
  const r = stmt(db, `SELECT version, rules FROM grouping_rules WHERE project_id = ? ORDER BY version DESC LIMIT 1`).get(projectId) as
    | { version: number; rules: string }
    | undefined;
  // Version 0 = the built-in default rules (rules: null).
  return r ? { version: r.version, rules: parseJson<unknown>(r.rules, null) } : { version: 0, rules: null };
}
export function setGroupingRules(db: Db, projectId: number, rules: unknown): { version: number } {
  return db.transaction(() => {
    const version = getGroupingRules(db, projectId).version + 1;
    stmt(db, `INSERT INTO grouping_rules (project_id, version, rules, created_at) VALUES (?, ?, ?, ?)`).run(projectId, version, JSON.stringify(rules), now());
    return { version };
  }).immediate();
}
export function getGroupState(db: Db, projectId: number, fingerprint: string): GroupState {
  const r = stmt(db, `SELECT state FROM group_states WHERE project_id = ? AND fingerprint = ?`).get(projectId, fingerprint) as { state: GroupState } | undefined;
  return r?.state ?? 'open';
}
export function listGroupStates(db: Db, projectId: number): Array<{ fingerprint: string; state: GroupState }> {
  return stmt(db, `SELECT fingerprint, state FROM group_states WHERE project_id = ? AND state <> 'open'`).all(projectId) as Array<{ fingerprint: string; state: GroupState }>;
}
export function setGroupState(db: Db, projectId: number, fingerprint: string, state: GroupState): void {
  if (!['open', 'resolved', 'ignored'].includes(state)) throw new StoreError(`"${state}" is not a group state (open, resolved, ignored).`);
  stmt(db, `INSERT INTO group_states (project_id, fingerprint, state) VALUES (?, ?, ?) ON CONFLICT (project_id, fingerprint) DO UPDATE SET state = excluded.state`)
    .run(projectId, fingerprint, state);
}

// ---- blobs

const PARTIAL_BLOB_SUFFIX = '.tmp';

/**
 * Removes blob files a crash left half-written (`blobs/xx/.<id>.tmp`): no row ever refers to
 * them. Run when the store opens, before any writer could be making one.
 */
export function removePartialBlobs(dataDir: string): void {
  const root = path.join(dataDir, 'blobs');
  let dirs: string[];
  try {
    dirs = fs.readdirSync(root);
  } catch {
    return;
  }
  for (const d of dirs) {
    if (!/^[0-9a-f]{2}$/.test(d)) continue;
    for (const f of fs.readdirSync(path.join(root, d))) {
      if (f.startsWith('.') && f.endsWith(PARTIAL_BLOB_SUFFIX)) {
        fs.rmSync(path.join(root, d, f), { force: true });
      }
    }
  }
}

/** A blob about to be stored: inline bytes, or a file already written and synced. */
export type PreparedBlob = { size: number; data: Uint8Array } | { size: number; file: string };

/**
 * Makes a blob durable before its row is committed: small ones go in the row itself, large ones
 * into a file under blobs/ (written, fsynced, renamed into place, directory fsynced).
 */
export function prepareBlob(dataDir: string, data: Uint8Array): PreparedBlob {
  if (data.length <= INLINE_BLOB_LIMIT) return { size: data.length, data };
  const id = randomBytes(16).toString('hex');
  const rel = path.join('blobs', id.slice(0, 2), id);
  const dir = path.join(dataDir, 'blobs', id.slice(0, 2));
  // A directory made just now must itself be recorded in its parent before we rely on it.
  const madeFrom = fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (madeFrom !== undefined) {
    fsyncPath(path.dirname(dir));
    if (madeFrom !== dir) fsyncPath(dataDir);
  }
  const tmp = path.join(dir, `.${id}${PARTIAL_BLOB_SUFFIX}`);
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    try {
      let off = 0;
      while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path.join(dataDir, rel));
  } catch (err) {
    // A write cut short (a full disk) must not keep the room it took.
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(dir);
  return { size: data.length, file: rel };
}

/** fsyncs a file, or a folder (so that the names made in it are on disk). */
export function fsyncPath(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function insertBlob(db: Db, blob: PreparedBlob): number {
  const info = 'data' in blob
    ? stmt(db, `INSERT INTO blobs (size, data, file) VALUES (?, ?, NULL)`).run(blob.size, Buffer.from(blob.data.buffer, blob.data.byteOffset, blob.data.byteLength))
    : stmt(db, `INSERT INTO blobs (size, data, file) VALUES (?, NULL, ?)`).run(blob.size, blob.file);
  return Number(info.lastInsertRowid);
}

export function discardBlobFiles(dataDir: string, blobs: PreparedBlob[]): void {
  for (const b of blobs) if ('file' in b) unlinkQuietly(dataDir, b.file);
}

export function unlinkQuietly(dataDir: string, rel: string): void {
  // `rel` only ever comes from our own blobs table; still refuse anything that leaves blobs/.
  if (!/^blobs\/[0-9a-f]{2}\/[0-9a-f]{32}$/.test(rel)) return;
  try {
    fs.unlinkSync(path.join(dataDir, rel));
  } catch {
    // already gone
  }
}

export function readBlob(db: Db, dataDir: string, blobId: number): Uint8Array | undefined {
  const r = stmt(db, `SELECT size, data, file FROM blobs WHERE id = ?`).get(blobId) as { size: number; data: Buffer | null; file: string | null } | undefined;
  if (!r) return undefined;
  if (r.data) return r.data;
  if (r.file && /^blobs\/[0-9a-f]{2}\/[0-9a-f]{32}$/.test(r.file)) return fs.readFileSync(path.join(dataDir, r.file));
  return undefined;
}

// ---- crashes

/** A crash whose blobs are ready (see `prepareBlob`), as `insertCrashes` takes it. */
export interface PreparedCrash extends CrashFields {
  receivedAt: number;
  contentType: string;
  body: PreparedBlob;
  attachments: Array<{ name: string; contentType: string; blob: PreparedBlob }>;
}

/**
 * What an insert came to. A new crash only reports its id and receipt (the caller already has
 * the rest, and it saves copying every attribute back across threads); a duplicate carries the
 * stored object.
 */
export type InsertOutcome =
  | { ok: true; existing: false; id: number; rxid: string; fingerprint: string }
  | { ok: true; existing: true; object: CrashObject }
  | { ok: false; message: string; invalid?: true };

/**
 * Inserts a batch in one transaction (one fsync for all of them: group commit). A crash whose uuid
 * the project already has is not inserted; its outcome carries the stored object. Returns the
 * blob files of crashes that were not inserted, for the caller to unlink.
 */
export function insertCrashes(db: Db, batch: PreparedCrash[]): { outcomes: InsertOutcome[]; unusedBlobs: PreparedBlob[] } {
  const unusedBlobs: PreparedBlob[] = [];
  const findByUuid = stmt(db, `SELECT * FROM objects WHERE project_id = ? AND uuid = ?`);
  const nextIdOf = stmt(db, `SELECT next_object_id AS id FROM projects WHERE id = ?`);
  const saveNextId = stmt(db, `UPDATE projects SET next_object_id = ? WHERE id = ?`);
  // The uuid's uniqueness is checked by the insert itself (one index probe, not two).
  const insertObject = stmt(db,
    `INSERT INTO objects (project_id, id, uuid, rxid, timestamp, received_at, fingerprint, callstack, classifiers, attributes, format, processed, body_blob, content_type)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, uuid) DO NOTHING`,
  );
  const deleteBlob = stmt(db, `DELETE FROM blobs WHERE id = ?`);
  const insertAttachment = stmt(db,
    `INSERT INTO attachments (project_id, object_id, name, content_type, size, blob_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  // IMMEDIATE: take the write lock first (waiting for a checkpoint that holds it), rather than
  // read first and find the snapshot stale when upgrading.
  const outcomes = db.transaction(() => {
    // Ids are counted in memory for the batch and the counter is written once per project.
    const nextIds = new Map<number, number>();
    const result = batch.map((c): InsertOutcome => {
      let id = nextIds.get(c.projectId);
      if (id === undefined) {
        const row = nextIdOf.get(c.projectId) as { id: number } | undefined;
        if (!row) {
          unusedBlobs.push(c.body, ...c.attachments.map((a) => a.blob));
          return { ok: false, message: `There is no project with id ${c.projectId}.` };
        }
        id = row.id;
      }
      const rxid = newRxid();
      const bodyBlob = insertBlob(db, c.body);
      const info = insertObject.run(
        c.projectId, id, c.uuid, rxid, c.timestamp, c.receivedAt, c.fingerprint, JSON.stringify(c.callstack),
        JSON.stringify(c.classifiers), JSON.stringify(c.attributes), c.format, c.processed ? 1 : 0, bodyBlob, c.contentType,
      );
      if (info.changes === 0) {
        deleteBlob.run(bodyBlob);
        unusedBlobs.push(c.body, ...c.attachments.map((a) => a.blob));
        const existing = findByUuid.get(c.projectId, c.uuid) as ObjectRow | undefined;
        if (!existing) throw new StoreError('A crash was refused by the database without a duplicate uuid.');
        return { ok: true, existing: true, object: toCrashObject(existing) };
      }
      nextIds.set(c.projectId, id + 1);
      for (const a of c.attachments) {
        const blobId = insertBlob(db, a.blob);
        insertAttachment.run(c.projectId, id, a.name, a.contentType, a.blob.size, blobId, c.receivedAt);
      }
      return { ok: true, existing: false, id, rxid, fingerprint: c.fingerprint };
    });
    for (const [projectId, next] of nextIds) saveNextId.run(next, projectId);
    return result;
  }).immediate();
  return { outcomes, unusedBlobs };
}

export function getObject(db: Db, projectId: number, id: number): CrashObject | undefined {
  const r = stmt(db, `SELECT * FROM objects WHERE project_id = ? AND id = ?`).get(projectId, id) as ObjectRow | undefined;
  return r && toCrashObject(r);
}
export function findObjectByRxid(db: Db, projectId: number, rxid: string): CrashObject | undefined {
  const r = stmt(db, `SELECT * FROM objects WHERE project_id = ? AND rxid = ?`).get(projectId, rxid) as ObjectRow | undefined;
  return r && toCrashObject(r);
}
export function countObjects(db: Db, projectId: number): number {
  return (stmt(db, `SELECT count(*) AS n FROM objects WHERE project_id = ?`).get(projectId) as { n: number }).n;
}
export function getReportBody(db: Db, dataDir: string, projectId: number, id: number): { body: Uint8Array; contentType: string } | undefined {
  const r = stmt(db, `SELECT body_blob, content_type FROM objects WHERE project_id = ? AND id = ?`).get(projectId, id) as
    | { body_blob: number; content_type: string }
    | undefined;
  if (!r) return undefined;
  const body = readBlob(db, dataDir, r.body_blob);
  return body && { body, contentType: r.content_type };
}
export function listAttachments(db: Db, projectId: number, objectId: number): AttachmentInfo[] {
  return (stmt(db, `SELECT id, object_id, name, size, content_type FROM attachments WHERE project_id = ? AND object_id = ? ORDER BY id`).all(projectId, objectId) as AttachmentRow[])
    .map((r) => toAttachment(r));
}
export function getAttachment(db: Db, dataDir: string, projectId: number, objectId: number, attachmentId: number): { info: AttachmentInfo; data: Uint8Array } | undefined {
  const r = stmt(db, `SELECT id, object_id, name, size, content_type, blob_id FROM attachments WHERE project_id = ? AND object_id = ? AND id = ?`)
    .get(projectId, objectId, attachmentId) as (AttachmentRow & { blob_id: number }) | undefined;
  if (!r) return undefined;
  const data = readBlob(db, dataDir, r.blob_id);
  return data && { info: toAttachment(r), data };
}
export function addAttachment(db: Db, projectId: number, objectId: number, name: string, contentType: string, blob: PreparedBlob): AttachmentInfo {
  return db.transaction(() => {
    if (!getObject(db, projectId, objectId)) throw new StoreError(`There is no object ${objectId.toString(16)} in this project.`);
    const blobId = insertBlob(db, blob);
    const info = stmt(db, `INSERT INTO attachments (project_id, object_id, name, content_type, size, blob_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`)
      .run(projectId, objectId, name, contentType, blob.size, blobId, now());
    return { id: Number(info.lastInsertRowid), objectId, name, size: blob.size, contentType };
  }).immediate();
}

/** One page of a project's objects in id order, after `afterId`. */
export function scanPage(db: Db, projectId: number, afterId: number, limit: number): CrashObject[] {
  return (stmt(db, `SELECT * FROM objects WHERE project_id = ? AND id > ? ORDER BY id LIMIT ?`).all(projectId, afterId, limit) as ObjectRow[]).map(toCrashObject);
}

export function setObjectAttributes(db: Db, projectId: number, ids: number[], values: Record<string, AttributeValue>): number {
  const select = stmt(db, `SELECT attributes FROM objects WHERE project_id = ? AND id = ?`);
  const update = stmt(db, `UPDATE objects SET attributes = ? WHERE project_id = ? AND id = ?`);
  const updateFingerprint = stmt(db, `UPDATE objects SET fingerprint = ? WHERE project_id = ? AND id = ?`);
  return db.transaction(() => {
    let changed = 0;
    for (const id of ids) {
      const r = select.get(projectId, id) as { attributes: string } | undefined;
      if (!r) continue;
      const attrs = { ...parseJson<Record<string, AttributeValue>>(r.attributes, {}), ...values };
      update.run(JSON.stringify(attrs), projectId, id);
      // `fingerprint` is a column of its own (grouping); `set fingerprint=...` regroups the object.
      if (typeof values.fingerprint === 'string') updateFingerprint.run(values.fingerprint, projectId, id);
      changed++;
    }
    return changed;
  }).immediate();
}

/** Deletes objects with their attachments; returns how many went and the blob files to unlink. */
export function deleteObjects(db: Db, projectId: number, ids: number[]): { deleted: number; files: string[] } {
  const blobsOf = stmt(db, 
    `SELECT id, file FROM blobs WHERE id = (SELECT body_blob FROM objects WHERE project_id = ? AND id = ?)
     OR id IN (SELECT blob_id FROM attachments WHERE project_id = ? AND object_id = ?)`,
  );
  const delBlob = stmt(db, `DELETE FROM blobs WHERE id = ?`);
  const delAttachments = stmt(db, `DELETE FROM attachments WHERE project_id = ? AND object_id = ?`);
  const delObject = stmt(db, `DELETE FROM objects WHERE project_id = ? AND id = ?`);
  return db.transaction(() => {
    let deleted = 0;
    const files: string[] = [];
    for (const id of ids) {
      const blobs = blobsOf.all(projectId, id, projectId, id) as Array<{ id: number; file: string | null }>;
      delAttachments.run(projectId, id);
      const info = delObject.run(projectId, id);
      if (info.changes === 0) continue;
      for (const b of blobs) {
        delBlob.run(b.id);
        if (b.file) files.push(b.file);
      }
      deleted++;
    }
    return { deleted, files };
  }).immediate();
}

// ---- names

function validateName(what: string, name: string): void {
  // Names appear in URLs (/<universe>/<token>/json), INI keys (coroner.cf) and morgue's
  // `universe/project` syntax: keep them to a safe alphabet.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new StoreError(
      `"${name}" is not a valid ${what} name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.`,
    );
  }
}

// ---- requests run on a worker thread (sqlite-worker.ts) or inline (SqliteStore with workers: false)

export type RawCrash = Omit<NewCrash, 'attachments'> & {
  receivedAt: number;
  attachments: Array<{ name: string; contentType: string; data: Uint8Array }>;
};

/** Messages to a worker (sqlite-worker.ts). */
export type WorkerRequest =
  | { op: 'ingest'; batch: IngestItem[]; packed?: PackedBodies }
  | { op: 'addAttachment'; projectId: number; objectId: number; name: string; contentType: string; data: Uint8Array }
  | { op: 'setObjectAttributes'; projectId: number; ids: number[]; values: Record<string, AttributeValue> }
  | { op: 'deleteObjects'; projectId: number; ids: number[] }
  | { op: 'deleteExpired'; projectId: number; before: number; limit: number }
  | { op: 'deleteProject'; projectId: number }
  | { op: 'scanPage'; projectId: number; afterId: number; limit: number }
  | { op: 'getReportBody'; projectId: number; id: number }
  | { op: 'getAttachment'; projectId: number; objectId: number; attachmentId: number }
  | { op: 'checkpoint' }
  | { op: 'ping' };

export type WorkerResponse =
  /** `durableAfterCommit`: committed to the WAL only, as that commit number; durable once wal-sync.ts says so. */
  | { id: number; ok: true; result: unknown; durableAfterCommit?: number }
  | { id: number; ok: false; message: string; storeError: boolean; diskFull?: boolean };


/** A raw submission queued for the writer: prepared (parsed, grouped) there, just before its insert. */
export type QueuedSubmission = RawSubmission & { receivedAt: number; raw: true };
export type IngestItem = RawCrash | QueuedSubmission;

/**
 * The bodies of a batch's raw submissions in one buffer, moved (not copied) to the writer: one
 * allocation and one copy per batch instead of a cloned buffer per report. `spans` holds
 * (item index, offset, length) triples.
 */
export interface PackedBodies {
  buffer: ArrayBuffer;
  spans: number[];
}

/** Moves the bodies of `batch`'s raw submissions into one buffer (their `body` fields are emptied). */
export function packBodies(batch: IngestItem[]): { batch: IngestItem[]; packed: PackedBodies | undefined } {
  let total = 0;
  for (const item of batch) if ('raw' in item) total += item.body.byteLength;
  if (total === 0) return { batch, packed: undefined };
  const buffer = new ArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  const spans: number[] = [];
  let at = 0;
  const out = batch.map((item, i) => {
    if (!('raw' in item)) return item;
    bytes.set(item.body, at);
    spans.push(i, at, item.body.byteLength);
    at += item.body.byteLength;
    return { ...item, body: EMPTY };
  });
  return { batch: out, packed: { buffer, spans } };
}

/** Undoes `packBodies` on the receiving side. */
export function unpackBodies(batch: IngestItem[], packed: PackedBodies | undefined): IngestItem[] {
  if (!packed) return batch;
  const { buffer, spans } = packed;
  for (let k = 0; k < spans.length; k += 3) {
    const item = batch[spans[k]!] as QueuedSubmission;
    item.body = new Uint8Array(buffer, spans[k + 1]!, spans[k + 2]!);
  }
  return batch;
}

const EMPTY = new Uint8Array(0);

/** Compiled grouping rules per project, for the thread that prepares submissions. */
const rulesByProject = new Map<number, CompiledGroupingRules>();

function compiledRulesOf(db: Db, projectId: number): CompiledGroupingRules {
  const stored = getGroupingRules(db, projectId);
  const known = rulesByProject.get(projectId);
  if (known && known.version === stored.version) return known;
  let compiled: CompiledGroupingRules;
  try {
    compiled = CompiledGroupingRules.fromStored(stored);
  } catch {
    // Stored rules are checked when set; should a stored version not compile, group by the defaults.
    compiled = new CompiledGroupingRules(undefined, stored.version);
  }
  rulesByProject.set(projectId, compiled);
  return compiled;
}

/**
 * Stores a batch of crashes in one transaction: raw submissions are prepared first (a report that
 * cannot be taken gets an `invalid` outcome and is not stored), then large blobs go to files
 * (synced), then the rows.
 */
export function ingest(db: Db, dataDir: string, batch: IngestItem[]): InsertOutcome[] {
  const outcomes: Array<InsertOutcome | undefined> = new Array(batch.length);
  const prepared: PreparedCrash[] = [];
  const slots: number[] = [];
  // Rules are read once per project and batch: a change made between batches applies to the next.
  const rules = new Map<number, CompiledGroupingRules>();
  try {
    batch.forEach((item, i) => {
      let crash: RawCrash;
      if ('raw' in item) {
        let projectRules = rules.get(item.projectId);
        if (!projectRules) {
          projectRules = compiledRulesOf(db, item.projectId);
          rules.set(item.projectId, projectRules);
        }
        try {
          crash = { ...prepareSubmission(item, projectRules), receivedAt: item.receivedAt };
        } catch (err) {
          // One report that trips us up must not fail the batch it travels with.
          outcomes[i] = err instanceof InvalidSubmissionError
            ? { ok: false, message: err.message, invalid: true }
            : { ok: false, message: `The report could not be processed: ${(err as Error).message}` };
          return;
        }
      } else {
        crash = item;
      }
      const { body, attachments, ...rest } = crash;
      prepared.push({
        ...rest,
        body: prepareBlob(dataDir, body),
        attachments: attachments.map((a) => ({ name: a.name, contentType: a.contentType, blob: prepareBlob(dataDir, a.data) })),
      });
      slots.push(i);
    });
    const { outcomes: inserted, unusedBlobs } = insertCrashes(db, prepared);
    discardBlobFiles(dataDir, unusedBlobs);
    inserted.forEach((o, k) => { outcomes[slots[k]!] = o; });
    return outcomes.map((o) => o ?? { ok: false, message: 'The store lost a crash of a batch.' });
  } catch (err) {
    for (const p of prepared) discardBlobFiles(dataDir, [p.body, ...p.attachments.map((a) => a.blob)]);
    throw err;
  }
}

/** Runs one request on `db`; blob files are written before, and unlinked after, the transactions that need it. */
export function runRequest(db: Db, dataDir: string, request: WorkerRequest): unknown {
  switch (request.op) {
    case 'ingest':
      return ingest(db, dataDir, unpackBodies(request.batch, request.packed));
    case 'checkpoint':
      return checkpoint(db);
    case 'ping':
      return null;
    case 'addAttachment': {
      const blob = prepareBlob(dataDir, request.data);
      try {
        return addAttachment(db, request.projectId, request.objectId, request.name, request.contentType, blob);
      } catch (err) {
        discardBlobFiles(dataDir, [blob]);
        throw err;
      }
    }
    case 'setObjectAttributes':
      return setObjectAttributes(db, request.projectId, request.ids, request.values);
    case 'deleteObjects': {
      const { deleted, files } = deleteObjects(db, request.projectId, request.ids);
      for (const f of files) unlinkQuietly(dataDir, f);
      return deleted;
    }
    case 'deleteExpired': {
      // Chosen and deleted in one transaction: nothing received meanwhile can slip in.
      const { ids, files } = db.transaction(() => {
        const expired = expiredObjectIds(db, request.projectId, request.before, request.limit);
        return { ids: expired, files: expired.length ? deleteObjects(db, request.projectId, expired).files : [] };
      }).immediate();
      for (const f of files) unlinkQuietly(dataDir, f);
      return ids;
    }
    case 'deleteProject': {
      const files = deleteProject(db, request.projectId);
      for (const f of files) unlinkQuietly(dataDir, f);
      return null;
    }
    case 'scanPage':
      return scanPage(db, request.projectId, request.afterId, request.limit);
    case 'getReportBody':
      return getReportBody(db, dataDir, request.projectId, request.id);
    case 'getAttachment':
      return getAttachment(db, dataDir, request.projectId, request.objectId, request.attachmentId);
  }
}
