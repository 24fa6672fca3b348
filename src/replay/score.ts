/**
 * Open-loop planning metrics. The ground truth is where the ego actually went: its odometry
 * poses after the frame's stamp, moved into the ego frame at the stamp (x forward, y left).
 * L2 at a horizon compares the planned point at that time (waypoints interpolated linearly,
 * starting from the origin at t = 0) with the true position then: the UniAD/VAD convention of
 * a point at the horizon, not ST-P3's average up to it.
 */
import type { Waypoint } from '../engine/engine.js';
import type { PlanningErrors } from './report-types.js';

export interface PoseSample {
  tNs: bigint;
  x: number;
  y: number;
  yaw: number;
}

export interface Point2 {
  x: number;
  y: number;
}

export function yawFromQuaternion(q: { x: number; y: number; z: number; w: number }): number {
  return Math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z));
}

function wrapAngle(a: number): number {
  return Math.atan2(Math.sin(a), Math.cos(a));
}

/** The ego's path from odometry: poses sorted by stamp, linear interpolation between them. */
export class EgoPath {
  private readonly poses: PoseSample[];

  constructor(samples: Iterable<PoseSample>) {
    this.poses = [...samples].filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && Number.isFinite(p.yaw)).sort((a, b) => (a.tNs < b.tNs ? -1 : a.tNs > b.tNs ? 1 : 0));
  }

  /** Adds a pose (odometry arrives in order, so this is an append; late samples are inserted). */
  add(p: PoseSample): void {
    if (!Number.isFinite(p.x) || !Number.isFinite(p.y) || !Number.isFinite(p.yaw)) return;
    const a = this.poses;
    let i = a.length;
    while (i > 0 && (a[i - 1] as PoseSample).tNs > p.tNs) i--;
    if (i > 0 && (a[i - 1] as PoseSample).tNs === p.tNs) return;
    a.splice(i, 0, p);
  }

  get size(): number {
    return this.poses.length;
  }

  /** Pose at tNs, or undefined outside the recorded span (or across a gap over maxGapS). */
  poseAt(tNs: bigint, maxGapS = 0.5): PoseSample | undefined {
    const p = this.poses;
    if (!p.length) return undefined;
    let lo = 0, hi = p.length - 1;
    const first = p[0] as PoseSample, last = p[hi] as PoseSample;
    if (tNs < first.tNs || tNs > last.tNs) return undefined;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if ((p[mid] as PoseSample).tNs <= tNs) lo = mid;
      else hi = mid;
    }
    const a = p[lo] as PoseSample, b = p[hi] as PoseSample;
    if (a.tNs === tNs) return a;
    const span = Number(b.tNs - a.tNs) / 1e9;
    if (span > maxGapS) return undefined;
    const f = span > 0 ? Number(tNs - a.tNs) / 1e9 / span : 0;
    return { tNs, x: a.x + f * (b.x - a.x), y: a.y + f * (b.y - a.y), yaw: a.yaw + f * wrapAngle(b.yaw - a.yaw) };
  }

  /** The true future positions at t0 + each horizon, in the ego frame at t0 (null where not recorded). */
  futureInEgoFrame(t0Ns: bigint, horizonsS: readonly number[]): Array<Point2 | null> {
    const o = this.poseAt(t0Ns);
    if (!o) return horizonsS.map(() => null);
    const c = Math.cos(o.yaw), s = Math.sin(o.yaw);
    return horizonsS.map((h) => {
      const p = this.poseAt(t0Ns + BigInt(Math.round(h * 1e9)));
      if (!p) return null;
      const dx = p.x - o.x, dy = p.y - o.y;
      return { x: c * dx + s * dy, y: -s * dx + c * dy };
    });
  }
}

/** The planned point at time tS: linear between waypoints, from the origin at 0; null beyond the plan. */
export function plannedAt(wps: readonly Waypoint[], tS: number): Point2 | null {
  let prev = { tS: 0, x: 0, y: 0 };
  for (const w of wps) {
    if (Math.abs(w.tS - tS) < 1e-6) return { x: w.x, y: w.y };
    if (w.tS > tS) {
      const f = (tS - prev.tS) / (w.tS - prev.tS);
      return { x: prev.x + f * (w.x - prev.x), y: prev.y + f * (w.y - prev.y) };
    }
    prev = w;
  }
  return null;
}

export interface ScoredFrame {
  /** Per waypoint: L2 to the true position at its time (m), null without ground truth. */
  l2M: Array<number | null>;
  l2At1sM: number | null;
  l2At2sM: number | null;
  l2At3sM: number | null;
}

export const HORIZONS_S = [1, 2, 3] as const;

/** Scores one plan; `gtAtWaypoints` and `gtAtHorizons` come from EgoPath.futureInEgoFrame. */
export function scoreFrame(wps: readonly Waypoint[], gtAtWaypoints: ReadonlyArray<Point2 | null>, gtAtHorizons: ReadonlyArray<Point2 | null>): ScoredFrame {
  const l2M = wps.map((w, i) => {
    const g = gtAtWaypoints[i];
    return g ? Math.hypot(w.x - g.x, w.y - g.y) : null;
  });
  const at = (i: number): number | null => {
    const g = gtAtHorizons[i];
    const p = plannedAt(wps, HORIZONS_S[i] as number);
    return g && p ? Math.hypot(p.x - g.x, p.y - g.y) : null;
  };
  return { l2M, l2At1sM: at(0), l2At2sM: at(1), l2At3sM: at(2) };
}

function mean(xs: number[]): number | null {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
}

/** Aggregates scored frames: means over the frames that have each quantity. */
export function planningErrors(frames: readonly ScoredFrame[]): PlanningErrors {
  const scored = frames.filter((f) => f.l2M.some((v) => v !== null));
  const all: number[] = [];
  const finals: number[] = [];
  for (const f of scored) {
    for (const v of f.l2M) if (v !== null) all.push(v);
    const last = f.l2M[f.l2M.length - 1];
    if (last !== null && last !== undefined) finals.push(last);
  }
  const pick = (k: 'l2At1sM' | 'l2At2sM' | 'l2At3sM') => mean(scored.map((f) => f[k]).filter((v): v is number => v !== null));
  return { n: scored.length, l2At1sM: pick('l2At1sM'), l2At2sM: pick('l2At2sM'), l2At3sM: pick('l2At3sM'), adeM: mean(all), fdeM: mean(finals) };
}

/** How far one plan is from another (e.g. pruned against unpruned): mean and final waypoint distance. */
export function planDistance(a: readonly Waypoint[], b: readonly Waypoint[]): { adeM: number; fdeM: number } | null {
  const n = Math.min(a.length, b.length);
  if (!n) return null;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.hypot((a[i] as Waypoint).x - (b[i] as Waypoint).x, (a[i] as Waypoint).y - (b[i] as Waypoint).y);
  const la = a[n - 1] as Waypoint, lb = b[n - 1] as Waypoint;
  return { adeM: sum / n, fdeM: Math.hypot(la.x - lb.x, la.y - lb.y) };
}

/** A constant-velocity plan from the ego's speed at t0 (the baseline a learned planner must beat). */
export function constantVelocityPlan(speedMps: number, times: readonly number[]): Waypoint[] {
  return times.map((tS) => ({ tS, x: speedMps * tS, y: 0 }));
}
