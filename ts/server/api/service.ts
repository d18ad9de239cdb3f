/**
 * One `QueryService` (and so one columnar cache) per store object, shared by every query-API
 * endpoint of the process.
 */

import { QueryService } from '../../query/service.js';
import type { Store } from '../../store/types.js';

const services = new WeakMap<Store, QueryService>();

export function queryServiceFor(store: Store): QueryService {
  let s = services.get(store);
  if (!s) {
    s = new QueryService(store);
    services.set(store, s);
  }
  return s;
}

/** Stops a store's query service (its change listener and timers); the next call makes a new one. */
export function closeQueryService(store: Store): void {
  services.get(store)?.close();
  services.delete(store);
}
