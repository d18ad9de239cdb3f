/**
 * Turning a submitted report (JSON: an SDK's report or a ptrace snapshot) into the crash the
 * store keeps: parse it, check its shape, gather its attributes (report, then form fields, then
 * query parameters: later ones win), group it (fingerprint and callstack, by the project's rules)
 * and pull out attachments it carries inline.
 *
 * This is pure work on bytes, so the store runs it where it is cheapest (the SQLite store: on its
 * writer thread, just before the insert), and the HTTP thread only moves bytes. A report that
 * cannot be taken throws `InvalidSubmissionError`, whose message is a sentence for the submitter.
 */

import { randomUUID } from 'node:crypto';
import { type CompiledGroupingRules, groupReport } from '../grouping/fingerprint.js';
import { type AttributeValue, InvalidSubmissionError, type NewCrash, type RawSubmission } from '../store/types.js';

export const MAX_ATTRIBUTES = 1024;
export const MAX_ATTRIBUTE_KEY = 256;
export const MAX_ATTRIBUTE_STRING = 64 * 1024;
export const MAX_ATTACHMENTS = 64;

/** The crash a JSON submission becomes, without the store's id and receipt yet. */
export function prepareSubmission(submission: RawSubmission, rules: CompiledGroupingRules): NewCrash {
  const report = parseReport(submission.body);
  if (report.attributes !== undefined && (typeof report.attributes !== 'object' || report.attributes === null || Array.isArray(report.attributes))) {
    throw new InvalidSubmissionError('The report\'s "attributes" must be an object.');
  }
  const attributes: Record<string, AttributeValue> = {};
  addAttributes(attributes, Object.entries((report.attributes as Record<string, unknown> | undefined) ?? {}));
  addAttributes(attributes, submission.fields);
  addAttributes(attributes, submission.queryAttributes);
  if (report.uuid !== undefined && (typeof report.uuid !== 'string' || !/^[0-9A-Za-z-]{1,64}$/.test(report.uuid))) {
    throw new InvalidSubmissionError('The report\'s "uuid" must be a UUID string.');
  }
  const attachments = [...submission.attachments, ...embeddedAttachments(report)];
  if (attachments.length > MAX_ATTACHMENTS) throw new InvalidSubmissionError(`A submission may carry at most ${MAX_ATTACHMENTS} attachments.`);
  // The kind of crash may come from an attribute given outside the report (a form field).
  const { fingerprint, callstack } = groupReport({ ...report, attributes }, rules);
  return {
    projectId: submission.projectId,
    uuid: typeof report.uuid === 'string' ? report.uuid.toLowerCase() : randomUUID(),
    timestamp: numericTimestamp(report.timestamp) ?? Math.floor(Date.now() / 1000),
    fingerprint,
    callstack,
    classifiers: Array.isArray(report.classifiers) ? report.classifiers.filter((c): c is string => typeof c === 'string').slice(0, 64) : [],
    attributes,
    format: 'json',
    processed: true,
    body: submission.body,
    contentType: 'application/json',
    attachments,
  };
}

function parseReport(data: Uint8Array): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch (err) {
    throw new InvalidSubmissionError(`The report is not valid JSON: ${(err as Error).message}.`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidSubmissionError('The report must be a JSON object.');
  const o = parsed as Record<string, unknown>;
  // The docs' curl example wraps the report in {"body": {...}}; no SDK does, but accept it.
  if (typeof o.body === 'object' && o.body !== null && !Array.isArray(o.body) && o.threads === undefined && o.uuid === undefined) {
    return o.body as Record<string, unknown>;
  }
  return o;
}

/** ptrace snapshots carry `--resource` files inline: `attachments: [{ name, path, size, data (base64) }]`. */
function embeddedAttachments(report: Record<string, unknown>): RawSubmission['attachments'] {
  if (!Array.isArray(report.attachments)) return [];
  const out: RawSubmission['attachments'] = [];
  for (const a of report.attachments) {
    if (typeof a !== 'object' || a === null) continue;
    const { name, path, data } = a as Record<string, unknown>;
    if (typeof data !== 'string') continue;
    const label = typeof name === 'string' && name ? name : typeof path === 'string' ? path : 'attachment';
    out.push({ name: safeAttachmentName(label), contentType: 'application/octet-stream', data: Buffer.from(data, 'base64') });
  }
  return out;
}

/** Adds `entries` to `into` as attribute values (later keys win), within the limits above. */
export function addAttributes(into: Record<string, AttributeValue>, entries: Iterable<[string, unknown]>): void {
  let count = Object.keys(into).length;
  for (const [key, value] of entries) {
    if (!key || key.length > MAX_ATTRIBUTE_KEY) continue;
    const known = Object.prototype.hasOwnProperty.call(into, key);
    if (!known && count >= MAX_ATTRIBUTES) continue;
    let v: AttributeValue;
    if (value === null || typeof value === 'boolean' || typeof value === 'string') v = value;
    else if (typeof value === 'number') v = Number.isFinite(value) ? value : null;
    else if (typeof value === 'bigint') v = value.toString();
    else if (value === undefined) continue;
    else v = JSON.stringify(value);
    if (typeof v === 'string' && v.length > MAX_ATTRIBUTE_STRING) v = v.slice(0, MAX_ATTRIBUTE_STRING);
    if (key === '__proto__') {
      // "__proto__" must stay a plain key, not the object's prototype.
      Object.defineProperty(into, key, { value: v, enumerable: true, writable: true, configurable: true });
    } else {
      into[key] = v;
    }
    if (!known) count++;
  }
}

/** Seconds since the epoch from a number or a numeric string (milliseconds are recognised), or undefined. */
export function numericTimestamp(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n <= 0) return undefined;
  // Milliseconds (some SDKs) rather than seconds.
  return Math.floor(n > 1e11 ? n / 1000 : n);
}

/** An attachment's name as stored: no directories, no control characters, at most 255 characters. */
export function safeAttachmentName(raw: string): string {
  const base = raw.split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, 255);
  return clean && clean !== '.' && clean !== '..' ? clean : 'attachment';
}
