/**
 * `morgue get <project> <object...> [--resource=r] [-o path]`: GET /api/get per object, the body
 * written to a file named by the server's Content-Disposition (else `<oid>.bin` or
 * `<oid>:<resource>`), to `-o FILE`, into `-o DIR` for several objects, or to stdout with `-o -`.
 * A gzip or deflate Content-Encoding is undone.
 */

import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, inflateSync } from 'node:zlib';

import { Command } from 'commander';

import { UsageError } from '../cli/errors.js';
import { withProject, write } from './context.js';
import { ServerError } from './errors.js';
import { withSpinner } from './spinner.js';

/** `3`, `0x3`, `#3` → `3` (object ids are hex). */
export function normalizeObjectId(input: string): string {
  const hex = input.replace(/^#/, '').replace(/^0x/i, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) throw new UsageError(`"${input}" is not an object id (hex, as list prints it: #3 or 3)`);
  return hex;
}

/** The `filename` of a Content-Disposition header, reduced to a plain file name (never a path). */
export function dispositionFilename(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const match = /filename\*?=(?:UTF-8'')?("([^"]*)"|[^;]*)/i.exec(value);
  const raw = match ? (match[2] ?? match[1] ?? '').trim() : '';
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    name = raw;
  }
  const base = path.basename(name.replace(/\\/g, '/'));
  return base === '' || base === '.' || base === '..' ? undefined : base;
}

function decode(body: Buffer, encoding: string | string[] | undefined): Buffer {
  const e = (Array.isArray(encoding) ? encoding[0] : encoding)?.toLowerCase();
  try {
    if (e === 'gzip' || e === 'x-gzip') return gunzipSync(body);
    if (e === 'deflate') return inflateSync(body);
  } catch (err) {
    throw new ServerError(`the server sent a ${e} body that does not decompress (${(err as Error).message})`, 200);
  }
  return body;
}

interface GetOptions {
  resource?: string;
  output?: string;
  json?: boolean;
}

export async function get(projectArg: string, objectArgs: string[], opts: GetOptions): Promise<void> {
  const objects = objectArgs.map(normalizeObjectId);
  const out = opts.output;
  const toStdout = out === '-';
  let outIsDir = false;
  if (out && !toStdout) {
    let st;
    try {
      st = statSync(out);
    } catch {
      st = undefined;
    }
    if (objects.length > 1) {
      if (st && !st.isDirectory()) throw new UsageError(`-o ${out}: several objects need a folder, and ${out} is not one`);
      mkdirSync(out, { recursive: true });
      outIsDir = true;
    } else if (st?.isDirectory()) {
      outIsDir = true;
    }
  }
  if (toStdout && objects.length > 1) throw new UsageError('-o - writes one object; give one object or -o <folder>');
  const written: Array<{ object: string; file: string | null; bytes: number }> = [];
  await withProject(projectArg, async (client, ref) => {
    for (const oid of objects) {
      const params: Array<[string, string]> = [
        ['universe', ref.universe],
        ['project', ref.project],
        ['object', oid],
      ];
      if (opts.resource) params.push(['resource', opts.resource]);
      const response = await withSpinner(`Fetching object ${oid}`, client.getRaw('/api/get', params));
      const body = decode(response.body, response.headers['content-encoding']);
      if (toStdout) {
        process.stdout.write(body);
        written.push({ object: oid, file: null, bytes: body.length });
        continue;
      }
      const fallback = opts.resource ? `${oid}:${opts.resource}` : `${oid}.bin`;
      const name = dispositionFilename(response.headers['content-disposition']) ?? fallback;
      const file = out && !outIsDir ? out : path.join(out ?? '.', name);
      writeFileSync(file, body);
      written.push({ object: oid, file, bytes: body.length });
      if (!opts.json) write(`Wrote ${body.length} bytes to ${file}\n`);
    }
  });
  if (opts.json && !toStdout) write(`${JSON.stringify(written, null, 2)}\n`);
}

export function getCommand(): Command {
  return new Command('get')
    .description('download objects (the report, or one of its resources or attachments)')
    .argument('<project>', '[universe/]project')
    .argument('<object...>', 'object ids, in hex as list prints them')
    .option('--resource <name>', 'a resource of the object (json.gz, txt.gz, an attachment name, _attachment-<id>)')
    .option('-o, --output <path>', 'the file to write (a folder for several objects; - for stdout)')
    .option('--json', 'print what was written as JSON')
    .action(get);
}
