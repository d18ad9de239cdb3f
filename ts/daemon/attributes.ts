/**
 * The attributes coresnapd adds to each snapshot, beside the engine's own (hostname,
 * application, uname.*, pid, signal): `coresnap.object` (the crash's uuid), `pid`, `uid`,
 * `cmdline`, `cgroup`, `coresnap.dropped` (crashes of the same program the rate limit dropped
 * just before this one), and `BACKTRACE_DEFAULTS`: line-delimited `key=value` pairs from the
 * daemon's environment, then from `defaults.command` (run with the executable as its first
 * argument, under a time limit). Later sources win; `coresnap.object` always stays the uuid.
 */

import os from 'node:os';

import type { HandlerMeta, Owner } from './archive.js';
import { runChild } from './child.js';

export type Attributes = Record<string, string | number | boolean>;

/** `key=value` lines (blank lines and `#` comments ignored; a line without `=` is skipped). */
export function parseDefaults(text: string): Attributes {
  const out: Attributes = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

/** The attributes the handler's metadata gives. */
export function metaAttributes(meta: HandlerMeta | null, uuid: string): Attributes {
  const out: Attributes = {};
  out.hostname = meta?.hostname ?? os.hostname();
  out['uname.sysname'] = os.type();
  out['uname.machine'] = os.machine();
  out['uname.release'] = os.release();
  out['uname.version'] = os.version();
  if (meta) {
    if (meta.application) out.application = meta.application;
    if (typeof meta.pid === 'number') out.pid = meta.pid;
    if (typeof meta.uid === 'number') out.uid = meta.uid;
    if (typeof meta.gid === 'number') out.gid = meta.gid;
    if (meta.cmdline && meta.cmdline.length > 0) out.cmdline = meta.cmdline.join(' ');
    if (meta.cgroup) {
      // The unified (cgroup v2) line `0::/path`, else the first non-root path.
      const lines = meta.cgroup.split('\n').filter(Boolean);
      const v2 = lines.find((l) => l.startsWith('0::'));
      const chosen = v2 && v2 !== '0::/' ? v2.slice(3) : lines.map((l) => l.split(':').slice(2).join(':')).find((p) => p && p !== '/') ?? v2?.slice(3);
      if (chosen) out.cgroup = chosen;
    }
    if (meta.executable) out['process.executable'] = meta.executable;
    if (meta.droppedBefore) out['coresnap.dropped'] = meta.droppedBefore;
    if (meta.truncated) out['coresnap.truncated'] = true;
  }
  out['coresnap.object'] = uuid;
  return out;
}

export interface DefaultsOutcome {
  attributes: Attributes;
  /** A sentence when the command failed (the crash goes on without its attributes). */
  problem: string | null;
}

/** Runs `defaults.command <executable>`; its stdout is `key=value` lines. */
export async function runDefaultsCommand(command: string, executable: string, as: Owner | null, timeoutSeconds: number): Promise<DefaultsOutcome> {
  const result = await runChild(command, [executable], {
    as,
    timeoutMs: timeoutSeconds * 1000,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: process.env.LANG ?? 'C' },
  });
  if (result.spawnError) return { attributes: {}, problem: `defaults.command ${command} cannot run: ${result.spawnError}` };
  if (result.timedOut) return { attributes: {}, problem: `defaults.command ${command} took more than ${timeoutSeconds} s and was killed` };
  if (result.code !== 0) {
    return { attributes: parseDefaults(result.stdout), problem: `defaults.command ${command} exited with ${result.code ?? result.signal}: ${result.stderr.trim().split('\n').pop() ?? ''}` };
  }
  return { attributes: parseDefaults(result.stdout), problem: null };
}

/** Merges attribute sources into a snapshot's `attributes` in order (later wins, uuid last). */
export function mergeAttributes(snapshot: { attributes?: Attributes }, uuid: string, ...sources: Attributes[]): void {
  const merged: Attributes = { ...(snapshot.attributes ?? {}) };
  for (const source of sources) Object.assign(merged, source);
  merged['coresnap.object'] = uuid;
  snapshot.attributes = merged;
}
