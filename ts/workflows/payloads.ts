/**
 * What a delivery sends: the generic webhook's JSON, a Slack incoming-webhook message, or a Jira
 * "create issue" call, all made from one `GroupEvent`, and the `X-Coresnap-Signature` over the
 * body.
 *
 * Bodies are rendered once, when the delivery is queued, and stored: every retry sends (and
 * signs) the same bytes, and the delivery log shows exactly what went out.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';
import type { DeliveryEvent, Integration, IntegrationType } from './store.js';

/** The facts of one event about one group, as the generic webhook sends them. */
export interface GroupEvent {
  event: DeliveryEvent;
  /** The trigger that fired, as written (`threshold:100/10m`); empty for a test message. */
  trigger: string;
  universe: string;
  project: string;
  fingerprint: string;
  /** The group in the web console. */
  link: string;
  /** Innermost first, at most `TOP_FRAMES`. */
  top_frames: string[];
  classifiers: string[];
  /** Crashes of the group so far (when the event happened). */
  count: number;
  /** Seconds since the epoch (when coroner received the first and the latest crash). */
  first_seen: number;
  last_seen: number;
  /** The crash that fired the trigger: its object id in hex, as morgue prints it. */
  object: string;
  /** The triggering crash's application and hostname, when it has them. */
  application?: string;
  hostname?: string;
  /** For `threshold`: the rule and how many crashes fell in the window. */
  threshold?: { count: number; window: string; window_seconds: number; crashes_in_window: number };
}

export const TOP_FRAMES = 8;

/** The body a webhook receives: the event, plus the delivery's id and when it was queued. */
export interface WebhookBody extends GroupEvent {
  delivery: string;
  /** Seconds since the epoch. */
  queued_at: number;
}

/** `sha256=<hex>` of `body` keyed with `secret`: the `X-Coresnap-Signature` header. */
export function signBody(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** True when `header` is the signature of `body` with `secret` (constant-time comparison). */
export function verifySignature(secret: string, body: string | Uint8Array, header: string | undefined): boolean {
  if (!header) return false;
  const want = Buffer.from(signBody(secret, body));
  const got = Buffer.from(header.trim());
  return want.length === got.length && timingSafeEqual(want, got);
}

const ellipsis = (s: string, max: number): string => (s.length > max ? `${s.slice(0, Math.max(0, max - 1))}…` : s);
const shortFp = (fp: string): string => fp.slice(0, 12);
const isoTime = (seconds: number): string => new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** One line saying what happened, for Slack's `text` and Jira's summary. */
export function headline(e: GroupEvent): string {
  const where = e.top_frames[0] ?? `group ${shortFp(e.fingerprint)}`;
  switch (e.event) {
    case 'new-group':
      return `New crash group in ${e.project}: ${where}`;
    case 'threshold':
      return `${plural(e.threshold?.crashes_in_window ?? e.count, 'crash', 'crashes')} in ${e.threshold?.window ?? 'the window'} in ${e.project}: ${where}`;
    case 'regression':
      return `Regression in ${e.project}: ${where} crashed again after it was resolved`;
    case 'test':
      return `Test message from coroner for ${e.project}`;
  }
}

/** The body to store for a delivery of `event` to an integration of `type`. */
export function renderBody(type: IntegrationType, event: GroupEvent, meta: { delivery: string; queuedAt: number }, jira?: Integration['jira']): string {
  switch (type) {
    case 'webhook': {
      const body: WebhookBody = { ...event, delivery: meta.delivery, queued_at: meta.queuedAt };
      return JSON.stringify(body);
    }
    case 'slack':
      return JSON.stringify(slackMessage(event));
    case 'jira':
      return JSON.stringify(jiraIssue(event, jira));
  }
}

/** A Slack incoming-webhook message: `text` (notifications, old clients) and Block Kit `blocks`. */
export function slackMessage(e: GroupEvent): { text: string; blocks: unknown[] } {
  const title = headline(e);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const facts = [
    `*Project:* ${esc(e.project)}`,
    `*Crashes:* ${e.count}`,
    `*First seen:* ${isoTime(e.first_seen)}`,
    `*Last seen:* ${isoTime(e.last_seen)}`,
  ];
  if (e.application) facts.push(`*Application:* ${esc(e.application)}`);
  if (e.classifiers.length) facts.push(`*Classifiers:* ${esc(e.classifiers.join(', '))}`);
  const frames = e.top_frames.length ? e.top_frames.map((f, i) => `${i}  ${f}`).join('\n') : '(no frames)';
  return {
    text: `${title} <${e.link}|${shortFp(e.fingerprint)}>`,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*<${e.link}|${esc(ellipsis(title, 2900))}>*` } },
      { type: 'section', fields: facts.map((text) => ({ type: 'mrkdwn', text })) },
      { type: 'section', text: { type: 'mrkdwn', text: `\`\`\`${esc(ellipsis(frames, 2900))}\`\`\`` } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: `fingerprint ${e.fingerprint} · object ${e.object}` }] },
    ],
  };
}

/** Jira's REST v2 create-issue body: the group as the issue (description in Jira wiki markup). */
export function jiraIssue(e: GroupEvent, jira: Integration['jira']): { fields: Record<string, unknown> } {
  const lines = [
    `h3. ${headline(e)}`,
    '',
    `*Project:* ${e.project}`,
    `*Fingerprint:* ${e.fingerprint}`,
    `*Crashes:* ${e.count}`,
    `*First seen:* ${isoTime(e.first_seen)}`,
    `*Last seen:* ${isoTime(e.last_seen)}`,
  ];
  if (e.threshold) lines.push(`*Threshold:* ${e.threshold.count} in ${e.threshold.window} (${e.threshold.crashes_in_window} in the window)`);
  if (e.application) lines.push(`*Application:* ${e.application}`);
  if (e.classifiers.length) lines.push(`*Classifiers:* ${e.classifiers.join(', ')}`);
  lines.push('', 'Top frames:', '{noformat}', ...(e.top_frames.length ? e.top_frames : ['(no frames)']), '{noformat}', '', `[Open the group in coroner|${e.link}]`);
  return {
    fields: {
      project: { key: jira?.projectKey ?? '' },
      // Jira refuses summaries over 255 characters.
      summary: ellipsis(headline(e), 255),
      description: lines.join('\n'),
      issuetype: { name: jira?.issueType ?? 'Bug' },
    },
  };
}

/** The request one attempt makes: where, with which headers, the stored body. */
export function deliveryRequest(
  integration: Integration,
  delivery: { uuid: string; event: DeliveryEvent; body: string },
): { url: string; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'coresnap-coroner-workflows/1',
    'x-coresnap-event': delivery.event,
    'x-coresnap-delivery': delivery.uuid,
    'x-coresnap-signature': signBody(integration.secret, delivery.body),
  };
  let url = integration.url;
  if (integration.type === 'jira') {
    url = `${integration.url.replace(/\/+$/, '')}/rest/api/2/issue`;
    if (integration.jira) {
      headers.authorization = `Basic ${Buffer.from(`${integration.jira.user}:${integration.jira.token}`).toString('base64')}`;
    }
    headers.accept = 'application/json';
  }
  return { url, headers, body: delivery.body };
}
