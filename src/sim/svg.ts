/**
 * Pictures of a closed-loop drive: the top-down SVG of the whole drive (road, route, driven path,
 * other vehicles, infractions) and the drawing helpers the animation shares. Deterministic: same
 * drive, same bytes.
 */
import { esc } from '../replay/svg.js';
import { LANE_WIDTH_M, ROAD_HALF_WIDTH_M, STOP_LINE_M } from '../sample/scenario.js';
import type { ExpertRoute } from './expert.js';
import { boxCorners, type Box } from './geometry.js';
import type { InfractionEvent } from './metrics.js';
import type { SimWorld } from './world.js';

const f = (v: number) => (Math.abs(v) < 5e-3 ? '0' : v.toFixed(2));

export interface XY {
  x: number;
  y: number;
}

/** Road outline pieces in world coordinates over [s0, s1]: asphalt polygons and lane lines. */
export function roadShapes(world: SimWorld, s0: number, s1: number): { asphalt: XY[][]; edges: XY[][]; dashes: XY[][]; oncoming: XY[] | null; stopLine: XY[] | null } {
  const g = world.geo;
  const step = 2;
  const left: XY[] = [], right: XY[] = [], dl: XY[] = [], dr: XY[] = [], onL: XY[] = [];
  for (let s = s0; s <= s1 + 1e-9; s += step) {
    left.push(g.pose(s, ROAD_HALF_WIDTH_M, 0));
    right.push(g.pose(s, -ROAD_HALF_WIDTH_M, 0));
    dl.push(g.pose(s, LANE_WIDTH_M / 2, 0));
    dr.push(g.pose(s, -LANE_WIDTH_M / 2, 0));
    onL.push(g.pose(s, LANE_WIDTH_M / 2, 0));
  }
  const asphalt: XY[][] = [[...left, ...[...right].reverse()]];
  const sc = world.scenario;
  const sI = sc.intersectionSM;
  if (sI !== null) {
    const w = ROAD_HALF_WIDTH_M;
    asphalt.push([g.pose(sI - w, 80, 0), g.pose(sI + w, 80, 0), g.pose(sI + w, -80, 0), g.pose(sI - w, -80, 0)]);
  }
  const oncoming = sc.leftLaneOncoming ? [...onL, ...[...left].reverse()] : null;
  const stopLine = sc.kind === 'stop_at_intersection' && sI !== null ? [g.pose(sI - STOP_LINE_M, -ROAD_HALF_WIDTH_M, 0), g.pose(sI - STOP_LINE_M, ROAD_HALF_WIDTH_M, 0)] : null;
  return { asphalt, edges: [left, right], dashes: [dl, dr], oncoming, stopLine };
}

export interface TopDownInput {
  world: SimWorld;
  route: ExpertRoute;
  driven: XY[];
  events: InfractionEvent[];
  endS: number;
  title: string;
  subtitle: string;
}

const EVENT_LABEL: Record<string, string> = {
  collisionVehicle: 'collision (vehicle)',
  collisionStatic: 'collision (static)',
  collisionNotAtFault: 'hit from behind',
  offRoad: 'left the road',
  oncomingLane: 'oncoming lane',
  outsideRouteLane: 'outside the route lane',
  stopLine: 'ran the stop line',
  stopBehind: 'did not stop behind the car',
  routeDeviation: 'route deviation',
};

/** The whole drive from above, north-up, fitted to the route, the driven path and the traffic. */
export function topDownSvg(t: TopDownInput): string {
  const { world, route } = t;
  const routePts: XY[] = [];
  for (let i = 0; i < route.path.size; i += 4) {
    if ((route.path.d[i] as number) > route.routeEndD) break;
    routePts.push({ x: route.path.x[i] as number, y: route.path.y[i] as number });
  }
  routePts.push(route.path.at(route.routeEndD));
  const tracks = world.scenario.traffic.map((_o, j) => {
    const pts: XY[] = [];
    for (let tS = 0; tS <= t.endS + 1e-9; tS += 0.5) {
      const b = world.objectsAt(tS)[j] as { box: Box };
      pts.push({ x: b.box.cx, y: b.box.cy });
    }
    return pts;
  });
  const all = [...routePts, ...t.driven];
  const xs = all.map((p) => p.x), ys = all.map((p) => p.y);
  let x0 = Math.min(...xs) - 20, x1 = Math.max(...xs) + 20, y0 = Math.min(...ys) - 20, y1 = Math.max(...ys) + 20;
  // keep the traffic near the drive in view, not the whole of every track
  const near: XY[] = [];
  for (const tr of tracks) for (const p of tr) if (p.x > x0 - 30 && p.x < x1 + 30 && p.y > y0 - 30 && p.y < y1 + 30) near.push(p);
  for (const p of near) {
    x0 = Math.min(x0, p.x - 5);
    x1 = Math.max(x1, p.x + 5);
    y0 = Math.min(y0, p.y - 5);
    y1 = Math.max(y1, p.y + 5);
  }
  const W = 960, top = 56;
  const k = Math.min((W - 40) / (x1 - x0), 560 / (y1 - y0));
  const H = Math.round(top + (y1 - y0) * k + 20 + 18 * (t.events.length ? t.events.length + 1 : 0));
  const px = (p: XY) => `${f(20 + (p.x - x0) * k)},${f(top + (y1 - p.y) * k)}`;
  const poly = (pts: XY[]) => pts.map(px).join(' ');
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#eef3e8"/>`,
    `<text x="20" y="22" font-size="15" font-weight="bold">${esc(t.title)}</text>`,
    `<text x="20" y="42" fill="#333">${esc(t.subtitle)}</text>`,
  ];
  let sMin = Infinity, sMax = -Infinity, guess = 0;
  for (const p of [...all, ...near]) {
    guess = world.roadPose(p.x, p.y, 0, guess).s;
    sMin = Math.min(sMin, guess);
    sMax = Math.max(sMax, guess);
  }
  const r = roadShapes(world, sMin - 60, sMax + 60);
  const clip = `<clipPath id="view"><rect x="20" y="${top}" width="${f((x1 - x0) * k)}" height="${f((y1 - y0) * k)}"/></clipPath>`;
  out.push(`<defs>${clip}</defs>`, '<g clip-path="url(#view)">');
  for (const a of r.asphalt) out.push(`<polygon points="${poly(a)}" fill="#8a8d91"/>`);
  if (r.oncoming) out.push(`<polygon points="${poly(r.oncoming)}" fill="#9c8f86"/>`);
  for (const e of r.edges) out.push(`<polyline points="${poly(e)}" fill="none" stroke="#fff" stroke-width="1.5"/>`);
  for (const d of r.dashes) out.push(`<polyline points="${poly(d)}" fill="none" stroke="#fff" stroke-width="1" stroke-dasharray="6 6"/>`);
  if (r.stopLine) out.push(`<polyline points="${poly(r.stopLine)}" fill="none" stroke="#fff" stroke-width="4"/>`);
  tracks.forEach((tr, j) => {
    const o = world.scenario.traffic[j];
    if (!o) return;
    const c = `rgb(${o.color.join(',')})`;
    if (o.speedMps > 0 || o.speedProfile) out.push(`<polyline points="${poly(tr)}" fill="none" stroke="${c}" stroke-width="1" stroke-opacity="0.6"/>`);
    const objs = world.objectsAt(t.endS)[j] as { box: Box };
    out.push(`<polygon points="${poly(boxCorners(objs.box).map(([x, y]) => ({ x, y })))}" fill="${c}" stroke="#222" stroke-width="0.8"/>`);
  });
  out.push(`<polyline points="${poly(routePts)}" fill="none" stroke="#009E73" stroke-width="3" stroke-dasharray="8 5" stroke-opacity="0.9"/>`);
  out.push(`<polyline points="${poly(t.driven)}" fill="none" stroke="#0072B2" stroke-width="2.2"/>`);
  const start = t.driven[0];
  if (start) out.push(`<circle cx="${px(start).split(',')[0]}" cy="${px(start).split(',')[1]}" r="4" fill="#0072B2"/>`);
  t.events.forEach((e, i) => {
    const [cx, cy] = px(e).split(',');
    out.push(`<g stroke="#D55E00" stroke-width="2.5"><line x1="${f(Number(cx) - 6)}" y1="${f(Number(cy) - 6)}" x2="${f(Number(cx) + 6)}" y2="${f(Number(cy) + 6)}"/><line x1="${f(Number(cx) - 6)}" y1="${f(Number(cy) + 6)}" x2="${f(Number(cx) + 6)}" y2="${f(Number(cy) - 6)}"/></g>`);
    out.push(`<text x="${f(Number(cx) + 8)}" y="${f(Number(cy) - 8)}" fill="#D55E00" font-weight="bold">${i + 1}</text>`);
  });
  out.push('</g>');
  let ly = top + (y1 - y0) * k + 18;
  out.push(`<g font-size="12"><line x1="20" y1="${f(ly)}" x2="44" y2="${f(ly)}" stroke="#009E73" stroke-width="3" stroke-dasharray="8 5"/><text x="50" y="${f(ly + 4)}">route (the scenario's expert)</text>`);
  out.push(`<line x1="260" y1="${f(ly)}" x2="284" y2="${f(ly)}" stroke="#0072B2" stroke-width="2.2"/><text x="290" y="${f(ly + 4)}">driven</text>`);
  out.push(`<rect x="360" y="${f(ly - 6)}" width="20" height="12" fill="#9c8f86"/><text x="386" y="${f(ly + 4)}">oncoming lane</text></g>`);
  t.events.forEach((e, i) => {
    ly += 18;
    out.push(`<text x="20" y="${f(ly + 4)}" fill="#D55E00">${i + 1}. ${e.tS.toFixed(1)} s: ${esc(EVENT_LABEL[e.type] ?? e.type)} — ${esc(e.detail)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
