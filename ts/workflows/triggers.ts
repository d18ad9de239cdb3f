/**
 * Triggers of workflow integrations, as people write them (`--trigger`, the console's form) and as
 * the evaluator uses them.
 *
 *   new-group              the first crash of a fingerprint in the project
 *   threshold:N/WINDOW     N crashes of one group within WINDOW (`30s`, `10m`, `1h`, `1d`), at most
 *                          one message per WINDOW and group
 *   regression             a crash of a group marked resolved (the group is opened again)
 */

export type Trigger =
  | { kind: 'new-group' }
  | { kind: 'regression' }
  | { kind: 'threshold'; count: number; windowSeconds: number };

export type TriggerKind = Trigger['kind'];

/** A trigger the user wrote that does not parse; the message says what is expected. */
export class TriggerError extends Error {
  override name = 'TriggerError';
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
/** Windows longer than this would keep per-group counters for weeks; nobody alerts on that. */
const MAX_WINDOW_SECONDS = 30 * 86400;
const MAX_COUNT = 1_000_000_000;

/** `10m` → 600. Throws TriggerError for anything but `<whole number><s|m|h|d|w>`. */
export function parseWindow(text: string): number {
  const m = /^(\d{1,9})([smhdw])$/.exec(text.trim());
  const unit = m ? UNIT_SECONDS[m[2]!] : undefined;
  if (!m || unit === undefined) throw new TriggerError(`"${text}" is not a window: write a whole number and a unit, e.g. 30s, 10m, 1h or 1d.`);
  const seconds = Number(m[1]) * unit;
  if (seconds < 1 || seconds > MAX_WINDOW_SECONDS) throw new TriggerError(`The window "${text}" must be between 1s and 30d.`);
  return seconds;
}

/** 600 → `10m`: the largest unit that divides the window. */
export function formatWindow(seconds: number): string {
  for (const unit of ['w', 'd', 'h', 'm'] as const) {
    const size = UNIT_SECONDS[unit]!;
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

export function parseTrigger(text: string): Trigger {
  const t = text.trim().toLowerCase();
  if (t === 'new-group' || t === 'new') return { kind: 'new-group' };
  if (t === 'regression') return { kind: 'regression' };
  const m = /^threshold:(\d+)\/(.+)$/.exec(t);
  if (m) {
    const count = Number(m[1]);
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_COUNT) throw new TriggerError(`The threshold count in "${text}" must be a whole number from 1 to ${MAX_COUNT}.`);
    return { kind: 'threshold', count, windowSeconds: parseWindow(m[2]!) };
  }
  throw new TriggerError(`"${text}" is not a trigger: use new-group, regression or threshold:N/WINDOW (e.g. threshold:100/10m).`);
}

export function formatTrigger(trigger: Trigger): string {
  switch (trigger.kind) {
    case 'new-group':
    case 'regression':
      return trigger.kind;
    case 'threshold':
      return `threshold:${trigger.count}/${formatWindow(trigger.windowSeconds)}`;
  }
}
