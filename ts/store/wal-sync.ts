/**
 * The durability barrier of group commit: "call me once commit N is on disk".
 *
 * The ingestion writer commits to the WAL without waiting for the disk (synchronous=NORMAL),
 * numbers each commit and publishes the number in shared memory (`commitCounter`). A thread of
 * its own (wal-syncer.ts) waits on that number, and as soon as it moves runs one fdatasync of the
 * WAL, which covers every commit published before it started, then tells this side how far the
 * disk has caught up. The event loop holds each writer answer until its commit is covered.
 *
 * Why a thread that only syncs: the sync starts the moment a commit ends, without a trip through
 * the event loop (which may be busy answering) or libuv's pool, and neither the writer (already
 * writing the next transaction) nor the event loop spends time on it.
 */

import { Worker } from 'node:worker_threads';
import { DiskFullError, isDiskFull } from './types.js';

/** Slots of the shared counter (a BigInt64Array: commit numbers never wrap). */
export const COMMITTED = 0;
export const CLOSING = 1;

/** Publishes a commit made by this thread's connection; returns its number (writer side). */
export function publishCommit(counter: BigInt64Array): number {
  const n = Atomics.add(counter, COMMITTED, 1n) + 1n;
  Atomics.notify(counter, COMMITTED);
  return Number(n);
}

/** One sync's outcome: commits `from` (exclusive) through `to` are on disk, or not (`error`). */
type SyncerMessage = { from: number; to: number; error?: string; code?: string };

/** Failed syncs remembered for answers that arrive after their sync's verdict (a race of a few microseconds). */
const FAILED_RANGES_KEPT = 16;

/** A sync thread that lived less than this before it died fails its waiters and is replaced after this long. */
const RESPAWN_PAUSE_MS = 1000;

export class WalSync {
  /** Shared with the writer (workerData) and the syncer thread. */
  readonly commitCounter = new BigInt64Array(new SharedArrayBuffer(16));
  private syncer: Worker | undefined;
  private spawnedAt = 0;
  private respawnTimer: NodeJS.Timeout | undefined;
  private synced = 0;
  private waiting: Array<{ commit: number; then: (err: Error | null) => void }> = [];
  private failedRanges: Array<{ from: number; to: number; err: Error }> = [];
  private failure: Error | undefined;
  private closed = false;

  /** `files`: the WAL, and the database file synced instead when there is no WAL. */
  constructor(private readonly files: { wal: string; database: string }) {
    this.spawn();
  }

  private spawn(): void {
    const syncer = new Worker(new URL('./wal-syncer.js', import.meta.url), {
      workerData: { files: this.files, counter: this.commitCounter },
    });
    syncer.on('message', (m: SyncerMessage) => {
      if (m.error === undefined) {
        this.synced = Math.max(this.synced, m.to);
        this.release(m.to, null);
        return;
      }
      // The commits this sync was to cover are not known to be on disk (after a failed fsync the
      // kernel may have dropped their pages): their submitters hear so; later commits get their
      // own sync.
      const err = isDiskFull({ code: m.code }) ? new DiskFullError(m.error) : new Error(`The store could not make its write durable: ${m.error}`);
      this.failedRanges.push({ from: m.from, to: m.to, err });
      if (this.failedRanges.length > FAILED_RANGES_KEPT) this.failedRanges.shift();
      this.release(m.to, err);
    });
    syncer.on('error', (err) => this.onLost(syncer, err));
    syncer.on('exit', (code) => this.onLost(syncer, new Error(`The store's WAL sync thread exited (code ${code}).`)));
    this.syncer = syncer;
    this.spawnedAt = Date.now();
  }

  /**
   * The sync thread died. A new one starts from the commit counter and its first sync covers
   * every commit so far, so those waiting just wait for it; but when the thread died right after
   * starting, something is persistently wrong: the waiters fail, and the next try is a second on.
   */
  private onLost(syncer: Worker, err: Error): void {
    if (this.syncer !== syncer || this.closed) return;
    this.syncer = undefined;
    void syncer.terminate();
    if (Date.now() - this.spawnedAt >= RESPAWN_PAUSE_MS) {
      this.spawn();
      return;
    }
    for (const w of this.waiting.splice(0)) w.then(err);
    this.respawnTimer = setTimeout(() => {
      this.respawnTimer = undefined;
      if (!this.closed) this.spawn();
    }, RESPAWN_PAUSE_MS);
  }

  /** Calls `then` once commit number `commit` (from `publishCommit`) is durable, or with the error that stopped it. */
  after(commit: number, then: (err: Error | null) => void): void {
    if (this.failure) return then(this.failure);
    const failed = this.failedRanges.find((r) => commit > r.from && commit <= r.to);
    if (failed) return then(failed.err);
    if (commit <= this.synced) return then(null);
    this.waiting.push({ commit, then });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.respawnTimer) clearTimeout(this.respawnTimer);
    Atomics.store(this.commitCounter, CLOSING, 1n);
    Atomics.notify(this.commitCounter, COMMITTED);
    const syncer = this.syncer;
    // The syncer finishes the sync it is in and any commit published before CLOSING, then ends.
    if (syncer) await new Promise<void>((resolve) => syncer.once('exit', () => resolve()));
    this.fail(new Error('The store is closed.'));
  }

  private release(upTo: number, err: Error | null): void {
    let n = 0;
    while (n < this.waiting.length && this.waiting[n]!.commit <= upTo) n++;
    for (const w of this.waiting.splice(0, n)) w.then(err);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.splice(0)) w.then(this.failure);
  }
}
