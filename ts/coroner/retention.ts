/**
 * Project retention: the crashes a project received longer ago than its `retentionSeconds` are
 * deleted, oldest first, with their attachments (`coroner project retention`, the admin endpoint
 * `PUT /api/admin/projects/:name/retention`). Runs every `everyMs` while the server runs, and a
 * few seconds after it starts. Deletes go in batches, each its own short transaction on the
 * store's writer, so ingestion waits for at most one batch; the query engine and the console see
 * them as any delete (a store change).
 */

import type { Store } from '../store/types.js';

export interface RetentionOptions {
  /** How often to look (default every 10 minutes). */
  everyMs?: number;
  /** Crashes deleted per transaction (default 1,000). */
  batch?: number;
  log?: (line: string) => void;
}

/** What one pass deleted, per project that had anything to delete. */
export type RetentionPass = Array<{ project: string; deleted: number; receivedBefore: number }>;

const FIRST_PASS_DELAY_MS = 5_000;

export class RetentionService {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RetentionPass> | undefined;
  private closed = false;
  private readonly everyMs: number;
  private readonly batch: number;
  private readonly log: (line: string) => void;

  constructor(
    private readonly store: Store,
    options: RetentionOptions = {},
  ) {
    this.everyMs = options.everyMs ?? 10 * 60_000;
    this.batch = options.batch ?? 1000;
    this.log = options.log ?? (() => {});
  }

  start(): void {
    if (this.timer || this.closed) return;
    const tick = () => {
      this.runOnce().catch((err: unknown) => this.log(`retention: a pass failed and is tried again later: ${(err as Error).message}`));
    };
    this.timer = setTimeout(() => {
      tick();
      if (this.closed) return;
      this.timer = setInterval(tick, this.everyMs);
      this.timer.unref();
    }, Math.min(FIRST_PASS_DELAY_MS, this.everyMs));
    this.timer.unref();
  }

  /**
   * One pass over every project with a retention, as of `nowSeconds` (default: now). Passes run
   * one after another: a pass asked for while one is under way starts when it ends.
   */
  runOnce(nowSeconds?: number): Promise<RetentionPass> {
    const previous = this.running ?? Promise.resolve([]);
    const mine: Promise<RetentionPass> = previous
      .catch(() => [])
      .then(() => this.pass(nowSeconds ?? Math.floor(Date.now() / 1000)))
      .finally(() => {
        if (this.running === mine) this.running = undefined;
      });
    this.running = mine;
    return mine;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  private async pass(nowSeconds: number): Promise<RetentionPass> {
    const done: RetentionPass = [];
    for (const universe of await this.store.listUniverses()) {
      for (const project of await this.store.listProjects(universe.id)) {
        if (project.retentionSeconds === null || this.closed) continue;
        const receivedBefore = nowSeconds - project.retentionSeconds;
        let deleted = 0;
        for (;;) {
          const ids = await this.store.deleteExpired(project.id, receivedBefore, this.batch);
          deleted += ids.length;
          if (ids.length < this.batch || this.closed) break;
        }
        if (deleted === 0) continue;
        done.push({ project: `${universe.name}/${project.name}`, deleted, receivedBefore });
        this.log(`retention: deleted ${deleted} crash${deleted === 1 ? '' : 'es'} of ${universe.name}/${project.name} received before ${new Date(receivedBefore * 1000).toISOString()}`);
      }
    }
    return done;
  }
}
