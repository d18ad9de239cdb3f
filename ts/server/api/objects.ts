/**
 * Object endpoints: `GET /api/get` (a report's bytes, or one of its attachments), `GET /api/list`
 * (an object's attachments) and `POST /api/delete` (objects by id, or every object a query
 * matches). Shapes as morgue 1.24 reads them (backtrace-compat.md §1.6).
 *
 * `/api/get` resources: none, `raw` or `json` → the report as stored; `json.gz` → the same
 * gzipped with `Content-Encoding: gzip`; `txt`/`txt.gz` → a short text summary; `_attachment-<id>`,
 * `attachment_id=<id>`, `attachment_name=<name>` or a resource naming an attachment → that
 * attachment. Every answer carries `Content-Disposition` (morgue 1.24.11 splits it unconditionally).
 */

import zlib from 'node:zlib';
import type { CrashObject, Project, Store } from '../../store/types.js';
import { QueryError } from '../../query/errors.js';
import { HttpError, rawResponse, type Handler } from '../router.js';
import { queryServiceFor } from './service.js';

/** An object id as morgue writes it: hex, with or without 0x. */
export function parseObjectId(text: unknown): number {
  if (typeof text === 'number' && Number.isSafeInteger(text) && text >= 0) return text;
  if (typeof text !== 'string' || !/^(0x)?[0-9a-fA-F]{1,13}$/.test(text.trim())) {
    throw new HttpError(400, `${JSON.stringify(text)} is not an object id (hexadecimal, as morgue prints it).`);
  }
  return parseInt(text.trim().replace(/^0x/i, ''), 16);
}

/** A filename safe to put in Content-Disposition (no quotes, separators or control characters). */
function safeFilename(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._+-]/g, '_').replace(/^\.+/, '_');
  return cleaned.slice(0, 200) || 'attachment';
}

async function objectOf(store: Store, project: Project, idText: string | null): Promise<CrashObject> {
  if (idText === null || idText === '') throw new HttpError(400, 'The request names no object (object=<hex id>).');
  const id = parseObjectId(idText);
  const object = await store.getObject(project.id, id);
  if (!object) throw new HttpError(404, `There is no object ${id.toString(16)} in project "${project.name}".`);
  return object;
}

function textSummary(object: CrashObject): string {
  const lines = [
    `Object ${object.id.toString(16)} (${object.uuid})`,
    `timestamp: ${new Date(object.timestamp * 1000).toISOString()}`,
    `fingerprint: ${object.fingerprint}`,
  ];
  if (object.classifiers.length) lines.push(`classifiers: ${object.classifiers.join(' ')}`);
  lines.push('callstack:');
  for (const f of object.callstack) lines.push(`  ${f}`);
  lines.push('attributes:');
  for (const k of Object.keys(object.attributes).sort()) lines.push(`  ${k}: ${String(object.attributes[k])}`);
  return lines.join('\n') + '\n';
}

export const get: Handler = async (ctx) => {
  const auth = await ctx.requireSession();
  const project = await ctx.requireProject(auth);
  const object = await objectOf(ctx.store, project, ctx.query.get('object'));
  const hex = object.id.toString(16);
  const resource = ctx.query.get('resource') ?? '';
  let attachmentId = ctx.query.get('attachment_id');
  let attachmentName = ctx.query.get('attachment_name');
  const m = /^_attachment-(\d+)$/.exec(resource);
  if (m) attachmentId = m[1]!;

  if (resource === '' || resource === 'raw' || resource === 'json' || resource === 'json.gz') {
    if (attachmentId === null && attachmentName === null) {
      const stored = await ctx.store.getReportBody(project.id, object.id);
      if (!stored) throw new HttpError(404, `Object ${hex} has no stored report.`);
      const ext = object.format === 'minidump' ? 'dmp' : object.format === 'json' ? 'json' : 'bin';
      const headers: Record<string, string> = {
        'Content-Type': stored.contentType || 'application/octet-stream',
        'Content-Disposition': `attachment; filename="${hex}.${ext}"`,
      };
      if (resource === 'json.gz') {
        headers['Content-Encoding'] = 'gzip';
        return rawResponse({ headers, body: zlib.gzipSync(stored.body) });
      }
      return rawResponse({ headers, body: stored.body });
    }
  } else if (resource === 'txt' || resource === 'txt.gz') {
    const text = Buffer.from(textSummary(object));
    const headers: Record<string, string> = { 'Content-Type': 'text/plain', 'Content-Disposition': `attachment; filename="${hex}.txt"` };
    if (resource === 'txt.gz') {
      headers['Content-Encoding'] = 'gzip';
      return rawResponse({ headers, body: zlib.gzipSync(text) });
    }
    return rawResponse({ headers, body: text });
  } else if (attachmentId === null && attachmentName === null) {
    // morgue's `get --resource=<name>`: an attachment by name.
    attachmentName = resource;
  }

  let id: number | undefined;
  if (attachmentId !== null) {
    if (!/^\d{1,15}$/.test(attachmentId)) throw new HttpError(400, `${JSON.stringify(attachmentId)} is not an attachment id.`);
    id = Number(attachmentId);
  } else {
    const list = await ctx.store.listAttachments(project.id, object.id);
    id = list.find((a) => a.name === attachmentName)?.id;
  }
  const found = id === undefined ? undefined : await ctx.store.getAttachment(project.id, object.id, id);
  if (!found) throw new HttpError(404, `Object ${hex} has no attachment ${attachmentId !== null ? `#${attachmentId}` : JSON.stringify(attachmentName)}.`);
  return rawResponse({
    headers: {
      'Content-Type': found.info.contentType || 'application/octet-stream',
      'Content-Disposition': `${ctx.query.get('attachment_inline') === 'true' ? 'inline' : 'attachment'}; filename="${safeFilename(found.info.name)}"`,
    },
    body: found.data,
  });
};

export const list: Handler = async (ctx) => {
  const auth = await ctx.requireSession();
  const project = await ctx.requireProject(auth);
  const object = await objectOf(ctx.store, project, ctx.query.get('object'));
  const attachments = await ctx.store.listAttachments(project.id, object.id);
  return {
    attachments: attachments.map((a) => ({ id: String(a.id), name: a.name, size: a.size, content_type: a.contentType, inline: false })),
  };
};

/**
 * `{"universe","project","objects":[hex...]}` or `{"universe","project","query":{filter...}}`.
 * `subsets` is accepted and ignored: an object is always deleted whole (report, attachments,
 * index). Deleting one attachment of an object is refused.
 */
export const remove: Handler = async (ctx) => {
  const auth = await ctx.requireSession();
  const body = ctx.json();
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'The delete request must be a JSON object.');
  const req = body as { universe?: unknown; project?: unknown; objects?: unknown; query?: unknown };
  if (req.universe !== undefined && req.universe !== auth.universe.name) {
    throw new HttpError(403, `You are not a member of universe ${JSON.stringify(req.universe)}.`);
  }
  const project = await ctx.requireProject(auth, typeof req.project === 'string' && req.project !== '' ? req.project : undefined);
  let ids: number[];
  if (req.objects !== undefined) {
    if (!Array.isArray(req.objects)) throw new HttpError(400, 'objects must be an array of object ids.');
    ids = req.objects.map((o: unknown) => {
      if (o && typeof o === 'object') {
        const spec = o as { id?: unknown; attachment_id?: unknown; attachment_name?: unknown };
        if (spec.attachment_id !== undefined || spec.attachment_name !== undefined) {
          throw new HttpError(400, 'Deleting a single attachment is not supported; delete the object.');
        }
        return parseObjectId(spec.id);
      }
      return parseObjectId(o);
    });
  } else if (req.query !== undefined) {
    try {
      ids = await queryServiceFor(ctx.store).matchingIds(project, req.query);
    } catch (err) {
      if (err instanceof QueryError) throw new HttpError(400, err.message);
      throw err;
    }
  } else {
    throw new HttpError(400, 'Name the objects to delete (objects) or a query (query).');
  }
  const deleted = ids.length > 0 ? await ctx.store.deleteObjects(project.id, ids) : 0;
  return { response: 'ok', result: 'success', objects: deleted };
};
