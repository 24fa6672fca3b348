/**
 * Small standalone SVG charts for the replay report. Hand-written rather than a plotting
 * library: four simple chart kinds, and vega or plotly would add tens of MB to a robot's
 * install. Output is deterministic (same input, same bytes), never contains NaN or Infinity,
 * and escapes every text.
 *
 * Layout: the plot keeps a fixed size and the legend sits to its right, as wide as its longest
 * entry (the chart grows to hold it, nothing is cut); a legend taller than the plot makes the
 * chart taller. Point labels are placed where they overlap no other label or point, else left
 * out (the point keeps its tooltip). Text widths are estimated (no font metrics in Node):
 * 0.62 em per character, a little wide for sans-serif, so boxes err on the side of space.
 */

const PLOT_W = 500;
const PLOT_H = 305;
const M = { left: 70, top: 40, bottom: 55, gap: 22, right: 16 };
const FONT = 12;
const LEGEND_ROW = 18;
/** Okabe–Ito: distinguishable with the common colour-vision deficiencies. */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];
/** Reference lines and baselines (constant velocity, the driven path). */
export const REFERENCE_COLOR = '#555555';
const DASH = '6 4';

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const n = (v: number) => (Math.abs(v) < 1e-9 ? '0' : Number(v.toFixed(2)).toString());

/** Estimated width of a text in px. */
export function textWidth(s: string, fontSize = FONT): number {
  return s.length * fontSize * 0.62;
}

/** "Nice" tick values covering [lo, hi] (1, 2, 5 × 10^k steps). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) {
    const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag) as number;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if ((out[out.length - 1] as number) < hi) out.push(Number(((out[out.length - 1] as number) + step).toPrecision(12)));
  return out;
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  return Number(v.toPrecision(6)).toString();
}

/** How a legend entry is drawn: a line sample (solid or dashed) or a filled square. */
export interface LegendEntry {
  name: string;
  color: string;
  kind: 'line' | 'dashed' | 'box';
}

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  parts: string[];
  plot: { x0: number; y0: number; x1: number; y1: number };
}

function frame(
  title: string,
  xLabel: string,
  yLabel: string,
  xs: number[],
  ys: number[],
  legend: LegendEntry[],
  opts: { yFromZero?: boolean; xInteger?: boolean } = {},
): Frame {
  const fx = xs.filter(Number.isFinite), fy = ys.filter(Number.isFinite);
  // About one x tick per 75 px keeps the axis close to the data (5 ticks would stretch 0–11 to 0–15).
  let xt = niceTicks(fx.length ? Math.min(...fx) : 0, fx.length ? Math.max(...fx) : 1, Math.round(PLOT_W / 75));
  // Layer indices and the like: whole-number ticks only.
  if (opts.xInteger && xt.filter(Number.isInteger).length >= 2) xt = xt.filter(Number.isInteger);
  const yt = niceTicks(opts.yFromZero ? Math.min(0, ...(fy.length ? fy : [0])) : fy.length ? Math.min(...fy) : 0, fy.length ? Math.max(...fy) : 1);
  const x0 = xt[0] as number, x1 = xt[xt.length - 1] as number, y0 = yt[0] as number, y1 = yt[yt.length - 1] as number;
  const shown = legend.length >= 2 ? legend : [];
  const legendW = shown.length ? 30 + Math.max(...shown.map((e) => textWidth(e.name))) : 0;
  const ph = Math.max(PLOT_H, shown.length * LEGEND_ROW + 8);
  const pw = PLOT_W;
  const W = Math.ceil(M.left + pw + (legendW ? M.gap + legendW : 0) + M.right);
  const H = M.top + ph + M.bottom;
  const x = (v: number) => M.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const y = (v: number) => M.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="${FONT}">`,
    `<title>${esc(title)}</title>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${n(M.left + pw / 2)}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  ];
  for (const t of yt) parts.push(`<line x1="${M.left}" y1="${n(y(t))}" x2="${M.left + pw}" y2="${n(y(t))}" stroke="#e4e4e4"/>`, `<text x="${M.left - 6}" y="${n(y(t) + 4)}" text-anchor="end">${esc(fmtTick(t))}</text>`);
  for (const t of xt) parts.push(`<line x1="${n(x(t))}" y1="${M.top + ph}" x2="${n(x(t))}" y2="${M.top + ph + 4}" stroke="#333333"/>`, `<text x="${n(x(t))}" y="${M.top + ph + 18}" text-anchor="middle">${esc(fmtTick(t))}</text>`);
  parts.push(
    `<line x1="${M.left}" y1="${M.top + ph}" x2="${M.left + pw}" y2="${M.top + ph}" stroke="#333333"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + ph}" stroke="#333333"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="16" y="${M.top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${M.top + ph / 2})">${esc(yLabel)}</text>`,
  );
  if (!fx.length || !fy.length) parts.push(`<text x="${M.left + pw / 2}" y="${M.top + ph / 2}" text-anchor="middle" fill="#888888">no data</text>`);
  shown.forEach((e, i) => {
    const yy = M.top + 8 + i * LEGEND_ROW;
    const xx = M.left + pw + M.gap;
    if (e.kind === 'box') parts.push(`<rect x="${xx}" y="${yy - 9}" width="12" height="12" fill="${e.color}"/>`);
    else parts.push(`<line x1="${xx - 2}" y1="${yy - 3}" x2="${xx + 20}" y2="${yy - 3}" stroke="${e.color}" stroke-width="2.2"${e.kind === 'dashed' ? ` stroke-dasharray="${DASH}"` : ''}/>`);
    parts.push(`<text x="${xx + 26}" y="${yy + 1}">${esc(e.name)}</text>`);
  });
  return { x, y, parts, plot: { x0: M.left, y0: M.top, x1: M.left + pw, y1: M.top + ph } };
}

/** A horizontal reference (a baseline's error, say): a dashed grey line across the plot with its label. */
export interface ReferenceLine {
  y: number;
  label: string;
}

/** Draws the reference lines; returns their labels' boxes (for the point labels to keep clear of). */
function referenceLines(f: Frame, refs: ReferenceLine[]): Box[] {
  const boxes: Box[] = [];
  for (const r of refs) {
    if (!Number.isFinite(r.y)) continue;
    const yy = f.y(r.y);
    boxes.push({ x0: f.plot.x1 - 4 - textWidth(r.label, 11), y0: yy - 5 - 11, x1: f.plot.x1 - 4, y1: yy - 2 });
    f.parts.push(
      `<line x1="${f.plot.x0}" y1="${n(yy)}" x2="${f.plot.x1}" y2="${n(yy)}" stroke="${REFERENCE_COLOR}" stroke-width="1.5" stroke-dasharray="${DASH}"><title>${esc(r.label)}</title></line>`,
      `<text x="${f.plot.x1 - 4}" y="${n(yy - 5)}" text-anchor="end" font-size="11" fill="${REFERENCE_COLOR}">${esc(r.label)}</text>`,
    );
  }
  return boxes;
}

export interface LineSeries {
  name: string;
  points: Array<[number, number | null]>;
  /** Default: the palette's colour for the series' index. */
  color?: string;
  dashed?: boolean;
}

/** Lines over x; a null y breaks the line. */
export function lineChart(o: { title: string; xLabel: string; yLabel: string; series: LineSeries[]; yFromZero?: boolean; xInteger?: boolean; references?: ReferenceLine[] }): string {
  const refs = o.references ?? [];
  const xs = o.series.flatMap((s) => s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]) && Number.isFinite(p[0])).map((p) => p[0]));
  const ys = o.series.flatMap((s) => s.points.map((p) => p[1]).filter((v): v is number => v !== null && Number.isFinite(v)));
  const colors = o.series.map((s, i) => s.color ?? (PALETTE[i % PALETTE.length] as string));
  const legend: LegendEntry[] = o.series.map((s, i) => ({ name: s.name, color: colors[i] as string, kind: s.dashed ? 'dashed' : 'line' }));
  const f = frame(o.title, o.xLabel, o.yLabel, xs, xs.length ? [...ys, ...refs.map((r) => r.y)] : ys, legend, { yFromZero: o.yFromZero ?? true, xInteger: o.xInteger ?? false });
  if (xs.length) referenceLines(f, refs);
  o.series.forEach((s, i) => {
    const color = colors[i] as string;
    const dash = s.dashed ? ` stroke-dasharray="${DASH}"` : '';
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) f.parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8"${dash} points="${run.join(' ')}"><title>${esc(s.name)}</title></polyline>`);
      else if (run.length === 1) {
        const [px, py] = (run[0] as string).split(',');
        f.parts.push(`<circle cx="${px}" cy="${py}" r="2.5" fill="${color}"><title>${esc(s.name)}</title></circle>`);
      }
      run = [];
    };
    for (const [px, py] of s.points) {
      if (py === null || !Number.isFinite(py) || !Number.isFinite(px)) flush();
      else run.push(`${n(f.x(px))},${n(f.y(py))}`);
    }
    flush();
  });
  return [...f.parts, '</svg>'].join('\n') + '\n';
}

/** Histograms over shared bin edges, drawn as step outlines (several series stay readable). */
export function histogram(o: { title: string; xLabel: string; series: Array<{ name: string; values: number[] }>; bins?: number }): string {
  const all = o.series.flatMap((s) => s.values.filter(Number.isFinite));
  const bins = o.bins ?? 30;
  const lo = all.length ? Math.min(...all) : 0;
  const hi = all.length ? Math.max(...all) : 1;
  const width = (hi - lo || 1) / bins;
  const counts = o.series.map((s) => {
    const c = new Array<number>(bins).fill(0);
    for (const v of s.values) {
      if (!Number.isFinite(v)) continue;
      const b = Math.min(bins - 1, Math.floor((v - lo) / width));
      c[b] = (c[b] ?? 0) + 1;
    }
    return c;
  });
  const maxCount = Math.max(0, ...counts.flat());
  const legend: LegendEntry[] = o.series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length] as string, kind: 'box' }));
  const f = frame(o.title, o.xLabel, 'frames', all.length ? [lo, lo + width * bins] : [], all.length ? [0, maxCount] : [], legend, { yFromZero: true });
  counts.forEach((c, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts: string[] = [`${n(f.x(lo))},${n(f.y(0))}`];
    c.forEach((k, b) => {
      pts.push(`${n(f.x(lo + b * width))},${n(f.y(k))}`, `${n(f.x(lo + (b + 1) * width))},${n(f.y(k))}`);
    });
    pts.push(`${n(f.x(lo + bins * width))},${n(f.y(0))}`);
    if ((o.series[i]?.values ?? []).some(Number.isFinite)) f.parts.push(`<polyline fill="${color}" fill-opacity="0.15" stroke="${color}" stroke-width="1.5" points="${pts.join(' ')}"><title>${esc(o.series[i]?.name ?? '')}</title></polyline>`);
  });
  return [...f.parts, '</svg>'].join('\n') + '\n';
}

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}
const overlaps = (a: Box, b: Box) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;

/**
 * Greedy label placement: for each point in turn, the first of a few positions around it (right,
 * left, above, below, then further out) whose box stays in the plot and clear of every point,
 * every label placed so far and the boxes to avoid; null when there is none.
 */
export function placeLabels(points: ReadonlyArray<{ px: number; py: number; text: string }>, plot: Box, avoid: readonly Box[] = [], fontSize = 10, r = 4.5): Array<{ x: number; y: number; anchor: 'start' | 'end' | 'middle' } | null> {
  const h = fontSize + 2;
  const marks: Box[] = points.map((p) => ({ x0: p.px - r, y0: p.py - r, x1: p.px + r, y1: p.py + r }));
  const placed: Box[] = [...avoid];
  return points.map((p) => {
    const w = textWidth(p.text, fontSize);
    for (const d of [6, 14]) {
      // [left edge, top edge, anchor] of each candidate box, nearest first
      const candidates: Array<[number, number, 'start' | 'end' | 'middle']> = [
        [p.px + d, p.py - d - h / 2 + 2, 'start'],
        [p.px + d, p.py + d - h / 2 - 2, 'start'],
        [p.px - d - w, p.py - d - h / 2 + 2, 'end'],
        [p.px - d - w, p.py + d - h / 2 - 2, 'end'],
        [p.px - w / 2, p.py - d - h, 'middle'],
        [p.px - w / 2, p.py + d, 'middle'],
      ];
      for (const [x0, y0, anchor] of candidates) {
        const b: Box = { x0, y0, x1: x0 + w, y1: y0 + h };
        // inside the plot (a little room above it and towards the legend gap)
        if (b.x0 < plot.x0 || b.x1 > plot.x1 + M.gap - 4 || b.y0 < plot.y0 - 14 || b.y1 > plot.y1) continue;
        if (placed.some((o) => overlaps(o, b)) || marks.some((m) => overlaps(m, b))) continue;
        placed.push(b);
        return { x: anchor === 'start' ? b.x0 : anchor === 'end' ? b.x1 : (b.x0 + b.x1) / 2, y: b.y1 - 3, anchor };
      }
    }
    return null;
  });
}

/**
 * Labelled points, one colour per group (accuracy against FLOPs). With `connect`, each group's
 * points are joined in x order (a policy's budgets as one curve); references are dashed lines.
 */
export function scatterChart(o: { title: string; xLabel: string; yLabel: string; points: Array<{ x: number; y: number | null; label: string; group: string }>; connect?: boolean; references?: ReferenceLine[] }): string {
  const ok = o.points.filter((p): p is { x: number; y: number; label: string; group: string } => p.y !== null && Number.isFinite(p.y) && Number.isFinite(p.x));
  const refs = o.references ?? [];
  const groups = [...new Set(o.points.map((p) => p.group))];
  const color = (g: string) => PALETTE[groups.indexOf(g) % PALETTE.length] as string;
  const legend: LegendEntry[] = groups.map((g) => ({ name: g, color: color(g), kind: 'box' }));
  const f = frame(o.title, o.xLabel, o.yLabel, ok.map((p) => p.x), ok.length ? [...ok.map((p) => p.y), ...refs.map((r) => r.y)] : [], legend, { yFromZero: true });
  const refBoxes = ok.length ? referenceLines(f, refs) : [];
  if (o.connect) {
    for (const g of groups) {
      const pts = ok.filter((p) => p.group === g).sort((a, b) => a.x - b.x);
      if (pts.length > 1) f.parts.push(`<polyline fill="none" stroke="${color(g)}" stroke-width="1.2" stroke-opacity="0.6" points="${pts.map((p) => `${n(f.x(p.x))},${n(f.y(p.y))}`).join(' ')}"><title>${esc(g)}</title></polyline>`);
    }
  }
  const at = ok.map((p) => ({ px: f.x(p.x), py: f.y(p.y), text: p.label }));
  const labels = placeLabels(at, f.plot, refBoxes);
  ok.forEach((p, i) => {
    const a = at[i] as { px: number; py: number };
    f.parts.push(`<circle cx="${n(a.px)}" cy="${n(a.py)}" r="4.5" fill="${color(p.group)}"><title>${esc(p.label)}</title></circle>`);
  });
  ok.forEach((p, i) => {
    const l = labels[i];
    if (l) f.parts.push(`<text x="${n(l.x)}" y="${n(l.y)}" text-anchor="${l.anchor}" font-size="10">${esc(p.label)}</text>`);
  });
  return [...f.parts, '</svg>'].join('\n') + '\n';
}
