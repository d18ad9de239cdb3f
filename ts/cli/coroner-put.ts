/**
 * `coroner [-c coroner.cf] put [-u] <project> <tokenname> <file>...`: uploads snapshots (and
 * minidumps) the way the vendor's client does (coresnapd runs exactly this). The token named
 * `<tokenname>` in coroner.cf's `[tokens]` (or `[token]`) section goes with each file to
 * `<write>/post?format=json&token=...`; minidumps (magic `MDMP`) go with `format=minidump`.
 * Transient failures (network, 5xx, 429) are retried a few times; a refused file (400, 401,
 * 403, 413) is not. One line per failure on stderr; the exit status is non-zero if any failed.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Command } from 'commander';
import ini from 'ini';
import { Agent, request, type Dispatcher } from 'undici';
import { InputError, UsageError } from './errors.js';

export interface ClientConfig {
  file: string;
  universe: string | undefined;
  write: string;
  tokens: Record<string, string>;
  verifyPeer: boolean;
}

/** The config file: -c, else ~/.coroner.cf, else /usr/local/etc/coroner.cf. */
export function findClientConfig(given: string | undefined): string {
  if (given) return given;
  const candidates = [path.join(os.homedir(), '.coroner.cf'), '/usr/local/etc/coroner.cf'];
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) throw new UsageError(`no client configuration: give one with -c (looked for ${candidates.join(' and ')})`);
  return found;
}

export function readClientConfig(file: string): ClientConfig {
  const text = fs.readFileSync(file, 'utf8');
  const cf = ini.parse(text) as Record<string, Record<string, unknown> | undefined>;
  const universe = cf.universe ?? {};
  const write = typeof universe.write === 'string' ? universe.write.trim() : '';
  if (!write) throw new InputError(`${file}: [universe] has no "write = http(s)://host:port" line`);
  let url: URL;
  try {
    url = new URL(/^[a-z]+:\/\//i.test(write) ? write : `http://${write}`);
  } catch {
    throw new InputError(`${file}: write = ${write} is not a URL`);
  }
  const tokens: Record<string, string> = {};
  for (const section of ['token', 'tokens']) {
    for (const [k, v] of Object.entries(cf[section] ?? {})) if (typeof v === 'string') tokens[k] = v.trim();
  }
  const off = (v: unknown) => v === false || v === 'false' || v === '0' || v === 'no';
  return {
    file,
    universe: typeof universe.name === 'string' ? universe.name : undefined,
    write: url.href.replace(/\/$/, ''),
    tokens,
    verifyPeer: !off(universe['curl.ssl_verifypeer']),
  };
}

export interface PutResult {
  file: string;
  ok: boolean;
  rxid?: string;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Uploads one file; resolves with its receipt or a one-line reason. */
export async function putFile(
  config: ClientConfig,
  token: string,
  file: string,
  options: { attempts?: number; dispatcher?: Dispatcher; backoffMs?: number } = {},
): Promise<PutResult> {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (err) {
    return { file, ok: false, error: (err as Error).message };
  }
  if (data.length === 0) return { file, ok: false, error: 'the file is empty' };
  const minidump = data.subarray(0, 4).toString('latin1') === 'MDMP';
  const headers: Record<string, string> = { 'content-type': minidump ? 'application/octet-stream' : 'application/json' };
  // Snapshots of many threads compress well; small ones are not worth it.
  let body = data;
  if (data.length > 32 * 1024) {
    body = zlib.gzipSync(data);
    headers['content-encoding'] = 'gzip';
  }
  const url = `${config.write}/post?format=${minidump ? 'minidump' : 'json'}&token=${encodeURIComponent(token)}`;
  const attempts = options.attempts ?? 4;
  let lastError = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    let retryAfterMs = (options.backoffMs ?? 500) * 2 ** (attempt - 1);
    try {
      const res = await request(url, {
        method: 'POST',
        headers,
        body,
        ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      const text = await res.body.text();
      let json: { _rxid?: unknown; error?: { message?: unknown } } | undefined;
      try {
        json = JSON.parse(text) as typeof json;
      } catch {
        json = undefined;
      }
      if (res.statusCode === 200 && json && typeof json._rxid === 'string') return { file, ok: true, rxid: json._rxid };
      const message = typeof json?.error?.message === 'string' ? json.error.message : text.slice(0, 200) || 'no answer';
      lastError = `HTTP ${res.statusCode}: ${message}`;
      const transient = res.statusCode >= 500 || res.statusCode === 429 || res.statusCode === 408;
      if (!transient) return { file, ok: false, error: lastError };
      const ra = Number(res.headers['retry-after']);
      if (Number.isFinite(ra) && ra > 0) retryAfterMs = Math.min(ra * 1000, 10_000);
    } catch (err) {
      lastError = (err as Error).message;
      // A certificate the client refuses will be refused again: no point retrying.
      const code = String((err as NodeJS.ErrnoException).code ?? (err as { cause?: NodeJS.ErrnoException }).cause?.code ?? '');
      if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
        return { file, ok: false, error: `${lastError} (set curl.ssl_verifypeer = false in [universe] to accept a self-signed server)` };
      }
    }
    if (attempt < attempts) await sleep(retryAfterMs);
  }
  return { file, ok: false, error: `${lastError} (after ${attempts} attempts)` };
}

export function registerPut(program: Command): void {
  program
    .command('put <project> <tokenname> <files...>')
    .description('upload snapshots to the object store named in coroner.cf')
    .option('-c, --config <file>', 'client configuration (coroner.cf)')
    .option('-u, --unlink', 'delete each file once it is stored')
    .option('--json', 'print one JSON result per file')
    .action(async (project: string, tokenName: string, files: string[], opts: { config?: string; unlink?: boolean; json?: boolean }) => {
      const config = readClientConfig(findClientConfig(opts.config ?? (program.opts() as { config?: string }).config));
      const token = config.tokens[tokenName];
      if (!token) {
        const known = Object.keys(config.tokens);
        throw new InputError(`${config.file} has no token named "${tokenName}" in [tokens]${known.length ? ` (it has: ${known.join(', ')})` : ''}`);
      }
      const dispatcher = config.verifyPeer ? undefined : new Agent({ connect: { rejectUnauthorized: false } });
      let failed = 0;
      for (const file of files) {
        const result = await putFile(config, token, file, dispatcher ? { dispatcher } : {});
        if (result.ok && opts.unlink) {
          try {
            fs.unlinkSync(file);
          } catch (err) {
            result.error = `stored as ${result.rxid}, but not removed: ${(err as Error).message}`;
          }
        }
        if (opts.json) process.stdout.write(`${JSON.stringify({ project, ...result })}\n`);
        else if (result.ok) process.stdout.write(`${file}: ${result.rxid}\n`);
        if (!result.ok || result.error) {
          failed++;
          process.stderr.write(`coroner: ${file}: ${result.error}\n`);
        }
      }
      await dispatcher?.close();
      if (failed) process.exitCode = 1;
    });
}
