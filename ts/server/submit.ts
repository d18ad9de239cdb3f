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

import { createHash, randomUUID } from 'node:crypto';
import busboy from 'busboy';
import { CompiledGroupingRules, callstackOf, explainFingerprint } from '../grouping/fingerprint.js';
import { parseGroupingRules } from '../grouping/rules.js';
import type { AttributeValue, CrashObject, NewCrash, Project, Store } from '../store/types.js';
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
const MAX_ATTRIBUTES = 1024;
const MAX_ATTRIBUTE_KEY = 256;
const MAX_ATTRIBUTE_STRING = 64 * 1024;
const MAX_ATTACHMENTS = 64;

export function mountSubmissions(router: Router, limiter: SubmissionLimiter, limits: SubmissionLimits): void {
  const options = { maxBodyBytes: limits.maxSubmissionBytes };
  const rulesCache = new Map<number, CompiledGroupingRules>();

  const submit = async (ctx: RequestContext, project: Project, format: string | null) => {
    limiter.acquire(project.id);
    try {
      return await accept(ctx, project, format, rulesCache);
    } finally {
      limiter.release();
    }
  };

  router.route('POST', '/post', async (ctx) => {
    const project = await projectOfToken(ctx, ctx.query.get('token'));
    return submit(ctx, project, ctx.query.get('format'));
  }, options);

  router.route('POST', '/api/post', async (ctx) => {
    // morgue put sends a session token with universe and project; the on-prem docs use a submission token.
    const auth = await ctx.sessionFromRequest();
    const project = auth ? await ctx.requireProject(auth) : await projectOfToken(ctx, ctx.query.get('token'));
    if (ctx.query.get('resource') === '_kv') throw new HttpError(400, 'resource=_kv is not supported; use set through /api/query.');
    return submit(ctx, project, ctx.query.get('format'));
  }, options);

  router.route('POST', '/:universe/:token/:format', async (ctx) => {
    const project = await projectOfToken(ctx, ctx.params.token ?? null);
    const universe = await ctx.store.getUniverseById(project.universeId);
    if (!universe || universe.name !== ctx.params.universe) throw new HttpError(403, 'invalid token');
    return submit(ctx, project, ctx.params.format ?? null);
  }, options);
}

async function projectOfToken(ctx: RequestContext, tokenId: string | null): Promise<Project> {
  if (!tokenId) throw new HttpError(401, 'A submission token is required (token=...).');
  const token = await ctx.submissionToken(tokenId);
  const project = token && (await ctx.store.getProjectById(token.projectId));
  if (!project) throw new HttpError(403, 'invalid token');
  return project;
}

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

async function accept(ctx: RequestContext, project: Project, formatParam: string | null, rulesCache: Map<number, CompiledGroupingRules>) {
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

  const attributes: Record<string, AttributeValue> = {};
  let crash: NewCrash;
  if (minidump) {
    if (!looksMinidump) throw new HttpError(400, 'The minidump does not start with the MDMP signature.');
    addAttributes(attributes, decoded.fields);
    addAttributes(attributes, queryAttributes(ctx.query));
    crash = {
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
  } else {
    const report = parseReport(data);
    if (report.attributes !== undefined && (typeof report.attributes !== 'object' || report.attributes === null || Array.isArray(report.attributes))) {
      throw new HttpError(400, 'The report\'s "attributes" must be an object.');
    }
    addAttributes(attributes, Object.entries((report.attributes as Record<string, unknown> | undefined) ?? {}));
    addAttributes(attributes, decoded.fields);
    addAttributes(attributes, queryAttributes(ctx.query));
    if (report.uuid !== undefined && (typeof report.uuid !== 'string' || !/^[0-9A-Za-z-]{1,64}$/.test(report.uuid))) {
      throw new HttpError(400, 'The report\'s "uuid" must be a UUID string.');
    }
    const rules = await compiledRules(ctx.store, project.id, rulesCache);
    const grouped = { ...report, attributes };
    const attachments = [...decoded.attachments, ...embeddedAttachments(report)];
    if (attachments.length > MAX_ATTACHMENTS) throw new HttpError(400, `A submission may carry at most ${MAX_ATTACHMENTS} attachments.`);
    crash = {
      projectId: project.id,
      uuid: typeof report.uuid === 'string' ? report.uuid.toLowerCase() : randomUUID(),
      timestamp: numericTimestamp(report.timestamp) ?? Math.floor(Date.now() / 1000),
      fingerprint: explainFingerprint(grouped, rules).fingerprint,
      callstack: callstackOf(grouped, rules),
      classifiers: Array.isArray(report.classifiers) ? report.classifiers.filter((c): c is string => typeof c === 'string').slice(0, 64) : [],
      attributes,
      format: 'json',
      processed: true,
      body: data,
      contentType: 'application/json',
      attachments,
    };
  }
  const stored = await ctx.store.insertCrash(crash);
  const answer: Record<string, unknown> = { response: 'ok', _rxid: stored.object.rxid };
  if (ctx.query.has('_mod_sync')) {
    answer.object = stored.object.id.toString(16);
    answer.fingerprint = stored.object.fingerprint;
    answer.unique = !stored.existing;
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

function parseReport(data: Buffer): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `The report is not valid JSON: ${(err as Error).message}.`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new HttpError(400, 'The report must be a JSON object.');
  const o = parsed as Record<string, unknown>;
  // The docs' curl example wraps the report in {"body": {...}}; no SDK does, but accept it.
  if (typeof o.body === 'object' && o.body !== null && !Array.isArray(o.body) && o.threads === undefined && o.uuid === undefined) {
    return o.body as Record<string, unknown>;
  }
  return o;
}

/** ptrace snapshots carry `--resource` files inline: `attachments: [{ name, path, size, data (base64) }]`. */
function embeddedAttachments(report: Record<string, unknown>): Decoded['attachments'] {
  if (!Array.isArray(report.attachments)) return [];
  const out: Decoded['attachments'] = [];
  for (const a of report.attachments) {
    if (typeof a !== 'object' || a === null) continue;
    const { name, path, data } = a as Record<string, unknown>;
    if (typeof data !== 'string') continue;
    const label = typeof name === 'string' && name ? name : typeof path === 'string' ? path : 'attachment';
    out.push({ name: safeAttachmentName(label), contentType: 'application/octet-stream', data: Buffer.from(data, 'base64') });
  }
  return out;
}

function queryAttributes(query: URLSearchParams): Array<[string, string]> {
  return [...query.entries()].filter(([k]) => !RESERVED_PARAMS.has(k));
}

function addAttributes(into: Record<string, AttributeValue>, entries: Iterable<[string, unknown]>): void {
  for (const [key, value] of entries) {
    if (!key || key.length > MAX_ATTRIBUTE_KEY) continue;
    if (!(key in into) && Object.keys(into).length >= MAX_ATTRIBUTES) continue;
    let v: AttributeValue;
    if (value === null || typeof value === 'boolean' || typeof value === 'string') v = value;
    else if (typeof value === 'number') v = Number.isFinite(value) ? value : null;
    else if (typeof value === 'bigint') v = value.toString();
    else if (value === undefined) continue;
    else v = JSON.stringify(value);
    if (typeof v === 'string' && v.length > MAX_ATTRIBUTE_STRING) v = v.slice(0, MAX_ATTRIBUTE_STRING);
    // "__proto__" and friends must stay plain keys.
    Object.defineProperty(into, key, { value: v, enumerable: true, writable: true, configurable: true });
  }
}

function numericTimestamp(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n <= 0) return undefined;
  // Milliseconds (some SDKs) rather than seconds.
  return Math.floor(n > 1e11 ? n / 1000 : n);
}

function uuidFromHash(hash: Buffer): string {
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** An attachment's name as stored: no directories, no control characters, at most 255 characters. */
export function safeAttachmentName(raw: string): string {
  const base = raw.split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, 255);
  return clean && clean !== '.' && clean !== '..' ? clean : 'attachment';
}

/** A project's grouping rules, compiled once per version. */
export async function compiledRules(store: Store, projectId: number, cache: Map<number, CompiledGroupingRules>): Promise<CompiledGroupingRules> {
  const { version, rules } = await store.getGroupingRules(projectId);
  const cached = cache.get(projectId);
  if (cached && cached.version === version) return cached;
  const compiled = new CompiledGroupingRules(parseGroupingRules(rules), version);
  cache.set(projectId, compiled);
  return compiled;
}
