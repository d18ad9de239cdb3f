/**
 * The dispatcher: sends queued deliveries, at least once each.
 *
 * What the caller does: `start()`, `poke()` after queueing, `close()` before the workflow store
 * closes. What the dispatcher does:
 * - sends each integration's due deliveries one after another, oldest first, and several
 *   integrations at once;
 * - counts a 2xx answer as delivered; a network error, a timeout, 408, 425, 429 or a 5xx as
 *   "try again": the delivery backs off exponentially (with jitter, honouring `Retry-After`), and
 *   the integration's other pending deliveries wait behind it, so a receiver that is down gets
 *   one probe per backoff step instead of the whole queue, and the whole queue, in order, once it
 *   answers again;
 * - counts any other 4xx as a final refusal of that delivery (a malformed URL, a revoked
 *   credential: retrying would not change the answer), and gives up on a delivery retried for
 *   longer than `giveUpAfterMs`;
 * - logs every attempt in the workflow store. An attempt cut short by `close()` is not logged:
 *   the delivery stays pending and goes out after the restart.
 */

import { request } from 'undici';
import { deliveryRequest } from './payloads.js';
import type { Delivery, DeliveryAttempt, Integration, WorkflowStore } from './store.js';

export interface RetryPolicy {
  /** First backoff step (default 5 s). */
  minMs: number;
  /** Largest backoff step (default 15 min). */
  maxMs: number;
  /** A delivery still failing this long after it was queued is given up (default 3 days). */
  giveUpAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { minMs: 5_000, maxMs: 15 * 60_000, giveUpAfterMs: 3 * 86_400_000 };

export interface DispatcherOptions {
  workflows: WorkflowStore;
  log: (line: string) => void;
  retry?: Partial<RetryPolicy>;
  /** Per attempt, connection to last byte (default 10 s). */
  timeoutMs?: number;
  /** Integrations served at once (default 4). */
  concurrency?: number;
  /** How often to look for work nobody announced, e.g. a retry asked from the CLI (default 5 s). */
  pollMs?: number;
}

/** Answers worth retrying: the receiver is busy, overloaded or down, not refusing the message. */
function retryable(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

const MAX_ERROR_TEXT = 500;

export class Dispatcher {
  private readonly retry: RetryPolicy;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly controllers = new Set<AbortController>();

  constructor(private readonly options: DispatcherOptions) {
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
  }

  start(): void {
    this.pollTimer = setInterval(() => this.poke(), this.options.pollMs ?? 5_000);
    this.pollTimer.unref();
    this.poke();
  }

  /** Looks for due deliveries now. */
  poke(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop()
      .catch((err: unknown) => this.options.log(`workflows: the dispatcher failed (retrying): ${(err as Error).stack ?? String(err)}`))
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.closed) this.poke();
        else void this.scheduleWake();
      });
  }

  /** Resolves once nothing is being sent (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    for (const c of this.controllers) c.abort();
    await this.running;
  }

  private async scheduleWake(): Promise<void> {
    if (this.closed) return;
    let next: number | undefined;
    try {
      next = await this.options.workflows.nextAttemptAt();
    } catch {
      return; // closed meanwhile; the poll timer covers anything else
    }
    if (next === undefined || this.closed || this.running) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    // setTimeout's limit is ~24.8 days; the poll timer covers anything past a minute anyway.
    const delay = Math.min(Math.max(0, next - Date.now()), 60_000);
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.poke();
    }, delay);
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      const due = await this.options.workflows.dueDeliveries(Date.now(), 500);
      if (due.length === 0 || this.closed) return;
      const byIntegration = new Map<number, Delivery[]>();
      for (const d of due) {
        const list = byIntegration.get(d.integrationId) ?? [];
        list.push(d);
        byIntegration.set(d.integrationId, list);
      }
      const queues = [...byIntegration.values()];
      let sent = 0;
      const workers = Array.from({ length: Math.min(this.options.concurrency ?? 4, queues.length) }, async () => {
        for (let q = queues.shift(); q && !this.closed; q = queues.shift()) sent += await this.sendQueue(q);
      });
      await Promise.all(workers);
      // Sent some: there may be more due (the batch had a limit, or new ones were queued).
      if (sent > 0) this.again = true;
    } while (this.again && !this.closed);
  }

  /** One integration's due deliveries, in order, stopping at the first that must wait. */
  private async sendQueue(queue: Delivery[]): Promise<number> {
    const first = queue[0];
    if (!first) return 0;
    const integration = await this.options.workflows.getIntegration(first.integrationId);
    if (!integration) return 0; // removed: its deliveries went with it
    let attempts = 0;
    for (const delivery of queue) {
      if (this.closed) break;
      const wait = await this.attempt(integration, delivery);
      attempts++;
      if (wait !== undefined) {
        await this.options.workflows.deferIntegration(integration.id, wait);
        break;
      }
    }
    return attempts;
  }

  /** Sends one delivery and logs it; returns when to try the integration again if it must wait. */
  private async attempt(integration: Integration, delivery: Delivery): Promise<number | undefined> {
    const { url, headers, body } = deliveryRequest(integration, delivery);
    const controller = new AbortController();
    this.controllers.add(controller);
    const started = Date.now();
    let status: number | undefined;
    let error: string | undefined;
    let retryAfterMs: number | undefined;
    try {
      const res = await request(url, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.any([controller.signal, AbortSignal.timeout(this.options.timeoutMs ?? 10_000)]),
      });
      status = res.statusCode;
      const text = await res.body.text();
      if (status < 200 || status >= 300) error = `HTTP ${status}${text ? `: ${text.slice(0, MAX_ERROR_TEXT)}` : ''}`;
      const ra = res.headers['retry-after'];
      const raText = Array.isArray(ra) ? ra[0] : ra;
      if (raText !== undefined && /^\d+$/.test(raText.trim())) retryAfterMs = Number(raText.trim()) * 1000;
    } catch (err) {
      if (controller.signal.aborted) return undefined; // closing: not an attempt, it stays pending
      const e = err as Error & { code?: string; cause?: { message?: string; code?: string } };
      error = (e.name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs ?? 10_000} ms` : e.cause?.message ?? e.message) || String(err);
    } finally {
      this.controllers.delete(controller);
    }
    const now = Date.now();
    const attempt: DeliveryAttempt = { at: started, durationMs: now - started };
    if (status !== undefined) attempt.status = status;
    if (error !== undefined) attempt.error = error;

    if (status !== undefined && status >= 200 && status < 300) {
      await this.options.workflows.recordAttempt(delivery.id, attempt, { status: 'delivered' });
      return undefined;
    }
    if (status !== undefined && !retryable(status)) {
      this.options.log(`workflows: integration ${integration.id} refused delivery ${delivery.uuid} (${error}); not retrying it`);
      await this.options.workflows.recordAttempt(delivery.id, attempt, { status: 'failed' });
      return undefined;
    }
    if (now - delivery.createdAt > this.retry.giveUpAfterMs) {
      this.options.log(`workflows: giving up delivery ${delivery.uuid} to integration ${integration.id} after ${delivery.attempts + 1} attempts (${error})`);
      await this.options.workflows.recordAttempt(delivery.id, attempt, { status: 'failed' });
      return undefined;
    }
    const step = Math.min(this.retry.maxMs, this.retry.minMs * 2 ** Math.min(delivery.attempts, 30));
    const jittered = Math.round(step * (0.75 + Math.random() * 0.5));
    const nextAttemptAt = now + Math.min(this.retry.maxMs, Math.max(jittered, retryAfterMs ?? 0));
    await this.options.workflows.recordAttempt(delivery.id, attempt, { status: 'pending', nextAttemptAt });
    return nextAttemptAt;
  }
}
