// Charts as inline SVG (no chart library, nothing fetched): a sparkline, a time histogram, and
// horizontal bars for an attribute's distribution. Every chart carries its numbers in
// `data-counts` (and each bar a <title>), so what is drawn can be checked against the API.

import { h, s } from './dom.js';
import { formatCount, formatTime, formatValue } from './format.js';

export type Bin = [number, number, number];

export function sparkline(bins: Bin[], options: { width?: number; height?: number; label?: string } = {}): SVGSVGElement {
  const width = options.width ?? 120;
  const height = options.height ?? 24;
  const counts = bins.map((b) => b[2]);
  const max = Math.max(1, ...counts);
  const step = counts.length > 1 ? width / (counts.length - 1) : width;
  const y = (c: number) => height - 2 - (c / max) * (height - 4);
  const points = counts.map((c, i) => `${(i * step).toFixed(1)},${y(c).toFixed(1)}`).join(' ');
  const total = counts.reduce((a, b) => a + b, 0);
  return s(
    'svg',
    {
      class: 'sparkline',
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': options.label ?? `${formatCount(total)} crashes`,
      'data-counts': JSON.stringify(counts),
    },
    s('title', null, `${formatCount(total)} crashes, ${formatTime(bins[0]?.[0])} – ${formatTime(bins[bins.length - 1]?.[1])}`),
    counts.length > 0 ? s('polygon', { class: 'area', points: `0,${height} ${points} ${((counts.length - 1) * step).toFixed(1)},${height}` }) : null,
    counts.length > 0 ? s('polyline', { class: 'line', points }) : null,
  );
}

/** Bars over time: one per bin, with the range and the largest count written beside them. */
export function timeHistogram(bins: Bin[], options: { width?: number; height?: number; axis?: boolean; className?: string } = {}): SVGSVGElement {
  const axis = options.axis ?? true;
  const width = options.width ?? 640;
  const height = options.height ?? (axis ? 120 : 28);
  const top = axis ? 14 : 1;
  const bottom = axis ? 16 : 1;
  const plot = height - top - bottom;
  const counts = bins.map((b) => b[2]);
  const max = Math.max(1, ...counts);
  const bw = bins.length ? width / bins.length : width;
  const bars = bins.map((b, i) => {
    const bh = b[2] === 0 ? 0 : Math.max(1, (b[2] / max) * plot);
    return s(
      'rect',
      { class: 'bar', x: (i * bw + 0.5).toFixed(1), y: (top + plot - bh).toFixed(1), width: Math.max(0.5, bw - 1).toFixed(1), height: bh.toFixed(1), 'data-count': b[2] },
      s('title', null, `${formatTime(b[0])} – ${formatTime(b[1])}: ${formatCount(b[2])}`),
    );
  });
  return s(
    'svg',
    {
      class: `histogram ${options.className ?? ''}`.trim(),
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': 'crashes over time',
      'data-counts': JSON.stringify(counts),
      'data-from': bins[0]?.[0] ?? '',
      'data-to': bins[bins.length - 1]?.[1] ?? '',
    },
    s('line', { class: 'baseline', x1: 0, x2: width, y1: top + plot + 0.5, y2: top + plot + 0.5 }),
    bars,
    axis
      ? [
          s('text', { class: 'axis', x: 0, y: height - 3 }, formatTime(bins[0]?.[0])),
          s('text', { class: 'axis', x: width, y: height - 3, 'text-anchor': 'end' }, formatTime(bins[bins.length - 1]?.[1])),
          s('text', { class: 'axis', x: 0, y: 10 }, `max ${formatCount(Math.max(0, ...counts))} per bin`),
        ]
      : null,
  );
}

/** An attribute's most frequent values as horizontal bars, with the rest summed as "other". */
export function distributionBars(
  name: string,
  entries: Array<[unknown, number]>,
  total: number,
  options: { format?: string; width?: number } = {},
): HTMLElement {
  const width = options.width ?? 260;
  const rowH = 18;
  const shown = entries.slice(0, 10);
  const rest = total - shown.reduce((a, e) => a + e[1], 0);
  const rows: Array<[string, number, boolean]> = shown.map(([v, n]) => [formatValue(v, options.format), n, false]);
  if (rest > 0) rows.push(['(other / not set)', rest, true]);
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const labelW = Math.round(width * 0.55);
  const barW = width - labelW - 50;
  const svg = s(
    'svg',
    { class: 'distribution', width, height: rows.length * rowH + 2, viewBox: `0 0 ${width} ${rows.length * rowH + 2}`, role: 'img', 'aria-label': `${name} distribution`, 'data-counts': JSON.stringify(rows.map((r) => r[1])) },
    rows.map(([label, n, other], i) => {
      const y = i * rowH + 1;
      const w = Math.max(1, (n / max) * barW);
      return s(
        'g',
        { class: other ? 'other' : '' },
        s('title', null, `${label}: ${formatCount(n)} (${total ? ((100 * n) / total).toFixed(1) : 0}%)`),
        s('text', { class: 'label', x: labelW - 6, y: y + 13, 'text-anchor': 'end' }, label.length > 34 ? label.slice(0, 33) + '…' : label),
        s('rect', { class: 'bar', x: labelW, y: y + 3, width: w.toFixed(1), height: rowH - 6 }),
        s('text', { class: 'value', x: labelW + w + 4, y: y + 13 }, formatCount(n)),
      );
    }),
  );
  return h('figure', { class: 'chart' }, h('figcaption', null, name), rows.length ? svg : h('p', { class: 'muted' }, 'no values'));
}
