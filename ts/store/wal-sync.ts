/**
 * The durability barrier of group commit: "call me once everything committed so far is on disk".
 *
 * The ingestion writer commits to the WAL without waiting for the disk (synchronous=NORMAL) and
 * says so; the thread that answers the submitters (the event loop) then asks `after()`, and one
 * fdatasync of the WAL covers every commit that came before it started. The sync runs on libuv's
 * thread pool and its completion is handled here rather than on the writer: the writer, busy
 * with the next transaction, would hold up every answer by as long as that transaction takes.
 * A few syncs may be in flight at once, so a commit waits for about one flush, not one and a half.
 */

import fs from 'node:fs';
import { databasePath, walPath } from './sqlite-ops.js';

export class WalSync {
  private waiting: Array<(err: Error | null) => void> = [];
  private inFlight = 0;
  private walFd: number | undefined;
  private closed = false;

  constructor(
    private readonly dataDir: string,
    private readonly maxInFlight = 2,
  ) {}

  /** Calls `then` once every commit made before this call is durable (or with the error that stopped it). */
  after(then: (err: Error | null) => void): void {
    this.waiting.push(then);
    this.kick();
  }

  close(): void {
    this.closed = true;
    if (this.walFd !== undefined) fs.closeSync(this.walFd);
    this.walFd = undefined;
  }

  private kick(): void {
    if (this.inFlight >= this.maxInFlight || this.waiting.length === 0) return;
    this.inFlight++;
    const covered = this.waiting;
    this.waiting = [];
    const done = (err: Error | null) => {
      this.inFlight--;
      const failure = err && new Error(`The store could not make its write durable: ${err.message}`);
      for (const then of covered) then(failure);
      this.kick();
    };
    let fd: number | undefined;
    try {
      fd = this.currentWalFd();
    } catch (err) {
      done(err as Error);
      return;
    }
    if (fd === undefined) {
      // No WAL: it was checkpointed away, so the commits are in the database file; sync that.
      try {
        const dbFd = fs.openSync(databasePath(this.dataDir), 'r');
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

  /**
   * The WAL file's descriptor, reopened if the file was replaced (SQLite only deletes it when the
   * last connection closes, which the store's open connections prevent; checking costs one stat).
   * Undefined when there is no WAL: then everything committed is in the database file.
   */
  private currentWalFd(): number | undefined {
    if (this.closed) throw new Error('the store is closed');
    const file = walPath(this.dataDir);
    let ino: number;
    try {
      ino = fs.statSync(file).ino;
    } catch {
      return undefined;
    }
    if (this.walFd !== undefined && fs.fstatSync(this.walFd).ino !== ino) {
      fs.closeSync(this.walFd);
      this.walFd = undefined;
    }
    this.walFd ??= fs.openSync(file, 'r');
    return this.walFd;
  }
}
