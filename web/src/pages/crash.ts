// One crash, whole: signal and classifiers, why it has its fingerprint, every thread with its
// frames (the faulting thread first and highlighted; inlined, tail-call, signal and trust
// markers), registers, modules with build-ids, every attribute, attachments to download and the
// raw snapshot. Reports from the SDKs have fewer of these fields; what is absent is not shown.

import { apiBytes, apiJson, decodeSelect, query, saveBlob, type SelectResponse } from '../api.js';
import { h, link, type Child } from '../dom.js';
import { basename, formatBytes, formatTime, formatValue } from '../format.js';
import type { PageContext } from '../main.js';
import { columnsOf, projectHeader } from '../project.js';
import { href } from '../route.js';

interface Frame {
  funcName?: string;
  address?: string;
  library?: string;
  libraryOffset?: string;
  sourcePath?: string;
  line?: number;
  column?: number;
  inlined?: boolean;
  tailCall?: boolean;
  trust?: string;
  kind?: string;
  faulted?: boolean;
  registers?: Record<string, string | number>;
  warnings?: string[];
}
interface Thread {
  name?: string;
  fault?: boolean;
  stack?: Frame[];
  stopReason?: string;
}
interface Module {
  start?: string;
  size?: number;
  code_file?: string;
  debug_file?: string;
  debug_identifier?: string;
  debug_file_exists?: boolean;
  loaded_from?: string;
  mismatch?: string;
}
interface Report {
  uuid?: string;
  timestamp?: number;
  agent?: string;
  agentVersion?: string;
  lang?: string;
  mainThread?: string;
  threads?: Record<string, Thread>;
  threadOrder?: string[];
  attributes?: Record<string, unknown>;
  classifiers?: string[];
  modules?: Module[];
  signal?: { number?: number; name?: string; code?: number; codeName?: string; address?: string; senderPid?: number };
  process?: Record<string, unknown>;
  attachments?: Array<{ name?: string; path?: string; size?: number; data?: string }>;
  warnings?: string[];
  annotations?: Record<string, unknown>;
  arch?: { name?: string };
}
interface Explanation {
  fingerprint: string;
  stored_fingerprint?: string;
  source: string;
  rulesVersion: number;
  thread: string | null;
  kind: string | null;
  kindFrom: string | null;
  frames: Array<{ index: number; name: string; used: boolean; reason: string }>;
  hashInput: string;
}
interface Attachment {
  id: string;
  name: string;
  size: number;
  content_type: string;
}

const RAW_PREVIEW_LIMIT = 1024 * 1024;

/** Thread keys in display order: the faulting thread first, then as the kernel listed them. */
export function threadOrder(report: Report): string[] {
  const threads = report.threads ?? {};
  const keys = Object.keys(threads);
  const ordered = (report.threadOrder ?? []).filter((k) => k in threads);
  for (const k of keys) if (!ordered.includes(k)) ordered.push(k);
  const faulting = report.mainThread && threads[report.mainThread]?.fault !== false ? report.mainThread : keys.find((k) => threads[k]?.fault);
  if (faulting && ordered.includes(faulting)) return [faulting, ...ordered.filter((k) => k !== faulting)];
  return ordered;
}

function section(title: string, cls: string, ...children: Child[]): HTMLElement {
  return h('section', { class: `card ${cls}` }, h('h2', null, title), ...children);
}

function trustBadge(trust: string | undefined): Child {
  if (!trust) return null;
  const label: Record<string, string> = { context: 'registers', cfi: 'CFI', 'frame-pointer': 'frame pointer', scan: 'stack scan' };
  return h('span', { class: `badge trust trust-${trust}`, title: `found by ${trust}` }, label[trust] ?? trust);
}

function framesTable(thread: Thread): HTMLElement {
  const frames = thread.stack ?? [];
  return h(
    'table',
    { class: 'frames' },
    h('thead', null, h('tr', null, h('th', { class: 'num' }, '#'), h('th', null, 'Function'), h('th', null, 'Source'), h('th', null, 'Module'), h('th', null, 'Address'), h('th', null, 'Found by'))),
    h(
      'tbody',
      null,
      frames.map((f, i) =>
        h(
          'tr',
          { class: ['frame', f.inlined ? 'inlined' : '', f.faulted ? 'faulted' : '', f.kind === 'signal' ? 'signal' : '', f.tailCall ? 'tail-call' : ''].filter(Boolean).join(' '), 'data-function': f.funcName ?? '' },
          h('td', { class: 'num muted' }, String(i)),
          h(
            'td',
            { class: 'function' },
            h('span', { class: 'mono name' }, f.funcName ?? '??'),
            f.inlined ? h('span', { class: 'badge inlined', title: 'inlined into the frame below' }, 'inlined') : null,
            f.tailCall ? h('span', { class: 'badge tail-call', title: 'left off the stack by a tail call, rebuilt from DWARF call sites' }, 'tail call') : null,
            f.kind === 'signal' ? h('span', { class: 'badge signal', title: 'signal trampoline' }, 'signal') : null,
            f.faulted ? h('span', { class: 'badge faulted' }, 'faulted') : null,
            f.warnings?.length ? h('span', { class: 'badge warning', title: f.warnings.join('\n') }, '!') : null,
          ),
          h('td', { class: 'mono source', title: f.sourcePath ?? '' }, f.sourcePath ? `${basename(f.sourcePath)}${f.line !== undefined ? `:${f.line}` : ''}` : ''),
          h('td', { class: 'mono module', title: f.library ?? '' }, f.library ? `${basename(f.library)}${f.libraryOffset ? `+${f.libraryOffset}` : ''}` : ''),
          h('td', { class: 'mono address' }, f.address ?? ''),
          h('td', null, trustBadge(f.trust)),
        ),
      ),
    ),
  );
}

function registersOf(thread: Thread): HTMLElement | null {
  const regs = thread.stack?.[0]?.registers;
  if (!regs || Object.keys(regs).length === 0) return null;
  return h(
    'div',
    { class: 'registers mono' },
    Object.entries(regs).map(([name, value]) => h('div', { class: 'register' }, h('span', { class: 'reg-name' }, name), ' ', h('span', { class: 'reg-value' }, String(value)))),
  );
}

function threadView(key: string, thread: Thread, faulting: boolean, open: boolean): HTMLElement {
  const regs = registersOf(thread);
  return h(
    'details',
    { class: `thread ${faulting ? 'faulting' : ''}`.trim(), 'data-thread': key, open },
    h(
      'summary',
      null,
      h('strong', null, `Thread ${key}`),
      thread.name ? h('span', { class: 'muted' }, ` ${thread.name}`) : null,
      faulting ? h('span', { class: 'badge faulted' }, 'faulting thread') : null,
      h('span', { class: 'muted' }, ` · ${(thread.stack ?? []).length} frames`),
    ),
    framesTable(thread),
    thread.stopReason ? h('p', { class: 'muted stop-reason' }, `The walk stopped: ${thread.stopReason}.`) : null,
    regs ? h('details', { class: 'regs', open: faulting }, h('summary', null, 'Registers (innermost frame)'), regs) : null,
  );
}

function explanationView(e: Explanation | Error): HTMLElement {
  if (e instanceof Error) return section('Why this fingerprint', 'explain', h('p', { class: 'muted' }, e.message));
  return section(
    'Why this fingerprint',
    'explain',
    h(
      'p',
      null,
      e.source === 'sdk'
        ? 'The report brought its own fingerprint (set by the SDK); frames were not used.'
        : `The fingerprint hashes the kind of crash (${e.kind ?? 'none'}${e.kindFrom ? `, from ${e.kindFrom}` : ''}) with the frames of thread ${e.thread ?? '?'} marked "used" below (grouping rules version ${e.rulesVersion}).`,
    ),
    e.stored_fingerprint && e.stored_fingerprint !== e.fingerprint
      ? h('p', { class: 'warning' }, `The project's grouping rules changed since this crash arrived: it is stored as ${e.stored_fingerprint}, today's rules give ${e.fingerprint}.`)
      : null,
    h(
      'table',
      { class: 'explain-frames' },
      h('thead', null, h('tr', null, h('th', { class: 'num' }, '#'), h('th', null, 'Frame'), h('th', null, 'Used'), h('th', null, 'Why'))),
      h(
        'tbody',
        null,
        e.frames.map((f) =>
          h('tr', { class: f.used ? 'used' : 'skipped' }, h('td', { class: 'num muted' }, String(f.index)), h('td', { class: 'mono' }, f.name), h('td', null, f.used ? 'used' : 'skipped'), h('td', null, f.reason)),
        ),
      ),
    ),
    h('details', null, h('summary', null, 'Exactly what was hashed'), h('pre', { class: 'mono' }, e.hashInput)),
  );
}

function base64Blob(data: string): Blob {
  const bin = atob(data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes]);
}

export async function crashPage(ctx: PageContext, project: string, hex: string): Promise<void> {
  if (!/^[0-9a-fA-F]{1,13}$/.test(hex)) throw new Error(`"${hex}" is not an object id.`);
  const id = parseInt(hex, 16);
  const [raw, list, explain, indexed, columns] = await Promise.all([
    apiBytes('/api/get', { project, object: hex }),
    apiJson<{ attachments: Attachment[] }>('GET', '/api/list', { project, object: hex }),
    apiJson<Explanation>('GET', '/api/fingerprint/explain', { project, object: hex }).catch((err: Error) => err),
    query<SelectResponse>(project, { filter: [{ _tx: [['equal', String(id)]] }], select_wildcard: { physical: true, derived: true } }),
    columnsOf(project),
  ]);
  if (!ctx.live()) return;
  const text = await raw.blob.text();
  let report: Report | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) report = parsed as Report;
  } catch {
    report = undefined;
  }
  const formats = new Map(columns.map((c) => [c.name, c.format]));
  const attrs = decodeSelect(indexed.response)[0]?.values ?? report?.attributes ?? {};
  const fingerprint = typeof attrs.fingerprint === 'string' ? attrs.fingerprint : undefined;
  const filename = raw.filename ?? `${hex}.json`;
  const downloadRaw = () => saveBlob(raw.blob, filename);

  const sig = report?.signal;
  const classifiers = report?.classifiers ?? (typeof attrs.classifiers === 'string' ? attrs.classifiers.split(' ').filter(Boolean) : []);
  const head = h(
    'section',
    { class: 'card crash-head' },
    h('h2', null, `Crash ${hex}`, sig?.name ? h('span', { class: 'signal' }, ` · ${sig.name}${sig.codeName ? ` (${sig.codeName})` : ''}${sig.address ? ` at ${sig.address}` : ''}`) : null),
    h('div', { class: 'classifiers' }, classifiers.map((c) => h('span', { class: 'badge classifier' }, c))),
    h(
      'dl',
      { class: 'facts' },
      h('dt', null, 'When'), h('dd', null, formatTime(typeof attrs.timestamp === 'number' ? attrs.timestamp : report?.timestamp)),
      h('dt', null, 'Application'), h('dd', null, String(attrs.application ?? report?.attributes?.application ?? '—')),
      h('dt', null, 'Host'), h('dd', null, String(attrs.hostname ?? report?.attributes?.hostname ?? '—')),
      h('dt', null, 'UUID'), h('dd', { class: 'mono' }, String(attrs.uuid ?? report?.uuid ?? '—')),
      h('dt', null, 'Group'), h('dd', { class: 'mono' }, fingerprint ? link(href(['p', project, 'g', fingerprint]), fingerprint) : '—'),
      sig?.number !== undefined ? [h('dt', null, 'Signal'), h('dd', null, `${sig.number}${sig.code !== undefined ? `, code ${sig.code}` : ''}${sig.senderPid !== undefined ? `, sent by pid ${sig.senderPid}` : ''}`)] : null,
      report?.agent ? [h('dt', null, 'Made by'), h('dd', null, `${report.agent} ${report.agentVersion ?? ''}`)] : null,
    ),
    h('button', { type: 'button', class: 'secondary download-raw', onclick: downloadRaw }, `Download the raw ${report ? 'snapshot' : 'report'} (${formatBytes(raw.blob.size)})`),
  );

  const parts: Child[] = [projectHeader(project, 'groups', `crash ${hex}`), head];
  if (report?.warnings?.length) parts.push(section('Warnings', 'warnings', h('ul', null, report.warnings.map((w) => h('li', null, w)))));
  const abortMessage = report?.annotations?.['abort message'];
  if (typeof abortMessage === 'string') parts.push(section('Abort message', 'abort', h('pre', { class: 'mono' }, abortMessage)));

  if (report?.threads) {
    const order = threadOrder(report);
    const faulting = order[0] !== undefined && (report.threads[order[0]]?.fault || order[0] === report.mainThread) ? order[0] : undefined;
    parts.push(
      section(
        `Threads (${order.length})`,
        'threads',
        order.map((k) => threadView(k, report!.threads![k]!, k === faulting, k === faulting || order.length <= 8)),
      ),
    );
  } else {
    parts.push(section('Threads', 'threads', h('p', { class: 'muted' }, report ? 'This report has no threads.' : 'This object is not JSON (a minidump not processed yet, or another format); download it below.')));
  }

  parts.push(explanationView(explain));

  if (report?.modules?.length) {
    parts.push(
      section(
        `Modules (${report.modules.length})`,
        'modules',
        h(
          'table',
          { class: 'list modules' },
          h('thead', null, h('tr', null, h('th', null, 'File'), h('th', null, 'Start'), h('th', { class: 'num' }, 'Size'), h('th', null, 'Build-id'), h('th', null, 'Debug info'))),
          h(
            'tbody',
            null,
            report.modules.map((m) =>
              h(
                'tr',
                { class: m.mismatch ? 'mismatch' : '' },
                h('td', { class: 'mono', title: m.loaded_from ?? '' }, m.code_file ?? '?'),
                h('td', { class: 'mono' }, m.start ?? ''),
                h('td', { class: 'num' }, m.size !== undefined ? formatBytes(m.size) : ''),
                h('td', { class: 'mono build-id' }, m.debug_identifier ?? '—'),
                h('td', null, m.debug_file_exists ? (m.debug_file ? `yes (${m.debug_file})` : 'yes') : 'no', m.mismatch ? h('div', { class: 'warning' }, m.mismatch) : null),
              ),
            ),
          ),
        ),
      ),
    );
  }

  const attrNames = Object.keys(attrs).sort();
  parts.push(
    section(
      `Attributes (${attrNames.length})`,
      'attributes',
      h('table', { class: 'list kv' }, h('tbody', null, attrNames.map((k) => h('tr', { 'data-attr': k }, h('th', null, k), h('td', { class: 'mono' }, formatValue(attrs[k], formats.get(k))))))),
    ),
  );

  const embedded = (report?.attachments ?? []).filter((a) => typeof a.data === 'string');
  parts.push(
    section(
      'Attachments',
      'attachments',
      list.attachments.length + embedded.length === 0 ? h('p', { class: 'muted' }, 'None.') : null,
      h(
        'ul',
        { class: 'attachment-list' },
        list.attachments.map((a) =>
          h(
            'li',
            { 'data-attachment': a.name },
            h(
              'button',
              {
                type: 'button',
                class: 'secondary download',
                onclick: async () => {
                  const got = await apiBytes('/api/get', { project, object: hex, attachment_id: a.id });
                  saveBlob(got.blob, a.name);
                },
              },
              `⤓ ${a.name}`,
            ),
            h('span', { class: 'muted' }, ` ${formatBytes(a.size)} · ${a.content_type}`),
          ),
        ),
        embedded.map((a) =>
          h(
            'li',
            { 'data-attachment': a.name ?? '' },
            h('button', { type: 'button', class: 'secondary download', onclick: () => saveBlob(base64Blob(a.data!), basename(a.name ?? a.path ?? 'attachment')) }, `⤓ ${a.name ?? a.path}`),
            h('span', { class: 'muted' }, ` ${a.size !== undefined ? formatBytes(a.size) : ''} · in the snapshot`),
          ),
        ),
      ),
    ),
  );

  if (report?.process) {
    parts.push(section('Process', 'process', h('table', { class: 'list kv' }, h('tbody', null, Object.entries(report.process).map(([k, v]) => h('tr', null, h('th', null, k), h('td', { class: 'mono' }, Array.isArray(v) ? v.join(' ') : String(v))))))));
  }

  const pretty = report ? JSON.stringify(report, null, 2) : '';
  parts.push(
    section(
      'Raw snapshot',
      'raw',
      h('button', { type: 'button', class: 'secondary download-raw', onclick: downloadRaw }, `Download ${filename}`),
      report
        ? h(
            'details',
            null,
            h('summary', null, 'Show the JSON'),
            h('pre', { class: 'mono raw-json' }, pretty.length > RAW_PREVIEW_LIMIT ? `${pretty.slice(0, RAW_PREVIEW_LIMIT)}\n… (${formatBytes(pretty.length)}; download it for the rest)` : pretty),
          )
        : null,
    ),
  );
  ctx.main.append(...parts.filter((x): x is Node => x instanceof Node));
}
