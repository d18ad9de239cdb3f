// `npm run bench` (coroner part): ingestion and query latency of the object store, each beside a
// peer measured in the same run, printed as ratios (issue 3, "Tests and benchmark").
//
// - Ingest: a real coroner server (its SQLite store in a temporary folder, on 127.0.0.1) and a
//   bare node:http server that reads the same bodies and answers 200 get the same load: ~5 KB
//   SDK-shaped reports over ~2,000 stacks and hostnames, each with a fresh uuid, from N concurrent
//   submitters (keep-alive connections of a lean HTTP/1.1 client, on a worker thread, so that the
//   client takes as little of the machine as it can). coroner answers only once a report is
//   committed (fsynced, group commit). Target: coroner >= 0.5x the bare server's rate.
// - Query: a project filled with 1,000,000 synthetic crashes over ~2,000 fingerprints (written
//   straight into SQLite in large transactions, no HTTP), then the grouped list (group by
//   fingerprint; range and 32 bins of timestamp; histogram of hostname; ;count descending;
//   limit 50) through the query service: the first run (which builds the columnar table) and warm
//   runs, beside `SELECT fingerprint, count(*), min(ts), max(ts) ... GROUP BY fingerprint` over
//   the same rows in a file-backed SQLite table. Target: warm query <= 0.3x the GROUP BY.
// - Interference: submission latency while that 1M-row query runs in a loop, beside an idle server.
//
// Options: --submitters N (32), --seconds S per ingest run (6), --rows N (1000000),
// --groups N (2000), --only ingest|query. Everything runs in a temporary folder removed at exit.
// CORONER_BENCH_LOG=1 prints the server's log; CORONER_BENCH_PROFILE=1 loads the bare server only
// once, and CORONER_BENCH_PROFILE=coroner not at all (for --cpu-prof runs of coroner); either
// prints the event loop's and the process's CPU use during each coroner run.
//
// Concurrency: 32 submitters. A durable answer costs a WAL flush, so coroner's rate grows with the
// submitters in flight while the bare server's is bound by CPU; 16-32 is what a fleet of
// coresnapd daemons and SDK clients behind one coroner plausibly keeps in flight.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { Pool } from 'undici';
import { bootstrap } from '../coroner/admin.js';
import { startSession } from '../server/auth.js';
import { closeQueryService, queryServiceFor } from '../server/api/service.js';
import { createCoronerServer } from '../server/server.js';
import * as ops from '../store/sqlite-ops.js';
import { openSqliteStore } from '../store/sqlite.js';
import { rng } from './rng.js';

// ---------------------------------------------------------------------------------------------
// Load generator (runs on a worker thread so the servers' event loop is not shared with it).

interface LoadJob {
  url: string;
  bodies: Uint8Array[];
  /** Byte offset of the 36-character uuid inside each body, rewritten per request. */
  uuidOffsets: number[];
  submitters: number;
  warmupMs: number;
  durationMs: number;
  /** Pause between a submitter's requests (0: back to back). */
  pauseMs: number;
}

interface LoadResult {
  completed: number;
  failed: number;
  firstFailure: string;
  seconds: number;
  bytes: number;
  latenciesMs: number[];
  /** Process CPU (every thread: server and client alike) and event-loop use over the measured window. */
  cpuMicros?: number;
  eventLoopBusy?: number;
}

/**
 * One keep-alive HTTP/1.1 connection that sends a request, reads the whole answer, and sends the
 * next: a client as lean as can be written in Node (requests are bytes built once, answers are
 * only framed, not parsed), so that the servers measured, not their client, get the machine's CPU.
 * Clients in production run elsewhere; wrk-style load generators do the same.
 */
class Submitter {
  private readonly socket: net.Socket;
  private pending: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (r: { status: number; body: string }) => void; reject: (e: Error) => void } | undefined;

  constructor(host: string, port: number) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => {
      this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
      this.drain();
    });
    const fail = (err: Error) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.reject(err);
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail(new Error('the server closed the connection')));
  }

  send(head: Buffer, body: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.cork();
      this.socket.write(head);
      this.socket.write(body);
      this.socket.uncork();
    });
  }

  /** Frames one answer (Content-Length or chunked) once all of it is in. */
  private drain(): void {
    const end = this.pending.indexOf('\r\n\r\n');
    if (end < 0 || !this.waiting) return;
    const head = this.pending.subarray(0, end).toString('latin1');
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    let body: string;
    let used: number;
    if (length) {
      used = end + 4 + Number(length[1]);
      if (this.pending.length < used) return;
      body = this.pending.subarray(end + 4, used).toString('utf8');
    } else {
      const last = this.pending.indexOf('\r\n0\r\n\r\n', end);
      if (last < 0) return;
      used = last + 7;
      body = this.pending.subarray(end + 4, last).toString('utf8');
    }
    this.pending = this.pending.subarray(used);
    const w = this.waiting;
    this.waiting = undefined;
    w.resolve({ status, body });
  }

  close(): void {
    this.socket.destroy();
  }
}

async function runLoad(job: LoadJob): Promise<LoadResult> {
  const target = new URL(job.url);
  const requestPath = target.pathname + target.search;
  let measuring = false;
  let stopping = false;
  let completed = 0;
  let failed = 0;
  let bytes = 0;
  let firstFailure = '';
  const latencies: number[] = [];
  let next = 0;
  const submitter = async () => {
    const connection = new Submitter(target.hostname, Number(target.port));
    try {
      while (!stopping) {
        const i = next++ % job.bodies.length;
        const body = Buffer.from(job.bodies[i]!);
        body.write(randomUUID(), job.uuidOffsets[i]!, 'latin1');
        const head = Buffer.from(
          `POST ${requestPath} HTTP/1.1\r\nHost: ${target.host}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
          'latin1',
        );
        const counted = measuring;
        const t0 = performance.now();
        try {
          const res = await connection.send(head, body);
          if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
          if (counted && measuring) {
            completed++;
            bytes += body.length;
            latencies.push(performance.now() - t0);
          }
        } catch (err) {
          failed++;
          firstFailure ||= (err as Error).message;
          if (!/^HTTP /.test((err as Error).message)) return;
        }
        if (job.pauseMs > 0) await new Promise((r) => setTimeout(r, job.pauseMs));
      }
    } finally {
      connection.close();
    }
  };
  const loops = Array.from({ length: job.submitters }, submitter);
  await new Promise((r) => setTimeout(r, job.warmupMs));
  measuring = true;
  parentPort?.postMessage({ mark: 'start' });
  const started = performance.now();
  await new Promise((r) => setTimeout(r, job.durationMs));
  measuring = false;
  parentPort?.postMessage({ mark: 'end' });
  const seconds = (performance.now() - started) / 1000;
  stopping = true;
  await Promise.all(loops);
  return { completed, failed, firstFailure, seconds, bytes, latenciesMs: latencies };
}

if (!isMainThread && (workerData as { coronerBenchLoad?: LoadJob } | undefined)?.coronerBenchLoad) {
  runLoad((workerData as { coronerBenchLoad: LoadJob }).coronerBenchLoad).then(
    (result) => parentPort?.postMessage({ ok: true, result }),
    (err: unknown) => parentPort?.postMessage({ ok: false, message: (err as Error).stack ?? String(err) }),
  );
}

/**
 * Starts the load on a worker thread; resolves with its counts once it is done, and with the
 * process's CPU time and the event loop's use between the worker's start and end marks (this
 * thread is the servers' event loop).
 */
function loadInWorker(job: LoadJob): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { coronerBenchLoad: job } });
    let cpu0: NodeJS.CpuUsage | undefined;
    let elu0: EventLoopUtilization | undefined;
    let window: { cpuMicros: number; eventLoopBusy: number } | undefined;
    type Message = { mark: 'start' | 'end' } | { ok: true; result: LoadResult } | { ok: false; message: string };
    w.on('message', (m: Message) => {
      if ('mark' in m) {
        if (m.mark === 'start') {
          cpu0 = process.cpuUsage();
          elu0 = performance.eventLoopUtilization();
        } else if (cpu0 && elu0) {
          const cpu = process.cpuUsage(cpu0);
          window = { cpuMicros: cpu.user + cpu.system, eventLoopBusy: performance.eventLoopUtilization(elu0).utilization };
        }
        return;
      }
      if (m.ok) resolve({ ...m.result, ...window });
      else reject(new Error(m.message));
      void w.terminate();
    });
    w.once('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Data: real-shaped reports, and the synthetic million.

const UUID_PLACEHOLDER = '00000000-0000-4000-8000-000000000000';

/**
 * `count` reports shaped like @backtrace/node's (threads with a faulting stack, attributes,
 * annotations), ~5 KB each, spread over `groups` distinct stacks and as many hostnames.
 */
function makeReports(count: number, groups: number): { bodies: Uint8Array[]; uuidOffsets: number[]; meanBytes: number } {
  const random = rng(7);
  const bodies: Uint8Array[] = [];
  const uuidOffsets: number[] = [];
  let total = 0;
  const modules = ['server', 'routes/orders', 'routes/users', 'db/pool', 'cache/lru', 'workers/mailer', 'lib/parse', 'lib/retry'];
  for (let i = 0; i < count; i++) {
    const g = Math.floor(groups * random() ** 2);
    const depth = 8 + (g % 9);
    const stack = [];
    for (let d = 0; d < depth; d++) {
      const mod = modules[(g + d * 3) % modules.length]!;
      stack.push({
        funcName: d === 0 ? `handler_${g}` : d < 4 ? `${mod.replace(/\W/g, '_')}_step_${(g * 7 + d) % 211}` : `Layer.handle [as handle_request]`,
        library: `/srv/app/src/${mod}.js`,
        line: 10 + ((g * 13 + d * 17) % 900),
        column: 5 + (d % 40),
      });
    }
    const host = `node-${(g * 7919 + i) % groups}.prod.example.net`;
    const report = {
      uuid: UUID_PLACEHOLDER,
      timestamp: 1_760_000_000 + Math.floor(random() * 86_400 * 30),
      lang: 'nodejs',
      langVersion: 'v20.19.4',
      agent: '@backtrace/node',
      agentVersion: '0.8.3',
      mainThread: 'main',
      classifiers: [g % 3 === 0 ? 'TypeError' : g % 3 === 1 ? 'RangeError' : 'Error'],
      threads: { main: { name: 'main', fault: true, stack } },
      attributes: {
        'error.type': 'Exception',
        'error.message': `Cannot read properties of undefined (reading 'id${g}')`,
        application: `shop-${g % 5}`,
        'application.version': `2.${g % 11}.${i % 4}`,
        hostname: host,
        'process.id': 1000 + (i % 30_000),
        'process.age': Math.floor(random() * 86_400),
        'process.thread.count': 7,
        'process.cwd': '/srv/app',
        'process.exec.path': '/usr/bin/node',
        'uname.sysname': 'Linux',
        'uname.release': '6.1.0-28-amd64',
        'uname.machine': 'x64',
        'uname.version': '#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1',
        'cpu.arch': 'x64',
        'cpu.count': 8,
        'cpu.brand': 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz',
        'system.memory.total': 33_554_432_000,
        'system.memory.free': Math.floor(random() * 8e9),
        'vm.rss.size': Math.floor(50e6 + random() * 400e6),
        'vm.heap.used': Math.floor(20e6 + random() * 100e6),
        'vm.heap.total': 268_435_456,
        'backtrace.version': '0.8.3',
        'environment': 'production',
        'region': ['eu-west-1', 'us-east-1', 'ap-south-1'][g % 3]!,
      },
      annotations: {
        'Environment Variables': {
          NODE_ENV: 'production',
          PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
          HOME: '/home/app',
          LANG: 'C.UTF-8',
          PORT: '8080',
          npm_package_name: 'shop',
          npm_package_version: `2.${g % 11}.0`,
        },
        Exception: {
          name: 'TypeError',
          message: `Cannot read properties of undefined (reading 'id${g}')`,
          stack: stack.map((f) => `    at ${f.funcName} (${f.library}:${f.line}:${f.column})`).join('\n'),
        },
      },
      sourceCode: {},
    };
    let text = JSON.stringify(report);
    // Pad with a breadcrumb-like annotation to the ~5 KB the issue names.
    const want = 4_800 + Math.floor(random() * 600);
    if (text.length < want) {
      report.annotations = { ...report.annotations, Breadcrumbs: 'x'.repeat(want - text.length - 20) } as typeof report.annotations;
      text = JSON.stringify(report);
    }
    const body = Buffer.from(text, 'utf8');
    bodies.push(body);
    uuidOffsets.push(body.indexOf(UUID_PLACEHOLDER));
    total += body.length;
  }
  return { bodies, uuidOffsets, meanBytes: total / count };
}

interface FillSpec {
  rows: number;
  groups: number;
  hosts: number;
  from: number;
  to: number;
}

/**
 * Writes `rows` synthetic crashes into `projectId` through a connection of its own, in
 * transactions of 25,000 (what group commit would do, minus the HTTP), and the same
 * (fingerprint, timestamp, hostname) rows into the narrow table of `plainDb`.
 */
function fillMillion(dataDir: string, projectId: number, plainDb: Database.Database, spec: FillSpec): void {
  const db = ops.openDatabase(dataDir);
  // The fill is a benchmark fixture: durability per transaction buys nothing here.
  db.pragma('synchronous = NORMAL');
  const random = rng(11);
  const fingerprints = Array.from({ length: spec.groups }, (_, g) => {
    let h = 0x811c9dc5 ^ g;
    let out = '';
    for (let k = 0; k < 8; k++) {
      h = Math.imul(h ^ (h >>> 13), 0x5bd1e995) >>> 0;
      out += h.toString(16).padStart(8, '0');
    }
    return out;
  });
  const span = spec.to - spec.from;
  plainDb.exec('CREATE TABLE crashes (fingerprint TEXT NOT NULL, ts INTEGER NOT NULL, hostname TEXT)');
  const plainInsert = plainDb.prepare('INSERT INTO crashes (fingerprint, ts, hostname) VALUES (?, ?, ?)');
  const chunk = 25_000;
  const receivedAt = Math.floor(Date.now() / 1000);
  for (let base = 0; base < spec.rows; base += chunk) {
    const n = Math.min(chunk, spec.rows - base);
    const batch: ops.PreparedCrash[] = [];
    const plain: Array<[string, number, string]> = [];
    for (let k = 0; k < n; k++) {
      const i = base + k;
      // Every group gets a crash; the rest are skewed, as real projects are.
      const g = i < spec.groups ? i : Math.floor(spec.groups * random() ** 3);
      const fingerprint = fingerprints[g]!;
      const timestamp = spec.from + Math.floor(random() * span);
      const hostname = `host-${Math.floor(random() * spec.hosts)}`;
      const uuid = randomUUID();
      const body = Buffer.from(`{"uuid":"${uuid}","timestamp":${timestamp}}`);
      batch.push({
        projectId,
        uuid,
        timestamp,
        receivedAt,
        fingerprint,
        callstack: [`crash_site_${g}`, `caller_${g % 97}`, 'main'],
        classifiers: [g % 4 === 0 ? 'SIGABRT' : 'SIGSEGV'],
        attributes: { hostname, application: `app-${g % 5}`, version: `1.${g % 7}.${i % 3}` },
        format: 'json',
        processed: true,
        contentType: 'application/json',
        body: { size: body.length, data: body },
        attachments: [],
      });
      plain.push([fingerprint, timestamp, hostname]);
    }
    const { outcomes } = ops.insertCrashes(db, batch);
    if (outcomes.some((o) => !o.ok)) throw new Error('the fill could not insert a batch');
    plainDb.transaction(() => {
      for (const r of plain) plainInsert.run(r[0], r[1], r[2]);
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

// ---------------------------------------------------------------------------------------------
// Helpers.

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))]! : NaN;
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function bareServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ response: 'ok', _rxid: randomUUID(), bytes: body.length }));
    });
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${port}/post`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

function lineFor(label: string, r: LoadResult): string {
  const rate = r.completed / r.seconds;
  return `  ${label.padEnd(28)} ${fmt(rate).padStart(7)} reports/s  ${fmt((r.bytes / r.seconds) / 1e6, 1).padStart(5)} MB/s  ` +
    `p50 ${fmt(percentile(r.latenciesMs, 0.5), 1)} ms  p99 ${fmt(percentile(r.latenciesMs, 0.99), 1)} ms` +
    (r.failed ? `  (${r.failed} failed: ${r.firstFailure})` : '');
}

// ---------------------------------------------------------------------------------------------
// The benchmark.

async function main(): Promise<void> {
  const submitters = Number(option('submitters', '32'));
  const seconds = Number(option('seconds', '6'));
  const rows = Number(option('rows', '1000000'));
  const groups = Number(option('groups', '2000'));
  const only = option('only', '');
  const benchStarted = performance.now();

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'coroner-bench-'));
  const dataDir = path.join(tmp, 'data');
  const store = await openSqliteStore({ dataDir });
  const { universe } = await bootstrap(store, 'local', { CORONER_ADMIN_PASSWORD: 'bench-password-not-secret' });
  const server = await createCoronerServer({ store, universe: universe.name, host: '127.0.0.1', port: 0, log: process.env.CORONER_BENCH_LOG ? (l) => console.error(l) : () => {} });
  await server.listen();
  const blackhole = (await store.getProject(universe.id, 'blackhole'))!;
  const token = (await store.listTokens(blackhole.id))[0]!.id;
  const submitUrl = `${server.url()}/post?format=json&token=${token}`;
  const reports = makeReports(3_000, groups);
  let failed = false;

  console.log(`coroner bench: ${os.cpus().length} CPUs, data in ${tmp}`);
  try {
    if (only !== 'query') {
      console.log(`\ningest: ${reports.bodies.length} distinct reports of ~${fmt(reports.meanBytes / 1024, 1)} KiB over ~${groups} stacks and hostnames, ` +
        `${submitters} concurrent submitters (keep-alive), ${seconds} s per run after 1 s of warm-up, best of 2 runs each`);
      const bare = await bareServer();
      const job = (url: string): LoadJob => ({ url, bodies: reports.bodies, uuidOffsets: reports.uuidOffsets, submitters, warmupMs: 1000, durationMs: seconds * 1000, pauseMs: 0 });
      const bareRuns: LoadResult[] = [];
      const coronerRuns: LoadResult[] = [];
      // Alternate, so that a burst of load from elsewhere on the machine hits both.
      for (let round = 0; round < 2; round++) {
        // CORONER_BENCH_PROFILE=1 loads the bare server once, =coroner not at all (for --cpu-prof).
        const profile = process.env.CORONER_BENCH_PROFILE;
        if (profile !== 'coroner' && !(profile && bareRuns.length)) bareRuns.push(await loadInWorker(job(bare.url)));
        const run = await loadInWorker(job(submitUrl));
        coronerRuns.push(run);
        if (process.env.CORONER_BENCH_LOG || process.env.CORONER_BENCH_PROFILE) {
          console.log(`  (coroner run ${round + 1}: event loop busy ${fmt((run.eventLoopBusy ?? 0) * 100)}%, ` +
            `process CPU ${fmt(((run.cpuMicros ?? 0) / 1e4) / run.seconds)}% of one core)`);
        }
      }
      await bare.close();
      const best = (runs: LoadResult[]) => runs.reduce((a, b) => (b.completed / b.seconds > a.completed / a.seconds ? b : a));
      const c = best(coronerRuns);
      // What a report costs, whatever the rate: the whole process's CPU (both servers share it with
      // the same client) per report, and the share of it on the event loop.
      const cost = (r: LoadResult) =>
        r.cpuMicros === undefined ? 'n/a' : `${fmt(r.cpuMicros / r.completed)} µs CPU (event loop ${fmt(((r.eventLoopBusy ?? 0) * r.seconds * 1e6) / r.completed)} µs)`;
      const fullUse = `${os.cpus().length} CPUs at full use would take coroner to ~${fmt((os.cpus().length * 1e6 * c.completed) / (c.cpuMicros ?? NaN))} reports/s`;
      const b = bareRuns.length ? best(bareRuns) : undefined;
      if (b) console.log(lineFor('bare node:http (200 only)', b));
      console.log(lineFor('coroner (durable, grouped)', c));
      if (b) {
        const ratio = (c.completed / c.seconds) / (b.completed / b.seconds);
        const ok = ratio >= 0.5 && c.failed === 0;
        failed ||= !ok;
        console.log(`  coroner / bare = ${fmt(ratio, 2)}x  (target >= 0.50x: ${ok ? 'met' : 'NOT MET'})`);
        console.log(`  per report, client included: bare ${cost(b)}; coroner ${cost(c)}; ${fullUse}`);
      } else {
        // Coroner alone (profiling): no ratio to a server that was not measured.
        console.log(`  per report, client included: coroner ${cost(c)}; ${fullUse}`);
      }
      const stored = await store.countObjects(blackhole.id);
      console.log(`  stored ${fmt(stored)} reports, all acknowledged ones: ${stored >= coronerRuns.reduce((n, r) => n + r.completed, 0) ? 'yes' : 'NO'}`);
    }

    if (only !== 'ingest') {
      const plainPath = path.join(tmp, 'plain.db');
      const plainDb = new Database(plainPath);
      plainDb.pragma('journal_mode = WAL');
      const project = await store.createProject(universe.id, 'million');
      const from = 1_760_000_000;
      const to = from + 30 * 86_400;
      console.log(`\nquery: filling a project with ${fmt(rows)} crashes...`);
      const t0 = performance.now();
      fillMillion(dataDir, project.id, plainDb, { rows, groups, hosts: 500, from, to });
      console.log(`  filled ${fmt(rows)} crashes over ${fmt(groups)} fingerprints and 500 hostnames in ${fmt((performance.now() - t0) / 1000, 1)} s ` +
        `(coroner's tables and a plain one, straight into SQLite)`);

      const query = {
        filter: [{ timestamp: [['at-least', String(from)], ['at-most', String(to)]] }],
        group: ['fingerprint'],
        fold: { timestamp: [['range'], ['bin', 32, from, to]], hostname: [['histogram']] },
        order: [{ name: ';count', ordering: 'descending' }],
        limit: 50,
      };
      const service = queryServiceFor(store);
      const who = { universe: universe.name, user: 'bench' };
      const runQuery = async () => {
        const started = performance.now();
        const envelope = await service.query(project, query, who);
        const text = JSON.stringify(envelope);
        const ms = performance.now() - started;
        return { ms, text, envelope };
      };
      const rssBefore = process.memoryUsage().rss;
      const first = await runQuery();
      const rssAfter = process.memoryUsage().rss;
      const warm: number[] = [];
      for (let i = 0; i < 9; i++) warm.push((await runQuery()).ms);
      const values = (first.envelope.response as { values: Array<[string, unknown[], number]> }).values;
      const counted = values.reduce((n, v) => n + v[2], 0);

      // The same through HTTP, as morgue sends it.
      const admin = (await store.getUser(universe.id, 'admin'))!;
      const session = await startSession(store, admin);
      const pool = new Pool(server.url(), { connections: 1 });
      const httpTimes: number[] = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        const res = await pool.request({
          path: `/api/query?universe=${universe.name}&project=${project.name}`,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-coroner-token': session.token },
          body: JSON.stringify(query),
        });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`/api/query answered ${res.statusCode}: ${text.slice(0, 200)}`);
        httpTimes.push(performance.now() - started);
      }

      // The plain GROUP BY over the same rows: the narrow table (SQLite's best case), and
      // coroner's own objects table for reference.
      const plainSql = 'SELECT fingerprint, count(*) AS n, min(ts), max(ts) FROM crashes GROUP BY fingerprint ORDER BY n DESC LIMIT 50';
      const plainStmt = plainDb.prepare(plainSql);
      const plainTimes: number[] = [];
      let plainTop: Array<{ fingerprint: string; n: number }> = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        plainTop = plainStmt.all() as typeof plainTop;
        plainTimes.push(performance.now() - started);
      }
      const objectsDb = new Database(path.join(dataDir, 'coroner.db'), { readonly: true });
      const objectsStmt = objectsDb.prepare(
        'SELECT fingerprint, count(*) AS n, min(timestamp), max(timestamp) FROM objects WHERE project_id = ? GROUP BY fingerprint ORDER BY n DESC LIMIT 50',
      );
      const objectsTimes: number[] = [];
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        objectsStmt.all(project.id);
        objectsTimes.push(performance.now() - started);
      }
      objectsDb.close();

      const agree = plainTop.length === values.length && plainTop.every((r, i) => values[i]?.[2] === r.n);
      const warmMs = median(warm);
      const plainMs = median(plainTimes);
      console.log(`  grouped list (group fingerprint; range + bin 32 of timestamp; histogram of hostname; ;count desc; limit 50):`);
      console.log(`    first run, building the table  ${fmt(first.ms).padStart(7)} ms  (RSS +${fmt((rssAfter - rssBefore) / 1048576)} MB)`);
      console.log(`    warm, service + JSON (median)  ${fmt(warmMs, 1).padStart(7)} ms  (min ${fmt(Math.min(...warm), 1)}, max ${fmt(Math.max(...warm), 1)})`);
      console.log(`    warm, over HTTP (median)       ${fmt(median(httpTimes), 1).padStart(7)} ms  (answer ${fmt(first.text.length / 1024)} KiB, ${values.length} groups, ${fmt(counted)} crashes)`);
      console.log(`  plain SQLite GROUP BY fingerprint, count, min/max ts:`);
      console.log(`    narrow table (median)          ${fmt(plainMs, 1).padStart(7)} ms`);
      console.log(`    coroner's objects table        ${fmt(median(objectsTimes), 1).padStart(7)} ms`);
      const ratio = warmMs / plainMs;
      const ok = ratio <= 0.3 && agree;
      failed ||= !ok;
      console.log(`  warm query / plain GROUP BY = ${fmt(ratio, 3)}x  (target <= 0.30x: ${ok ? 'met' : 'NOT MET'}); ` +
        `same top-50 counts as SQLite: ${agree ? 'yes' : 'NO'}`);
      plainDb.close();
      await pool.close();

      // Ingestion while the 1M-row query runs back to back, beside an idle server.
      const probe = (): LoadJob => ({ url: submitUrl, bodies: reports.bodies, uuidOffsets: reports.uuidOffsets, submitters: 4, warmupMs: 300, durationMs: 3000, pauseMs: 20 });
      const idle = await loadInWorker(probe());
      let querying = true;
      let queries = 0;
      const queryLoop = (async () => {
        while (querying) {
          await runQuery();
          queries++;
          // Between two HTTP queries the event loop turns; here it must be let to, explicitly.
          await new Promise((r) => setImmediate(r));
        }
      })();
      const busy = await loadInWorker(probe());
      querying = false;
      await queryLoop;
      console.log(`\nsubmission latency, 4 submitters pausing 20 ms between reports:`);
      console.log(lineFor('idle server', idle));
      console.log(lineFor(`during ${queries} queries (${rows >= 1e6 ? `${fmt(rows / 1e6)}M` : fmt(rows)} rows)`, busy));
    }
  } finally {
    closeQueryService(store);
    await server.close();
    await store.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`\ncoroner bench took ${fmt((performance.now() - benchStarted) / 1000)} s`);
  if (failed) process.exitCode = 1;
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(`coroner bench: ${(err as Error).stack ?? String(err)}`);
    process.exit(2);
  });
}
