// How values are shown: times, counts, sizes, attribute values by their column format.

const pad = (n: number) => String(n).padStart(2, '0');

/** `2026-11-26 09:29:50` in the browser's time zone. */
export function formatTime(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `3 min ago`, `2 d ago`. */
export function formatAgo(seconds: number | null | undefined, now = Date.now() / 1000): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return 'never';
  const d = Math.max(0, now - seconds);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  if (d < 86400 * 60) return `${Math.round(d / 86400)} d ago`;
  if (d < 86400 * 730) return `${Math.round(d / (86400 * 30))} mo ago`;
  return `${Math.round(d / (86400 * 365))} y ago`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** An attribute value as its column's format says to show it. */
export function formatValue(value: unknown, format?: string): string {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'number') {
    if (format === 'unix_timestamp') return formatTime(value);
    if (format === 'js_timestamp') return formatTime(value / 1000);
    if (format === 'bytes') return formatBytes(value);
    if (format === 'kilobytes') return formatBytes(value * 1024);
    if (format === 'memory_address') return '0x' + value.toString(16);
    if (format === 'seconds') return `${value} s`;
    return String(value);
  }
  if (format === 'callstack' && typeof value === 'string') return callstackFrames(value).join(' ← ');
  return String(value);
}

/** The frames of a `callstack` column value (`{"frame":[...]}`), innermost first. */
export function callstackFrames(value: unknown): string[] {
  if (typeof value !== 'string') return [];
  try {
    const parsed = JSON.parse(value) as { frame?: unknown };
    return Array.isArray(parsed.frame) ? parsed.frame.map(String) : [];
  } catch {
    return [value];
  }
}

export function shortFingerprint(fp: string): string {
  return fp.length > 12 ? fp.slice(0, 12) : fp;
}

export function basename(path: string | undefined): string {
  if (!path) return '';
  const i = path.lastIndexOf('/');
  return i >= 0 ? path.slice(i + 1) : path;
}
