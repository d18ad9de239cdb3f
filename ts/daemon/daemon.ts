/**
 * coresnapd: works through the archive's queue (pending/ and sending/, which the handler fills
 * whether the daemon runs or not), `concurrency` items at a time; wakes up when the handler or
 * `coresnap retry` pokes `state/coresnapd.sock`, when a retry is due, and every `scan.interval`
 * anyway; purges by age; reloads its configuration on SIGHUP (keeping the last good one when
 * the new one has a problem); stops on SIGTERM/SIGINT without uninstalling the handler (crashes
 * keep being spooled while it is down).
 */

import fs from 'node:fs';
import net from 'node:net';

import { type CoresnapConfig, loadCoresnapConfig, type LoadOptions } from '../config/coresnap-conf.js';
import { ConfigError } from '../config/problems.js';
import { requiredFree } from '../config/units.js';
import {
  ArchiveLayout,
  listState,
  type Owner,
  prepareArchive,
  readCounters,
  readStatus,
} from './archive.js';
import { ensureUser, install, writeHandlerConf } from './install.js';
import type { Log } from './log.js';
import { advance, type PipelineContext } from './process.js';
import { purge } from './purge.js';
import { closeUploads } from './upload.js';

export interface DaemonOptions {
  load: LoadOptions;
  /** Install the handler at start when core_pattern is not ours (default true). */
  install: boolean;
  log: Log;
}

export class Daemon {
  config: CoresnapConfig;
  readonly layout: ArchiveLayout;
  owner: Owner | null;
  private readonly log: Log;
  private server: net.Server | null = null;
  private readonly queue = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private scanTimer: NodeJS.Timeout | null = null;
  private purgeTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private lastCounters: Record<string, number> = {};
  private belowQuota = false;

  constructor(private readonly options: DaemonOptions) {
    this.log = options.log;
    this.config = loadCoresnapConfig(options.load);
    this.layout = new ArchiveLayout(this.config.archivePath);
    this.owner = ensureUser(this.config.user, options.install);
  }

  private get ctx(): PipelineContext {
    return { config: this.config, layout: this.layout, log: this.log, owner: this.owner };
  }

  async start(): Promise<void> {
    for (const warning of this.config.warnings) this.log.warn(warning);
    prepareArchive(this.layout, this.owner);
    if (this.options.install) {
      const result = install(this.config, { createUser: true });
      for (const warning of result.warnings) this.log.warn(warning);
      this.log.info(result.changed ? `handler installed: core_pattern = ${result.pattern}` : `handler already installed: core_pattern = ${result.pattern}`);
    } else {
      writeHandlerConf(this.config, this.owner);
    }
    await this.listen();
    this.lastCounters = readCounters(this.layout);
    this.log.info(
      `coresnapd started: archive ${this.layout.root}, ${this.config.routes.length} format rule(s), server ${this.config.coroner?.write ?? '(none)'}, ` +
        `ptrace as ${this.owner?.user ?? 'the daemon user'}, concurrency ${this.config.concurrency}, log to ${this.log.destination}`,
    );
    this.scan();
    this.schedulePeriodic();
    this.runPurge();
  }

  private async listen(): Promise<void> {
    const socket = this.layout.socket;
    // A socket that answers belongs to a running daemon; one that refuses is left over.
    const alive = await new Promise<boolean>((resolve) => {
      const probe = net.connect(socket);
      probe.once('connect', () => {
        probe.end();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (alive) throw new Error(`another coresnapd is running on ${this.layout.root} (${socket} answers)`);
    fs.rmSync(socket, { force: true });
    const server = net.createServer((conn) => {
      conn.setEncoding('utf8');
      conn.on('data', () => undefined);
      conn.on('error', () => undefined);
      // What the poke says is not trusted: any poke means "look at the queue".
      conn.on('end', () => this.scan());
      conn.on('close', () => this.scan());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socket, () => resolve());
    });
    fs.chmodSync(socket, 0o600);
    this.server = server;
  }

  private schedulePeriodic(): void {
    this.scanTimer = setInterval(() => this.scan(), this.config.scanIntervalSeconds * 1000);
    const age = this.config.purgeAgeSeconds;
    const every = age ? Math.min(3600, Math.max(1, age / 10)) : 3600;
    this.purgeTimer = setInterval(() => this.runPurge(), every * 1000);
  }

  /** Queues every item that can move now; sets a timer for those waiting for a retry. */
  scan(): void {
    if (this.stopping) return;
    this.reportCounters();
    const now = Date.now() / 1000;
    for (const state of ['pending', 'sending'] as const) {
      for (const uuid of listState(this.layout, state)) {
        if (this.running.has(uuid) || this.queue.has(uuid)) continue;
        const status = readStatus(this.layout, uuid);
        if (status.parked) continue;
        if (status.nextAttemptAt && status.nextAttemptAt > now) {
          this.retryAt(uuid, status.nextAttemptAt);
          continue;
        }
        this.clearTimer(uuid);
        this.queue.add(uuid);
      }
    }
    this.pump();
  }

  private clearTimer(uuid: string): void {
    const timer = this.timers.get(uuid);
    if (timer) clearTimeout(timer);
    this.timers.delete(uuid);
  }

  private retryAt(uuid: string, at: number): void {
    if (this.timers.has(uuid)) return;
    const ms = Math.max(0, at * 1000 - Date.now());
    const timer = setTimeout(() => {
      this.timers.delete(uuid);
      if (this.stopping) return;
      this.queue.add(uuid);
      this.pump();
    }, ms);
    this.timers.set(uuid, timer);
  }

  private pump(): void {
    while (!this.stopping && this.running.size < this.config.concurrency && this.queue.size > 0) {
      const uuid = this.queue.values().next().value as string;
      this.queue.delete(uuid);
      const work = this.work(uuid).finally(() => {
        this.running.delete(uuid);
        this.pump();
      });
      this.running.set(uuid, work);
    }
  }

  private async work(uuid: string): Promise<void> {
    try {
      const result = await advance(this.ctx, uuid);
      if (result.kind === 'retry') this.retryAt(uuid, result.at);
    } catch (err) {
      // Unexpected (a full disk, a file removed under us): try again later, do not die.
      const wait = Math.min(this.config.backoffMaxSeconds, 30);
      this.log.error(`crash ${uuid}: ${(err as Error).message}; trying again in ${wait} s`);
      this.retryAt(uuid, Date.now() / 1000 + wait);
    }
  }

  private reportCounters(): void {
    const counters = readCounters(this.layout);
    for (const name of ['dropped.rate', 'dropped.quota', 'skipped.limit', 'failed']) {
      const delta = (counters[name] ?? 0) - (this.lastCounters[name] ?? 0);
      if (delta > 0) this.log.warn(`the handler counted ${delta} more ${name} (total ${counters[name]})`);
    }
    this.lastCounters = counters;
    const quota = this.config.dumpQuota;
    if (quota) {
      try {
        const st = fs.statfsSync(this.layout.root);
        const free = st.bavail * st.bsize;
        const below = free < requiredFree(quota, st.blocks * st.bsize, st.bsize);
        if (below && !this.belowQuota) this.log.warn(`${this.layout.root} is below dump.quota (${free} bytes free): new cores are not archived`);
        if (!below && this.belowQuota) this.log.info(`${this.layout.root} is above dump.quota again: new cores are archived`);
        this.belowQuota = below;
      } catch {
        // statfs failing is reported by the handler when it matters.
      }
    }
  }

  private runPurge(): void {
    if (this.stopping) return;
    const config = this.config;
    if (config.purgeDisabled || config.purgeAgeSeconds === null) return;
    purge(this.layout, config.purgeAgeSeconds, new Set(this.running.keys()), this.log).catch((err: Error) =>
      this.log.error(`purge failed: ${err.message}`),
    );
  }

  /** SIGHUP: read the configuration again; on any problem keep the one we have. */
  reload(): void {
    let next: CoresnapConfig;
    try {
      next = loadCoresnapConfig(this.options.load);
    } catch (err) {
      const message = err instanceof ConfigError ? err.message : (err as Error).message;
      this.log.error(`configuration not reloaded, keeping the last good one:\n${message}`);
      return;
    }
    if (next.archivePath !== this.config.archivePath) {
      this.log.warn(`archive.path changed to ${next.archivePath}; restart coresnapd to use it (keeping ${this.config.archivePath})`);
      next.archivePath = this.config.archivePath;
    }
    for (const warning of next.warnings) this.log.warn(warning);
    this.config = next;
    writeHandlerConf(next, this.owner);
    if (this.scanTimer) clearInterval(this.scanTimer);
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    this.schedulePeriodic();
    this.log.info(`configuration reloaded from ${next.file ?? 'the built-in defaults'}: ${next.routes.length} format rule(s)`);
    this.scan();
  }

  /** Stops taking work, lets running items finish (up to `graceMs`), closes everything. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.scanTimer) clearInterval(this.scanTimer);
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.queue.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(this.layout.socket, { force: true });
    await Promise.race([Promise.allSettled([...this.running.values()]), new Promise((r) => setTimeout(r, graceMs).unref())]);
    await closeUploads();
    this.log.info('coresnapd stopped (the handler stays installed: crashes are spooled until it starts again)');
  }
}
