/**
 * Test helpers for workflow integrations: real HTTP receivers on 127.0.0.1 that record what they
 * get (and can be down, or answer errors, for a while), and a coroner server in this process
 * with a fast retry policy.
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExecutionContext } from 'ava';
import { request } from 'undici';
import { workflowServiceFor, type WorkflowOptions, type WorkflowService } from '../../ts/workflows/index.js';
import { http as httpCall, report, startServer, tempDir, type TestServer } from '../coroner/helpers.js';

export { report, tempDir };

export interface Received {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: any;
  at: number;
}

/**
 * An HTTP receiver. `answer` decides each response (default 200 `ok`); `stop()` closes the port
 * so connections are refused, `start()` opens the same port again.
 */
export class Receiver {
  readonly received: Received[] = [];
  answer: (r: Received) => { status: number; body?: string; headers?: Record<string, string> } = () => ({ status: 200, body: 'ok' });
  private server: http.Server | undefined;
  private boundPort = 0;
  private waiters: Array<() => void> = [];

  static async start(): Promise<Receiver> {
    const r = new Receiver();
    await r.start();
    return r;
  }

  get port(): number {
    return this.boundPort;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.boundPort}${path}`;
  }

  start(): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        const r: Received = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json, at: Date.now() };
        const a = this.answer(r);
        // Only what was answered 2xx counts as received: the rest is a refusal the sender retries.
        if (a.status >= 200 && a.status < 300) this.received.push(r);
        res.writeHead(a.status, { 'content-type': 'text/plain', ...a.headers });
        res.end(a.body ?? '');
        for (const w of this.waiters.splice(0)) w();
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.boundPort, '127.0.0.1', () => {
        this.boundPort = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  /** Resolves once `n` requests were accepted (2xx), or rejects after `timeoutMs`. */
  async waitFor(n: number, timeoutMs = 60_000, filter: (r: Received) => boolean = () => true): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.received.filter(filter);
      if (got.length >= n) return got;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the receiver got ${got.length} of ${n} expected requests within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

export interface WorkflowServer extends TestServer {
  service: WorkflowService;
}

/** Retries fast enough for tests: 100 ms doubling to 800 ms. */
export const FAST_RETRY: WorkflowOptions = { retry: { minMs: 100, maxMs: 800 }, passDelayMs: 20, pollMs: 500, timeoutMs: 3000 };

export async function startWorkflowServer(options: { dataDir?: string; workflows?: WorkflowOptions; publicUrl?: string } = {}): Promise<WorkflowServer> {
  const server = await startServer({
    dataDir: options.dataDir ?? tempDir('coroner-workflows-'),
    workflows: options.workflows ?? FAST_RETRY,
    ...(options.publicUrl ? { publicUrl: options.publicUrl } : {}),
  });
  const service = workflowServiceFor(server.store);
  if (!service) {
    await server.close();
    throw new Error('the server started no workflow service');
  }
  return { ...server, service };
}

/** A webhook receiver and a workflow server for one test, both closed when it ends (server first). */
export async function withWorkflowServer(
  t: ExecutionContext,
  options: Parameters<typeof startWorkflowServer>[0] = {},
): Promise<{ receiver: Receiver; s: WorkflowServer }> {
  const receiver = await Receiver.start();
  const s = await startWorkflowServer(options);
  t.teardown(async () => {
    await s.close();
    await receiver.stop();
  });
  return { receiver, s };
}

/** A report whose faulting stack is `frames` (innermost first): one group per distinct list. */
export function crash(frames: string[], overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return report({
    threads: { main: { name: 'main', fault: true, stack: frames.map((funcName, i) => ({ funcName, library: '/app/a.js', line: i + 1 })) } },
    ...overrides,
  });
}

/** Submits a report like an SDK does; resolves with the stored fingerprint and object id. */
export async function submit(base: string, token: string, body: Record<string, unknown>): Promise<{ fingerprint: string; object: string; rxid: string }> {
  const res = await request(`${base}/post?format=json&_mod_sync=1&token=${token}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`submission refused (${res.statusCode}): ${text}`);
  const json = JSON.parse(text) as { fingerprint: string; object: string; _rxid: string };
  return { fingerprint: json.fingerprint, object: json.object, rxid: json._rxid };
}

/** A JSON call to the admin API with the session in X-Coroner-Token. */
export async function api(
  base: string,
  session: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: any }> {
  const res = await httpCall(`${base}${path}`, {
    method,
    headers: { 'x-coroner-token': session, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  // An answer that is not JSON is handed back as its text, for the assertion to show.
  return { status: res.status, json: res.json === undefined ? res.text : res.json };
}

/** Waits until `check` holds, polling; throws with `what` after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
