/**
 * The query API's entry point: what `/api/query` (and `/api/delete` with a query) call.
 *
 * What the caller does: holds one `QueryService` per store, passes the authenticated project and
 * who asks, and the decoded JSON body. What the service does: parses the query, brings the
 * project's table up to date (cache.ts), runs the engine, applies `set` through the store, and
 * wraps everything in the envelope morgue 1.24 reads (`{"response":..., "_":{...}}`,
 * backtrace-compat.md §1.5). Bad queries throw `QueryError` (HTTP 400 with its message).
 */

import type { AttributeValue, GroupState, Project, Store } from '../store/types.js';
import type { QueryApi } from './remote.js';
import { QueryCache, type QueryCacheOptions } from './cache.js';
import { describeColumns, execute, filterRows, type Runtime } from './engine.js';
import { QueryError } from './errors.js';
import { parseQuery, type ParsedQuery } from './parse.js';

export interface Asker {
  universe: string;
  user: string;
}

export interface Envelope {
  response?: unknown;
  describe?: unknown;
  _: {
    tx: number;
    universe: string;
    project: string;
    user: string;
    latency: string;
    runtime: Runtime;
  };
}

const GROUP_STATES: readonly GroupState[] = ['open', 'resolved', 'ignored'];

/** Columns a `set` may not change: they are the crash itself, not annotations on it. */
const READ_ONLY = new Set(['timestamp', 'received', '_tx', 'fingerprint', 'callstack', 'classifiers', 'uuid', 'first_seen']);

/** `_.latency` as morgue prints it in its footer ("384 us"). */
export function formatLatency(micros: number): string {
  return `${Math.max(0, Math.round(micros))} us`;
}

export class QueryService implements QueryApi {
  readonly cache: QueryCache;

  constructor(
    readonly store: Store,
    cacheOptions: QueryCacheOptions = {},
  ) {
    this.cache = new QueryCache(store, cacheOptions);
  }

  close(): void {
    this.cache.close();
  }

  /** Builds (or brings up to date) a project's table ahead of its first query: benchmarks, server start. */
  async warm(projectId: number): Promise<void> {
    await this.cache.table(projectId);
  }

  /** Runs a query body (select, fold, or set) and returns the whole response. */
  async query(project: Project, body: unknown, who: Asker): Promise<Envelope> {
    const started = performance.now();
    const parsed = parseQuery(body);
    const table = await this.cache.table(project.id);
    const groupStates = needsStates(parsed) ? await this.cache.groupStates(project.id, table) : undefined;

    if (parsed.set) {
      const t0 = performance.now();
      const rows = filterRows(table, parsed.filter, { groupStates });
      const filterTime = Math.round((performance.now() - t0) * 1000);
      const ids = Array.from(rows, (r) => table.ids[r]!);
      const fingerprints = new Set<string>();
      for (const r of rows) {
        const c = table.fingerprint.codes[r]!;
        if (c >= 0) fingerprints.add(table.fingerprint.values[c]!);
      }
      const tSet = performance.now();
      const changed = await this.applySet(project, parsed.set, ids, [...fingerprints]);
      const setTime = Math.round((performance.now() - tSet) * 1000);
      const total = Math.round((performance.now() - started) * 1000);
      return {
        response: { result: 'success', objects: changed.objects, groups: changed.groups },
        _: this.footer(project, who, table.maxId, started, {
          filter: { rows: rows.length, time: filterTime },
          group_by: { groups: 0, time: 0 },
          aggregate: { time: 0 },
          sort: { time: 0 },
          set: { time: setTime },
          total_time: total,
        }),
      };
    }

    const { response, runtime } = execute(table, parsed, { groupStates });
    return { response, _: this.footer(project, who, table.maxId, started, runtime) };
  }

  /** `query`, serialized (the HTTP API sends these bytes as they are). */
  async queryJson(project: Project, body: unknown, who: Asker): Promise<Uint8Array> {
    return Buffer.from(JSON.stringify(await this.query(project, body, who)));
  }

  /** A group's state changed elsewhere (a regression reopened it): queries see it at once. */
  noteGroupState(projectId: number, fingerprint: string, state: GroupState): void {
    this.cache.noteGroupState(projectId, fingerprint, state);
  }

  /** `action=describe`: every column with its type, format and the operations it accepts. */
  async describe(project: Project, who: Asker): Promise<Envelope> {
    const started = performance.now();
    const table = await this.cache.table(project.id);
    const describe = describeColumns(table);
    const total = Math.round((performance.now() - started) * 1000);
    return {
      describe,
      _: this.footer(project, who, table.maxId, started, {
        filter: { rows: table.liveCount, time: 0 },
        group_by: { groups: 0, time: 0 },
        aggregate: { time: total },
        sort: { time: 0 },
        total_time: total,
      }),
    };
  }

  /** The ids of the objects a query's filter matches (for delete by query). */
  async matchingIds(project: Project, body: unknown): Promise<number[]> {
    const parsed = parseQuery(body);
    const table = await this.cache.table(project.id);
    const groupStates = needsStates(parsed) ? await this.cache.groupStates(project.id, table) : undefined;
    return Array.from(filterRows(table, parsed.filter, { groupStates }), (r) => table.ids[r]!);
  }

  private async applySet(
    project: Project,
    set: Record<string, AttributeValue>,
    ids: number[],
    fingerprints: string[],
  ): Promise<{ objects: number; groups: number }> {
    const attributes: Record<string, AttributeValue> = {};
    let state: GroupState | undefined;
    for (const [key, value] of Object.entries(set)) {
      if (key === 'state') {
        const wanted = value === null ? 'open' : String(value);
        if (!(GROUP_STATES as readonly string[]).includes(wanted)) {
          throw new QueryError(`state must be one of ${GROUP_STATES.join(', ')}, not ${JSON.stringify(value)}.`);
        }
        state = wanted as GroupState;
      } else if (READ_ONLY.has(key)) {
        throw new QueryError(`'${key}' cannot be set: it is part of the crash itself.`);
      } else {
        attributes[key] = value;
      }
    }
    let objects = 0;
    if (Object.keys(attributes).length > 0 && ids.length > 0) {
      objects = await this.store.setObjectAttributes(project.id, ids, attributes);
    }
    if (state) {
      for (const fp of fingerprints) {
        await this.store.setGroupState(project.id, fp, state);
        this.cache.noteGroupState(project.id, fp, state);
      }
      objects = Math.max(objects, ids.length);
    }
    return { objects, groups: state ? fingerprints.length : 0 };
  }

  private footer(project: Project, who: Asker, tx: number, started: number, runtime: Runtime): Envelope['_'] {
    return {
      tx,
      universe: who.universe,
      project: project.name,
      user: who.user,
      latency: formatLatency((performance.now() - started) * 1000),
      runtime,
    };
  }
}

function needsStates(q: ParsedQuery): boolean {
  const uses = (name: string) => name === 'state';
  return (
    q.filter.some((conj) => conj.some((c) => uses(c.column))) ||
    q.folds.some((f) => uses(f.column)) ||
    (q.group !== undefined && uses(q.group)) ||
    (q.select ?? []).some(uses) ||
    q.selectWildcard?.derived === true ||
    q.order.some((o) => uses(o.name.split(';')[0] ?? ''))
  );
}
