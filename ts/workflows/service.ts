/**
 * Workflow integrations in a running coroner: the evaluator (crashes → queued deliveries) and the
 * dispatcher (queued deliveries → HTTP), over one workflow store.
 *
 * What the server does: `createWorkflowService(...)` when it is created (nothing runs yet),
 * `start()` once it listens (the evaluator subscribes to the store, catches up on what was stored
 * while coroner was down, and the dispatcher sends what is pending), `close()` before the store
 * closes. The admin endpoints find the service of a store with `workflowServiceFor(store)`.
 */

import { randomUUID } from 'node:crypto';
import type { Project, Store } from '../store/types.js';
import { Dispatcher, type RetryPolicy } from './dispatcher.js';
import { Evaluator, groupLink } from './evaluator.js';
import { renderBody, type GroupEvent } from './payloads.js';
import { openWorkflowStore, type Integration, type WorkflowStore } from './store.js';

export interface WorkflowOptions {
  /** Backoff of failing deliveries; `CORONER_WORKFLOW_RETRY_MS=min,max` sets min and max too. */
  retry?: Partial<RetryPolicy>;
  /** Per delivery attempt (default 10 s). */
  timeoutMs?: number;
  /** How long change events gather before an evaluation pass (default 50 ms). */
  passDelayMs?: number;
  /** How often the dispatcher looks for work nobody announced (default 5 s). */
  pollMs?: number;
  /** Finished deliveries stay in the log this long (default 30 days). */
  keepDeliveriesMs?: number;
}

export interface WorkflowServiceOptions extends WorkflowOptions {
  store: Store;
  /** The console's base URL for links in messages (e.g. `https://coroner.example.com:6097`). */
  publicUrl: () => string;
  log: (line: string) => void;
  /** A regression reopened a group (the query cache keeps group states). */
  onGroupReopened?: (projectId: number, fingerprint: string) => void;
}

export interface WorkflowService {
  /** Opens the workflow store, subscribes to the store's changes and starts sending; the catch-up runs on. */
  start(): Promise<void>;
  /** The workflow store (after `start`). */
  readonly workflows: WorkflowStore;
  readonly evaluator: Evaluator;
  readonly dispatcher: Dispatcher;
  /** Wakes the dispatcher (after queueing or asking for a retry). */
  poke(): void;
  /** Queues a test message to an integration; returns the delivery id. */
  sendTest(integration: Integration, project: Project): Promise<number>;
  /** Resolves once evaluation and sending are idle (tests). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const services = new WeakMap<Store, WorkflowService>();

/** The running service of a store's server, if there is one. */
export function workflowServiceFor(store: Store): WorkflowService | undefined {
  return services.get(store);
}

/** `CORONER_WORKFLOW_RETRY_MS=min,max` (milliseconds): a faster or slower backoff without code. */
export function retryFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<RetryPolicy> {
  const text = env.CORONER_WORKFLOW_RETRY_MS;
  if (!text) return {};
  const [min, max] = text.split(',').map((s) => Number(s.trim()));
  const out: Partial<RetryPolicy> = {};
  if (min !== undefined && Number.isFinite(min) && min > 0) out.minMs = min;
  if (max !== undefined && Number.isFinite(max) && max > 0) out.maxMs = Math.max(max, out.minMs ?? 0);
  return out;
}

const DAY_MS = 86_400_000;

export function createWorkflowService(options: WorkflowServiceOptions): WorkflowService {
  let workflows: WorkflowStore | undefined;
  let evaluator: Evaluator | undefined;
  let dispatcher: Dispatcher | undefined;
  let housekeeping: NodeJS.Timeout | undefined;
  let closed = false;
  let catchUp: Promise<void> | undefined;
  const keepMs = options.keepDeliveriesMs ?? 30 * DAY_MS;
  const started = (): { workflows: WorkflowStore; evaluator: Evaluator; dispatcher: Dispatcher } => {
    if (!workflows || !evaluator || !dispatcher) throw new Error('The workflow service has not started.');
    return { workflows, evaluator, dispatcher };
  };

  const service: WorkflowService = {
    async start() {
      if (workflows || closed) return;
      const ws = await openWorkflowStore(options.store);
      workflows = ws;
      const d = new Dispatcher({
        workflows: ws,
        log: options.log,
        retry: { ...retryFromEnv(), ...options.retry },
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
      });
      dispatcher = d;
      evaluator = new Evaluator({
        store: options.store,
        workflows: ws,
        publicUrl: options.publicUrl,
        log: options.log,
        onQueued: () => d.poke(),
        ...(options.onGroupReopened ? { onGroupReopened: options.onGroupReopened } : {}),
        ...(options.passDelayMs !== undefined ? { passDelayMs: options.passDelayMs } : {}),
      });
      // Subscribes before its first await: no insert after `listen` goes unseen. The catch-up
      // itself (a scan on a first start) goes on in the background; `idle()` waits for it.
      const ev = evaluator;
      catchUp = ev.start().catch((err: unknown) => options.log(`workflows: catching up failed: ${(err as Error).stack ?? String(err)}`));
      d.start();
      housekeeping = setInterval(() => void ws.housekeeping(Date.now(), keepMs).catch(() => {}), 3600_000);
      housekeeping.unref();
    },
    get workflows() {
      return started().workflows;
    },
    get evaluator() {
      return started().evaluator;
    },
    get dispatcher() {
      return started().dispatcher;
    },
    poke() {
      dispatcher?.poke();
    },
    async sendTest(integration, project) {
      const { workflows: ws, dispatcher: d } = started();
      const universe = (await options.store.getUniverseById(project.universeId))?.name ?? '';
      const now = Math.floor(Date.now() / 1000);
      const fingerprint = '0'.repeat(64);
      const event: GroupEvent = {
        event: 'test',
        trigger: '',
        universe,
        project: project.name,
        fingerprint,
        link: groupLink(options.publicUrl(), project.name, fingerprint),
        top_frames: ['coroner_test_message', 'main'],
        classifiers: ['test'],
        count: 1,
        first_seen: now,
        last_seen: now,
        object: '0',
      };
      const uuid = randomUUID();
      const body = renderBody(integration.type, event, { delivery: uuid, queuedAt: now }, integration.jira);
      const [id] = await ws.enqueue([{ uuid, integrationId: integration.id, projectId: project.id, event: 'test', fingerprint, body, createdAt: Date.now() }]);
      d.poke();
      return id!;
    },
    async idle() {
      if (!evaluator || !dispatcher) return;
      await catchUp;
      await evaluator.idle();
      await dispatcher.idle();
    },
    async close() {
      if (closed) return;
      closed = true;
      services.delete(options.store);
      if (housekeeping) clearInterval(housekeeping);
      await evaluator?.close();
      await catchUp;
      await dispatcher?.close();
      await workflows?.close();
    },
  };
  services.set(options.store, service);
  return service;
}
