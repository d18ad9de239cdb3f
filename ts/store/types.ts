// The storage interface of coroner. Everything above it (ingestion, the query engine, the admin
// API, the CLIs) talks to a `Store`; the embedded default is SQLite plus files under the data
// folder (ts/store/sqlite.ts), and a PostgreSQL backend for several coroner nodes comes next, so
// nothing here may assume SQLite: every call is async, and a long read must not stall a write.

/** What every store method throws for a refused operation (a duplicate name, a missing row); the message is a sentence for the user. */
export class StoreError extends Error {
  override name = 'StoreError';
}

/**
 * The disk under the store is full (or the user over quota): nothing of that write was stored,
 * and it can be tried again once there is room. Not the client's fault, and not a bug either.
 */
export class DiskFullError extends Error {
  override name = 'DiskFullError';
  /** `detail`: what the system said, for the server's log (it may name the server's paths, so clients do not see it). */
  constructor(readonly detail: string) {
    super("The server's disk is full, so nothing was stored. Try again later.");
  }
}

export type StoreHealth = { ok: true } | { ok: false; status: 'disk_full' | 'unavailable'; error: string };

/** True for the errors by which SQLite and the file system say that the disk is full. */
export function isDiskFull(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT';
}

/** What `insertSubmission` throws for a report that cannot be taken (not JSON, a bad uuid...): a sentence for the submitter. */
export class InvalidSubmissionError extends StoreError {
  override name = 'InvalidSubmissionError';
}

/** An attribute value as reports carry it. */
export type AttributeValue = string | number | boolean | null;

export type AttributeType = 'string' | 'uint64' | 'int64' | 'double' | 'boolean' | 'dictionary' | 'labels' | 'callstack';

/** How a column is shown (morgue's `format`): unix_timestamp, callstack, sha256, hostname, bytes, labels, none... */
export type AttributeFormat = string;

export interface Universe {
  id: number;
  name: string;
}

export interface Project {
  id: number;
  universeId: number;
  name: string;
  createdAt: number;
  /** Crashes received longer ago than this many seconds are deleted (ts/coroner/retention.ts); null keeps them. */
  retentionSeconds: number | null;
}

export interface User {
  uid: number;
  universeId: number;
  username: string;
  email: string;
  superuser: boolean;
  createdAt: number;
}

/** A submission (or API) token, scoped to one project. */
export interface ApiToken {
  id: string;
  projectId: number;
  /** The friendly name coroner.cf uses for it (the project's name by default). */
  name: string;
  ownerUid: number;
  capabilities: string[];
  createdAt: number;
  revokedAt?: number;
}

export interface Session {
  token: string;
  uid: number;
  universeId: number;
  expiresAt: number;
}

/** A declared attribute of a project (name, type, format), as in the guide's "Attach and Display Attributes". */
export interface AttributeDeclaration {
  name: string;
  type: AttributeType;
  format: AttributeFormat;
  description?: string;
  /** Built in (timestamp, fingerprint, hostname, ...) or declared by a user. */
  custom: boolean;
}

export type GroupState = 'open' | 'resolved' | 'ignored';

/** What a crash is, whether about to be stored (`NewCrash`) or stored (`CrashObject`). */
export interface CrashFields {
  projectId: number;
  uuid: string;
  /** Seconds since the epoch: the report's own timestamp. */
  timestamp: number;
  fingerprint: string;
  /** Innermost-first frame names used for `callstack`. */
  callstack: string[];
  classifiers: string[];
  /** Every indexed attribute, built-ins included (hostname, application, uname.*, ...). */
  attributes: Record<string, AttributeValue>;
  /** `json`, `minidump`, ... */
  format: string;
  /** False for minidumps stored but not yet processed. */
  processed: boolean;
}

/** One stored crash (a report or a snapshot), as the query engine sees it. */
export interface CrashObject extends CrashFields {
  /** Numeric object id, unique within the project; morgue prints it in hex. */
  id: number;
  /** The receipt id answered to the submitter. */
  rxid: string;
  /** Seconds since the epoch: when coroner received it. */
  receivedAt: number;
}

export interface AttachmentInfo {
  id: number;
  objectId: number;
  name: string;
  size: number;
  contentType: string;
}

/** What ingestion hands to the store for one accepted submission. */
export interface NewCrash extends CrashFields {
  /** The whole report as received (after transfer decoding), stored as is. */
  body: Uint8Array;
  contentType: string;
  attachments: Array<{ name: string; contentType: string; data: Uint8Array }>;
}

/**
 * A JSON submission as received (after transfer and multipart decoding), not parsed yet: the
 * store turns it into a crash with `prepareSubmission` (ts/ingest/prepare.ts) off the event loop.
 */
export interface RawSubmission {
  projectId: number;
  /** The report's bytes (UTF-8 JSON). */
  body: Uint8Array;
  /** Multipart form fields, then query parameters: attributes that override the report's own, later ones winning. */
  fields: Array<[string, string]>;
  queryAttributes: Array<[string, string]>;
  attachments: Array<{ name: string; contentType: string; data: Uint8Array }>;
}

/** What a stored submission came to: enough to answer the submitter. */
export interface SubmissionReceipt {
  id: number;
  rxid: string;
  fingerprint: string;
  /** True when the project already had a report with this uuid: its receipt is returned. */
  existing: boolean;
}

export interface StoredCrash {
  object: CrashObject;
  /** True when a report with the same uuid was stored before: the existing receipt is returned. */
  existing: boolean;
}

/** What `onChange` announces. */
export interface StoreChange {
  projectId: number;
  kind: 'insert' | 'update' | 'delete';
  ids: number[];
  /** For inserts: each new object's fingerprint, in the order of `ids` (listeners that need no more need not read the objects back). */
  fingerprints?: string[];
}

/**
 * The store. Implementations: SqliteStore (embedded default). Every method is async; reads may
 * run on another thread than writes. Errors are thrown as `StoreError` with a sentence.
 */
export interface Store {
  close(): Promise<void>;

  // Universes, projects, users, tokens, sessions.
  getUniverse(name: string): Promise<Universe | undefined>;
  getUniverseById(id: number): Promise<Universe | undefined>;
  listUniverses(): Promise<Universe[]>;
  createUniverse(name: string): Promise<Universe>;
  listProjects(universeId: number): Promise<Project[]>;
  getProject(universeId: number, name: string): Promise<Project | undefined>;
  getProjectById(id: number): Promise<Project | undefined>;
  createProject(universeId: number, name: string): Promise<Project>;
  deleteProject(projectId: number): Promise<void>;
  /** How long the project keeps its crashes, in seconds after receipt (null: for ever). */
  setProjectRetention(projectId: number, seconds: number | null): Promise<void>;

  createUser(universeId: number, username: string, email: string, passwordHash: string, superuser: boolean): Promise<User>;
  getUser(universeId: number, username: string): Promise<(User & { passwordHash: string }) | undefined>;
  getUserById(uid: number): Promise<User | undefined>;
  listUsers(universeId: number): Promise<User[]>;
  deleteUser(uid: number): Promise<void>;
  /** Replaces the password hash and ends the user's sessions. */
  setUserPassword(uid: number, passwordHash: string): Promise<void>;

  createToken(token: Omit<ApiToken, 'createdAt'>): Promise<ApiToken>;
  getToken(id: string): Promise<ApiToken | undefined>;
  listTokens(projectId: number): Promise<ApiToken[]>;
  revokeToken(id: string): Promise<void>;

  createSession(session: Session): Promise<void>;
  getSession(token: string): Promise<Session | undefined>;
  deleteSession(token: string): Promise<void>;
  /** Housekeeping: forgets expired sessions; returns how many. */
  deleteExpiredSessions(): Promise<number>;

  // Attributes and grouping rules (versioned data per project).
  listAttributes(projectId: number): Promise<AttributeDeclaration[]>;
  declareAttribute(projectId: number, declaration: AttributeDeclaration): Promise<void>;
  getGroupingRules(projectId: number): Promise<{ version: number; rules: unknown }>;
  setGroupingRules(projectId: number, rules: unknown): Promise<{ version: number }>;
  getGroupState(projectId: number, fingerprint: string): Promise<GroupState>;
  /** A project's groups whose state is not `open` (few: people resolve and ignore by hand). */
  listGroupStates(projectId: number): Promise<Array<{ fingerprint: string; state: GroupState }>>;
  setGroupState(projectId: number, fingerprint: string, state: GroupState): Promise<void>;

  /**
   * Grows whenever a universe, project, user, token or grouping rule changes through this store,
   * so that caches above it (the submission path's token lookups) know to look again. Changes
   * made by another process are not seen here: such caches also expire on their own.
   */
  readonly configVersion: number;

  // Crashes. `insertCrash` resolves only once the crash is durable (group commit is fine).
  insertCrash(crash: NewCrash): Promise<StoredCrash>;
  /**
   * Parses, groups and stores a JSON submission (see RawSubmission), durable before it resolves.
   * A report that cannot be taken rejects with InvalidSubmissionError.
   */
  insertSubmission(submission: RawSubmission): Promise<SubmissionReceipt>;
  getObject(projectId: number, id: number): Promise<CrashObject | undefined>;
  /** The object a receipt (`_rxid`) names. */
  findObjectByRxid(projectId: number, rxid: string): Promise<CrashObject | undefined>;
  countObjects(projectId: number): Promise<number>;
  getReportBody(projectId: number, id: number): Promise<{ body: Uint8Array; contentType: string } | undefined>;
  listAttachments(projectId: number, objectId: number): Promise<AttachmentInfo[]>;
  getAttachment(projectId: number, objectId: number, attachmentId: number): Promise<{ info: AttachmentInfo; data: Uint8Array } | undefined>;
  addAttachment(projectId: number, objectId: number, name: string, contentType: string, data: Uint8Array): Promise<AttachmentInfo>;
  /** Every object of a project, in id order (the query engine's source); with `afterId`, only those with a larger id. */
  scanObjects(projectId: number, afterId?: number): AsyncIterable<CrashObject>;
  setObjectAttributes(projectId: number, ids: number[], values: Record<string, AttributeValue>): Promise<number>;
  deleteObjects(projectId: number, ids: number[]): Promise<number>;
  /** Deletes up to `limit` of the project's oldest crashes received before `before` (seconds since the epoch); returns their ids. */
  deleteExpired(projectId: number, before: number, limit: number): Promise<number[]>;
  /**
   * Whether the store takes crashes now: its threads answer (within a few seconds), its writes
   * are durable, and no crash was refused for a full disk in the last minute without one stored
   * since.
   */
  health?(): Promise<StoreHealth>;
  /** Called after each durable insert or change, so caches (the query engine's) stay current. */
  onChange(listener: (event: StoreChange) => void): () => void;
}
