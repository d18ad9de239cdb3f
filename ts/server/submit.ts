/**
 * Crash submissions: the endpoints SDKs, `coroner put` and coresnapd post to
 * (backtrace-compat.md §3).
 *
 *   POST /post?format=json&token=T[&k=v...]        submission token in the query
 *   POST /api/post?format=...&token=S&universe=U&project=P   a session token (morgue put), or a submission token
 *   POST /<universe>/<token>/<format>              the hosted front door's path form
 *
 * Bodies: the report itself (JSON, or a minidump), optionally gzip/deflate encoded (the router
 * undoes that), or multipart/form-data with `upload_file` / `upload_file_minidump`, files in
 * `attachment_<name>` and other fields as attributes. Extra query parameters become attributes.
 * With `object=<_rxid or hex id>&attachment_name=<name>` the raw body is added as an attachment
 * of a stored crash instead. The answer `{"response":"ok","_rxid":...}` is sent only once the
 * crash is committed; a report whose uuid the project already has answers the stored `_rxid`.
 */

import { createHash } from 'node:crypto';
import busboy from 'busboy';
import { MAX_ATTACHMENTS, MAX_ATTRIBUTE_STRING, MAX_ATTRIBUTES, addAttributes, numericTimestamp, safeAttachmentName } from '../ingest/prepare.js';
import type { AttributeValue, CrashObject, NewCrash, Project, SubmissionReceipt } from '../store/types.js';
import { HttpError, type RequestContext, type Router } from './router.js';

export interface SubmissionLimits {
  /** Largest submission body, compressed or not (default 64 MiB): 413 beyond. */
  maxSubmissionBytes: number;
  /** Submissions being processed at once, over all clients: 429 beyond (0 = no limit). */
  maxInFlightSubmissions: number;
  /** Accepted submissions per minute and project: 429 beyond (0 = no limit). */
  submissionsPerMinutePerProject: number;
}

/** The 429 decisions: a global in-flight cap and a per-project token bucket. */
export class SubmissionLimiter {
  private inFlight = 0;
  private readonly buckets = new Map<number, { tokens: number; at: number }>();
  constructor(private readonly limits: SubmissionLimits) {}

  /** Takes a slot for a submission to `projectId`, or throws HttpError 429. Call `release` after. */
  acquire(projectId: number, now = Date.now()): void {
    const { maxInFlightSubmissions: cap, submissionsPerMinutePerProject: perMinute } = this.limits;
    if (cap > 0 && this.inFlight >= cap) {
      throw new HttpError(429, 'The server is busy with other submissions; retry shortly.', undefined, { 'Retry-After': '1' });
    }
    if (perMinute > 0) {
      const b = this.buckets.get(projectId) ?? { tokens: perMinute, at: now };
      b.tokens = Math.min(perMinute, b.tokens + ((now - b.at) / 60_000) * perMinute);
      b.at = now;
      if (b.tokens < 1) {
        this.buckets.set(projectId, b);
        const wait = Math.ceil(((1 - b.tokens) / perMinute) * 60);
        throw new HttpError(429, `This project's submission limit (${perMinute} a minute) is reached; retry in ${wait} seconds.`, undefined, {
          'Retry-After': String(wait),
        });
      }
      b.tokens -= 1;
      this.buckets.set(projectId, b);
    }
    this.inFlight++;
  }

  release(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
  }
}

/** Query parameters that steer the submission rather than describe the crash. */
const RESERVED_PARAMS = new Set(['token', 'format', 'universe', 'project', '_mod_sync', 'object', 'attachment_name', 'attachment_id', 'resource']);

export function mountSubmissions(router: Router, limiter: SubmissionLimiter, limits: SubmissionLimits): void {
  const options = { maxBodyBytes: limits.maxSubmissionBytes };

  const submit = async (ctx: RequestContext, project: Project, format: string | null) => {
    limiter.acquire(project.id);
    try {
      return await accept(ctx, project, format);
    } finally {
      limiter.release();
    }
  };

  // Every submission names its token: remembering what a token stands for saves the event loop
  // three lookups per report. An entry is dropped as soon as this store's configuration changes
  // (a token revoked, a project deleted) and after a second in any case (a change made by another
  // process, such as `coroner token delete`).
  const tokens = new Map<string, { project: Project; universe: string; version: number; at: number }>();
  const projectOfToken = async (ctx: RequestContext, tokenId: string | null): Promise<{ project: Project; universe: string }> => {
    if (!tokenId) throw new HttpError(401, 'A submission token is required (token=...).');
    const now = Date.now();
    const known = tokens.get(tokenId);
    if (known && known.version === ctx.store.configVersion && now - known.at < TOKEN_CACHE_MS) return known;
    const version = ctx.store.configVersion;
    const token = await ctx.submissionToken(tokenId);
    const project = token && (await ctx.store.getProjectById(token.projectId));
    const universe = project && (await ctx.store.getUniverseById(project.universeId));
    if (!project || !universe) {
      tokens.delete(tokenId);
      throw new HttpError(403, 'invalid token');
    }
    if (tokens.size >= 10_000) tokens.clear();
    const entry = { project, universe: universe.name, version, at: now };
    tokens.set(tokenId, entry);
    return entry;
  };

  router.route('POST', '/post', async (ctx) => {
    const { project } = await projectOfToken(ctx, ctx.query.get('token'));
    return submit(ctx, project, ctx.query.get('format'));
  }, options);

  router.route('POST', '/api/post', async (ctx) => {
    // morgue put sends a session token with universe and project; the on-prem docs use a submission token.
    const auth = await ctx.sessionFromRequest();
    const project = auth ? await ctx.requireProject(auth) : (await projectOfToken(ctx, ctx.query.get('token'))).project;
    if (ctx.query.get('resource') === '_kv') throw new HttpError(400, 'resource=_kv is not supported; use set through /api/query.');
    return submit(ctx, project, ctx.query.get('format'));
  }, options);

  router.route('POST', '/:universe/:token/:format', async (ctx) => {
    const { project, universe } = await projectOfToken(ctx, ctx.params.token ?? null);
    if (universe !== ctx.params.universe) throw new HttpError(403, 'invalid token');
    return submit(ctx, project, ctx.params.format ?? null);
  }, options);
}

/** How long a token's project is remembered without looking again (see `projectOfToken`). */
const TOKEN_CACHE_MS = 1000;

interface Part {
  field: string;
  filename: string | undefined;
  contentType: string;
  data: Buffer;
}

interface Decoded {
  main: { data: Buffer; minidump: boolean } | undefined;
  attachments: Array<{ name: string; contentType: string; data: Uint8Array }>;
  fields: Array<[string, string]>;
}

async function accept(ctx: RequestContext, project: Project, formatParam: string | null) {
  const objectRef = ctx.query.get('object');
  if (objectRef !== null) return attachToExisting(ctx, project, objectRef);

  const decoded = await decodeBody(ctx);
  const format = (formatParam ?? '').toLowerCase();
  if (!decoded.main || decoded.main.data.length === 0) throw new HttpError(400, 'The submission has no report (an empty body, or no upload_file part).');
  const data = decoded.main.data;
  const looksMinidump = data.subarray(0, 4).toString('latin1') === 'MDMP';
  const minidump = decoded.main.minidump || format === 'minidump' || (looksMinidump && format !== 'json');
  if (!minidump && format !== '' && format !== 'json' && format !== 'btt') {
    throw new HttpError(400, `Submissions of format "${format}" are not supported (json, btt, minidump).`);
  }

  if (!minidump) {
    // Parsing and grouping happen off the event loop, where the store writes (ts/ingest/prepare.ts).
    const receipt = await ctx.store.insertSubmission({
      projectId: project.id,
      body: data,
      fields: decoded.fields,
      queryAttributes: queryAttributes(ctx.query),
      attachments: decoded.attachments,
    });
    return answerFor(ctx, receipt);
  }
  if (!looksMinidump) throw new HttpError(400, 'The minidump does not start with the MDMP signature.');
  const attributes: Record<string, AttributeValue> = {};
  addAttributes(attributes, decoded.fields);
  addAttributes(attributes, queryAttributes(ctx.query));
  const crash: NewCrash = {
    projectId: project.id,
    // The same dump sent twice (a client retrying) is one crash.
    uuid: uuidFromHash(createHash('sha256').update(data).digest()),
    timestamp: numericTimestamp(attributes.timestamp) ?? Math.floor(Date.now() / 1000),
    fingerprint: '',
    callstack: [],
    classifiers: [],
    attributes,
    format: 'minidump',
    processed: false,
    body: data,
    contentType: 'application/octet-stream',
    attachments: decoded.attachments,
  };
  const stored = await ctx.store.insertCrash(crash);
  return answerFor(ctx, { id: stored.object.id, rxid: stored.object.rxid, fingerprint: stored.object.fingerprint, existing: stored.existing });
}

function answerFor(ctx: RequestContext, receipt: SubmissionReceipt): Record<string, unknown> {
  const answer: Record<string, unknown> = { response: 'ok', _rxid: receipt.rxid };
  if (ctx.query.has('_mod_sync')) {
    answer.object = receipt.id.toString(16);
    answer.fingerprint = receipt.fingerprint;
    answer.unique = !receipt.existing;
  }
  return answer;
}

async function attachToExisting(ctx: RequestContext, project: Project, ref: string) {
  const name = safeAttachmentName(ctx.query.get('attachment_name') ?? '');
  if (!ctx.query.get('attachment_name')) throw new HttpError(400, 'An attachment needs a name (attachment_name=...).');
  let object: CrashObject | undefined = await ctx.store.findObjectByRxid(project.id, ref);
  if (!object && /^[0-9a-fA-F]{1,13}$/.test(ref)) object = await ctx.store.getObject(project.id, parseInt(ref, 16));
  if (!object) throw new HttpError(404, `There is no object "${ref}" in project "${project.name}".`);
  const contentType = String(ctx.headers['content-type'] ?? 'application/octet-stream').split(';')[0]!.trim() || 'application/octet-stream';
  const info = await ctx.store.addAttachment(project.id, object.id, name, contentType, ctx.body);
  return { response: 'ok', _rxid: object.rxid, attachment_name: info.name, attachment_id: String(info.id), object: object.id.toString(16) };
}

async function decodeBody(ctx: RequestContext): Promise<Decoded> {
  const contentType = String(ctx.headers['content-type'] ?? '');
  if (!/^multipart\/form-data/i.test(contentType)) return { main: { data: ctx.body, minidump: false }, attachments: [], fields: [] };
  const parts: Part[] = [];
  const fields: Array<[string, string]> = [];
  await new Promise<void>((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: { 'content-type': contentType },
        limits: { parts: 2 * MAX_ATTACHMENTS + MAX_ATTRIBUTES, fields: MAX_ATTRIBUTES, fieldSize: MAX_ATTRIBUTE_STRING, files: MAX_ATTACHMENTS + 2 },
      });
    } catch (err) {
      reject(new HttpError(400, `The multipart body cannot be read: ${(err as Error).message}.`));
      return;
    }
    const fail = (message: string) => reject(new HttpError(400, message));
    bb.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      // A part cut short errors on its own stream as well as on busboy.
      stream.on('error', (err: Error) => fail(`The multipart body is malformed: ${err.message}.`));
      stream.on('end', () => parts.push({ field, filename: info.filename, contentType: info.mimeType, data: Buffer.concat(chunks) }));
    });
    bb.on('field', (name, value, info) => {
      if (info.valueTruncated) return fail(`The form field "${name.slice(0, 64)}" is longer than ${MAX_ATTRIBUTE_STRING} bytes.`);
      fields.push([name, value]);
    });
    bb.on('partsLimit', () => fail('The multipart body has too many parts.'));
    bb.on('filesLimit', () => fail('The multipart body has too many files.'));
    bb.on('fieldsLimit', () => fail('The multipart body has too many fields.'));
    bb.on('error', (err: Error) => fail(`The multipart body is malformed: ${err.message}.`));
    bb.on('close', () => resolve());
    bb.end(ctx.body);
  });
  let main: Decoded['main'];
  const attachments: Decoded['attachments'] = [];
  for (const p of parts) {
    if (p.field === 'upload_file' || p.field === 'upload_file_minidump') {
      if (main) throw new HttpError(400, 'The multipart body has more than one upload_file part.');
      main = { data: p.data, minidump: p.field === 'upload_file_minidump' };
    } else {
      const name = p.field.startsWith('attachment_') && p.field.length > 'attachment_'.length ? p.field.slice('attachment_'.length) : p.filename ?? p.field;
      attachments.push({ name: safeAttachmentName(name), contentType: p.contentType || 'application/octet-stream', data: p.data });
    }
  }
  // A form that carries a report as a plain field (some clients do) rather than a file.
  if (!main) {
    const i = fields.findIndex(([k]) => k === 'upload_file');
    if (i >= 0) {
      main = { data: Buffer.from(fields[i]![1]), minidump: false };
      fields.splice(i, 1);
    }
  }
  return { main, attachments, fields };
}

function queryAttributes(query: URLSearchParams): Array<[string, string]> {
  return [...query.entries()].filter(([k]) => !RESERVED_PARAMS.has(k));
}

function uuidFromHash(hash: Buffer): string {
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
