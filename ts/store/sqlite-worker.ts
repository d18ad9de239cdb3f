/**
 * A thread that owns one SQLite connection and runs the store requests SqliteStore sends it
 * (sqlite.ts): the writer runs ingestion batches (group commit) and object changes, the reader
 * runs scans and blob reads. Requests are answered in order, each with `{ id, ok, result }` or
 * `{ id, ok: false, message, storeError }`.
 */

import { parentPort, workerData } from 'node:worker_threads';
import * as ops from './sqlite-ops.js';

const { dataDir } = workerData as { dataDir: string };
const db = ops.openDatabase(dataDir, { migrate: false });

parentPort?.on('message', (message: { id: number; request: ops.WorkerRequest }) => {
  let response: ops.WorkerResponse;
  try {
    response = { id: message.id, ok: true, result: ops.runRequest(db, dataDir, message.request) };
  } catch (err) {
    response = { id: message.id, ok: false, message: (err as Error).message, storeError: err instanceof ops.StoreError };
  }
  parentPort?.postMessage(response);
});
