/**
 * SqliteStore: the embedded default `Store`, SQLite (WAL) plus blob files under one data folder.
 *
 * Threads: the calling thread keeps one connection for small reads and administrative writes
 * (users, tokens, sessions: each a millisecond). A writer worker owns a second connection and
 * runs ingestion in batches: the crashes of one event-loop turn go in one message, the messages
 * that reach the writer while it is busy go in one transaction, and one fdatasync of the WAL,
 * overlapping the next transaction, makes a run of commits durable before they are answered
 * (sqlite-worker.ts): group commit, and the HTTP thread never waits on a disk sync. A reader
 * worker owns a third connection for scans and blob reads, so a long read never stalls ingestion
 * or the event loop. A checkpointer worker copies the WAL into the database file every
 * `checkpointEveryMs`, off everyone's path. WAL lets them all proceed at once.
 *
 * `workers: false` runs the same operations on the calling thread (the admin CLI: one command,
 * no threads worth starting).
 */

import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import * as ops from './sqlite-ops.js';
import { WalSync } from './wal-sync.js';
import {
  DiskFullError,
  isDiskFull,
  StoreError,
  type ApiToken,
  type AttachmentInfo,
  type AttributeDeclaration,
  type AttributeValue,
  type CrashObject,
  type GroupState,
  type NewCrash,
  type Project,
  type Session,
  type Store,
  type StoredCrash,
  type StoreChange,
  InvalidSubmissionError,
  type RawSubmission,
  type StoreHealth,
  type SubmissionReceipt,
  type Universe,
  type User,
} from './types.js';

export interface SqliteStoreOptions {
  dataDir: string;
  /** Run ingestion and scans on worker threads (default true). */
  workers?: boolean;
  /** Most crashes committed in one transaction (default 1000). */
  maxBatch?: number;
  /** How often the checkpointer copies the WAL into the database file while there are writes (default 500 ms). */
  checkpointEveryMs?: number;
}

type WorkerRequest = ops.WorkerRequest;
type WorkerResponse = ops.WorkerResponse;
type RawCrash = ops.RawCrash;

/** How long `health` waits for the writer. */
const HEALTH_TIMEOUT_MS = 5000;
/**
 * How long a crash refused for a full disk keeps `health` at disk_full when none is stored after
 * it: not for ever, since a monitor that takes the server out of rotation stops the submissions
 * that would show the disk has room again.
 */
const DISK_FULL_MEMORY_MS = 60_000;

/** A worker that lived less than this before it died is not replaced until this much time has passed. */
const RESPAWN_PAUSE_MS = 1000;

/**
 * Runs requests on a worker thread (or inline), one at a time per worker, in order. A worker that
 * dies (an uncaught exception, an exhausted heap) fails the requests it held and is replaced by
 * the next request, so one bad moment does not stop ingestion for the life of the server; one
 * that dies right after starting is replaced no more than once a second.
 */
class Executor {
  private worker: Worker | undefined;
  private spawnedAt = 0;
  private nextId = 1;
  /** Requests sent and not settled; `committed`: answered, waiting only for the WAL sync. */
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; committed?: boolean }>();
  private lost: { at: number; err: Error; quick: boolean } | undefined;
  private closed = false;

  constructor(
    private readonly dataDir: string,
    private readonly inlineDb: ops.Db | undefined,
    private readonly role: 'writer' | 'reader' | 'checkpointer',
    private readonly maxBatch: number,
    /** Holds answers that say `durableAfterCommit` until that commit is synced (the writer's). */
    private readonly walSync?: WalSync,
  ) {
    if (!inlineDb) this.spawn();
  }

  private spawn(): Worker {
    const worker = new Worker(new URL('./sqlite-worker.js', import.meta.url), {
      workerData: { dataDir: this.dataDir, role: this.role, maxBatch: this.maxBatch, commitCounter: this.walSync?.commitCounter },
    });
    worker.on('message', (m: WorkerResponse) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.ok && m.durableAfterCommit !== undefined && this.walSync) {
        // Still pending (close waits for it) until the commit is durable.
        p.committed = true;
        this.walSync.after(m.durableAfterCommit, (err) => {
          this.pending.delete(m.id);
          if (err) p.reject(err);
          else p.resolve(m.result);
        });
        return;
      }
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(m.diskFull ? new DiskFullError(m.message) : m.storeError ? new StoreError(m.message) : new Error(m.message));
    });
    worker.on('error', (err) => this.onLost(worker, err));
    worker.on('exit', (code) => this.onLost(worker, new Error(`The store's ${this.role} thread exited (code ${code}).`)));
    this.worker = worker;
    this.spawnedAt = Date.now();
    return worker;
  }

  /**
   * The worker is gone: what it held and had not answered fails (a crash it had committed but not
   * answered is stored, and the client's retry finds it by its uuid); what it had answered waits
   * for its WAL sync as before. The next request starts a new worker.
   */
  private onLost(worker: Worker, err: Error): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.lost = { at: Date.now(), err, quick: Date.now() - this.spawnedAt < RESPAWN_PAUSE_MS };
    for (const [id, p] of this.pending) {
      if (p.committed) continue;
      this.pending.delete(id);
      p.reject(err);
    }
    void worker.terminate();
  }

  /** Runs `request`; buffers in `transfer` move to the worker (unusable here afterwards). */
  run<T>(request: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.inlineDb) {
      try {
        return Promise.resolve(ops.runRequest(this.inlineDb, this.dataDir, request) as T);
      } catch (err) {
        return Promise.reject(storeFailure(err));
      }
    }
    if (this.closed) return Promise.reject(new StoreError('The store is closed.'));
    let worker = this.worker;
    if (!worker) {
      if (this.lost?.quick && Date.now() - this.lost.at < RESPAWN_PAUSE_MS) return Promise.reject(this.lost.err);
      worker = this.spawn();
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ id, request }, transfer);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    if (!w) return;
    // Let what was sent finish: the worker answers in order.
    await Promise.allSettled([...this.pending.values()].map((p) => new Promise((r) => {
      const { resolve, reject } = p;
      p.resolve = (v) => { resolve(v); r(null); };
      p.reject = (e) => { reject(e); r(null); };
    })));
    this.worker = undefined;
    await w.terminate();
  }
}

/** A full disk becomes DiskFullError (callers answer it as such); anything else passes as is. */
function storeFailure(err: unknown): unknown {
  return isDiskFull(err) ? new DiskFullError((err as Error).message) : err;
}

/** A crash waiting for the writer: prepared by the caller (`insertCrash`), or raw (`insertSubmission`). */
type QueuedCrash =
  | { item: RawCrash; resolve: (v: StoredCrash) => void; reject: (e: Error) => void }
  | { item: ops.QueuedSubmission; resolve: (v: SubmissionReceipt) => void; reject: (e: Error) => void };

/** The object a new crash became, from what was submitted plus the id and receipt the store gave it. */
function storedObject(crash: RawCrash, id: number, rxid: string): CrashObject {
  return {
    id,
    projectId: crash.projectId,
    uuid: crash.uuid,
    rxid,
    timestamp: crash.timestamp,
    receivedAt: crash.receivedAt,
    fingerprint: crash.fingerprint,
    callstack: crash.callstack,
    classifiers: crash.classifiers,
    attributes: crash.attributes,
    format: crash.format,
    processed: crash.processed,
  };
}

type ChangeEvent = StoreChange;

export class SqliteStore implements Store {
  private readonly db: ops.Db;
  private readonly writer: Executor;
  private readonly reader: Executor;
  private readonly checkpointer: Executor | undefined;
  private readonly walSync: WalSync | undefined;
  private readonly events = new EventEmitter();
  private queue: QueuedCrash[] = [];
  private sendScheduled = false;
  /** Ingest messages sent and not yet answered. */
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private closed = false;
  private readonly maxBatch: number;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private wroteSinceCheckpoint = false;
  private checkpointing = false;
  private configChanges = 0;
  /** The last ingestion's failure when it was a full disk, until an ingestion succeeds. */
  private diskFull: { err: DiskFullError; at: number } | undefined;

  /** Opens (creating if needed) the store in `dataDir`. */
  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    return new SqliteStore(options);
  }

  private constructor(readonly options: SqliteStoreOptions) {
    const threads = options.workers !== false;
    // With a checkpointer thread, no commit on this (the event loop's) connection checkpoints.
    this.db = ops.openDatabase(options.dataDir, { autoCheckpoint: !threads });
    if (threads) ops.removePartialBlobs(options.dataDir);
    const inline = threads ? undefined : this.db;
    this.maxBatch = options.maxBatch ?? 1000;
    this.walSync = threads ? new WalSync({ wal: ops.walPath(options.dataDir), database: ops.databasePath(options.dataDir) }) : undefined;
    this.writer = new Executor(options.dataDir, inline, 'writer', this.maxBatch, this.walSync);
    this.reader = new Executor(options.dataDir, inline, 'reader', this.maxBatch);
    if (threads) {
      this.checkpointer = new Executor(options.dataDir, undefined, 'checkpointer', this.maxBatch);
      this.checkpointTimer = setInterval(() => this.checkpointSoon(), options.checkpointEveryMs ?? 500);
      this.checkpointTimer.unref();
    }
    this.events.setMaxListeners(0);
  }

  private checkpointSoon(): void {
    if (!this.wroteSinceCheckpoint || this.checkpointing || !this.checkpointer || this.closed) return;
    this.wroteSinceCheckpoint = false;
    this.checkpointing = true;
    this.checkpointer
      .run({ op: 'checkpoint' })
      // A checkpoint that fails is retried at the next tick; the WAL keeps the data meanwhile.
      .catch(() => { this.wroteSinceCheckpoint = true; })
      .finally(() => { this.checkpointing = false; });
  }

  get configVersion(): number {
    return this.configChanges;
  }

  /** Runs an administrative write and lets caches above know that the configuration changed. */
  private configWrite<T>(fn: () => T): Promise<T> {
    return this.sync(() => {
      try {
        return fn();
      } finally {
        this.configChanges++;
      }
    });
  }

  get dataDir(): string {
    return this.options.dataDir;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    if (this.queue.length) this.sendQueued();
    while (this.inFlight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    await this.writer.close();
    await this.reader.close();
    await this.checkpointer?.close();
    await this.walSync?.close();
    this.db.close();
  }

  private sync<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError('The store is closed.'));
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(storeFailure(err));
    }
  }

  // Universes, projects, users, tokens, sessions.
  getUniverse(name: string): Promise<Universe | undefined> { return this.sync(() => ops.getUniverse(this.db, name)); }
  getUniverseById(id: number): Promise<Universe | undefined> { return this.sync(() => ops.getUniverseById(this.db, id)); }
  listUniverses(): Promise<Universe[]> { return this.sync(() => ops.listUniverses(this.db)); }
  createUniverse(name: string): Promise<Universe> { return this.configWrite(() => ops.createUniverse(this.db, name)); }
  listProjects(universeId: number): Promise<Project[]> { return this.sync(() => ops.listProjects(this.db, universeId)); }
  getProject(universeId: number, name: string): Promise<Project | undefined> { return this.sync(() => ops.getProject(this.db, universeId, name)); }
  getProjectById(id: number): Promise<Project | undefined> { return this.sync(() => ops.getProjectById(this.db, id)); }
  createProject(universeId: number, name: string): Promise<Project> { return this.configWrite(() => ops.createProject(this.db, universeId, name)); }
  async deleteProject(projectId: number): Promise<void> {
    this.wroteSinceCheckpoint = true;
    this.configChanges++;
    await this.writer.run({ op: 'deleteProject', projectId });
    this.configChanges++;
    this.events.emit('change', { projectId, kind: 'delete', ids: [] } satisfies ChangeEvent);
  }

  setProjectRetention(projectId: number, seconds: number | null): Promise<void> {
    return this.configWrite(() => ops.setProjectRetention(this.db, projectId, seconds));
  }

  createUser(universeId: number, username: string, email: string, passwordHash: string, superuser: boolean): Promise<User> {
    return this.configWrite(() => ops.createUser(this.db, universeId, username, email, passwordHash, superuser));
  }
  getUser(universeId: number, username: string): Promise<(User & { passwordHash: string }) | undefined> { return this.sync(() => ops.getUser(this.db, universeId, username)); }
  getUserById(uid: number): Promise<User | undefined> { return this.sync(() => ops.getUserById(this.db, uid)); }
  listUsers(universeId: number): Promise<User[]> { return this.sync(() => ops.listUsers(this.db, universeId)); }
  deleteUser(uid: number): Promise<void> { return this.configWrite(() => ops.deleteUser(this.db, uid)); }
  setUserPassword(uid: number, passwordHash: string): Promise<void> { return this.configWrite(() => ops.setUserPassword(this.db, uid, passwordHash)); }

  createToken(token: Omit<ApiToken, 'createdAt'>): Promise<ApiToken> { return this.configWrite(() => ops.createToken(this.db, token)); }
  getToken(id: string): Promise<ApiToken | undefined> { return this.sync(() => ops.getToken(this.db, id)); }
  listTokens(projectId: number): Promise<ApiToken[]> { return this.sync(() => ops.listTokens(this.db, projectId)); }
  revokeToken(id: string): Promise<void> { return this.configWrite(() => ops.revokeToken(this.db, id)); }

  createSession(session: Session): Promise<void> { return this.sync(() => ops.createSession(this.db, session)); }
  getSession(token: string): Promise<Session | undefined> { return this.sync(() => ops.getSession(this.db, token)); }
  deleteSession(token: string): Promise<void> { return this.sync(() => ops.deleteSession(this.db, token)); }
  deleteExpiredSessions(): Promise<number> { return this.sync(() => ops.deleteExpiredSessions(this.db)); }

  // Attributes and grouping rules.
  listAttributes(projectId: number): Promise<AttributeDeclaration[]> { return this.sync(() => ops.listAttributes(this.db, projectId)); }
  declareAttribute(projectId: number, declaration: AttributeDeclaration): Promise<void> { return this.sync(() => ops.declareAttribute(this.db, projectId, declaration)); }
  getGroupingRules(projectId: number): Promise<{ version: number; rules: unknown }> { return this.sync(() => ops.getGroupingRules(this.db, projectId)); }
  setGroupingRules(projectId: number, rules: unknown): Promise<{ version: number }> { return this.configWrite(() => ops.setGroupingRules(this.db, projectId, rules)); }
  getGroupState(projectId: number, fingerprint: string): Promise<GroupState> { return this.sync(() => ops.getGroupState(this.db, projectId, fingerprint)); }
  listGroupStates(projectId: number): Promise<Array<{ fingerprint: string; state: GroupState }>> { return this.sync(() => ops.listGroupStates(this.db, projectId)); }
  setGroupState(projectId: number, fingerprint: string, state: GroupState): Promise<void> { return this.sync(() => ops.setGroupState(this.db, projectId, fingerprint, state)); }

  // Crashes.
  insertCrash(crash: NewCrash): Promise<StoredCrash> {
    return new Promise<StoredCrash>((resolve, reject) => {
      this.enqueue({ item: { ...crash, receivedAt: Math.floor(Date.now() / 1000) }, resolve, reject });
    });
  }

  insertSubmission(submission: RawSubmission): Promise<SubmissionReceipt> {
    return new Promise<SubmissionReceipt>((resolve, reject) => {
      this.enqueue({ item: { ...submission, receivedAt: Math.floor(Date.now() / 1000), raw: true }, resolve, reject });
    });
  }

  private enqueue(queued: QueuedCrash): void {
    if (this.closed) {
      queued.reject(new StoreError('The store is closed.'));
      return;
    }
    this.queue.push(queued);
    // Everything submitted in this turn of the event loop travels in one message.
    if (!this.sendScheduled) {
      this.sendScheduled = true;
      setImmediate(() => this.sendQueued());
    }
  }

  /** Hands the queued crashes to the writer; it answers once they are durable (sqlite-worker.ts). */
  private sendQueued(): void {
    this.sendScheduled = false;
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      this.wroteSinceCheckpoint = true;
      // Inline (no worker), the bodies stay where they are.
      const packed = this.options.workers === false ? { batch: batch.map((q) => q.item), packed: undefined } : ops.packBodies(batch.map((q) => q.item));
      this.writer
        .run<ops.InsertOutcome[]>({ op: 'ingest', ...packed }, packed.packed ? [packed.packed.buffer] : [])
        .then(
          (outcomes) => {
            this.diskFull = undefined;
            this.settle(batch, outcomes);
          },
          (err: Error) => {
            if (err instanceof DiskFullError) this.diskFull = { err, at: Date.now() };
            for (const q of batch) q.reject(err);
          },
        )
        .finally(() => {
          this.inFlight--;
          if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }

  private settle(batch: QueuedCrash[], outcomes: ops.InsertOutcome[]): void {
    const inserted = new Map<number, { ids: number[]; fingerprints: string[] }>();
    batch.forEach((q, i) => {
      const o = outcomes[i];
      if (!o) return q.reject(new Error('The store lost a crash of a batch.'));
      if (!o.ok) return q.reject(o.invalid ? new InvalidSubmissionError(o.message) : new StoreError(o.message));
      if (!o.existing) {
        let news = inserted.get(q.item.projectId);
        if (!news) inserted.set(q.item.projectId, (news = { ids: [], fingerprints: [] }));
        news.ids.push(o.id);
        news.fingerprints.push(o.fingerprint);
      }
      if ('raw' in q.item) {
        const resolve = q.resolve as (v: SubmissionReceipt) => void;
        if (o.existing) resolve({ id: o.object.id, rxid: o.object.rxid, fingerprint: o.object.fingerprint, existing: true });
        else resolve({ id: o.id, rxid: o.rxid, fingerprint: o.fingerprint, existing: false });
      } else {
        const resolve = q.resolve as (v: StoredCrash) => void;
        if (o.existing) resolve({ object: o.object, existing: true });
        else resolve({ object: storedObject(q.item, o.id, o.rxid), existing: false });
      }
    });
    for (const [projectId, { ids, fingerprints }] of inserted) this.emitChange({ projectId, kind: 'insert', ids, fingerprints });
  }

  getObject(projectId: number, id: number): Promise<CrashObject | undefined> { return this.sync(() => ops.getObject(this.db, projectId, id)); }
  findObjectByRxid(projectId: number, rxid: string): Promise<CrashObject | undefined> { return this.sync(() => ops.findObjectByRxid(this.db, projectId, rxid)); }
  countObjects(projectId: number): Promise<number> { return this.sync(() => ops.countObjects(this.db, projectId)); }
  getReportBody(projectId: number, id: number): Promise<{ body: Uint8Array; contentType: string } | undefined> {
    return this.reader.run({ op: 'getReportBody', projectId, id });
  }
  listAttachments(projectId: number, objectId: number): Promise<AttachmentInfo[]> { return this.sync(() => ops.listAttachments(this.db, projectId, objectId)); }
  getAttachment(projectId: number, objectId: number, attachmentId: number): Promise<{ info: AttachmentInfo; data: Uint8Array } | undefined> {
    return this.reader.run({ op: 'getAttachment', projectId, objectId, attachmentId });
  }
  async addAttachment(projectId: number, objectId: number, name: string, contentType: string, data: Uint8Array): Promise<AttachmentInfo> {
    this.wroteSinceCheckpoint = true;
    const info = await this.writer.run<AttachmentInfo>({ op: 'addAttachment', projectId, objectId, name, contentType, data });
    this.emitChange({ projectId, kind: 'update', ids: [objectId] });
    return info;
  }

  async *scanObjects(projectId: number, startAfterId = 0): AsyncIterable<CrashObject> {
    let afterId = startAfterId;
    for (;;) {
      const page = await this.reader.run<CrashObject[]>({ op: 'scanPage', projectId, afterId, limit: 5000 });
      if (page.length === 0) return;
      yield* page;
      afterId = page[page.length - 1]!.id;
    }
  }

  async setObjectAttributes(projectId: number, ids: number[], values: Record<string, AttributeValue>): Promise<number> {
    this.wroteSinceCheckpoint = true;
    const n = await this.writer.run<number>({ op: 'setObjectAttributes', projectId, ids, values });
    if (n) this.emitChange({ projectId, kind: 'update', ids });
    return n;
  }
  async deleteObjects(projectId: number, ids: number[]): Promise<number> {
    this.wroteSinceCheckpoint = true;
    const n = await this.writer.run<number>({ op: 'deleteObjects', projectId, ids });
    if (n) this.emitChange({ projectId, kind: 'delete', ids });
    return n;
  }

  async deleteExpired(projectId: number, before: number, limit: number): Promise<number[]> {
    this.wroteSinceCheckpoint = true;
    const ids = await this.writer.run<number[]>({ op: 'deleteExpired', projectId, before, limit });
    if (ids.length) this.emitChange({ projectId, kind: 'delete', ids });
    return ids;
  }

  async health(): Promise<StoreHealth> {
    const broken = this.walSync?.failure;
    if (broken) return { ok: false, status: 'unavailable', error: broken.message };
    let timer: NodeJS.Timeout | undefined;
    try {
      // In order behind whatever the writer is doing: a stuck or dying writer does not answer.
      await Promise.race([
        this.writer.run({ op: 'ping' }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the store's writer has not answered for ${HEALTH_TIMEOUT_MS / 1000} seconds`)), HEALTH_TIMEOUT_MS);
        }),
      ]);
    } catch (err) {
      return { ok: false, status: 'unavailable', error: (err as Error).message };
    } finally {
      clearTimeout(timer);
    }
    if (this.diskFull && Date.now() - this.diskFull.at < DISK_FULL_MEMORY_MS) return { ok: false, status: 'disk_full', error: this.diskFull.err.message };
    return { ok: true };
  }

  onChange(listener: (event: ChangeEvent) => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  private emitChange(event: ChangeEvent): void {
    // A listener's exception must not undo an acknowledged write.
    try {
      this.events.emit('change', event);
    } catch (err) {
      process.emitWarning(`a store change listener threw: ${(err as Error).message}`);
    }
  }
}

/** Opens the embedded store in `dataDir`. */
export function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  return SqliteStore.open(options);
}
