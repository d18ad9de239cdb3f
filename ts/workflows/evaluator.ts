/**
 * The evaluator: turns stored crashes into queued deliveries.
 *
 * What the caller does: `start()` once before the server accepts submissions (it catches up on
 * everything stored since the last run), then leaves it alone; `close()` before the store closes.
 * What the evaluator does:
 * - listens to `Store.onChange`: an insert only marks its project dirty (a cheap push, so
 *   ingestion never waits for it); a pass runs shortly after, off the request path;
 * - a pass reads the project's objects past its cursor (the last object it evaluated) in id
 *   order, updates each group's count and first/last seen, decides which triggers fire, renders
 *   the deliveries, and commits cursor, counts, counters and deliveries in one transaction of
 *   the workflow store. A pass cut short by a crash is evaluated again from the old cursor, so
 *   no crash is missed (at-least-once);
 * - a crash of a group marked resolved reopens the group (after the commit that queued the
 *   regression message: if coroner dies in between, the next crash of the group is a regression
 *   again rather than no message at all).
 *
 * The first time a project is seen, what it already holds is history: counted, never announced.
 *
 * A project without integrations has nobody to tell: it is not scanned or counted at all (so
 * ingestion pays nothing for workflows), only a crash of a resolved group reopens that group,
 * found from the fingerprints the store announces with each insert. Its first integration
 * starts from its history, as at first sight.
 */

import { randomUUID } from 'node:crypto';
import type { CrashObject, GroupState, Project, Store } from '../store/types.js';
import { renderBody, TOP_FRAMES, type GroupEvent } from './payloads.js';
import type { GroupStats, Integration, NewDelivery, ProjectCursor, ThresholdState, WorkflowStore } from './store.js';
import { formatTrigger, formatWindow, type Trigger } from './triggers.js';

export interface EvaluatorOptions {
  store: Store;
  workflows: WorkflowStore;
  /** The console's base URL (`http://host:port`), for links to groups. */
  publicUrl: () => string;
  log: (line: string) => void;
  /** Called after deliveries were queued (wakes the dispatcher). */
  onQueued?: () => void;
  /** Called after a regression reopened a group (caches of group states). */
  onGroupReopened?: (projectId: number, fingerprint: string) => void;
  /** How long to gather change events before a pass (default 50 ms). */
  passDelayMs?: number;
  /** How long to wait before trying a project again after a failed pass (default 5 s). */
  retryDelayMs?: number;
}

/** Objects evaluated per transaction: bounds memory and the length of one commit. */
const CHUNK = 2000;

/** Link to a group in the web console (its hash route `#/p/<project>/g/<fingerprint>`). */
export function groupLink(publicUrl: string, project: string, fingerprint: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/#/p/${encodeURIComponent(project)}/g/${encodeURIComponent(fingerprint)}`;
}

export class Evaluator {
  /** Projects with work, and the smallest inserted id announced for each (see `firstSight`). */
  private readonly dirty = new Map<number, number | undefined>();
  /**
   * Fingerprints inserted per dirty project since its last pass; null when an insert came
   * without them (then the pass reads the objects).
   */
  private readonly inserted = new Map<number, Set<string> | null>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private unsubscribe: (() => void) | undefined;
  private readonly universeNames = new Map<number, string>();
  private readonly idleWaiters: Array<() => void> = [];

  /**
   * When this evaluator started (seconds): a project first seen at start takes the crashes
   * received before as its history; crashes received since are evaluated, even those that
   * landed while the first pass was still scanning (else they would be swallowed as history).
   */
  private startedAt = 0;

  constructor(private readonly options: EvaluatorOptions) {}

  /** Subscribes to the store and evaluates every project's backlog; resolves when that is done. */
  async start(): Promise<void> {
    this.startedAt = Math.floor(Date.now() / 1000);
    this.unsubscribe = this.options.store.onChange((event) => {
      if (event.kind === 'insert') {
        const min = event.ids.reduce((a, b) => Math.min(a, b), Number.MAX_SAFE_INTEGER);
        const known = this.dirty.get(event.projectId);
        this.dirty.set(event.projectId, known === undefined ? min : Math.min(known, min));
        const seen = this.inserted.get(event.projectId);
        if (!event.fingerprints || seen === null) {
          this.inserted.set(event.projectId, null);
        } else {
          const set = seen ?? new Set<string>();
          for (const f of event.fingerprints) if (f) set.add(f);
          this.inserted.set(event.projectId, set);
        }
        this.schedule(this.options.passDelayMs ?? 50);
      } else if (event.kind === 'delete' && event.ids.length === 0) {
        // A project was deleted: the pass finds it gone and forgets it.
        if (!this.dirty.has(event.projectId)) this.dirty.set(event.projectId, undefined);
        this.schedule(0);
      }
    });
    const known = new Set<number>();
    for (const universe of await this.options.store.listUniverses()) {
      for (const project of await this.options.store.listProjects(universe.id)) {
        known.add(project.id);
        if (!this.dirty.has(project.id)) this.dirty.set(project.id, undefined);
      }
    }
    for (const cursor of await this.options.workflows.listCursors()) if (!known.has(cursor.projectId)) this.dirty.set(cursor.projectId, undefined);
    for (const integration of await this.options.workflows.listIntegrations()) {
      if (!known.has(integration.projectId)) this.dirty.set(integration.projectId, undefined);
    }
    await this.runPasses();
  }

  /** Resolves once no pass is running or pending (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.running && this.dirty.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.running || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runPasses();
    }, delayMs);
  }

  private runPasses(): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      let failed = false;
      while (!this.closed && this.dirty.size > 0 && !failed) {
        const batch = [...this.dirty];
        const inserted = new Map(this.inserted);
        this.dirty.clear();
        this.inserted.clear();
        for (const [projectId, firstInsertedId] of batch) {
          if (this.closed) break;
          try {
            await this.evaluateProject(projectId, firstInsertedId, inserted.get(projectId));
          } catch (err) {
            // Leave it dirty and come back later rather than spin on a broken store.
            this.options.log(`workflows: evaluating project ${projectId} failed (retrying): ${(err as Error).stack ?? String(err)}`);
            const known = this.dirty.get(projectId);
            this.dirty.set(projectId, known === undefined ? firstInsertedId : firstInsertedId === undefined ? known : Math.min(known, firstInsertedId));
            // The retry reads the objects rather than trust what was gathered for this pass.
            this.inserted.set(projectId, null);
            failed = true;
          }
        }
      }
      return failed;
    })()
      .then((failed) => {
        this.running = undefined;
        if (this.dirty.size > 0) this.schedule(failed ? (this.options.retryDelayMs ?? 5000) : 0);
        else for (const w of this.idleWaiters.splice(0)) w();
      })
      .catch(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async universeName(universeId: number): Promise<string> {
    let name = this.universeNames.get(universeId);
    if (name === undefined) {
      name = (await this.options.store.getUniverseById(universeId))?.name ?? '';
      this.universeNames.set(universeId, name);
    }
    return name;
  }

  private async evaluateProject(projectId: number, firstInsertedId: number | undefined, fingerprints: Set<string> | null | undefined): Promise<void> {
    const { store, workflows } = this.options;
    const project = await store.getProjectById(projectId);
    if (!project) {
      await workflows.forgetProject(projectId);
      return;
    }
    // Without integrations, the inserts' fingerprints are all a pass needs. At start-up (no
    // events) a project with a cursor is read from it once: crashes stored just before a stop
    // may still have a group to reopen.
    let cursor = await workflows.getCursor(projectId);
    if (fingerprints !== null) {
      const fromEvents = fingerprints !== undefined;
      if ((fromEvents || !cursor) && (await workflows.forgetProgressIfUnwatched(projectId))) {
        if (fromEvents && fingerprints.size > 0) await this.reopenResolved(project, fingerprints);
        return;
      }
    }
    if (cursor && cursor.projectCreatedAt !== project.createdAt) {
      // The id was reused by a project created after the old one was deleted.
      await workflows.forgetProject(projectId);
      cursor = undefined;
    }
    cursor ??= await this.firstSight(project, firstInsertedId);

    const integrations = await workflows.listIntegrations(projectId);
    let chunk: CrashObject[] = [];
    for await (const object of store.scanObjects(projectId, cursor.lastObjectId)) {
      chunk.push(object);
      if (chunk.length >= CHUNK) {
        cursor = await this.evaluateChunk(project, cursor, integrations, chunk);
        chunk = [];
        if (this.closed) return;
      }
    }
    if (chunk.length > 0) await this.evaluateChunk(project, cursor, integrations, chunk);
  }

  /** Reopens the resolved groups among `fingerprints` (a project nobody is told about). */
  private async reopenResolved(project: Project, fingerprints: Set<string>): Promise<void> {
    const { store } = this.options;
    for (const { fingerprint, state } of await store.listGroupStates(project.id)) {
      if (state === 'resolved' && fingerprints.has(fingerprint)) await this.reopen(project, fingerprint);
    }
  }

  /** A resolved group seen again: open, and the query engine told. */
  private async reopen(project: Project, fingerprint: string): Promise<void> {
    await this.options.store.setGroupState(project.id, fingerprint, 'open');
    this.options.onGroupReopened?.(project.id, fingerprint);
  }

  /**
   * A project without a cursor: objects up to `firstInsertedId - 1` (all of them at start-up)
   * are history, counted into the groups without any message.
   */
  private async firstSight(project: Project, firstInsertedId: number | undefined): Promise<ProjectCursor> {
    const boundary = firstInsertedId === undefined ? Number.MAX_SAFE_INTEGER : firstInsertedId - 1;
    const groups = new Map<string, GroupStats>();
    let lastObjectId = firstInsertedId === undefined ? 0 : Math.max(0, boundary);
    if (boundary > 0) {
      for await (const o of this.options.store.scanObjects(project.id)) {
        if (o.id > boundary) break;
        if (firstInsertedId === undefined && o.receivedAt >= this.startedAt) break;
        lastObjectId = Math.max(lastObjectId, o.id);
        if (!o.fingerprint) continue;
        countInto(groups, o);
      }
    }
    const cursor: ProjectCursor = { projectId: project.id, projectCreatedAt: project.createdAt, lastObjectId };
    await this.options.workflows.commitEvaluation({ cursor, groups: [...groups.values()], thresholds: [], deliveries: [] });
    return cursor;
  }

  private async evaluateChunk(project: Project, cursor: ProjectCursor, integrations: Integration[], objects: CrashObject[]): Promise<ProjectCursor> {
    const { store, workflows } = this.options;
    const fingerprints = [...new Set(objects.filter((o) => o.fingerprint).map((o) => o.fingerprint))];
    const groups = await workflows.getGroups(project.id, fingerprints);
    const states = new Map<string, GroupState>();
    for (const fp of fingerprints) states.set(fp, await store.getGroupState(project.id, fp));

    const thresholdRules = integrations.flatMap((i) => i.triggers.filter((t) => t.kind === 'threshold').map((t) => ({ integration: i, trigger: t })));
    const thresholds = new Map<string, ThresholdState>();
    if (thresholdRules.length > 0) {
      for (const t of await workflows.getThresholds(thresholdRules.map((r) => r.integration.id), fingerprints)) thresholds.set(thresholdKey(t.integrationId, t.fingerprint), t);
    }
    const universe = await this.universeName(project.universeId);
    const touchedGroups = new Set<string>();
    const touchedThresholds = new Set<string>();
    const reopened: string[] = [];
    const deliveries: NewDelivery[] = [];
    let lastObjectId = cursor.lastObjectId;

    for (const o of objects) {
      lastObjectId = Math.max(lastObjectId, o.id);
      // Minidumps not processed yet have no frames and no fingerprint: nothing to say about them.
      if (!o.fingerprint) continue;
      const isNew = !groups.has(o.fingerprint);
      const group = countInto(groups, o);
      touchedGroups.add(o.fingerprint);
      const state = states.get(o.fingerprint) ?? 'open';
      const fire = (integration: Integration, trigger: Trigger, threshold?: GroupEvent['threshold']) => {
        const event = this.groupEvent(universe, project, o, group, trigger, threshold);
        const uuid = randomUUID();
        const queuedAt = Date.now();
        deliveries.push({
          uuid,
          integrationId: integration.id,
          projectId: project.id,
          event: trigger.kind,
          fingerprint: o.fingerprint,
          body: renderBody(integration.type, event, { delivery: uuid, queuedAt: Math.floor(queuedAt / 1000) }, integration.jira),
          createdAt: queuedAt,
        });
      };

      if (isNew) {
        for (const i of integrations) for (const t of i.triggers) if (t.kind === 'new-group') fire(i, t);
      }
      if (state === 'resolved') {
        for (const i of integrations) for (const t of i.triggers) if (t.kind === 'regression') fire(i, t);
        states.set(o.fingerprint, 'open');
        reopened.push(o.fingerprint);
      }
      for (const { integration, trigger } of thresholdRules) {
        if (trigger.kind !== 'threshold') continue;
        const key = thresholdKey(integration.id, o.fingerprint);
        const t = thresholds.get(key) ?? { integrationId: integration.id, fingerprint: o.fingerprint, buckets: [], expiresAt: 0 };
        thresholds.set(key, t);
        touchedThresholds.add(key);
        const inWindow = addToWindow(t, o.receivedAt, trigger.windowSeconds);
        const quiet = t.lastFiredAt !== undefined && o.receivedAt < t.lastFiredAt + trigger.windowSeconds;
        if (inWindow >= trigger.count && !quiet && state !== 'ignored') {
          t.lastFiredAt = o.receivedAt;
          fire(integration, trigger, {
            count: trigger.count,
            window: formatWindow(trigger.windowSeconds),
            window_seconds: trigger.windowSeconds,
            crashes_in_window: inWindow,
          });
        }
      }
    }

    const next: ProjectCursor = { ...cursor, lastObjectId };
    await workflows.commitEvaluation({
      cursor: next,
      groups: [...touchedGroups].map((fp) => groups.get(fp)!),
      thresholds: [...touchedThresholds].map((k) => thresholds.get(k)!),
      deliveries,
    });
    for (const fp of reopened) await this.reopen(project, fp);
    if (deliveries.length > 0) this.options.onQueued?.();
    return next;
  }

  private groupEvent(universe: string, project: Project, o: CrashObject, group: GroupStats, trigger: Trigger, threshold?: GroupEvent['threshold']): GroupEvent {
    const event: GroupEvent = {
      event: trigger.kind,
      trigger: formatTrigger(trigger),
      universe,
      project: project.name,
      fingerprint: o.fingerprint,
      link: groupLink(this.options.publicUrl(), project.name, o.fingerprint),
      top_frames: o.callstack.slice(0, TOP_FRAMES),
      classifiers: o.classifiers,
      count: group.count,
      first_seen: group.firstSeen,
      last_seen: group.lastSeen,
      object: o.id.toString(16),
    };
    const application = o.attributes.application;
    const hostname = o.attributes.hostname;
    if (typeof application === 'string' && application) event.application = application;
    if (typeof hostname === 'string' && hostname) event.hostname = hostname;
    if (threshold) event.threshold = threshold;
    return event;
  }
}

const thresholdKey = (integrationId: number, fingerprint: string): string => `${integrationId}\u0000${fingerprint}`;

/** Adds one crash to a group's stats (creating them), returning them. */
function countInto(groups: Map<string, GroupStats>, o: CrashObject): GroupStats {
  const g = groups.get(o.fingerprint);
  if (!g) {
    const fresh: GroupStats = { fingerprint: o.fingerprint, count: 1, firstSeen: o.receivedAt, lastSeen: o.receivedAt, firstObject: o.id, lastObject: o.id };
    groups.set(o.fingerprint, fresh);
    return fresh;
  }
  g.count += 1;
  g.firstSeen = Math.min(g.firstSeen, o.receivedAt);
  g.lastSeen = Math.max(g.lastSeen, o.receivedAt);
  g.lastObject = Math.max(g.lastObject, o.id);
  return g;
}

/**
 * Counts a crash received at `at` (seconds) into a sliding window of `windowSeconds`, kept as at
 * most ~30 buckets, and returns how many crashes the window holds now.
 */
export function addToWindow(state: ThresholdState, at: number, windowSeconds: number): number {
  const width = Math.max(1, Math.ceil(windowSeconds / 30));
  const start = at - (at % width);
  const last = state.buckets[state.buckets.length - 1];
  if (last && last[0] === start) last[1] += 1;
  else if (last && last[0] > start) {
    // Received times are the server's clock: a step back in time counts into the newest bucket.
    last[1] += 1;
  } else state.buckets.push([start, 1]);
  // Whole seconds: the window is (at - windowSeconds, at]. A bucket counts while any second of it
  // is inside, so the count may include up to one bucket (1/30 of the window) too early.
  state.buckets = state.buckets.filter(([b]) => b + width - 1 > at - windowSeconds);
  state.expiresAt = at + windowSeconds;
  return state.buckets.reduce((n, [, c]) => n + c, 0);
}
