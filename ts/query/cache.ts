/**
 * The query engine's cache: one columnar `ProjectTable` per project, built once from
 * `Store.scanObjects` on the project's first query and kept current through `Store.onChange`.
 *
 * What the caller does: creates one `QueryCache` per store, asks `table(projectId)` before each
 * query (it resolves once every change the store announced so far is in the table), and closes it.
 * What the cache does:
 * - records change events as they come (a cheap push, so ingestion never waits on the cache);
 * - applies them in batches: in the background once enough piled up or a moment passed, and
 *   before any query, by reading the changed objects back with `Store.getObject`;
 * - rebuilds the table from a scan when the backlog is larger than reading objects one by one is
 *   worth;
 * - keeps group states (the `state` column) per fingerprint, read from the store when a query
 *   needs them and updated directly when the API sets them.
 */

import type { CrashObject, GroupState, Store } from '../store/types.js';
import { ProjectTable } from './table.js';

interface ChangeEvent {
  kind: 'insert' | 'update' | 'delete';
  ids: number[];
}

interface Entry {
  table: ProjectTable | undefined;
  building: Promise<ProjectTable> | undefined;
  pending: ChangeEvent[];
  pendingIds: number;
  /** Events received so far, and how many of them are in the table. */
  received: number;
  applied: number;
  applying: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
  declarationsKey: string;
  states: Map<string, GroupState>;
  statesLoadedAt: number;
  statesVersion: number;
}

export interface QueryCacheOptions {
  /** Changed objects read back one by one up to this many; beyond it the table is rebuilt. */
  maxBacklog?: number;
  /** Apply pending changes in the background once this many objects changed. */
  flushAt?: number;
  /** ... or this many milliseconds after the first pending change. */
  flushAfterMs?: number;
  /** How long group states read from the store are trusted (the API updates them directly). */
  stateTtlMs?: number;
}

export class QueryCache {
  private readonly entries = new Map<number, Entry>();
  private readonly unsubscribe: () => void;
  private readonly maxBacklog: number;
  private readonly flushAt: number;
  private readonly flushAfterMs: number;
  private readonly stateTtlMs: number;
  private closed = false;

  constructor(
    private readonly store: Store,
    options: QueryCacheOptions = {},
  ) {
    this.maxBacklog = options.maxBacklog ?? 50_000;
    this.flushAt = options.flushAt ?? 512;
    this.flushAfterMs = options.flushAfterMs ?? 200;
    this.stateTtlMs = options.stateTtlMs ?? 30_000;
    this.unsubscribe = store.onChange((event) => this.onChange(event));
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
    this.entries.clear();
  }

  /** Forgets a project's table (after the project is deleted, say). */
  drop(projectId: number): void {
    const e = this.entries.get(projectId);
    if (e?.timer) clearTimeout(e.timer);
    this.entries.delete(projectId);
  }

  /** The project's table with every announced change applied. */
  async table(projectId: number): Promise<ProjectTable> {
    const e = this.entry(projectId);
    let table = e.table ?? (await (e.building ??= this.build(projectId, e)));
    table = await this.applyPending(projectId, e, table);
    await this.refreshDeclarations(projectId, e, table);
    return table;
  }

  /** Group states by fingerprint for the `state` column (read from the store when stale). */
  async groupStates(projectId: number, table: ProjectTable): Promise<Map<string, GroupState>> {
    const e = this.entry(projectId);
    const stale = Date.now() - e.statesLoadedAt > this.stateTtlMs;
    const missing = table.fingerprint.values.filter((fp) => stale || !e.states.has(fp));
    if (missing.length > 0) {
      const loaded = await mapLimit(missing, 32, (fp) => this.store.getGroupState(projectId, fp));
      missing.forEach((fp, i) => e.states.set(fp, loaded[i]!));
      if (stale) e.statesLoadedAt = Date.now();
    }
    return e.states;
  }

  /** Records a group state the API just stored. */
  noteGroupState(projectId: number, fingerprint: string, state: GroupState): void {
    this.entry(projectId).states.set(fingerprint, state);
  }

  private entry(projectId: number): Entry {
    let e = this.entries.get(projectId);
    if (!e) {
      e = {
        table: undefined,
        building: undefined,
        pending: [],
        pendingIds: 0,
        received: 0,
        applied: 0,
        applying: undefined,
        timer: undefined,
        declarationsKey: '',
        states: new Map(),
        statesLoadedAt: 0,
        statesVersion: 0,
      };
      this.entries.set(projectId, e);
    }
    return e;
  }

  private onChange(event: { projectId: number; kind: 'insert' | 'update' | 'delete'; ids: number[] }): void {
    if (this.closed) return;
    const e = this.entries.get(event.projectId);
    // No table yet and none being built: the first query scans everything anyway.
    if (!e || (!e.table && !e.building)) return;
    e.pending.push({ kind: event.kind, ids: event.ids });
    e.pendingIds += event.ids.length;
    e.received++;
    if (!e.table) return;
    if (e.pendingIds >= this.flushAt) this.flushSoon(event.projectId, e, 0);
    else if (!e.timer) this.flushSoon(event.projectId, e, this.flushAfterMs);
  }

  private flushSoon(projectId: number, e: Entry, delayMs: number): void {
    if (e.timer) clearTimeout(e.timer);
    e.timer = setTimeout(() => {
      e.timer = undefined;
      if (e.table && !this.closed) this.applyPending(projectId, e, e.table).catch(() => undefined);
    }, delayMs);
    e.timer.unref();
  }

  private async build(projectId: number, e: Entry): Promise<ProjectTable> {
    // The scan sees everything announced so far; later events queue up meanwhile.
    e.pending = [];
    e.pendingIds = 0;
    e.applied = e.received;
    try {
      const declarations = await this.store.listAttributes(projectId);
      const table = new ProjectTable(projectId, declarations, 1024);
      e.declarationsKey = JSON.stringify(declarations);
      for await (const object of this.store.scanObjects(projectId)) table.upsert(object);
      e.table = table;
      return table;
    } finally {
      e.building = undefined;
    }
  }

  /**
   * Applies the changes announced before this call; concurrent callers share one pass. Changes
   * that arrive meanwhile wait for the next pass, so steady ingestion cannot starve a query.
   */
  private async applyPending(projectId: number, e: Entry, table: ProjectTable): Promise<ProjectTable> {
    const target = e.received;
    while (e.applied < target) {
      if (e.applying) {
        await e.applying;
        continue;
      }
      const batch = e.pending;
      const upTo = e.received;
      e.pending = [];
      e.pendingIds = 0;
      e.applying = this.applyBatch(projectId, e, e.table ?? table, batch).then(
        () => {
          e.applied = upTo;
        },
        (err: unknown) => {
          // The table may now miss changes: the next query rebuilds it from a scan.
          e.table = undefined;
          e.pending = [];
          e.applied = e.received;
          throw err;
        },
      ).finally(() => {
        e.applying = undefined;
      });
      await e.applying;
      table = e.table ?? table;
    }
    return table;
  }

  private async applyBatch(projectId: number, e: Entry, table: ProjectTable, batch: ChangeEvent[]): Promise<void> {
    // The last event per id decides: deleted, or read back as it is now.
    const last = new Map<number, 'upsert' | 'delete'>();
    for (const ev of batch) for (const id of ev.ids) last.set(id, ev.kind === 'delete' ? 'delete' : 'upsert');
    const reread: number[] = [];
    for (const [id, what] of last) {
      if (what === 'delete') table.remove(id);
      else reread.push(id);
    }
    if (reread.length > this.maxBacklog) {
      const fresh = new ProjectTable(projectId, await this.store.listAttributes(projectId), table.length + reread.length);
      for await (const object of this.store.scanObjects(projectId)) fresh.upsert(object);
      e.table = fresh;
      return;
    }
    reread.sort((a, b) => a - b);
    const objects = await mapLimit(reread, 16, (id) => this.store.getObject(projectId, id));
    objects.forEach((o: CrashObject | undefined, i) => {
      if (o) table.upsert(o);
      else table.remove(reread[i]!);
    });
  }

  private async refreshDeclarations(projectId: number, e: Entry, table: ProjectTable): Promise<void> {
    const declarations = await this.store.listAttributes(projectId);
    const key = JSON.stringify(declarations);
    if (key !== e.declarationsKey) {
      table.declare(declarations);
      e.declarationsKey = key;
    }
  }
}

/** `fn` over `items` with at most `limit` calls in flight; results in item order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
