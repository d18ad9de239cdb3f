/**
 * `morgue put <project> <file...> --format=json|minidump|...`: submits to the session's
 * submission endpoint (`/api/post` on its host, with the session token), as morgue 1.24.11 does:
 *
 *   plain       application/octet-stream, `--kv` pairs as query parameters;
 *               `--compression=gzip|deflate` says the file is already compressed so (sent as it
 *               is, with that Content-Encoding, as morgue does)
 *   multipart   with `--attachment` (or `--multipart`): form fields for `--kv`, then
 *               `upload_file`, then `attachment_<name>` per attachment
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { inflateSync } from 'node:zlib';

import { Command } from 'commander';
import { FormData } from 'undici';

import { InputError, UsageError } from '../cli/errors.js';
import { CoronerClient, type Params } from './client.js';
import { collect, write } from './context.js';
import { requireSession, resolveProject } from './session.js';
import { withSpinner } from './spinner.js';

export const PUT_FORMATS = ['json', 'minidump', 'btt', 'plcrash', 'symbols', 'proguard', 'sourcemap'] as const;

interface PutOptions {
  format?: string;
  kv?: string[];
  attachment?: string[];
  compression?: string;
  multipart?: boolean;
  json?: boolean;
}

/** `a:1,b:2` (repeatable) → [[a, 1], [b, 2]]; a value may itself hold colons. */
export function parseKvs(specs: string[] | undefined): Params {
  const pairs: Params = [];
  for (const spec of specs ?? []) {
    for (const item of spec.split(',')) {
      const colon = item.indexOf(':');
      if (colon <= 0) throw new UsageError(`--kv=${spec}: write key:value[,key:value...]`);
      pairs.push([item.slice(0, colon), item.slice(colon + 1)]);
    }
  }
  return pairs;
}

function readInput(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new InputError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

/** A file said to be compressed must be: the server would otherwise store garbage or refuse it. */
function checkCompressed(file: string, body: Buffer, compression: string): void {
  if (compression === 'gzip') {
    if (body.length < 18 || body[0] !== 0x1f || body[1] !== 0x8b) {
      throw new UsageError(`--compression=gzip: ${file} is not gzip data (compress it first, e.g. gzip -k ${file}, and put the .gz)`);
    }
    return;
  }
  try {
    inflateSync(body);
  } catch {
    throw new UsageError(`--compression=deflate: ${file} is not zlib deflate data`);
  }
}

export async function put(projectArg: string, files: string[], opts: PutOptions): Promise<void> {
  const format = opts.format;
  if (!format || !(PUT_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--format must be one of ${PUT_FORMATS.join(', ')}`);
  }
  if (opts.compression !== undefined && !['gzip', 'deflate'].includes(opts.compression)) {
    throw new UsageError('--compression must be gzip or deflate');
  }
  const kvs = parseKvs(opts.kv);
  const attachments = (opts.attachment ?? []).map((file) => ({ file, body: readInput(file) }));
  const multipart = Boolean(opts.multipart) || attachments.length > 0;
  if (multipart && opts.compression) throw new UsageError('--compression applies to plain uploads, not to multipart ones (--attachment, --multipart)');
  const inputs = files.map((file) => ({ file, body: readInput(file) }));

  const session = requireSession();
  const ref = resolveProject(projectArg, session);
  if (!session.submissionEndpoint) {
    throw new InputError('the session has no submission endpoint (the server listed no endpoints.post at login); log in again');
  }
  const client = new CoronerClient({ endpoint: session.submissionEndpoint, token: session.config.token });
  const results: Array<{ file: string; response?: Record<string, unknown>; error?: string }> = [];
  try {
    for (const input of inputs) {
      const params: Params = [
        ['universe', ref.universe],
        ['project', ref.project],
        ['format', format],
      ];
      try {
        let response: Record<string, unknown>;
        if (multipart) {
          const form = new FormData();
          for (const [k, v] of kvs) form.append(k, v);
          form.append('upload_file', new Blob([input.body]), path.basename(input.file));
          for (const a of attachments) form.append(`attachment_${path.basename(a.file)}`, new Blob([a.body]), path.basename(a.file));
          response = await withSpinner(`Uploading ${input.file}`, client.postMultipart('/api/post', params, form));
        } else {
          if (opts.compression) checkCompressed(input.file, input.body, opts.compression);
          response = await withSpinner(`Uploading ${input.file}`, client.postBinary('/api/post', [...params, ...kvs], input.body, opts.compression));
        }
        results.push({ file: input.file, response });
        if (!opts.json) {
          const id = typeof response._rxid === 'string' ? ` ${response._rxid}` : '';
          const fp = typeof response.fingerprint === 'string' ? ` (${response.unique ? 'unique' : 'not unique'}, fingerprint ${response.fingerprint})` : '';
          write(`${input.file}: Success:${id}${fp}\n`);
        }
      } catch (err) {
        if (inputs.length === 1) {
          if (err instanceof Error) err.message = `${input.file}: ${err.message}`;
          throw err;
        }
        results.push({ file: input.file, error: (err as Error).message });
        process.stderr.write(`morgue: ${input.file}: ${(err as Error).message}\n`);
      }
    }
  } finally {
    await client.close();
  }
  if (opts.json) write(`${JSON.stringify(results, null, 2)}\n`);
  const failed = results.filter((r) => r.error !== undefined).length;
  if (failed > 0) throw new InputError(`${failed} of ${results.length} submissions failed`);
}

export function putCommand(): Command {
  return new Command('put')
    .description('submit crash reports or dumps to a project')
    .argument('<project>', '[universe/]project')
    .argument('<file...>', 'the files to submit')
    .requiredOption('--format <format>', `json, minidump, btt, plcrash, symbols, proguard or sourcemap`)
    .option('--kv <key:value[,key:value]>', 'attributes to add (repeatable)', collect)
    .option('--attachment <file>', 'attach a file (repeatable; sends multipart)', collect)
    .option('--compression <gzip|deflate>', 'the file is already compressed so: send it with this Content-Encoding')
    .option('--multipart', 'send multipart even without attachments')
    .option('--json', "print the server's answers as JSON")
    .action(put);
}
