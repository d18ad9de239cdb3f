/**
 * Test helpers for coroner: a real server on 127.0.0.1 (port 0) in this process or as a
 * `bin/coroner serve` child, HTTP through undici, and ptrace snapshots of corpus cores.
 */

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { bootstrap, syncClientConfig } from '../../ts/coroner/admin.js';
import { startSession } from '../../ts/server/auth.js';
import { createCoronerServer, type CoronerServer, type ServerLimits } from '../../ts/server/server.js';
import type { RetentionOptions } from '../../ts/coroner/retention.js';
import { openSqliteStore, type SqliteStore } from '../../ts/store/sqlite.js';
import type { Project } from '../../ts/store/types.js';
import type { WorkflowOptions } from '../../ts/workflows/index.js';
import { corpusDir } from '../helpers/corpus.js';
import { packageRoot, runBin } from '../helpers/run.js';

export { packageRoot, runBin };

export const ADMIN_PASSWORD = 'correct horse battery';

export function tempDir(prefix = 'coroner-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface TestServer {
  url: string;
  dataDir: string;
  store: SqliteStore;
  server: CoronerServer;
  project: Project;
  /** The blackhole project's submission token. */
  token: string;
  /** A live session of the superuser admin. */
  adminSession: string;
  configPath: string;
  close(): Promise<void>;
}

export interface TestServerOptions {
  limits?: Partial<ServerLimits>;
  dataDir?: string;
  workflows?: WorkflowOptions | false;
  publicUrl?: string;
  /** Where the server's log lines go (default: nowhere). */
  log?: (line: string) => void;
  retention?: RetentionOptions | false;
}

/** A server in this process, on a fresh data folder, bootstrapped as `coroner serve` does. */
export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? tempDir();
  const store = await openSqliteStore({ dataDir });
  const { universe, created } = await bootstrap(store, 'local', { CORONER_ADMIN_PASSWORD: ADMIN_PASSWORD });
  const server = await createCoronerServer({
    store,
    universe: universe.name,
    port: 0,
    log: options.log ?? (() => {}),
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.workflows !== undefined ? { workflows: options.workflows } : {}),
    ...(options.publicUrl ? { publicUrl: options.publicUrl } : {}),
    ...(options.retention !== undefined ? { retention: options.retention } : {}),
  });
  await server.listen();
  const configPath = syncClientConfig(dataDir, universe.name, server.url(), created?.token);
  const project = (await store.getProject(universe.id, 'blackhole'))!;
  const token = (await store.listTokens(project.id))[0]!.id;
  const admin = (await store.getUser(universe.id, 'admin'))!;
  const session = await startSession(store, admin);
  return {
    url: server.url(),
    dataDir,
    store,
    server,
    project,
    token,
    adminSession: session.token,
    configPath,
    async close() {
      await server.close();
      await store.close();
    },
  };
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

export async function http(
  url: string,
  options: { method?: 'GET' | 'POST' | 'PUT' | 'DELETE'; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<HttpResult> {
  const res = await request(url, {
    method: options.method ?? (options.body !== undefined ? 'POST' : 'GET'),
    headers: options.headers ?? {},
    ...(options.body !== undefined ? { body: options.body } : {}),
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

/** A `bin/coroner serve` child process; resolves once it prints its address. */
export interface ServeProcess {
  url: string;
  proc: ChildProcess;
  output(): string;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function spawnServe(dataDir: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const proc = spawn(path.join(packageRoot, 'bin', 'coroner'), ['serve', '--data', dataDir, '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, CORONER_ADMIN_PASSWORD: ADMIN_PASSWORD, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`coroner serve did not start within 20 s:\n${out}`)), 20_000);
    const check = () => {
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout!.off('data', check);
        resolve({
          url: m[1]!,
          proc,
          output: () => out,
          stop: async (signal = 'SIGTERM') => {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
            return exited;
          },
        });
      }
    };
    proc.stdout!.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`coroner serve exited (${code}) before listening:\n${out}`));
    });
  });
}

/** A corpus case's directory; throws a clear sentence when the corpus is missing. */
export function corpusCase(name: string): { core: string; exe: string; dir: string } {
  const dir = path.join(corpusDir(), 'corpus', name);
  const core = path.join(dir, 'core');
  const exe = path.join(dir, 'exe');
  if (!fs.existsSync(core) || !fs.existsSync(exe)) {
    throw new Error(`corpus case ${name} is missing (${dir}): build the corpus (scripts/corpus.sh) or set CORESNAP_CORPUS_DIR`);
  }
  return { core, exe, dir };
}

/** Runs bin/ptrace on a core and returns the snapshot's path (in `outDir`). */
export async function snapshot(core: string, exe: string, outDir: string, name: string, extra: string[] = []): Promise<string> {
  const out = path.join(outDir, `${name}.json`);
  const r = await runBin('ptrace', ['--core', core, exe, '-o', out, ...extra]);
  if (r.code !== 0 || !fs.existsSync(out)) throw new Error(`ptrace failed on ${core} (exit ${r.code}): ${r.stderr}`);
  return out;
}

export async function corpusSnapshot(name: string, outDir: string, extra: string[] = []): Promise<string> {
  const c = corpusCase(name);
  return snapshot(c.core, c.exe, outDir, `${name}${extra.length ? `-${extra.join('').replace(/[^a-z0-9]/gi, '')}` : ''}`, extra);
}

export function execFileP(file: string, args: string[], options: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { ...options, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A minimal valid report (the shape @backtrace/node sends), with its own uuid unless given. */
export function report(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    uuid: overrides.uuid ?? crypto.randomUUID(),
    timestamp: Math.floor(Date.now() / 1000),
    lang: 'nodejs',
    langVersion: process.version,
    agent: 'test',
    agentVersion: '1.0.0',
    mainThread: 'main',
    threads: { main: { name: 'main', fault: true, stack: [{ funcName: 'inner', library: '/app/a.js', line: 1 }, { funcName: 'outer', library: '/app/a.js', line: 9 }] } },
    attributes: { hostname: 'testhost', application: 'demo' },
    classifiers: ['Error'],
    ...overrides,
  };
}
