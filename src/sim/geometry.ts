/** Small plane geometry for the closed-loop simulator: oriented boxes, polylines, frames. */

/** An oriented rectangle: centre, heading, half length (along the heading) and half width, m. */
export interface Box {
  cx: number;
  cy: number;
  yaw: number;
  halfL: number;
  halfW: number;
}

/** The four corners, counter-clockwise from front-left. */
export function boxCorners(b: Box): Array<[number, number]> {
  const c = Math.cos(b.yaw), s = Math.sin(b.yaw);
  const out: Array<[number, number]> = [];
  for (const [fx, fy] of [[1, 1], [-1, 1], [-1, -1], [1, -1]] as const) {
    const lx = fx * b.halfL, ly = fy * b.halfW;
    out.push([b.cx + lx * c - ly * s, b.cy + lx * s + ly * c]);
  }
  return out;
}

/** Whether two oriented rectangles overlap (separating axis test). */
export function boxesOverlap(a: Box, b: Box): boolean {
  const axes: Array<[number, number]> = [
    [Math.cos(a.yaw), Math.sin(a.yaw)],
    [-Math.sin(a.yaw), Math.cos(a.yaw)],
    [Math.cos(b.yaw), Math.sin(b.yaw)],
    [-Math.sin(b.yaw), Math.cos(b.yaw)],
  ];
  const dx = b.cx - a.cx, dy = b.cy - a.cy;
  for (const [ax, ay] of axes) {
    const ra = a.halfL * Math.abs(Math.cos(a.yaw) * ax + Math.sin(a.yaw) * ay) + a.halfW * Math.abs(-Math.sin(a.yaw) * ax + Math.cos(a.yaw) * ay);
    const rb = b.halfL * Math.abs(Math.cos(b.yaw) * ax + Math.sin(b.yaw) * ay) + b.halfW * Math.abs(-Math.sin(b.yaw) * ax + Math.cos(b.yaw) * ay);
    if (Math.abs(dx * ax + dy * ay) > ra + rb) return false;
  }
  return true;
}

export const wrapAngle = (a: number): number => Math.atan2(Math.sin(a), Math.cos(a));

/** A world point in the frame of a pose (x forward, y left). */
export function toFrame(pose: { x: number; y: number; yaw: number }, x: number, y: number): { x: number; y: number } {
  const c = Math.cos(pose.yaw), s = Math.sin(pose.yaw);
  const dx = x - pose.x, dy = y - pose.y;
  return { x: dx * c + dy * s, y: -dx * s + dy * c };
}

/** A point given in the frame of a pose, in the world. */
export function fromFrame(pose: { x: number; y: number; yaw: number }, x: number, y: number): { x: number; y: number } {
  const c = Math.cos(pose.yaw), s = Math.sin(pose.yaw);
  return { x: pose.x + x * c - y * s, y: pose.y + x * s + y * c };
}

/**
 * A polyline with cumulative distance, and projection of points onto it within a search window
 * (the callers move along it, so a window around the last answer is enough and keeps it cheap).
 */
export class Polyline {
  readonly x: Float64Array;
  readonly y: Float64Array;
  /** Cumulative distance at each point, m. */
  readonly d: Float64Array;

  constructor(points: ReadonlyArray<{ x: number; y: number }>, minStepM = 0.05) {
    const xs: number[] = [], ys: number[] = [];
    for (const p of points) {
      const n = xs.length;
      if (n && Math.hypot(p.x - (xs[n - 1] as number), p.y - (ys[n - 1] as number)) < minStepM) continue;
      xs.push(p.x);
      ys.push(p.y);
    }
    if (xs.length === 0) {
      xs.push(0);
      ys.push(0);
    }
    this.x = Float64Array.from(xs);
    this.y = Float64Array.from(ys);
    this.d = new Float64Array(xs.length);
    for (let i = 1; i < xs.length; i++) this.d[i] = (this.d[i - 1] as number) + Math.hypot((this.x[i] as number) - (this.x[i - 1] as number), (this.y[i] as number) - (this.y[i - 1] as number));
  }

  get length(): number {
    return this.d[this.d.length - 1] as number;
  }

  get size(): number {
    return this.x.length;
  }

  /** Index of the last point at or before distance d. */
  indexAt(d: number): number {
    let lo = 0, hi = this.d.length - 1;
    if (d <= 0) return 0;
    if (d >= (this.d[hi] as number)) return hi;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if ((this.d[mid] as number) <= d) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  /** The point and unit tangent at distance d (clamped to the ends). */
  at(d: number): { x: number; y: number; tx: number; ty: number } {
    const n = this.x.length;
    if (n === 1) return { x: this.x[0] as number, y: this.y[0] as number, tx: 1, ty: 0 };
    const i = Math.min(n - 2, this.indexAt(d));
    const x0 = this.x[i] as number, y0 = this.y[i] as number, x1 = this.x[i + 1] as number, y1 = this.y[i + 1] as number;
    const len = (this.d[i + 1] as number) - (this.d[i] as number);
    const f = Math.min(1, Math.max(0, (d - (this.d[i] as number)) / len));
    return { x: x0 + f * (x1 - x0), y: y0 + f * (y1 - y0), tx: (x1 - x0) / len, ty: (y1 - y0) / len };
  }

  /**
   * The nearest point to (px, py) with distance in [dFrom, dTo]: its distance along the line,
   * the (unsigned) distance to it and the signed lateral offset (left of the line positive).
   */
  project(px: number, py: number, dFrom = 0, dTo = Infinity): { d: number; dist: number; lateral: number } {
    const n = this.x.length;
    if (n === 1) {
      const dist = Math.hypot(px - (this.x[0] as number), py - (this.y[0] as number));
      return { d: 0, dist, lateral: dist };
    }
    const i0 = Math.max(0, this.indexAt(dFrom));
    const i1 = Math.min(n - 2, this.indexAt(dTo));
    let best = { d: 0, dist: Infinity, lateral: 0 };
    for (let i = i0; i <= i1; i++) {
      const x0 = this.x[i] as number, y0 = this.y[i] as number;
      const dx = (this.x[i + 1] as number) - x0, dy = (this.y[i + 1] as number) - y0;
      const l2 = dx * dx + dy * dy;
      const u = Math.min(1, Math.max(0, ((px - x0) * dx + (py - y0) * dy) / l2));
      const qx = x0 + u * dx, qy = y0 + u * dy;
      const dist = Math.hypot(px - qx, py - qy);
      if (dist < best.dist) {
        const len = Math.sqrt(l2);
        best = { d: (this.d[i] as number) + u * len, dist, lateral: (dx * (py - y0) - dy * (px - x0)) / len };
      }
    }
    return best;
  }
}
