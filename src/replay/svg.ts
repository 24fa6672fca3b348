/**
 * Small standalone SVG charts for the replay report. Hand-written rather than a plotting
 * library: four simple chart kinds, and vega or plotly would add tens of MB to a robot's
 * install. Output is deterministic (same input, same bytes), never contains NaN or Infinity,
 * and escapes every text.
 */

const W = 720;
const H = 400;
const M = { left: 70, right: 170, top: 40, bottom: 55 };
/** Okabe–Ito: distinguishable with the common colour-vision deficiencies. */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const n = (v: number) => (Math.abs(v) < 1e-9 ? '0' : Number(v.toFixed(2)).toString());

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

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  parts: string[];
}

function frame(title: string, xLabel: string, yLabel: string, xs: number[], ys: number[], opts: { yFromZero?: boolean; xInteger?: boolean } = {}): Frame {
  const fx = xs.filter(Number.isFinite), fy = ys.filter(Number.isFinite);
  let xt = niceTicks(fx.length ? Math.min(...fx) : 0, fx.length ? Math.max(...fx) : 1);
  // Layer indices and the like: whole-number ticks only.
  if (opts.xInteger && xt.filter(Number.isInteger).length >= 2) xt = xt.filter(Number.isInteger);
  const yt = niceTicks(opts.yFromZero ? Math.min(0, ...(fy.length ? fy : [0])) : fy.length ? Math.min(...fy) : 0, fy.length ? Math.max(...fy) : 1);
  const x0 = xt[0] as number, x1 = xt[xt.length - 1] as number, y0 = yt[0] as number, y1 = yt[yt.length - 1] as number;
  const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
  const x = (v: number) => M.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const y = (v: number) => M.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
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
  return { x, y, parts };
}

function legend(parts: string[], names: string[]): void {
  if (names.length < 2) return;
  names.forEach((name, i) => {
    const yy = M.top + 8 + i * 18;
    const xx = W - M.right + 14;
    parts.push(`<rect x="${xx}" y="${yy - 9}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/>`, `<text x="${xx + 18}" y="${yy + 1}">${esc(name.length > 22 ? `${name.slice(0, 21)}…` : name)}</text>`);
  });
}

export interface LineSeries {
  name: string;
  points: Array<[number, number | null]>;
}

/** Lines over x; a null y breaks the line. */
export function lineChart(o: { title: string; xLabel: string; yLabel: string; series: LineSeries[]; yFromZero?: boolean; xInteger?: boolean }): string {
  const xs = o.series.flatMap((s) => s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]) && Number.isFinite(p[0])).map((p) => p[0]));
  const ys = o.series.flatMap((s) => s.points.map((p) => p[1]).filter((v): v is number => v !== null && Number.isFinite(v)));
  const f = frame(o.title, o.xLabel, o.yLabel, xs, ys, { yFromZero: o.yFromZero ?? true, xInteger: o.xInteger ?? false });
  o.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) f.parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${run.join(' ')}"><title>${esc(s.name)}</title></polyline>`);
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
  legend(f.parts, o.series.map((s) => s.name));
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
  const f = frame(o.title, o.xLabel, 'frames', all.length ? [lo, lo + width * bins] : [], all.length ? [0, maxCount] : [], { yFromZero: true });
  counts.forEach((c, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts: string[] = [`${n(f.x(lo))},${n(f.y(0))}`];
    c.forEach((k, b) => {
      pts.push(`${n(f.x(lo + b * width))},${n(f.y(k))}`, `${n(f.x(lo + (b + 1) * width))},${n(f.y(k))}`);
    });
    pts.push(`${n(f.x(lo + bins * width))},${n(f.y(0))}`);
    if ((o.series[i]?.values ?? []).some(Number.isFinite)) f.parts.push(`<polyline fill="${color}" fill-opacity="0.15" stroke="${color}" stroke-width="1.5" points="${pts.join(' ')}"><title>${esc(o.series[i]?.name ?? '')}</title></polyline>`);
  });
  legend(f.parts, o.series.map((s) => s.name));
  return [...f.parts, '</svg>'].join('\n') + '\n';
}

/** Labelled points, one colour per group (accuracy against FLOPs). */
export function scatterChart(o: { title: string; xLabel: string; yLabel: string; points: Array<{ x: number; y: number | null; label: string; group: string }> }): string {
  const ok = o.points.filter((p): p is { x: number; y: number; label: string; group: string } => p.y !== null && Number.isFinite(p.y) && Number.isFinite(p.x));
  const f = frame(o.title, o.xLabel, o.yLabel, ok.map((p) => p.x), ok.map((p) => p.y), { yFromZero: true });
  const groups = [...new Set(o.points.map((p) => p.group))];
  for (const p of ok) {
    const color = PALETTE[groups.indexOf(p.group) % PALETTE.length];
    f.parts.push(`<circle cx="${n(f.x(p.x))}" cy="${n(f.y(p.y))}" r="4.5" fill="${color}"><title>${esc(p.label)}</title></circle>`, `<text x="${n(f.x(p.x) + 7)}" y="${n(f.y(p.y) - 6)}" font-size="10">${esc(p.label)}</text>`);
  }
  legend(f.parts, groups);
  return [...f.parts, '</svg>'].join('\n') + '\n';
}
