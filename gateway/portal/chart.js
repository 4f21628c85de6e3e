// The per-minute chart of an endpoint's delivered and failed deliveries,
// drawn as SVG from DOM calls (colours come from the stylesheet).

import { h, svg } from './dom.js';

const WIDTH = 600;
const HEIGHT = 160;
const PAD = { top: 12, right: 8, bottom: 26, left: 40 };

/** A stacked bar per minute: delivered below, failed above. */
export function minutesChart(minutes) {
  const totals = minutes.reduce((acc, m) => ({ delivered: acc.delivered + (m.delivered || 0), failed: acc.failed + (m.failed || 0) }),
    { delivered: 0, failed: 0 });
  const summary = `${totals.delivered} delivered and ${totals.failed} failed in the last ${minutes.length} minutes`;
  const peak = Math.max(1, ...minutes.map((m) => (m.delivered || 0) + (m.failed || 0)));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, minutes.length);
  const barW = Math.max(1, step * 0.8);
  const y = (value) => PAD.top + plotH - (value / peak) * plotH;
  const bars = minutes.map((m, i) => {
    const x = PAD.left + i * step + (step - barW) / 2;
    const delivered = m.delivered || 0;
    const failed = m.failed || 0;
    const label = `${new Date(m.minute).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${delivered} delivered, ${failed} failed`;
    return svg('g', {},
      svg('title', {}, label),
      delivered ? svg('rect', { class: 'bar-delivered', x, y: y(delivered), width: barW, height: (delivered / peak) * plotH }) : null,
      failed ? svg('rect', { class: 'bar-failed', x, y: y(delivered + failed), width: barW, height: (failed / peak) * plotH }) : null);
  });
  const first = minutes[0] ? new Date(minutes[0].minute) : null;
  const last = minutes.length ? new Date(minutes[minutes.length - 1].minute) : null;
  const clock = (d) => (d ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '');
  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': summary },
    svg('title', {}, summary),
    svg('line', { class: 'axis', x1: PAD.left, y1: PAD.top + plotH, x2: WIDTH - PAD.right, y2: PAD.top + plotH }),
    svg('line', { class: 'axis', x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH }),
    svg('text', { class: 'tick', x: PAD.left - 4, y: PAD.top + 8, 'text-anchor': 'end' }, String(peak)),
    svg('text', { class: 'tick', x: PAD.left - 4, y: PAD.top + plotH, 'text-anchor': 'end' }, '0'),
    svg('text', { class: 'tick', x: PAD.left, y: HEIGHT - 6 }, clock(first)),
    svg('text', { class: 'tick', x: WIDTH - PAD.right, y: HEIGHT - 6, 'text-anchor': 'end' }, clock(last)),
    bars);
  return h('figure', { class: 'chart-figure' }, chart,
    h('figcaption', {},
      h('span', { class: 'legend legend-delivered' }, `Delivered: ${totals.delivered}`), ' ',
      h('span', { class: 'legend legend-failed' }, `Failed: ${totals.failed}`)));
}
