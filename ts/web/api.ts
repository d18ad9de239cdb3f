/**
 * Endpoints the web console needs that the query API does not have, under `/api/web/`. They use
 * only the `Store` and the query service (`queryServiceFor`), and the same sessions as the API
 * (`?token=` or `X-Coroner-Token`):
 *
 *   GET  /api/web/session                     who the session is: `{user, universe}`; 401 when it is not live
 *   GET  /api/web/projects?days=N             every project of the universe with its crash count,
 *                                             last crash and N daily bins ending now (a sparkline)
 *   GET  /api/web/attributes?project=P        the project's declared attributes
 *   POST /api/web/attributes?project=P        declare one (superuser): `{name, type, format, description?}`
 *
 * Nothing here writes crashes; declaring an attribute is the guide's "Create a new attribute".
 */

import { queryServiceFor } from '../server/api/service.js';
import { HttpError, type RequestContext, type Router } from '../server/router.js';
import { BUILTIN_COLUMNS, DERIVED_COLUMNS } from '../query/table.js';
import type { AttributeDeclaration, AttributeType } from '../store/types.js';

export const ATTRIBUTE_TYPES: readonly AttributeType[] = ['string', 'uint64', 'int64', 'double', 'boolean', 'dictionary', 'labels', 'callstack'];

/** Formats a declared attribute may have: how morgue and the console show its values. */
export const ATTRIBUTE_FORMATS: readonly string[] = [
  'none', 'hostname', 'unix_timestamp', 'js_timestamp', 'seconds', 'milliseconds', 'nanoseconds',
  'bytes', 'kilobytes', 'gigabytes', 'memory_address', 'sha256', 'uuid', 'semver', 'labels', 'callstack',
];

const RESERVED = new Set([...BUILTIN_COLUMNS.map((c) => c.name), ...DERIVED_COLUMNS.map((c) => c.name)]);

const DAY = 86_400;

export interface ProjectOverview {
  id: number;
  name: string;
  created_at: number;
  crashes: number;
  /** Seconds since the epoch of the newest crash, or null when there is none. */
  last_crash: number | null;
  /** `[lo, hi, count]` per day, oldest first, the last ending at `to`. */
  bins: Array<[number, number, number]>;
}

export function mountWebApi(router: Router): void {
  router.route('GET', '/api/web/session', async (ctx) => {
    const auth = await ctx.requireSession();
    const u = auth.user;
    return {
      user: { uid: u.uid, username: u.username, email: u.email, superuser: u.superuser ? 1 : 0 },
      universe: { id: auth.universe.id, name: auth.universe.name },
      expires: auth.session.expiresAt,
    };
  });

  router.route('GET', '/api/web/projects', async (ctx) => {
    const auth = await ctx.requireSession();
    const days = intParam(ctx, 'days', 30, 1, 366);
    const to = Math.ceil(Date.now() / 1000 / 3600) * 3600;
    const from = to - days * DAY;
    const service = queryServiceFor(ctx.store);
    const who = { universe: auth.universe.name, user: auth.user.username };
    const projects: ProjectOverview[] = [];
    for (const p of await ctx.store.listProjects(auth.universe.id)) {
      // Two folds over the whole project: its range (for the count and the newest crash), and the
      // same bins the sparkline draws, so the picture and the number come from one pass each.
      const all = await service.query(p, { fold: { timestamp: [['range']] } }, who);
      const recent = await service.query(
        p,
        { filter: [{ timestamp: [['at-least', String(from)], ['at-most', String(to)]] }], fold: { timestamp: [['bin', days, from, to]] } },
        who,
      );
      const allRow = firstGroup(all.response);
      const range = allRow?.folds[0] as [number, number] | undefined;
      const binsRow = firstGroup(recent.response);
      const bins = (binsRow?.folds[0] as Array<[number, number, number]> | undefined) ?? emptyBins(from, to, days);
      projects.push({ id: p.id, name: p.name, created_at: p.createdAt, crashes: allRow?.count ?? 0, last_crash: range ? range[1] : null, bins });
    }
    return { from, to, days, projects };
  });

  router.route('GET', '/api/web/attributes', async (ctx) => {
    const auth = await ctx.requireSession();
    const project = await ctx.requireProject(auth);
    return { project: project.name, attributes: (await ctx.store.listAttributes(project.id)).map(declarationJson), types: ATTRIBUTE_TYPES, formats: ATTRIBUTE_FORMATS };
  });

  router.route('POST', '/api/web/attributes', async (ctx) => {
    const auth = await ctx.requireSuperuser();
    const project = await ctx.requireProject(auth);
    const declaration = parseDeclaration(ctx.json());
    await ctx.store.declareAttribute(project.id, declaration);
    return { project: project.name, attribute: declarationJson(declaration) };
  });
}

/** Checks a declaration as the console's form sends it; HttpError 400 with a sentence otherwise. */
export function parseDeclaration(body: unknown): AttributeDeclaration {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'The attribute must be a JSON object.');
  const b = body as Record<string, unknown>;
  const name = typeof b.name === 'string' ? b.name.trim() : '';
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/.test(name)) {
    throw new HttpError(400, 'An attribute name starts with a letter or _ and has only letters, digits, _, . and - (at most 128).');
  }
  if (RESERVED.has(name)) throw new HttpError(400, `"${name}" is a built-in column and cannot be declared.`);
  const type = b.type;
  if (typeof type !== 'string' || !(ATTRIBUTE_TYPES as readonly string[]).includes(type)) {
    throw new HttpError(400, `The type must be one of ${ATTRIBUTE_TYPES.join(', ')}.`);
  }
  const format = b.format === undefined || b.format === '' ? 'none' : b.format;
  if (typeof format !== 'string' || !ATTRIBUTE_FORMATS.includes(format)) {
    throw new HttpError(400, `The format must be one of ${ATTRIBUTE_FORMATS.join(', ')}.`);
  }
  const description = b.description === undefined || b.description === null ? '' : b.description;
  if (typeof description !== 'string' || description.length > 1000) throw new HttpError(400, 'The description must be text of at most 1000 characters.');
  return { name, type: type as AttributeType, format, ...(description ? { description } : {}), custom: true };
}

function declarationJson(d: AttributeDeclaration) {
  return { name: d.name, type: d.type, format: d.format, description: d.description ?? '', custom: d.custom };
}

function intParam(ctx: RequestContext, name: string, fallback: number, min: number, max: number): number {
  const text = ctx.query.get(name);
  if (text === null || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new HttpError(400, `${name} must be a whole number from ${min} to ${max}.`);
  return n;
}

/** The single group of an ungrouped fold query: its fold values and count. */
function firstGroup(response: unknown): { folds: unknown[]; count: number } | undefined {
  const values = (response as { values?: unknown } | undefined)?.values;
  if (!Array.isArray(values) || values.length === 0) return undefined;
  const row = values[0] as [unknown, unknown[], number];
  return { folds: Array.isArray(row[1]) ? row[1] : [], count: typeof row[2] === 'number' ? row[2] : 0 };
}

function emptyBins(from: number, to: number, n: number): Array<[number, number, number]> {
  const width = (to - from) / n;
  return Array.from({ length: n }, (_, i) => [from + i * width, from + (i + 1) * width, 0] as [number, number, number]);
}
