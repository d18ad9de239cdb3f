/**
 * The query worker (remote.ts starts it): a `QueryService` over its own connection to the
 * store, fed the changes the main thread's store announces. Answers `{ id, ok, result }`, or
 * `{ id, ok: false, kind, message }` (`query` for a bad query: HTTP 400 upstream).
 */

import { EventEmitter } from 'node:events';
import { parentPort, workerData } from 'node:worker_threads';
import { openSqliteStore } from '../store/sqlite.js';
import { type Store, StoreError } from '../store/types.js';
import { QueryError } from './errors.js';
import type { QueryAnswer, QueryRequest, StoreLocation } from './remote.js';
import { QueryService } from './service.js';

type ChangeEvent = { projectId: number; kind: 'insert' | 'update' | 'delete'; ids: number[] };

const { location } = workerData as { location: StoreLocation };
// No threads of its own: this worker is already off the event loop that matters.
const local = await openSqliteStore({ dataDir: location.dataDir, workers: false });

// The worker's store: the local connection, whose own writes (`set`) it announces itself, plus
// the changes forwarded from the main thread's store.
const forwarded = new EventEmitter();
forwarded.setMaxListeners(0);
const store = new Proxy(local as unknown as Store, {
  get(target, prop) {
    if (prop === 'onChange') {
      return (listener: (event: ChangeEvent) => void) => {
        forwarded.on('change', listener);
        const off = target.onChange(listener);
        return () => {
          forwarded.off('change', listener);
          off();
        };
      };
    }
    const value = Reflect.get(target, prop, target) as unknown;
    return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
  },
});
const service = new QueryService(store);

async function run(request: QueryRequest): Promise<{ result: unknown; transfer: ArrayBuffer[] }> {
  switch (request.op) {
    case 'query': {
      const envelope = await service.query(request.project, request.body, request.who);
      if (!request.json) return { result: envelope, transfer: [] };
      const bytes = Buffer.from(JSON.stringify(envelope));
      // A copy the size of the answer, so the whole buffer (not a pool) moves to the main thread.
      const own = new Uint8Array(bytes);
      return { result: own, transfer: [own.buffer as ArrayBuffer] };
    }
    case 'describe':
      return { result: await service.describe(request.project, request.who), transfer: [] };
    case 'matchingIds':
      return { result: await service.matchingIds(request.project, request.body), transfer: [] };
    case 'warm':
      await service.warm(request.projectId);
      return { result: null, transfer: [] };
    case 'noteGroupState':
      service.noteGroupState(request.projectId, request.fingerprint, request.state);
      return { result: null, transfer: [] };
    case 'change':
      forwarded.emit('change', request.event);
      return { result: null, transfer: [] };
  }
}

parentPort?.on('message', ({ id, request }: { id: number; request: QueryRequest }) => {
  run(request).then(
    ({ result, transfer }) => {
      if (id) parentPort?.postMessage({ id, ok: true, result } satisfies QueryAnswer, transfer);
    },
    (err: unknown) => {
      if (id) parentPort?.postMessage({ id, ok: false, kind: err instanceof QueryError ? 'query' : err instanceof StoreError ? 'store' : 'other', message: (err as Error).message } satisfies QueryAnswer);
    },
  );
});
