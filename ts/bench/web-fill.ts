/**
 * Synthetic crashes for the console's scale test and benchmark, written straight through the
 * `Store` (no HTTP, no grouping): what the caller chooses is how many crashes, in how many
 * groups, over how many hosts and which time span; what this does is insert them in large
 * concurrent batches (the store group-commits them) and return what it inserted, so a check can
 * compare the console with numbers it did not get from the console.
 *
 * Group sizes are skewed (a few groups hold most crashes, as in real projects) and every value is
 * drawn from a seeded generator, so two fills with the same options are identical.
 */

import { createHash, randomUUID } from 'node:crypto';
import type { NewCrash, Project, Store } from '../store/types.js';
import { rng } from './rng.js';

export interface FillOptions {
  crashes: number;
  groups: number;
  hosts: number;
  /** Timestamps are spread over [from, to] (seconds). */
  from: number;
  to: number;
  seed?: number;
  /** Crashes handed to the store before waiting for them (default 20,000). */
  chunk?: number;
  onProgress?: (done: number) => void;
}

export interface FillResult {
  inserted: number;
  /** Crashes per group index. */
  perGroup: number[];
  /** Crashes per host index (`host-<i>`). */
  perHost: number[];
  fingerprints: string[];
  ms: number;
}

export function syntheticFingerprint(group: number): string {
  return createHash('sha256').update(`synthetic-group-${group}`).digest('hex');
}

export function syntheticFrames(group: number): string[] {
  return [`crash_site_${group}`, `caller_${group % 97}`, `dispatch_${group % 13}`, 'main'];
}

export async function fillSynthetic(store: Store, project: Project, options: FillOptions): Promise<FillResult> {
  const started = performance.now();
  const random = rng(options.seed ?? 1);
  const chunk = options.chunk ?? 20_000;
  const fingerprints = Array.from({ length: options.groups }, (_, g) => syntheticFingerprint(g));
  const frames = Array.from({ length: options.groups }, (_, g) => syntheticFrames(g));
  const perGroup = new Array<number>(options.groups).fill(0);
  const perHost = new Array<number>(options.hosts).fill(0);
  const span = Math.max(1, options.to - options.from);
  // Every group gets at least one crash (the first `groups` crashes), the rest skewed.
  const groupOf = (i: number) => (i < options.groups ? i : Math.min(options.groups - 1, Math.floor(options.groups * random() ** 3)));
  let inserted = 0;
  for (let base = 0; base < options.crashes; base += chunk) {
    const n = Math.min(chunk, options.crashes - base);
    const batch: Array<Promise<unknown>> = [];
    for (let k = 0; k < n; k++) {
      const i = base + k;
      const g = groupOf(i);
      perGroup[g]!++;
      const timestamp = options.from + Math.floor(random() * span);
      const host = Math.floor(random() * options.hosts);
      perHost[host]!++;
      const hostname = `host-${host}`;
      const uuid = randomUUID();
      const signal = g % 4 === 0 ? 'SIGABRT' : 'SIGSEGV';
      const attributes = { hostname, application: `app-${g % 5}`, version: `1.${g % 7}.${i % 3}`, signal };
      const body = JSON.stringify({
        uuid,
        timestamp,
        lang: 'c',
        agent: 'coresnap-bench',
        mainThread: '1',
        threads: { '1': { name: 'app', fault: true, stack: frames[g]!.map((funcName) => ({ funcName })) } },
        attributes,
        classifiers: [signal],
      });
      const crash: NewCrash = {
        projectId: project.id,
        uuid,
        timestamp,
        fingerprint: fingerprints[g]!,
        callstack: frames[g]!,
        classifiers: signal === 'SIGABRT' ? ['SIGABRT', 'abort'] : ['SIGSEGV'],
        attributes,
        format: 'json',
        processed: true,
        body: Buffer.from(body),
        contentType: 'application/json',
        attachments: [],
      };
      batch.push(store.insertCrash(crash));
    }
    await Promise.all(batch);
    inserted += n;
    options.onProgress?.(inserted);
  }
  return { inserted, perGroup, perHost, fingerprints, ms: performance.now() - started };
}
