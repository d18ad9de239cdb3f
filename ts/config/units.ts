/**
 * The units coresnap.conf speaks: durations (`purge.age = 1d`) and sizes (`dump.quota = 10%`).
 */

/** Seconds per unit of `<N><U>`, as the vendor guide lists them (`M` is a month of 30 days). */
export const DURATION_UNITS: Readonly<Record<string, number>> = {
  s: 1,
  m: 60,
  h: 3600,
  d: 86_400,
  w: 7 * 86_400,
  M: 30 * 86_400,
};

/** `<N><s|m|h|d|w|M>` in seconds, or null when the text is not one. */
export function parseDuration(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([smhdwM])$/.exec(text.trim());
  if (!match) return null;
  const unit = DURATION_UNITS[match[2] ?? ''];
  const value = Number(match[1]);
  if (unit === undefined || !Number.isFinite(value)) return null;
  return value * unit;
}

/**
 * Seconds as `parseDuration` reads them back, in days, hours, minutes or seconds: the largest that
 * divides them evenly (`7776000` is `90d`, not `3M`; `90000` is `25h`). Pure: the web console
 * shows retentions with it too.
 */
export function formatDuration(seconds: number): string {
  const [unit, size] = (['d', 'h', 'm', 's'] as const).map((u) => [u, DURATION_UNITS[u]!] as const).find(([, size]) => seconds % size === 0) ?? ['s', 1];
  return `${seconds / size}${unit}`;
}

export type Quota = { kind: 'percent'; percent: number } | { kind: 'bytes'; bytes: number };

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `123`, `64k`, `500M`, `2GB` (powers of 1024) in bytes, or null. */
export function parseSize(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(text.trim());
  if (!match) return null;
  const unit = SIZE_UNITS[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return null;
  return Math.floor(Number(match[1]) * unit);
}

/** `10%` or a size. */
export function parseQuota(text: string): Quota | null {
  const trimmed = text.trim();
  if (trimmed.endsWith('%')) {
    const percent = Number(trimmed.slice(0, -1).trim());
    if (!Number.isFinite(percent) || percent < 0 || percent > 100 || trimmed.slice(0, -1).trim() === '') return null;
    return { kind: 'percent', percent };
  }
  const bytes = parseSize(trimmed);
  return bytes === null ? null : { kind: 'bytes', bytes };
}

/** The handler.conf spelling of a quota (`10%` or a byte count). */
export function quotaForHandler(quota: Quota): string {
  return quota.kind === 'percent' ? `${quota.percent}%` : String(quota.bytes);
}

/** The free bytes a quota requires on a file system, rounded up to a block (as the handler does). */
export function requiredFree(quota: Quota, totalBytes: number, blockSize: number): number {
  const raw = quota.kind === 'bytes' ? quota.bytes : Math.ceil((totalBytes * quota.percent) / 100);
  const block = Math.max(1, blockSize);
  return Math.ceil(raw / block) * block;
}

export function parseBoolean(text: string): boolean | null {
  switch (text.trim().toLowerCase()) {
    case 'true':
    case 'yes':
    case 'on':
    case '1':
      return true;
    case 'false':
    case 'no':
    case 'off':
    case '0':
      return false;
    default:
      return null;
  }
}

/**
 * Sizes the way the vendor's `coresnap list` prints them: `9.45kB`, `3.12mB`, `812B`
 * (powers of 1000, two decimals).
 */
export function formatSize(bytes: number): string {
  if (bytes < 1000) return `${bytes}B`;
  const units = ['kB', 'mB', 'gB', 'tB'];
  let value = bytes;
  let unit = 'B';
  for (const next of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = next;
  }
  return `${value.toFixed(2)}${unit}`;
}
