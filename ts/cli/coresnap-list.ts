/**
 * `coresnap list` and `coresnap retry`, over the archive alone (no daemon needed).
 *
 * The table is the vendor's:
 * ```
 *    sending/3d22c19c-09c... -s- vim.basic   Fri Apr 14 22:48:44 2017    9.45kB
 *    pending/84605573-9de... c-- vim.basic   Fri Apr 14 22:49:40 2017    3.12mB
 *
 * [pending]/1O/3.12mB [sending]/1O/9.45kB
 * ```
 * Flags: `c` a core is kept (raw in pending/, or compressed in cores/), `s` a snapshot exists,
 * `a` assets exist. A parked item gets a second line with its reason, an item waiting for an
 * upload retry a line with the attempt count and the last error.
 */

import net from 'node:net';

import { formatSize } from '../config/units.js';
import {
  type ArchiveLayout,
  type ItemState,
  type ItemSummary,
  listItems,
  listState,
  readCounters,
  readStatus,
  STATES,
  writeStatus,
} from '../daemon/archive.js';
import { InputError, UsageError } from './errors.js';

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ctime(3) style, local time: `Fri Apr 14 22:48:44 2017`. */
export function ctime(seconds: number): string {
  const d = new Date(seconds * 1000);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${d.getFullYear()}`;
}

export function flagsOf(item: ItemSummary): string {
  return `${item.flags.core ? 'c' : '-'}${item.flags.snapshot ? 's' : '-'}${item.flags.assets ? 'a' : '-'}`;
}

export interface Listing {
  items: ItemSummary[];
  totals: Record<string, { count: number; bytes: number }>;
  counters: Record<string, number>;
}

/** Items to show, the vendor's order (sending before pending), and per-state totals. */
export function collect(layout: ArchiveLayout, states: readonly ItemState[]): Listing {
  const order: ItemState[] = ['sent', 'sending', 'pending'].filter((s) => states.includes(s as ItemState)) as ItemState[];
  const items = listItems(layout, order).filter(
    // Between ptrace and compression an item is in both folders for a moment; it is "sending".
    (item) => !(item.state === 'pending' && item.flags.snapshot && readStatus(layout, item.uuid).snapshotDone),
  );
  const totals: Listing['totals'] = {};
  for (const state of [...states].sort((a, b) => STATES.indexOf(a) - STATES.indexOf(b))) totals[state] = { count: 0, bytes: 0 };
  for (const item of items) {
    const total = totals[item.state];
    if (total) {
      total.count += 1;
      total.bytes += item.size;
    }
  }
  return { items, totals, counters: readCounters(layout) };
}

export function renderListing(listing: Listing, now = Date.now() / 1000): string {
  const width = Math.max(9, ...listing.items.map((i) => (i.application ?? '?').length));
  const lines: string[] = [];
  for (const item of listing.items) {
    lines.push(
      `   ${item.state}/${item.uuid.slice(0, 12)}... ${flagsOf(item)} ${(item.application ?? '?').padEnd(width)}   ${ctime(item.time)}   ${formatSize(item.size).padStart(8)}`,
    );
    if (item.parked) {
      lines.push(`      parked (${item.parked.stage}): ${item.parked.reason}`);
    } else if (item.nextAttemptAt && item.lastError) {
      const wait = Math.max(0, Math.round(item.nextAttemptAt - now));
      lines.push(`      ${item.attempts} failed upload attempt(s), next in ${wait} s: ${item.lastError}`);
    }
  }
  if (lines.length > 0) lines.push('');
  lines.push(
    Object.entries(listing.totals)
      .map(([state, t]) => `[${state}]/${t.count}O/${formatSize(t.bytes)}`)
      .join(' '),
  );
  const dropped = Object.entries(listing.counters).filter(([name, n]) => n > 0 && name !== 'stored' && name !== 'passed_through');
  if (dropped.length > 0) lines.push(`handler: ${dropped.map(([name, n]) => `${name} ${n}`).join(', ')} (of ${listing.counters.stored ?? 0} stored)`);
  return `${lines.join('\n')}\n`;
}

/** Finds the one item `<state>/<uuid-prefix>` names. */
export function resolveItem(layout: ArchiveLayout, spec: string): { state: ItemState; uuid: string } {
  const match = /^([a-z]+)\/([0-9a-f-]+)(?:\.\.\.)?$/.exec(spec.trim());
  if (!match) throw new UsageError(`"${spec}" is not <state>/<uuid-prefix>, like pending/84605573`);
  const state = match[1] as ItemState;
  if (!STATES.includes(state)) throw new UsageError(`"${match[1]}" is not a state; the states are ${STATES.join(', ')}`);
  const prefix = match[2] ?? '';
  const found = listState(layout, state).filter((uuid) => uuid.startsWith(prefix));
  if (found.length === 0) throw new InputError(`nothing in ${state}/ starts with ${prefix} (see \`coresnap list\`)`);
  if (found.length > 1) throw new InputError(`${prefix} names ${found.length} items in ${state}/ (${found.map((u) => u.slice(0, 13)).join(', ')}); give more of the uuid`);
  return { state, uuid: found[0] as string };
}

/** Clears what stops an item from moving (parked, backoff), and for pending/ the snapshot too. */
export function markForRetry(layout: ArchiveLayout, state: ItemState, uuid: string): string {
  const status = readStatus(layout, uuid);
  if (state === 'sent') {
    throw new InputError(`sent/${uuid} was already accepted by the server${status.rxid ? ` (_rxid ${status.rxid})` : ''}; nothing to retry`);
  }
  const was = status.parked ? `parked (${status.parked.reason})` : status.lastError ? `waiting to retry (${status.lastError})` : 'queued';
  delete status.parked;
  delete status.nextAttemptAt;
  delete status.lastError;
  status.attempts = 0;
  if (state === 'pending') delete status.snapshotDone;
  writeStatus(layout, status);
  return was;
}

/** Pokes a running daemon; false when none answers. */
export function pokeDaemon(layout: ArchiveLayout, uuid: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(layout.socket);
    socket.once('connect', () => {
      socket.end(`${uuid}\n`);
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
