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
 *
 * A sync that fails ends all acknowledgement: the commits it covered may be lost, and with them
 * every later one (WAL recovery stops at the first frame it cannot trust), so what waits and what
 * comes after is failed until a restart replays the WAL.
 */

import { Worker } from 'node:worker_threads';

/** Slots of the shared counter (a BigInt64Array: commit numbers never wrap). */
export const COMMITTED = 0;
export const CLOSING = 1;

/** Publishes a commit made by this thread's connection; returns its number (writer side). */
export function publishCommit(counter: BigInt64Array): number {
  const n = Atomics.add(counter, COMMITTED, 1n) + 1n;
  Atomics.notify(counter, COMMITTED);
  return Number(n);
}

/** One sync's outcome: commits through `to` are on disk, or may not be (`error`). */
type SyncerMessage = { to: number; error?: string; code?: string };

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
  private failed: Error | undefined;
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
        this.release(m.to);
        return;
      }
      // After a failed fsync the kernel may have dropped those pages, and WAL recovery stops at
      // the first frame it cannot trust, taking every later commit with it: no later sync can
      // vouch for anything, so nothing more is acknowledged until a restart replays the WAL.
      this.fail(new Error(`The store could not make its writes durable (${m.error}${m.code ? `, ${m.code}` : ''}); it acknowledges nothing more until coroner is restarted on a healthy disk.`));
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
    if (this.failed) return then(this.failed);
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

  private release(upTo: number): void {
    let n = 0;
    while (n < this.waiting.length && this.waiting[n]!.commit <= upTo) n++;
    for (const w of this.waiting.splice(0, n)) w.then(null);
  }

  /** Why nothing is acknowledged any more (a failed sync, or the store closed); undefined while all is well. */
  get failure(): Error | undefined {
    return this.failed;
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const w of this.waiting.splice(0)) w.then(this.failed);
  }
}
