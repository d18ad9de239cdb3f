/**
 * Test scaffolding for morgue: a recording mock of the coroner query API (answers per
 * backtrace-compat.md §1.3/§1.5, so requests can be compared with the captures of the real
 * morgue), and a runner of bin/morgue with its own session folder.
 */

import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../ts/native/index.js';

export const TOKEN = '0123456789abcdef0123456789abcdef';

export interface Recorded {
  method: string;
  /** Path and query string, as the request line had them. */
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export type Handler = (req: Recorded, res: http.ServerResponse) => void;

export interface MockServer {
  url: string;
  port: number;
  requests: Recorded[];
  /** Replace how a pathname is answered. */
  handle(pathname: string, handler: Handler): void;
  close(): Promise<void>;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function loginAnswer(port: number): Record<string, unknown> {
  return {
    token: TOKEN,
    uid: 1,
    user: { uid: 1, username: 'admin', email: 'admin@example.com', superuser: 1 },
    universe: { id: 1, name: 'local' },
    universes: { local: { id: 1, name: 'local' } },
    endpoints: { post: [{ protocol: 'http', port }] },
    services: [],
  };
}

function envelope(response: unknown, rows: number): Record<string, unknown> {
  return {
    response,
    _: {
      tx: 7,
      universe: 'local',
      project: 'myproj',
      user: 'admin',
      latency: '123 us',
      runtime: { filter: { rows, time: 10 }, group_by: { groups: 1, time: 0 }, aggregate: { time: 0 }, sort: { time: 0 }, total_time: 10 },
    },
  };
}

/** A plausible value for each fold operator, shaped as §1.5 says. */
function foldValue(op: string, args: unknown[]): unknown {
  switch (op) {
    case 'range':
      return [1795600000, 1795680000];
    case 'bin': {
      const n = typeof args[0] === 'number' ? args[0] : 3;
      const lo = typeof args[1] === 'number' ? args[1] : 0;
      const hi = typeof args[2] === 'number' ? args[2] : 30;
      const step = (hi - lo) / n;
      return Array.from({ length: n }, (_, i) => [Math.floor(lo + i * step), Math.floor(lo + (i + 1) * step), i === n - 1 ? 2 : i === n - 2 ? 1 : 0]);
    }
    case 'histogram':
      return [
        ['web1', 2],
        ['web2', 1],
      ];
    case 'distribution':
      return [{ keys: 2, tail: 0, vals: [['web1', 2], ['web2', 1]] }];
    case 'object':
      return ['1'];
    case 'head':
    case 'tail':
    case 'first':
    case 'last':
      return ['web1'];
    default:
      return [3];
  }
}

/** Answers any query: selects with three objects, folds with one value per requested fold. */
export function answerQuery(query: Record<string, unknown>): Record<string, unknown> {
  if (query.select || query.select_wildcard) {
    const names = (query.select as string[] | undefined) ?? ['hostname'];
    const columns = names.map((n) => [n, n === 'timestamp' ? 'unix_timestamp' : n === 'callstack' ? 'callstack' : 'none']);
    const values = names.map((n) => {
      if (n === 'timestamp') return ['*', [1795676609, 1], [1795678409, 2]];
      if (n === 'callstack') return ['*', [JSON.stringify({ frame: ['abort', 'main'] }), 3]];
      return ['*', ['web1', 1], ['web2', 2]];
    });
    return envelope({ version: '1.2.0', encoding: 'rle', objects: [['*', [[1], [2, 1]]]], columns, values }, 3);
  }
  const fold = (query.fold ?? {}) as Record<string, Array<[string, ...unknown[]]>>;
  const columns: Array<[string, string]> = [];
  const cells: unknown[] = [];
  for (const [attr, ops] of Object.entries(fold)) {
    for (const [op, ...args] of ops) {
      columns.push([`${op}(${attr})`, attr === 'timestamp' ? 'unix_timestamp' : 'none']);
      cells.push(foldValue(op, args));
    }
  }
  const key = Array.isArray(query.group) ? 'a'.repeat(64) : '*';
  return envelope({ version: '1.2.0', encoding: 'rle', columns, values: [[key, cells, 3]] }, 3);
}

export async function startMock(): Promise<MockServer> {
  const requests: Recorded[] = [];
  const handlers = new Map<string, Handler>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const recorded: Recorded = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      requests.push(recorded);
      const pathname = new URL(recorded.path, 'http://x').pathname;
      const handler = handlers.get(pathname);
      if (handler) handler(recorded, res);
      else sendJson(res, 404, { error: { message: `no handler for ${pathname}`, code: 1 } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const tokenOk = (r: Recorded): boolean => new URL(r.path, 'http://x').searchParams.get('token') === TOKEN;
  handlers.set('/api/login', (_r, res) => sendJson(res, 200, loginAnswer(port)));
  handlers.set('/api/logout', (_r, res) => sendJson(res, 200, { result: 'ok' }));
  handlers.set('/api/query', (r, res) => {
    if (!tokenOk(r)) return sendJson(res, 200, { error: { message: 'invalid token', code: 5 } });
    const action = new URL(r.path, 'http://x').searchParams.get('action');
    if (action === 'describe') {
      return sendJson(res, 200, {
        describe: [
          { name: 'timestamp', description: 'When the crash happened', format: 'unix_timestamp', type: 'uint64', custom: false, state: 'enabled', statistics: { used: true } },
          { name: 'hostname', description: 'Host name', format: 'hostname', type: 'dictionary', custom: false, state: 'enabled', statistics: { used: true } },
          { name: 'vm.rss', description: 'Resident memory', format: 'bytes', type: 'uint64', custom: false, state: 'enabled', statistics: { used: false } },
          { name: 'build', description: 'Build id', format: 'none', type: 'dictionary', custom: true, state: 'enabled', statistics: { used: true } },
        ],
      });
    }
    const query = JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
    if (query.set) return sendJson(res, 200, envelope({ result: 'success' }, 1));
    sendJson(res, 200, answerQuery(query));
  });
  handlers.set('/api/post', (_r, res) => sendJson(res, 200, { response: 'ok', _rxid: '01000000-7e23-7a1e-0000-000000000000' }));
  handlers.set('/api/get', (_r, res) => {
    const body = '{"uuid":"x"}\n';
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Disposition': 'attachment; filename="3.json"', 'Content-Length': body.length });
    res.end(body);
  });
  handlers.set('/api/delete', (_r, res) => sendJson(res, 200, { result: 'ok' }));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    handle: (p, h) => handlers.set(p, h),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface MorgueRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/morgue with `MORGUE_CONFIG_DIR=configDir` (never the real ~/.morgue), stdin closed. */
export function morgue(args: string[], options: { configDir: string; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<MorgueRun> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: options.configDir, MORGUE_CONFIG_DIR: options.configDir, ...options.env };
  return new Promise((resolve) => {
    const child = execFile(
      path.join(packageRoot, 'bin', 'morgue'),
      args,
      { env, cwd: options.cwd ?? options.configDir, timeout: options.timeoutMs ?? 60_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? ((err as unknown as { code: number }).code) : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}

export function tempDir(prefix = 'morgue-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}
