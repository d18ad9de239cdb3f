/**
 * Where workflow integrations keep their state: the integrations themselves, what the evaluator
 * knows about each group (count, first and last seen), threshold counters, and the delivery
 * queue with its log.
 *
 * What the caller does: opens one `WorkflowStore` per coroner store (`openWorkflowStore`), lets
 * one evaluator and one dispatcher write to it (the server's), and any number of admin commands
 * add or remove integrations at the same time. What the store does: keeps every write atomic
 * (an evaluation pass commits its cursor, group counts, threshold counters and new deliveries in
 * one transaction, so a pass lost to a crash is simply evaluated again) and durable
 * (`synchronous=FULL`), and never shares a write lock with ingestion.
 *
 * The embedded implementation is a second SQLite file, `<data>/workflows.db`, next to the crash
 * store's `coroner.db`: SQLite has one writer per file, and workflow writes must never make the
 * ingestion writer wait (nor wait for it on the event loop). Its schema has its own version in
 * its own `meta` table. Every method is async so another backend can implement the interface.
 */

import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/types.js';
import type { Trigger, TriggerKind } from './triggers.js';
import type { DeliveryStatus, IntegrationType } from './wire.js';

export const WORKFLOW_SCHEMA_VERSION = 1;

export type { DeliveryStatus, IntegrationType } from './wire.js';
export const INTEGRATION_TYPES: readonly IntegrationType[] = ['webhook', 'slack', 'jira'];

export interface JiraSettings {
  /** The Jira project's key (`fields.project.key`). */
  projectKey: string;
  /** `fields.issuetype.name`, e.g. Bug. */
  issueType: string;
  /** Basic authentication: the user (an e-mail address on Jira Cloud) and its API token or password. */
  user: string;
  token: string;
}

export interface Integration {
  id: number;
  projectId: number;
  type: IntegrationType;
  /** Webhook and Slack: where to POST. Jira: the site's base URL (`/rest/api/2/issue` is added). */
  url: string;
  /** The HMAC-SHA256 key of `X-Coresnap-Signature`. */
  secret: string;
  triggers: Trigger[];
  jira?: JiraSettings;
  /** Seconds since the epoch. */
  createdAt: number;
}

export type NewIntegration = Omit<Integration, 'id' | 'createdAt'>;

/** What a delivery announces: a trigger's event, or a test message asked for by a person. */
export type DeliveryEvent = TriggerKind | 'test';

export interface NewDelivery {
  /** A random id, sent as `X-Coresnap-Delivery` so receivers can drop repeats. */
  uuid: string;
  integrationId: number;
  projectId: number;
  event: DeliveryEvent;
  fingerprint: string;
  /** The exact bytes every attempt sends (and signs). */
  body: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

export interface Delivery extends NewDelivery {
  id: number;
  status: DeliveryStatus;
  attempts: number;
  /** Milliseconds since the epoch: when the dispatcher may try next (pending deliveries). */
  nextAttemptAt: number;
  lastAttemptAt?: number;
  deliveredAt?: number;
  /** The last attempt's HTTP status, if the receiver answered. */
  lastStatus?: number;
  lastError?: string;
}

export interface DeliveryAttempt {
  /** Milliseconds since the epoch. */
  at: number;
  status?: number;
  error?: string;
  durationMs: number;
}

/** What the evaluator knows about one group of a project. Times are seconds since the epoch. */
export interface GroupStats {
  fingerprint: string;
  count: number;
  firstSeen: number;
  lastSeen: number;
  firstObject: number;
  lastObject: number;
}

/** Crash counts of one group for one threshold integration: `[bucket start (s), count]` pairs. */
export interface ThresholdState {
  integrationId: number;
  fingerprint: string;
  buckets: Array<[number, number]>;
  /** Seconds since the epoch of the crash that last fired, if any. */
  lastFiredAt?: number;
  /** After this (seconds) the state holds nothing that can still count; housekeeping drops it. */
  expiresAt: number;
}

/** How far the evaluator got in a project: the last object id it evaluated. */
export interface ProjectCursor {
  projectId: number;
  /** The project's own `createdAt`: a project id reused after a delete is a different project. */
  projectCreatedAt: number;
  lastObjectId: number;
}

/** Everything one evaluation pass of one project writes, committed together. */
export interface EvaluationCommit {
  cursor: ProjectCursor;
  groups: GroupStats[];
  thresholds: ThresholdState[];
  deliveries: NewDelivery[];
}

export interface AttemptOutcome {
  status: DeliveryStatus;
  /** For `pending`: when to try again (ms since the epoch). */
  nextAttemptAt?: number;
}

export interface WorkflowStore {
  close(): Promise<void>;

  addIntegration(integration: NewIntegration): Promise<Integration>;
  getIntegration(id: number): Promise<Integration | undefined>;
  /** A project's integrations, or every integration. */
  listIntegrations(projectId?: number): Promise<Integration[]>;
  /** Removes an integration with its queue and log; false if there was none. */
  removeIntegration(id: number): Promise<boolean>;
  /** Forgets everything about a project (deleted, or its id now names another project). */
  forgetProject(projectId: number): Promise<void>;
  /**
   * Drops a project's evaluation progress (cursor and group counts) if it has no integrations,
   * checked in the same transaction; true if it had none.
   */
  forgetProgressIfUnwatched(projectId: number): Promise<boolean>;

  getCursor(projectId: number): Promise<ProjectCursor | undefined>;
  listCursors(): Promise<ProjectCursor[]>;
  getGroups(projectId: number, fingerprints: string[]): Promise<Map<string, GroupStats>>;
  getThresholds(integrationIds: number[], fingerprints: string[]): Promise<ThresholdState[]>;
  commitEvaluation(commit: EvaluationCommit): Promise<void>;

  /** Adds deliveries outside an evaluation (test messages); returns their ids. */
  enqueue(deliveries: NewDelivery[]): Promise<number[]>;
  /** Pending deliveries due at `now`, oldest first, at most `limit`. */
  dueDeliveries(now: number, limit: number): Promise<Delivery[]>;
  /** The earliest `nextAttemptAt` of any pending delivery. */
  nextAttemptAt(): Promise<number | undefined>;
  recordAttempt(deliveryId: number, attempt: DeliveryAttempt, outcome: AttemptOutcome): Promise<void>;
  /** Holds an integration's pending deliveries until `untilMs` (its receiver is failing). */
  deferIntegration(integrationId: number, untilMs: number): Promise<void>;
  /** Puts a delivery back in the queue, due now (a person asked to retry it). */
  retryDelivery(deliveryId: number, now: number): Promise<boolean>;
  getDelivery(deliveryId: number): Promise<Delivery | undefined>;
  /** An integration's deliveries, newest first; `beforeId` pages back. */
  listDeliveries(integrationId: number, options?: { limit?: number; beforeId?: number }): Promise<Delivery[]>;
  /** A delivery's attempts, oldest first (the newest `MAX_ATTEMPTS_KEPT`). */
  listAttempts(deliveryId: number): Promise<DeliveryAttempt[]>;
  countDeliveries(integrationId: number): Promise<Record<DeliveryStatus, number>>;

  /** Drops threshold counters that expired and finished deliveries older than `keepMs`. */
  housekeeping(nowMs: number, keepMs: number): Promise<void>;
}

/** A store's workflow state, or a sentence saying this backend has none. */
export class WorkflowStoreError extends Error {
  override name = 'WorkflowStoreError';
}

/** Attempts kept per delivery in the log: a receiver down for days must not grow it without end. */
export const MAX_ATTEMPTS_KEPT = 50;

/** Opens the workflow state that belongs with `store` (for SqliteStore: `<data>/workflows.db`). */
export async function openWorkflowStore(store: Store): Promise<WorkflowStore> {
  if (store instanceof SqliteStore) return SqliteWorkflowStore.open(store.dataDir);
  throw new WorkflowStoreError('This store backend keeps no workflow integrations yet (only the embedded SQLite store does).');
}

type Db = Database.Database;

interface IntegrationRow {
  id: number; project_id: number; type: string; url: string; secret: string; triggers: string; jira: string | null; created_at: number;
}
interface DeliveryRow {
  id: number; uuid: string; integration_id: number; project_id: number; event: string; fingerprint: string; body: string;
  status: string; attempts: number; created_at: number; next_attempt_at: number; last_attempt_at: number | null;
  delivered_at: number | null; last_status: number | null; last_error: string | null;
}
interface GroupRow { fingerprint: string; count: number; first_seen: number; last_seen: number; first_object: number; last_object: number }
interface ThresholdRow { integration_id: number; fingerprint: string; buckets: string; last_fired_at: number | null; expires_at: number }
interface CursorRow { project_id: number; project_created_at: number; last_object_id: number }

function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

const toIntegration = (r: IntegrationRow): Integration => {
  const integration: Integration = {
    id: r.id,
    projectId: r.project_id,
    type: r.type as IntegrationType,
    url: r.url,
    secret: r.secret,
    triggers: parseJson<Trigger[]>(r.triggers, []),
    createdAt: r.created_at,
  };
  const jira = parseJson<JiraSettings | null>(r.jira, null);
  if (jira) integration.jira = jira;
  return integration;
};

const toDelivery = (r: DeliveryRow): Delivery => {
  const d: Delivery = {
    id: r.id,
    uuid: r.uuid,
    integrationId: r.integration_id,
    projectId: r.project_id,
    event: r.event as DeliveryEvent,
    fingerprint: r.fingerprint,
    body: r.body,
    createdAt: r.created_at,
    status: r.status as DeliveryStatus,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
  };
  if (r.last_attempt_at !== null) d.lastAttemptAt = r.last_attempt_at;
  if (r.delivered_at !== null) d.deliveredAt = r.delivered_at;
  if (r.last_status !== null) d.lastStatus = r.last_status;
  if (r.last_error !== null) d.lastError = r.last_error;
  return d;
};

const toGroup = (r: GroupRow): GroupStats => ({
  fingerprint: r.fingerprint, count: r.count, firstSeen: r.first_seen, lastSeen: r.last_seen, firstObject: r.first_object, lastObject: r.last_object,
});

const toCursor = (r: CursorRow): ProjectCursor => ({ projectId: r.project_id, projectCreatedAt: r.project_created_at, lastObjectId: r.last_object_id });

/** Where a data folder's workflow database is. */
export function workflowsDatabasePath(dataDir: string): string {
  return path.join(dataDir, 'workflows.db');
}

export class SqliteWorkflowStore implements WorkflowStore {
  private closed = false;
  private readonly statements = new Map<string, Database.Statement>();

  static async open(dataDir: string): Promise<SqliteWorkflowStore> {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const db = new Database(workflowsDatabasePath(dataDir));
    db.pragma('journal_mode = WAL');
    // A delivery acknowledged as queued must survive a power cut, like a crash does.
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 10000');
    db.pragma('foreign_keys = ON');
    migrate(db);
    return new SqliteWorkflowStore(db);
  }

  private constructor(private readonly db: Db) {}

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private run<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new WorkflowStoreError('The workflow store is closed.'));
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  addIntegration(i: NewIntegration): Promise<Integration> {
    return this.run(() => {
      const createdAt = Math.floor(Date.now() / 1000);
      const info = this.stmt(
        `INSERT INTO integrations (project_id, type, url, secret, triggers, jira, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(i.projectId, i.type, i.url, i.secret, JSON.stringify(i.triggers), i.jira ? JSON.stringify(i.jira) : null, createdAt);
      return { ...i, id: Number(info.lastInsertRowid), createdAt };
    });
  }

  getIntegration(id: number): Promise<Integration | undefined> {
    return this.run(() => {
      const r = this.stmt(`SELECT * FROM integrations WHERE id = ?`).get(id) as IntegrationRow | undefined;
      return r ? toIntegration(r) : undefined;
    });
  }

  listIntegrations(projectId?: number): Promise<Integration[]> {
    return this.run(() => {
      const rows = projectId === undefined
        ? (this.stmt(`SELECT * FROM integrations ORDER BY id`).all() as IntegrationRow[])
        : (this.stmt(`SELECT * FROM integrations WHERE project_id = ? ORDER BY id`).all(projectId) as IntegrationRow[]);
      return rows.map(toIntegration);
    });
  }

  removeIntegration(id: number): Promise<boolean> {
    return this.run(() => this.stmt(`DELETE FROM integrations WHERE id = ?`).run(id).changes > 0);
  }

  forgetProject(projectId: number): Promise<void> {
    return this.run(() => {
      this.db.transaction(() => {
        this.stmt(`DELETE FROM integrations WHERE project_id = ?`).run(projectId);
        this.stmt(`DELETE FROM groups WHERE project_id = ?`).run(projectId);
        this.stmt(`DELETE FROM cursors WHERE project_id = ?`).run(projectId);
      })();
    });
  }

  forgetProgressIfUnwatched(projectId: number): Promise<boolean> {
    return this.run(() =>
      this.db.transaction(() => {
        if (this.stmt(`SELECT 1 FROM integrations WHERE project_id = ? LIMIT 1`).get(projectId)) return false;
        // Forgotten already (every pass of an unwatched project comes here): nothing to write.
        if (!this.stmt(`SELECT 1 FROM cursors WHERE project_id = ?`).get(projectId)) return true;
        this.stmt(`DELETE FROM groups WHERE project_id = ?`).run(projectId);
        this.stmt(`DELETE FROM cursors WHERE project_id = ?`).run(projectId);
        return true;
      })(),
    );
  }

  getCursor(projectId: number): Promise<ProjectCursor | undefined> {
    return this.run(() => {
      const r = this.stmt(`SELECT * FROM cursors WHERE project_id = ?`).get(projectId) as CursorRow | undefined;
      return r ? toCursor(r) : undefined;
    });
  }

  listCursors(): Promise<ProjectCursor[]> {
    return this.run(() => (this.stmt(`SELECT * FROM cursors ORDER BY project_id`).all() as CursorRow[]).map(toCursor));
  }

  getGroups(projectId: number, fingerprints: string[]): Promise<Map<string, GroupStats>> {
    return this.run(() => {
      const out = new Map<string, GroupStats>();
      const one = this.stmt(`SELECT * FROM groups WHERE project_id = ? AND fingerprint = ?`);
      for (const fp of new Set(fingerprints)) {
        const r = one.get(projectId, fp) as GroupRow | undefined;
        if (r) out.set(fp, toGroup(r));
      }
      return out;
    });
  }

  getThresholds(integrationIds: number[], fingerprints: string[]): Promise<ThresholdState[]> {
    return this.run(() => {
      const out: ThresholdState[] = [];
      const one = this.stmt(`SELECT * FROM thresholds WHERE integration_id = ? AND fingerprint = ?`);
      for (const id of new Set(integrationIds)) {
        for (const fp of new Set(fingerprints)) {
          const r = one.get(id, fp) as ThresholdRow | undefined;
          if (!r) continue;
          const state: ThresholdState = { integrationId: r.integration_id, fingerprint: r.fingerprint, buckets: parseJson(r.buckets, []), expiresAt: r.expires_at };
          if (r.last_fired_at !== null) state.lastFiredAt = r.last_fired_at;
          out.push(state);
        }
      }
      return out;
    });
  }

  commitEvaluation(commit: EvaluationCommit): Promise<void> {
    return this.run(() => {
      this.db.transaction(() => {
        const { cursor } = commit;
        this.stmt(
          `INSERT INTO cursors (project_id, project_created_at, last_object_id) VALUES (?, ?, ?)
           ON CONFLICT (project_id) DO UPDATE SET project_created_at = excluded.project_created_at, last_object_id = excluded.last_object_id`,
        ).run(cursor.projectId, cursor.projectCreatedAt, cursor.lastObjectId);
        const group = this.stmt(
          `INSERT INTO groups (project_id, fingerprint, count, first_seen, last_seen, first_object, last_object) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (project_id, fingerprint) DO UPDATE SET count = excluded.count, first_seen = excluded.first_seen,
             last_seen = excluded.last_seen, first_object = excluded.first_object, last_object = excluded.last_object`,
        );
        for (const g of commit.groups) group.run(cursor.projectId, g.fingerprint, g.count, g.firstSeen, g.lastSeen, g.firstObject, g.lastObject);
        const threshold = this.stmt(
          `INSERT INTO thresholds (integration_id, fingerprint, buckets, last_fired_at, expires_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (integration_id, fingerprint) DO UPDATE SET buckets = excluded.buckets, last_fired_at = excluded.last_fired_at,
             expires_at = excluded.expires_at`,
        );
        // An integration removed while the pass ran has no row to hang counters or deliveries on.
        const exists = this.stmt(`SELECT 1 FROM integrations WHERE id = ?`);
        for (const t of commit.thresholds) {
          if (!exists.get(t.integrationId)) continue;
          threshold.run(t.integrationId, t.fingerprint, JSON.stringify(t.buckets), t.lastFiredAt ?? null, t.expiresAt);
        }
        for (const d of commit.deliveries) {
          if (!exists.get(d.integrationId)) continue;
          this.insertDelivery(d);
        }
      })();
    });
  }

  private insertDelivery(d: NewDelivery): number {
    // Behind a failing receiver's queue, not ahead of it: order is kept, and the receiver is
    // probed by the head of the queue alone.
    const held = this.stmt(`SELECT MAX(next_attempt_at) AS at FROM deliveries WHERE integration_id = ? AND status = 'pending'`).get(d.integrationId) as {
      at: number | null;
    };
    const info = this.stmt(
      `INSERT INTO deliveries (uuid, integration_id, project_id, event, fingerprint, body, status, attempts, created_at, next_attempt_at)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)`,
    ).run(d.uuid, d.integrationId, d.projectId, d.event, d.fingerprint, d.body, d.createdAt, Math.max(d.createdAt, held.at ?? 0));
    return Number(info.lastInsertRowid);
  }

  enqueue(deliveries: NewDelivery[]): Promise<number[]> {
    return this.run(() => this.db.transaction(() => deliveries.map((d) => this.insertDelivery(d)))());
  }

  dueDeliveries(now: number, limit: number): Promise<Delivery[]> {
    return this.run(() =>
      (this.stmt(`SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?`).all(now, limit) as DeliveryRow[]).map(toDelivery),
    );
  }

  nextAttemptAt(): Promise<number | undefined> {
    return this.run(() => {
      const r = this.stmt(`SELECT MIN(next_attempt_at) AS at FROM deliveries WHERE status = 'pending'`).get() as { at: number | null };
      return r.at ?? undefined;
    });
  }

  recordAttempt(deliveryId: number, attempt: DeliveryAttempt, outcome: AttemptOutcome): Promise<void> {
    return this.run(() => {
      this.db.transaction(() => {
        const changed = this.stmt(
          `UPDATE deliveries SET status = ?, attempts = attempts + 1, last_attempt_at = ?, next_attempt_at = ?,
             delivered_at = ?, last_status = ?, last_error = ? WHERE id = ?`,
        ).run(
          outcome.status,
          attempt.at,
          outcome.nextAttemptAt ?? attempt.at,
          outcome.status === 'delivered' ? attempt.at + attempt.durationMs : null,
          attempt.status ?? null,
          attempt.error ?? null,
          deliveryId,
        ).changes;
        // Removed with its integration meanwhile: nothing to log against.
        if (changed === 0) return;
        this.stmt(`INSERT INTO attempts (delivery_id, at, status, error, duration_ms) VALUES (?, ?, ?, ?, ?)`).run(
          deliveryId, attempt.at, attempt.status ?? null, attempt.error ?? null, attempt.durationMs,
        );
        this.stmt(
          `DELETE FROM attempts WHERE delivery_id = ? AND id NOT IN (SELECT id FROM attempts WHERE delivery_id = ? ORDER BY id DESC LIMIT ?)`,
        ).run(deliveryId, deliveryId, MAX_ATTEMPTS_KEPT);
      })();
    });
  }

  deferIntegration(integrationId: number, untilMs: number): Promise<void> {
    return this.run(() => {
      this.stmt(`UPDATE deliveries SET next_attempt_at = ? WHERE integration_id = ? AND status = 'pending' AND next_attempt_at < ?`).run(
        untilMs, integrationId, untilMs,
      );
    });
  }

  retryDelivery(deliveryId: number, now: number): Promise<boolean> {
    return this.run(
      () => this.stmt(`UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE id = ? AND status != 'delivered'`).run(now, deliveryId).changes > 0,
    );
  }

  getDelivery(deliveryId: number): Promise<Delivery | undefined> {
    return this.run(() => {
      const r = this.stmt(`SELECT * FROM deliveries WHERE id = ?`).get(deliveryId) as DeliveryRow | undefined;
      return r ? toDelivery(r) : undefined;
    });
  }

  listDeliveries(integrationId: number, options: { limit?: number; beforeId?: number } = {}): Promise<Delivery[]> {
    return this.run(() => {
      const limit = Math.max(1, Math.min(options.limit ?? 50, 1000));
      const before = options.beforeId ?? Number.MAX_SAFE_INTEGER;
      return (this.stmt(`SELECT * FROM deliveries WHERE integration_id = ? AND id < ? ORDER BY id DESC LIMIT ?`).all(integrationId, before, limit) as DeliveryRow[]).map(
        toDelivery,
      );
    });
  }

  listAttempts(deliveryId: number): Promise<DeliveryAttempt[]> {
    return this.run(() =>
      (this.stmt(`SELECT at, status, error, duration_ms FROM attempts WHERE delivery_id = ? ORDER BY id`).all(deliveryId) as Array<{
        at: number; status: number | null; error: string | null; duration_ms: number;
      }>).map((r) => {
        const a: DeliveryAttempt = { at: r.at, durationMs: r.duration_ms };
        if (r.status !== null) a.status = r.status;
        if (r.error !== null) a.error = r.error;
        return a;
      }),
    );
  }

  countDeliveries(integrationId: number): Promise<Record<DeliveryStatus, number>> {
    return this.run(() => {
      const counts: Record<DeliveryStatus, number> = { pending: 0, delivered: 0, failed: 0 };
      const rows = this.stmt(`SELECT status, COUNT(*) AS n FROM deliveries WHERE integration_id = ? GROUP BY status`).all(integrationId) as Array<{ status: DeliveryStatus; n: number }>;
      for (const r of rows) counts[r.status] = r.n;
      return counts;
    });
  }

  housekeeping(nowMs: number, keepMs: number): Promise<void> {
    return this.run(() => {
      this.db.transaction(() => {
        this.stmt(`DELETE FROM thresholds WHERE expires_at < ?`).run(Math.floor(nowMs / 1000));
        this.stmt(`DELETE FROM deliveries WHERE status != 'pending' AND created_at < ?`).run(nowMs - keepMs);
      })();
    });
  }
}

function migrate(db: Db): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS integrations (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      project_id INTEGER NOT NULL,
      type TEXT NOT NULL,
      url TEXT NOT NULL,
      secret TEXT NOT NULL,
      triggers TEXT NOT NULL,
      jira TEXT,
      created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS integrations_by_project ON integrations(project_id);
    CREATE TABLE IF NOT EXISTS cursors (
      project_id INTEGER PRIMARY KEY,
      project_created_at INTEGER NOT NULL,
      last_object_id INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS groups (
      project_id INTEGER NOT NULL,
      fingerprint TEXT NOT NULL,
      count INTEGER NOT NULL,
      first_seen INTEGER NOT NULL,
      last_seen INTEGER NOT NULL,
      first_object INTEGER NOT NULL,
      last_object INTEGER NOT NULL,
      PRIMARY KEY (project_id, fingerprint)
    );
    CREATE TABLE IF NOT EXISTS thresholds (
      integration_id INTEGER NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
      fingerprint TEXT NOT NULL,
      buckets TEXT NOT NULL,
      last_fired_at INTEGER,
      expires_at INTEGER NOT NULL,
      PRIMARY KEY (integration_id, fingerprint)
    );
    CREATE TABLE IF NOT EXISTS deliveries (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      uuid TEXT NOT NULL UNIQUE,
      integration_id INTEGER NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
      project_id INTEGER NOT NULL,
      event TEXT NOT NULL,
      fingerprint TEXT NOT NULL,
      body TEXT NOT NULL,
      status TEXT NOT NULL,
      attempts INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      next_attempt_at INTEGER NOT NULL,
      last_attempt_at INTEGER,
      delivered_at INTEGER,
      last_status INTEGER,
      last_error TEXT
    );
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at);
    CREATE INDEX IF NOT EXISTS deliveries_by_integration ON deliveries(integration_id, id);
    CREATE TABLE IF NOT EXISTS attempts (
      id INTEGER PRIMARY KEY,
      delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
      at INTEGER NOT NULL,
      status INTEGER,
      error TEXT,
      duration_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts(delivery_id, id);
  `);
  const row = db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string } | undefined;
  if (!row) {
    db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)`).run(String(WORKFLOW_SCHEMA_VERSION));
  } else if (Number(row.value) > WORKFLOW_SCHEMA_VERSION) {
    db.close();
    throw new WorkflowStoreError(
      `workflows.db was written by a newer coroner (schema ${row.value}; this one knows ${WORKFLOW_SCHEMA_VERSION}).`,
    );
  }
}
