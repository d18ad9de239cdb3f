/**
 * The WAL sync thread of wal-sync.ts: waits for the writer to publish a commit, fdatasyncs the
 * WAL (one sync covers every commit published before it starts), and posts how far that got.
 * It blocks in Atomics.wait rather than on an event loop: nothing else ever runs here.
 */

import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { CLOSING, COMMITTED } from './wal-sync.js';

// The paths come ready-made: this thread loads no more than it needs (not the SQLite module).
const { files, counter } = workerData as { files: { wal: string; database: string }; counter: BigInt64Array };

let walFd: number | undefined;
let walIno: number | undefined;

/**
 * Syncs the WAL, reopened if the file was replaced (SQLite only deletes it when the last
 * connection closes, which the store's open connections prevent; checking costs one stat).
 * Without a WAL everything committed is in the database file: sync that.
 */
function syncWal(): void {
  let ino: number | undefined;
  try {
    ino = fs.statSync(files.wal).ino;
  } catch {
    ino = undefined;
  }
  if (walFd !== undefined && walIno !== ino) {
    fs.closeSync(walFd);
    walFd = undefined;
  }
  if (ino === undefined) {
    const dbFd = fs.openSync(files.database, 'r');
    try {
      fs.fdatasyncSync(dbFd);
    } finally {
      fs.closeSync(dbFd);
    }
    return;
  }
  if (walFd === undefined) {
    walFd = fs.openSync(files.wal, 'r');
    walIno = ino;
  }
  fs.fdatasyncSync(walFd);
}

let covered = 0n;
for (;;) {
  const committed = Atomics.load(counter, COMMITTED);
  if (committed === covered) {
    if (Atomics.load(counter, CLOSING) !== 0n) break;
    // Woken by the writer's notify; the timeout only bounds how long a close waits.
    Atomics.wait(counter, COMMITTED, committed, 250);
    continue;
  }
  covered = committed;
  try {
    syncWal();
    parentPort?.postMessage({ to: Number(committed) });
  } catch (err) {
    parentPort?.postMessage({ to: Number(committed), error: (err as Error).message, code: (err as NodeJS.ErrnoException).code });
  }
}
if (walFd !== undefined) fs.closeSync(walFd);
