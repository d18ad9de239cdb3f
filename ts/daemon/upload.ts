/**
 * Submitting one snapshot as `coroner put` does: `POST <write>/post?format=json&token=<T>`, the
 * snapshot JSON as the body (backtrace-compat.md §3). The answer is sorted into accepted,
 * transient (retry later: the server is down, overloaded, or answered 5xx/429) or permanent (the
 * server refused this item and will refuse it again: a bad token, an unknown project, a
 * malformed body), so the daemon can retry the first forever and park the second.
 */

import { gzipSync } from 'node:zlib';

import { Agent, request } from 'undici';

import type { CoronerConfig } from '../config/coroner-cf.js';

export type UploadOutcome =
  | { kind: 'accepted'; rxid: string | null; status: number }
  | { kind: 'transient'; reason: string }
  | { kind: 'permanent'; reason: string };

const agents = new Map<string, Agent>();
function agentFor(insecure: boolean, timeoutMs: number): Agent {
  const key = `${insecure}:${timeoutMs}`;
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({
      connect: { rejectUnauthorized: !insecure, timeout: Math.min(timeoutMs, 30_000) },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      // Few, long-lived connections: one daemon, one server.
      connections: 4,
    });
    agents.set(key, agent);
  }
  return agent;
}

const GZIP_ABOVE = 32 * 1024;

export function submissionUrl(coroner: CoronerConfig, token: string): string {
  return `${coroner.write}/post?format=json&token=${encodeURIComponent(token)}`;
}

/** The URL with its token hidden, for logs. */
export function redactedUrl(coroner: CoronerConfig): string {
  return `${coroner.write}/post?format=json&token=…`;
}

function snippet(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 200 ? `${one.slice(0, 200)}…` : one;
}

export async function upload(coroner: CoronerConfig, project: string, body: Buffer, timeoutSeconds: number): Promise<UploadOutcome> {
  const token = coroner.tokens.get(project);
  if (token === undefined) {
    return { kind: 'permanent', reason: `project ${project} has no token in ${coroner.file} [tokens]` };
  }
  const timeoutMs = Math.max(1000, timeoutSeconds * 1000);
  // As coroner put does: bodies over 32 KiB travel gzip-encoded (snapshots shrink about 10x).
  const compress = body.length > GZIP_ABOVE;
  const payload = compress ? gzipSync(body) : body;
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'coresnapd' };
  if (compress) headers['content-encoding'] = 'gzip';
  let status: number;
  let text: string;
  try {
    const response = await request(submissionUrl(coroner, token), {
      method: 'POST',
      body: payload,
      headers,
      dispatcher: agentFor(coroner.insecure, timeoutMs),
    });
    status = response.statusCode;
    text = await response.body.text();
  } catch (err) {
    const e = err as Error & { code?: string };
    return { kind: 'transient', reason: `${coroner.write} cannot be reached (${e.code ?? e.name}: ${e.message})` };
  }
  if (status >= 200 && status < 300) {
    let rxid: string | null = null;
    try {
      const parsed = JSON.parse(text) as { response?: string; _rxid?: string };
      rxid = typeof parsed._rxid === 'string' ? parsed._rxid : null;
    } catch {
      // A 2xx without JSON is still an acceptance; the log says there was no _rxid.
    }
    return { kind: 'accepted', rxid, status };
  }
  const answer = `HTTP ${status}${text ? `: ${snippet(text)}` : ''}`;
  if (status === 401 || status === 403) {
    return { kind: 'permanent', reason: `the server refused the token of project ${project} (${answer})` };
  }
  if (status === 408 || status === 429 || status >= 500) {
    return { kind: 'transient', reason: `the server answered ${answer}` };
  }
  return { kind: 'permanent', reason: `the server refused the snapshot (${answer})` };
}

/** Exponential backoff with full jitter: the n-th retry waits a random time in [d/2, d], d = min(max, initial·2ⁿ). */
export function backoffSeconds(attempt: number, initial: number, max: number, random: () => number = Math.random): number {
  const exp = Math.min(max, initial * 2 ** Math.min(attempt, 40));
  return exp / 2 + (random() * exp) / 2;
}

export async function closeUploads(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map((a) => a.close().catch(() => undefined)));
}
