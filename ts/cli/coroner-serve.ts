/**
 * `coroner serve`: runs the object store. Opens (creating on first start) the data folder,
 * bootstraps the universe, listens, keeps `<data>/coroner.cf` pointing at itself, and shuts down
 * cleanly on SIGINT/SIGTERM (what was acknowledged is already on disk either way).
 */

import fs from 'node:fs';
import os from 'node:os';
import type { Command } from 'commander';
import { bootstrap, DEFAULT_LISTEN, DEFAULT_UNIVERSE, defaultDataDir, syncClientConfig } from '../coroner/admin.js';
import { bodyBudgetProblem, createCoronerServer, DEFAULT_LIMITS } from '../server/server.js';
import { openSqliteStore } from '../store/sqlite.js';
import { InputError, UsageError } from './errors.js';

interface ServeOptions {
  data?: string;
  listen: string;
  universe: string;
  tlsCert?: string;
  tlsKey?: string;
  maxSubmissionBytes?: string;
  maxBufferedBytes?: string;
  rateLimit?: string;
  publicUrl?: string;
}

/** `HOST:PORT`, `[v6]:PORT`, `:PORT` or `PORT`. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))?:?(\d+)$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--listen ${value}: expected HOST:PORT, e.g. ${DEFAULT_LISTEN}`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function positiveInt(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} ${value}: expected a whole number`);
  return n;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the object store (submissions, API) on one port')
    .option('--data <dir>', `data folder (default: ${defaultDataDir()})`)
    .option('--listen <host:port>', 'address to listen on', DEFAULT_LISTEN)
    .option('--universe <name>', 'universe to serve (created on first start)', DEFAULT_UNIVERSE)
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'and this private key (PEM)')
    .option('--max-submission-bytes <n>', 'largest submission body accepted (default 64 MiB)')
    .option('--max-buffered-bytes <n>', 'request bodies held in memory at once, over all clients; 429 beyond (default 512 MiB, 0: no limit)')
    .option('--rate-limit <n>', 'submissions a minute per project (default: no limit)')
    .option('--public-url <url>', 'the URL people open the console at, for links in alerts (default: the listen address)')
    .action(async (opts: ServeOptions) => {
      const { host, port } = parseListen(opts.listen);
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new UsageError('--tls-cert and --tls-key go together');
      const tls = opts.tlsCert && opts.tlsKey ? { cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) } : undefined;
      const maxSubmissionBytes = positiveInt('--max-submission-bytes', opts.maxSubmissionBytes);
      const maxBufferedBodyBytes = positiveInt('--max-buffered-bytes', opts.maxBufferedBytes);
      const rate = positiveInt('--rate-limit', opts.rateLimit);
      const tooSmall = bodyBudgetProblem({
        ...DEFAULT_LIMITS,
        ...(maxSubmissionBytes !== undefined ? { maxSubmissionBytes } : {}),
        ...(maxBufferedBodyBytes !== undefined ? { maxBufferedBodyBytes } : {}),
      });
      if (tooSmall) throw new UsageError(`--max-buffered-bytes: ${tooSmall}, which would be refused for ever`);
      const dataDir = opts.data ?? defaultDataDir();
      const store = await openSqliteStore({ dataDir });
      const { universe, created } = await bootstrap(store, opts.universe);
      const server = await createCoronerServer({
        store,
        universe: universe.name,
        host,
        port,
        ...(tls ? { tls } : {}),
        ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}),
        limits: {
          ...(maxSubmissionBytes !== undefined ? { maxSubmissionBytes } : {}),
          ...(maxBufferedBodyBytes !== undefined ? { maxBufferedBodyBytes } : {}),
          ...(rate !== undefined ? { submissionsPerMinutePerProject: rate } : {}),
        },
      });
      try {
        await server.listen();
      } catch (err) {
        await store.close();
        throw new InputError(`cannot listen on ${opts.listen}: ${(err as Error).message}`);
      }
      const wildcard = host === '0.0.0.0' || host === '::';
      const writeUrl = wildcard ? `${tls ? 'https' : 'http'}://${os.hostname()}:${server.endpoints.post[0]!.port}` : server.url();
      const cf = syncClientConfig(dataDir, universe.name, writeUrl, created?.token);
      const out = (line: string) => process.stdout.write(`coroner: ${line}\n`);
      if (created) {
        out(`first start: created universe ${universe.name}, project ${created.project.name} and user admin`);
        if (created.passwordGenerated) out(`admin password: ${created.password}  (shown once; set CORONER_ADMIN_PASSWORD to choose it)`);
        out(`wrote ${cf} (coroner -c ${cf} put blackhole blackhole <file>)`);
      }
      out(`universe ${universe.name}, data ${dataDir}`);
      out(`listening on ${server.url()}`);

      const sweep = setInterval(() => void store.deleteExpiredSessions().catch(() => {}), 3600_000);
      sweep.unref();
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        out(`${signal}: stopping`);
        clearInterval(sweep);
        await server.close();
        await store.close();
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
    });
}
