/**
 * The query engine on a thread of its own, so that a long query (tens of milliseconds over a
 * million crashes) never holds up the event loop that takes submissions.
 *
 * What the caller does: makes one `RemoteQueryService` per store (ts/server/api/service.ts does),
 * calls it as it would a `QueryService`, and closes it with the store. What it does: starts a
 * worker (worker.ts) that opens its own connection to the same data folder and keeps the
 * columnar cache there; forwards every change the caller's store announces (inserts, deletes,
 * attribute changes) so the worker's tables stay current; hands back answers (for the HTTP API,
 * already serialized, so the event loop does not even stringify a large answer). A worker that
 * dies fails the queries it had and is started afresh by the next one.
 */

import { Worker } from 'node:worker_threads';
import { type GroupState, type Project, type Store, StoreError } from '../store/types.js';
import { QueryError } from './errors.js';
import type { Asker, Envelope } from './service.js';

/** What the query API, the web console and the benchmarks need of a query service, here or on a worker. */
export interface QueryApi {
  query(project: Project, body: unknown, who: Asker): Promise<Envelope>;
  /** The same answer as UTF-8 JSON bytes. */
  queryJson(project: Project, body: unknown, who: Asker): Promise<Uint8Array>;
  describe(project: Project, who: Asker): Promise<Envelope>;
  matchingIds(project: Project, body: unknown): Promise<number[]>;
  warm(projectId: number): Promise<void>;
  noteGroupState(projectId: number, fingerprint: string, state: GroupState): void;
  close(): void;
}

/** How the worker opens its own connection to the store (only the embedded SQLite store for now). */
export interface StoreLocation {
  kind: 'sqlite';
  dataDir: string;
}

export type QueryRequest =
  | { op: 'query'; project: Project; body: unknown; who: Asker; json: boolean }
  | { op: 'describe'; project: Project; who: Asker }
  | { op: 'matchingIds'; project: Project; body: unknown }
  | { op: 'warm'; projectId: number }
  | { op: 'noteGroupState'; projectId: number; fingerprint: string; state: GroupState }
  | { op: 'change'; event: { projectId: number; kind: 'insert' | 'update' | 'delete'; ids: number[] } };

export type QueryAnswer =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; kind: 'query' | 'store' | 'other'; message: string };

export class RemoteQueryService implements QueryApi {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(
    private readonly location: StoreLocation,
    store: Store,
  ) {
    // Changes made through the caller's store (ingestion, deletes) reach the worker's cache; a
    // worker started later builds its tables from a scan and needs none of the earlier ones.
    this.unsubscribe = store.onChange((event) => {
      if (this.worker) this.post({ op: 'change', event });
    });
  }

  query(project: Project, body: unknown, who: Asker): Promise<Envelope> {
    return this.call({ op: 'query', project, body, who, json: false });
  }

  queryJson(project: Project, body: unknown, who: Asker): Promise<Uint8Array> {
    return this.call({ op: 'query', project, body, who, json: true });
  }

  describe(project: Project, who: Asker): Promise<Envelope> {
    return this.call({ op: 'describe', project, who });
  }

  matchingIds(project: Project, body: unknown): Promise<number[]> {
    return this.call({ op: 'matchingIds', project, body });
  }

  warm(projectId: number): Promise<void> {
    return this.call({ op: 'warm', projectId });
  }

  noteGroupState(projectId: number, fingerprint: string, state: GroupState): void {
    if (this.worker) this.post({ op: 'noteGroupState', projectId, fingerprint, state });
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    const w = this.worker;
    this.worker = undefined;
    this.failAll(new Error('The query service is closed.'));
    void w?.terminate();
  }

  private call<T>(request: QueryRequest): Promise<T> {
    if (this.closed) return Promise.reject(new Error('The query service is closed.'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.post(request, id);
    });
  }

  private post(request: QueryRequest, id = 0): void {
    this.start().postMessage({ id, request });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { location: this.location } });
    worker.unref();
    worker.on('message', (m: QueryAnswer) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(m.kind === 'query' ? new QueryError(m.message) : m.kind === 'store' ? new StoreError(m.message) : new Error(m.message));
    });
    const stopped = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.failAll(new Error(`The query worker stopped (${why}); the next query starts a new one.`));
    };
    worker.on('error', (err) => stopped(err.message));
    worker.on('exit', (code) => stopped(`exit code ${code}`));
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
