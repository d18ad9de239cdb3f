/**
 * A thread that owns one SQLite connection and runs the store requests SqliteStore sends it
 * (sqlite.ts). Requests are answered with `{ id, ok, result }` or
 * `{ id, ok: false, message, storeError }`.
 *
 * Roles:
 * - `writer`: ingestion and object changes. Ingestion is group-committed twice over: every
 *   `ingest` message that arrived while the thread was busy goes into one transaction, and the
 *   transaction commits to the WAL without waiting for the disk (synchronous=NORMAL). It numbers
 *   the commit in shared memory and its answer says `durableAfterCommit`: the receiving thread
 *   holds it until the WAL sync thread (wal-sync.ts) has made that commit durable, while this
 *   thread already writes the next transaction. Other
 *   writes (attachments, attribute changes, deletes) are rare and run with synchronous=FULL,
 *   durable when their commit returns.
 * - `reader`: scans and blob reads.
 * - `checkpointer`: copies the WAL into the database file when asked (no other connection does,
 *   so neither ingestion nor the event loop waits for a checkpoint).
 */

import { parentPort, workerData } from 'node:worker_threads';
import * as ops from './sqlite-ops.js';
import { isDiskFull } from './types.js';
import { publishCommit } from './wal-sync.js';

export type WorkerRole = 'writer' | 'reader' | 'checkpointer';

const { dataDir, role, maxBatch, commitCounter } = workerData as {
  dataDir: string;
  role: WorkerRole;
  maxBatch: number;
  /** The writer's: where it publishes each ingestion commit for the WAL sync thread (wal-sync.ts). */
  commitCounter?: BigInt64Array;
};
const db = ops.openDatabase(dataDir, {
  migrate: false,
  synchronous: role === 'writer' ? 'NORMAL' : 'FULL',
  autoCheckpoint: false,
});

type Message = { id: number; request: ops.WorkerRequest };

function failure(id: number, err: unknown): ops.WorkerResponse {
  return { id, ok: false, message: (err as Error).message, storeError: err instanceof ops.StoreError, diskFull: isDiskFull(err) };
}

function answer(response: ops.WorkerResponse): void {
  parentPort?.postMessage(response);
}

// ---- the writer's ingestion batches

let pendingIngest: Message[] = [];
let ingestScheduled = false;

/** Commits every queued `ingest` message, up to `maxBatch` crashes a transaction. */
function commitIngest(): void {
  ingestScheduled = false;
  while (pendingIngest.length > 0) {
    const group: Message[] = [];
    let crashes = 0;
    while (pendingIngest.length > 0 && (group.length === 0 || crashes < maxBatch)) {
      const m = pendingIngest.shift()!;
      group.push(m);
      crashes += (m.request as { batch: ops.IngestItem[] }).batch.length;
    }
    const all = group.flatMap((m) => (m.request as { batch: ops.IngestItem[] }).batch);
    let outcomes: ops.InsertOutcome[];
    try {
      outcomes = ops.ingest(db, dataDir, all);
    } catch (err) {
      for (const m of group) answer(failure(m.id, err));
      continue;
    }
    const commit = commitCounter ? publishCommit(commitCounter) : undefined;
    let at = 0;
    for (const m of group) {
      const n = (m.request as { batch: ops.IngestItem[] }).batch.length;
      answer({ id: m.id, ok: true, result: outcomes.slice(at, at + n), durableAfterCommit: commit });
      at += n;
    }
  }
}

parentPort?.on('message', (message: Message) => {
  if (role === 'writer' && message.request.op === 'ingest') {
    ops.unpackBodies(message.request.batch, message.request.packed);
    message.request.packed = undefined;
    // Take every message already queued before committing: they share the transaction.
    pendingIngest.push(message);
    if (!ingestScheduled) {
      ingestScheduled = true;
      setImmediate(commitIngest);
    }
    return;
  }
  if (role === 'writer') {
    // Keep the order of writes: queued crashes go first.
    if (pendingIngest.length > 0) commitIngest();
    db.pragma('synchronous = FULL');
  }
  let response: ops.WorkerResponse;
  try {
    response = { id: message.id, ok: true, result: ops.runRequest(db, dataDir, message.request) };
  } catch (err) {
    response = failure(message.id, err);
  } finally {
    if (role === 'writer') db.pragma('synchronous = NORMAL');
  }
  answer(response);
});
