/**
 * One query service (and so one columnar cache) per store object, shared by every query-API
 * endpoint of the process. With the embedded store on its worker threads, the engine runs on a
 * thread of its own (ts/query/remote.ts), so a long query never stalls submissions; otherwise
 * (an inline store: the CLI, tests) in-process.
 */

import { RemoteQueryService, type QueryApi } from '../../query/remote.js';
import { QueryService } from '../../query/service.js';
import { SqliteStore } from '../../store/sqlite.js';
import type { Store } from '../../store/types.js';

const services = new WeakMap<Store, QueryApi>();

export function queryServiceFor(store: Store): QueryApi {
  let s = services.get(store);
  if (!s) {
    s = store instanceof SqliteStore && store.options.workers !== false
      ? new RemoteQueryService({ kind: 'sqlite', dataDir: store.dataDir }, store)
      : new QueryService(store);
    services.set(store, s);
  }
  return s;
}

/** Stops a store's query service (its worker, change listener and timers); the next call makes a new one. */
export function closeQueryService(store: Store): void {
  services.get(store)?.close();
  services.delete(store);
}
