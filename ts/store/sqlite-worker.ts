/**
 * A thread that owns one SQLite connection and runs the store requests SqliteStore sends it
 * (sqlite.ts). Requests are answered with `{ id, ok, result }` or
 * `{ id, ok: false, message, storeError }`.
 *
 * Roles:
 * - `writer`: ingestion and object changes. Ingestion is group-committed twice over: every
 *   `ingest` message that arrived while the thread was busy goes into one transaction, and the
 *   transaction commits to the WAL without waiting for the disk (synchronous=NORMAL). One
 *   fdatasync of the WAL then makes every commit before it durable, and only then are those
 *   submissions answered. The sync runs on libuv's thread pool, so the next transaction is written
 *   while the disk flushes the last one: a report's fsync costs it a share of one flush, and the
 *   writer never idles on the disk. Other writes (attachments, attribute changes, deletes) are
 *   rare and run with synchronous=FULL, durable when their commit returns.
 * - `reader`: scans and blob reads.
 * - `checkpointer`: copies the WAL into the database file when asked (no other connection does,
 *   so neither ingestion nor the event loop waits for a checkpoint).
 */

import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import * as ops from './sqlite-ops.js';

export type WorkerRole = 'writer' | 'reader' | 'checkpointer';

const { dataDir, role, maxBatch } = workerData as { dataDir: string; role: WorkerRole; maxBatch: number };
const db = ops.openDatabase(dataDir, {
  migrate: false,
  synchronous: role === 'writer' ? 'NORMAL' : 'FULL',
  autoCheckpoint: false,
});

type Message = { id: number; request: ops.WorkerRequest };

function failure(id: number, err: unknown): ops.WorkerResponse {
  return { id, ok: false, message: (err as Error).message, storeError: err instanceof ops.StoreError };
}

function answer(response: ops.WorkerResponse): void {
  parentPort?.postMessage(response);
}

// ---- the writer's durable-after-sync answers

/** Answers of committed transactions that wait for the WAL to be synced. */
let awaitingSync: ops.WorkerResponse[] = [];
/**
 * Syncs under way at once. A sync covers what was committed before it started, so a commit need
 * not wait for the sync in flight to finish and another to run: with a few in flight (on libuv's
 * pool, which other file work shares), a report waits for about one flush, not one and a half.
 */
const MAX_SYNCS = 2;
let syncsInFlight = 0;
let walFd: number | undefined;

/**
 * The WAL file's descriptor, reopened if the file was replaced (SQLite only deletes it when the
 * last connection closes, which the store's open connections prevent; checking costs one stat).
 * Undefined when there is no WAL: then everything committed is in the database file.
 */
function currentWalFd(): number | undefined {
  const file = ops.walPath(dataDir);
  let ino: number;
  try {
    ino = fs.statSync(file).ino;
  } catch {
    return undefined;
  }
  if (walFd !== undefined && fs.fstatSync(walFd).ino !== ino) {
    fs.closeSync(walFd);
    walFd = undefined;
  }
  walFd ??= fs.openSync(file, 'r');
  return walFd;
}

function syncThenAnswer(): void {
  if (syncsInFlight >= MAX_SYNCS || awaitingSync.length === 0) return;
  syncsInFlight++;
  const covered = awaitingSync;
  awaitingSync = [];
  const done = (err: Error | null) => {
    syncsInFlight--;
    for (const r of covered) {
      answer(err && r.ok ? failure(r.id, new Error(`The store could not make its write durable: ${err.message}`)) : r);
    }
    syncThenAnswer();
  };
  let fd: number | undefined;
  try {
    fd = currentWalFd();
  } catch (err) {
    done(err as Error);
    return;
  }
  if (fd === undefined) {
    // No WAL: it was checkpointed away, so the commits are in the database file; sync that.
    try {
      const dbFd = fs.openSync(`${dataDir}/coroner.db`, 'r');
      fs.fdatasync(dbFd, (err) => {
        fs.closeSync(dbFd);
        done(err);
      });
    } catch (err) {
      done(err as Error);
    }
    return;
  }
  fs.fdatasync(fd, done);
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
    let at = 0;
    for (const m of group) {
      const n = (m.request as { batch: ops.IngestItem[] }).batch.length;
      awaitingSync.push({ id: m.id, ok: true, result: outcomes.slice(at, at + n) });
      at += n;
    }
  }
  syncThenAnswer();
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
