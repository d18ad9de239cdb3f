/**
 * What the daemon tests share: a test folder (world-traversable, so the analysis user can read the
 * programs in it), C programs that crash on demand, real cores, the handler run by hand (as the
 * kernel would run it), a loopback receiver that answers like coroner's /post, and coresnapd
 * started as a child process.
 */

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

import { packageRoot } from '../../../ts/native/index.js';
import { LOCK_FILE, TEST_ARCHIVE_PREFIX } from './core-pattern.js';

export const HANDLER = path.join(packageRoot, 'target', 'release', 'coresnap-handler');
export const COREDSNAPD = path.join(packageRoot, 'bin', 'coresnapd');
export const CORESNAP = path.join(packageRoot, 'bin', 'coresnap');

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a value (not undefined/false) or the time is up. */
export async function waitFor<T>(what: string | (() => string), check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(100);
  }
}

/** A fresh test folder under /tmp/cs-dt-* (short: the archive path goes into core_pattern). */
export function testDir(): string {
  const dir = fs.mkdtempSync(TEST_ARCHIVE_PREFIX);
  fs.chmodSync(dir, 0o755);
  return dir;
}

const CRASH_C = `
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void __attribute__((noinline)) crash_here(void) {
    volatile int *p = 0;
    *p = 42;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "segv";
    if (strcmp(mode, "wait") == 0) {
        printf("ready %d\\n", (int)getpid());
        fflush(stdout);
        for (;;) pause();
    }
    if (strcmp(mode, "abort") == 0) abort();
    crash_here();
    return 0;
}
`;

/** Compiles the crash program as `<dir>/<name>` (world-readable). */
export function compileCrash(dir: string, name = 'crashy'): string {
  const src = path.join(dir, `${name}.c`);
  const exe = path.join(dir, name);
  fs.writeFileSync(src, CRASH_C);
  execFileSync('gcc', ['-g', '-O0', '-o', exe, src]);
  fs.chmodSync(exe, 0o755);
  return exe;
}

/**
 * A real core of `exe` made the ordinary way (core_pattern `core`, or a coresnap test's
 * passthrough, which writes the same file): returns its path.
 */
export function makeCore(exe: string, dir: string, mode = 'segv'): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(path.join(dir, 'core'), { force: true });
  try {
    // A shared hold of the core_pattern lock: no test that points core_pattern elsewhere (the
    // triage tests catch every crash) runs while this core is being made.
    execFileSync('flock', ['-s', '-w', '600', LOCK_FILE, 'sh', '-c', `ulimit -c unlimited; exec "${exe}" ${mode}`], { cwd: dir, stdio: 'ignore' });
  } catch {
    // It crashed, as asked.
  }
  const core = path.join(dir, 'core');
  if (!fs.existsSync(core)) throw new Error(`${exe} ${mode} left no core in ${dir} (core_pattern is ${fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()})`);
  return core;
}

/** A process of `exe` waiting (`exe wait`): the /proc the handler reads while it spools. */
export async function startWaiting(exe: string, env: NodeJS.ProcessEnv = {}, cwd = path.dirname(exe)): Promise<ChildProcess & { pid: number }> {
  const child = spawn(exe, ['wait'], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, ...env }, cwd });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('error', reject);
  });
  return child as ChildProcess & { pid: number };
}

export interface HandlerRun {
  code: number | null;
  stderr: string;
}

/** Runs the handler as the kernel would: the core on stdin, the pid of a live process. */
export function runHandler(archive: string, core: string, pid: number, options: { signal?: number; limit?: string; comm?: string } = {}): HandlerRun {
  const args = [
    `--archive=${archive}`,
    String(pid),
    String(pid),
    String(options.signal ?? 11),
    options.limit ?? '18446744073709551615',
    '1',
    String(Math.floor(Date.now() / 1000)),
    options.comm ?? 'crashy',
  ];
  try {
    execFileSync(HANDLER, args, { input: fs.readFileSync(core), stdio: ['pipe', 'ignore', 'pipe'] });
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { status?: number; stderr?: Buffer };
    return { code: e.status ?? null, stderr: e.stderr?.toString() ?? '' };
  }
}

export interface Post {
  token: string | null;
  format: string | null;
  body: { uuid?: string; attributes?: Record<string, unknown>; threads?: unknown; [k: string]: unknown };
}

/** A loopback HTTP server answering like coroner's POST /post. */
export class Receiver {
  readonly posts: Post[] = [];
  /** Overrides the answer: return [status, body]. */
  answer: (post: Post) => [number, unknown] = () => [200, { response: 'ok', _rxid: `rx-${this.posts.length}` }];
  /** Hold every answer this long (a slow server). */
  delayMs = 0;
  private server: http.Server | null = null;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://localhost');
        let body: Post['body'] = {};
        try {
          const raw = Buffer.concat(chunks);
          const bytes = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
          body = JSON.parse(bytes.toString('utf8')) as Post['body'];
        } catch {
          body = {};
        }
        const post: Post = { token: url.searchParams.get('token'), format: url.searchParams.get('format'), body };
        const [status, answer] = url.pathname === '/post' ? this.answer(post) : [404, { error: 'no such path' }];
        // Stored before the answer goes out, as a server does: a client that dies while waiting
        // has still delivered.
        if (status === 200) this.posts.push(post);
        const send = () => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(answer));
        };
        if (this.delayMs > 0) setTimeout(send, this.delayMs);
        else send();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

export interface DaemonEnv {
  dir: string;
  archive: string;
  conf: string;
  coronerCf: string;
}

/** Writes coresnap.conf (`extra` lines appended) and coroner.cf for `tokens`. */
export function writeConfig(dir: string, write: string, tokens: Record<string, string>, extra: string[] = []): DaemonEnv {
  const archive = path.join(dir, 'archive');
  const conf = path.join(dir, 'coresnap.conf');
  const coronerCf = path.join(dir, 'coroner.cf');
  fs.writeFileSync(
    coronerCf,
    `[universe]\nname = test\nwrite = ${write}\n\n[tokens]\n${Object.entries(tokens)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n')}\n`,
  );
  fs.writeFileSync(
    conf,
    [
      '# coresnap.conf written by a test',
      `archive.path = ${archive}`,
      `coroner.cf = ${coronerCf}`,
      'upload.backoff.initial = 1s',
      'upload.backoff.max = 2s',
      'scan.interval = 2s',
      ...extra,
      '',
    ].join('\n'),
  );
  return { dir, archive, conf, coronerCf };
}

export class DaemonProcess {
  output = '';
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;

  constructor(conf: string, args: string[] = ['--no-install'], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(COREDSNAPD, ['-c', conf, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CORONER_CF: '', ...env },
    });
    this.child.stdout?.on('data', (c: Buffer) => (this.output += c.toString()));
    this.child.stderr?.on('data', (c: Buffer) => (this.output += c.toString()));
    // 'close', not 'exit': the output is all read by then.
    this.exited = new Promise((r) => this.child.once('close', (code) => r(code)));
  }

  waitForLog(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    return waitFor(() => `coresnapd to log ${pattern}\n--- log so far ---\n${this.output}`, () => this.output.match(pattern) ?? undefined, timeoutMs);
  }

  count(pattern: RegExp): number {
    return this.output.match(new RegExp(pattern.source, 'g'))?.length ?? 0;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export function statusOf(archive: string, uuid: string): Record<string, unknown> | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(archive, 'meta', `${uuid}.status.json`), 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export function uuidsIn(archive: string, state: string): string[] {
  try {
    return fs.readdirSync(path.join(archive, state)).filter((n) => /^[0-9a-f-]{36}$/.test(n));
  } catch {
    return [];
  }
}

export function readCounters(archive: string): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const line of fs.readFileSync(path.join(archive, 'state', 'counters'), 'utf8').split('\n')) {
      const [k, v] = line.split(' ');
      if (k && v) out[k] = Number(v);
    }
  } catch {
    // none yet
  }
  return out;
}
