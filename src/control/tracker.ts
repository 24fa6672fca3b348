/**
 * Trajectory tracking: a planner's waypoints (ego frame at the plan's stamp, with times) and the
 * ego's state now in, steering / throttle / brake out. Pure pursuit on the plan's path for the
 * steering, and a speed controller on the plan's speed profile with a position feedback along
 * the path (the plan is a time-parameterised reference) for throttle and brake; a plan that ends
 * at rest is a stop, and the controller brakes hard enough to end there.
 *
 * ROS-free and stateless: the closed-loop simulator (src/sim/) and a CARLA agent call it the same
 * way. A stale plan is still followed: its frame is where the ego was at the stamp, and the
 * reference is read at the time elapsed since then.
 *
 *   plan        waypoints (tS > 0, x forward, y left, m) in base_link at the plan's stamp
 *   elapsedS    now - stamp
 *   pose        base_link now, in the plan's frame (x, y m, yaw rad)
 */
import { ErrorCodes, VlaError } from '../util/errors.js';
import { checkVehicleParams, type VehicleParams } from './vehicle.js';

export interface PlanPoint {
  /** Seconds after the plan's stamp. */
  tS: number;
  x: number;
  y: number;
}

export interface Pose2 {
  x: number;
  y: number;
  yaw: number;
}

export interface TrackerGains {
  /** Pure-pursuit look-ahead: clamp(lookaheadTimeS * speed, min, max), m. */
  lookaheadMinM: number;
  lookaheadTimeS: number;
  lookaheadMaxM: number;
  /** The speed target is read this far ahead on the plan (the actuators lag), s. */
  speedPreviewS: number;
  /** Along-path position error to speed correction, 1/s. */
  positionGainPerS: number;
  /** Speed error to acceleration, 1/s. */
  speedGainPerS: number;
  /** The controller asks for at most this acceleration and deceleration, m/s^2. */
  maxAccelMps2: number;
  maxDecelMps2: number;
  /** A plan whose last segment is slower than this ends at rest (a stop), m/s. */
  stopSpeedMps: number;
}

export const DEFAULT_GAINS: Readonly<TrackerGains> = Object.freeze({
  lookaheadMinM: 3.0,
  lookaheadTimeS: 0.6,
  lookaheadMaxM: 15,
  speedPreviewS: 0.25,
  positionGainPerS: 0.5,
  speedGainPerS: 1.5,
  maxAccelMps2: 2.5,
  maxDecelMps2: 6.0,
  stopSpeedMps: 0.5,
});

export interface TrackInput {
  plan: readonly PlanPoint[];
  elapsedS: number;
  pose: Pose2;
  speedMps: number;
}

export interface ControlCommand {
  /** Road-wheel angle, rad, left positive. */
  steerRad: number;
  /** steerRad / maxSteerRad in [-1, 1], left positive (CARLA's steer is right positive: negate). */
  steer: number;
  /** Pedals in [0, 1]; never both non-zero. */
  throttle: number;
  brake: number;
  /** The acceleration the pedals ask for, m/s^2. */
  accelMps2: number;
  targetSpeedMps: number;
  /** The plan ends at rest and the controller is stopping on it. */
  stopping: boolean;
  /** Pure-pursuit target in base_link now (x forward, y left), m; null when the plan has no length. */
  lookahead: { x: number; y: number } | null;
}

interface P {
  t: number;
  x: number;
  y: number;
}

const clamp = (v: number, a: number, b: number) => Math.min(b, Math.max(a, v));

/** Checks a plan (non-empty, finite, times increasing and positive); throws VLA_E_INPUT. */
export function checkPlan(plan: readonly PlanPoint[]): void {
  if (!Array.isArray(plan) || plan.length === 0) throw new VlaError(ErrorCodes.INPUT, 'plan: no waypoints');
  let prev = 0;
  for (const [i, p] of plan.entries()) {
    if (!Number.isFinite(p?.tS) || !Number.isFinite(p?.x) || !Number.isFinite(p?.y)) throw new VlaError(ErrorCodes.INPUT, `plan: waypoint ${i} is not finite`);
    if (!(p.tS > prev)) throw new VlaError(ErrorCodes.INPUT, `plan: waypoint times must increase from 0 (waypoint ${i} at ${p.tS} s)`);
    prev = p.tS;
  }
}

export class TrackingController {
  readonly vehicle: VehicleParams;
  readonly gains: TrackerGains;

  constructor(vehicle: VehicleParams, gains: Partial<TrackerGains> = {}) {
    this.vehicle = checkVehicleParams({ ...vehicle });
    this.gains = { ...DEFAULT_GAINS, ...gains };
    for (const [k, v] of Object.entries(this.gains)) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new VlaError(ErrorCodes.SIM_CONFIG, `tracker: ${k} must be a non-negative number, got ${String(v)}`, { field: k });
    }
    if (!(this.gains.lookaheadMinM > 0) || this.gains.lookaheadMaxM < this.gains.lookaheadMinM) throw new VlaError(ErrorCodes.SIM_CONFIG, 'tracker: need 0 < lookaheadMinM <= lookaheadMaxM');
  }

  /** The command for now. Throws VLA_E_INPUT for a malformed plan or state. */
  control(inp: TrackInput): ControlCommand {
    checkPlan(inp.plan);
    if (![inp.elapsedS, inp.pose?.x, inp.pose?.y, inp.pose?.yaw, inp.speedMps].every(Number.isFinite)) throw new VlaError(ErrorCodes.INPUT, 'tracker: elapsed time, pose and speed must be finite');
    const g = this.gains;
    const v = Math.max(0, inp.speedMps);
    // The plan in base_link now, with its origin (the ego at the stamp) as the point at t = 0.
    const c = Math.cos(inp.pose.yaw), s = Math.sin(inp.pose.yaw);
    const pts: P[] = [{ t: 0, x: 0, y: 0 }, ...inp.plan.map((p) => ({ t: p.tS, x: p.x, y: p.y }))].map((p) => {
      const dx = p.x - inp.pose.x, dy = p.y - inp.pose.y;
      return { t: p.t, x: dx * c + dy * s, y: -dx * s + dy * c };
    });
    const n = pts.length;
    const segSpeed = (i: number) => {
      const a = pts[i] as P, b = pts[i + 1] as P;
      return Math.hypot(b.x - a.x, b.y - a.y) / (b.t - a.t);
    };
    const endSpeed = segSpeed(n - 2);
    const stops = endSpeed < g.stopSpeedMps;
    // Speed along the plan at time t: linear between segment midpoints, held at both ends.
    const speedAt = (t: number): number => {
      for (let i = 0; i < n - 1; i++) {
        const mid = ((pts[i] as P).t + (pts[i + 1] as P).t) / 2;
        if (t <= mid) {
          if (i === 0) return segSpeed(0);
          const midPrev = ((pts[i - 1] as P).t + (pts[i] as P).t) / 2;
          const f = (t - midPrev) / (mid - midPrev);
          return segSpeed(i - 1) + f * (segSpeed(i) - segSpeed(i - 1));
        }
      }
      return endSpeed;
    };
    const tau = Math.max(0, inp.elapsedS);
    const ref = positionAt(pts, tau, stops);
    const tangent = tangentAt(pts, tau);
    const alongErrM = ref.x * tangent.x + ref.y * tangent.y;
    const vRef = speedAt(tau + g.speedPreviewS);
    const aFf = (speedAt(tau + g.speedPreviewS + 0.25) - speedAt(Math.max(0, tau + g.speedPreviewS - 0.25))) / (tau + g.speedPreviewS >= 0.25 ? 0.5 : 0.25 + tau + g.speedPreviewS);
    const vCmd = Math.max(0, vRef + clamp(g.positionGainPerS * alongErrM, -3, 3));
    let a = aFf + g.speedGainPerS * (vCmd - v);
    let stopping = false;
    if (stops) {
      const remain = remainingPathM(pts);
      if (remain < 0.3 && v < 0.3) {
        a = -1.5; // hold at rest
        stopping = true;
      } else {
        const need = (v * v) / (2 * Math.max(remain - 0.1, 0.05));
        if (need > 0.3) {
          a = Math.min(a, -need);
          stopping = true;
        }
      }
    }
    a = clamp(a, -g.maxDecelMps2, g.maxAccelMps2);
    const lk = this.lookaheadPoint(pts, clamp(g.lookaheadTimeS * v, g.lookaheadMinM, g.lookaheadMaxM));
    const L = this.vehicle.wheelbaseM;
    let steerRad = 0;
    if (lk) {
      const d2 = lk.x * lk.x + lk.y * lk.y;
      steerRad = clamp(Math.atan((L * 2 * lk.y) / d2), -this.vehicle.maxSteerRad, this.vehicle.maxSteerRad);
    }
    return {
      steerRad,
      steer: steerRad / this.vehicle.maxSteerRad,
      throttle: a > 0 ? Math.min(1, a / this.vehicle.maxAccelMps2) : 0,
      brake: a < 0 ? Math.min(1, -a / this.vehicle.maxDecelMps2) : 0,
      accelMps2: a,
      targetSpeedMps: stopping ? 0 : vCmd,
      stopping,
      lookahead: lk ? { x: lk.x - this.vehicle.baseLinkAheadOfRearAxleM, y: lk.y } : null,
    };
  }

  /** A straight stop at `decelMps2` keeping the given steering (the safe stop on a stale plan). */
  stopCommand(steerRad: number, decelMps2: number): ControlCommand {
    const d = clamp(decelMps2, 0, this.vehicle.maxDecelMps2);
    const st = clamp(steerRad, -this.vehicle.maxSteerRad, this.vehicle.maxSteerRad);
    return { steerRad: st, steer: st / this.vehicle.maxSteerRad, throttle: 0, brake: d / this.vehicle.maxDecelMps2, accelMps2: -d, targetSpeedMps: 0, stopping: true, lookahead: null };
  }

  /**
   * The pure-pursuit target at distance `ld` from the rear axle: the first point of the plan's
   * path that far away, walking on from the path point nearest the axle; past the end, on the
   * last segment's line. In the rear-axle frame; null for a plan without length.
   */
  private lookaheadPoint(ptsBase: P[], ld: number): { x: number; y: number } | null {
    const d = this.vehicle.baseLinkAheadOfRearAxleM;
    const pts: Array<{ x: number; y: number }> = [];
    for (const p of ptsBase) {
      const q = { x: p.x + d, y: p.y };
      const last = pts[pts.length - 1];
      if (!last || Math.hypot(q.x - last.x, q.y - last.y) > 1e-3) pts.push(q);
    }
    if (pts.length < 2) return null;
    let len = 0;
    for (let i = 0; i + 1 < pts.length; i++) len += Math.hypot((pts[i + 1] as { x: number }).x - (pts[i] as { x: number }).x, (pts[i + 1] as { y: number }).y - (pts[i] as { y: number }).y);
    if (len < 1.0) return null;
    // nearest segment to the axle (the origin)
    let best = 0, bestD = Infinity;
    for (let i = 0; i + 1 < pts.length; i++) {
      const a = pts[i] as { x: number; y: number }, b = pts[i + 1] as { x: number; y: number };
      const dx = b.x - a.x, dy = b.y - a.y;
      const u = clamp(-(a.x * dx + a.y * dy) / (dx * dx + dy * dy), 0, 1);
      const dd = Math.hypot(a.x + u * dx, a.y + u * dy);
      if (dd < bestD) {
        bestD = dd;
        best = i;
      }
    }
    // first crossing of the circle |p| = ld from there on
    for (let i = best; i + 1 < pts.length; i++) {
      const a = pts[i] as { x: number; y: number }, b = pts[i + 1] as { x: number; y: number };
      if (Math.hypot(b.x, b.y) >= ld) {
        const u = circleCross(a, b, ld);
        if (u !== null) return { x: a.x + u * (b.x - a.x), y: a.y + u * (b.y - a.y) };
      }
    }
    // past the end: along the direction of the plan's last metre or more (a short noisy last
    // segment of a plan that comes to rest would swing the wheel)
    const b = pts[pts.length - 1] as { x: number; y: number };
    let a = pts[pts.length - 2] as { x: number; y: number };
    for (let i = pts.length - 2; i >= 0; i--) {
      a = pts[i] as { x: number; y: number };
      if (Math.hypot(b.x - a.x, b.y - a.y) >= 1.0) break;
    }
    const segLen = Math.hypot(b.x - a.x, b.y - a.y);
    const dir = { x: (b.x - a.x) / segLen, y: (b.y - a.y) / segLen };
    const proj = b.x * dir.x + b.y * dir.y;
    const disc = proj * proj - (b.x * b.x + b.y * b.y - ld * ld);
    const u = disc >= 0 ? -proj + Math.sqrt(disc) : 0;
    return { x: b.x + Math.max(0, u) * dir.x, y: b.y + Math.max(0, u) * dir.y };
  }
}

/** u in [0, 1] where a + u (b - a) crosses |p| = r going outwards, or null. */
function circleCross(a: { x: number; y: number }, b: { x: number; y: number }, r: number): number | null {
  const dx = b.x - a.x, dy = b.y - a.y;
  const A = dx * dx + dy * dy;
  if (A < 1e-12) return null;
  const B = 2 * (a.x * dx + a.y * dy);
  const C = a.x * a.x + a.y * a.y - r * r;
  const disc = B * B - 4 * A * C;
  if (disc < 0) return null;
  const u = (-B + Math.sqrt(disc)) / (2 * A);
  return u >= 0 && u <= 1 ? u : null;
}

/** The plan's position at time t (linear; past the end: extrapolated, or held when it stops). */
function positionAt(pts: P[], t: number, holdEnd: boolean): { x: number; y: number } {
  for (let i = 0; i + 1 < pts.length; i++) {
    const a = pts[i] as P, b = pts[i + 1] as P;
    if (t <= b.t) {
      const f = (t - a.t) / (b.t - a.t);
      return { x: a.x + f * (b.x - a.x), y: a.y + f * (b.y - a.y) };
    }
  }
  const a = pts[pts.length - 2] as P, b = pts[pts.length - 1] as P;
  if (holdEnd) return { x: b.x, y: b.y };
  const f = (t - b.t) / (b.t - a.t);
  return { x: b.x + f * (b.x - a.x), y: b.y + f * (b.y - a.y) };
}

/** Unit direction of the plan's path at time t (the nearest segment with length; +x if none). */
function tangentAt(pts: P[], t: number): { x: number; y: number } {
  let i = 0;
  while (i + 2 < pts.length && t > (pts[i + 1] as P).t) i++;
  for (let j = i; j >= 0; j--) {
    const a = pts[j] as P, b = pts[j + 1] as P;
    const len = Math.hypot(b.x - a.x, b.y - a.y);
    if (len > 1e-3) return { x: (b.x - a.x) / len, y: (b.y - a.y) / len };
  }
  for (let j = i + 1; j + 1 < pts.length; j++) {
    const a = pts[j] as P, b = pts[j + 1] as P;
    const len = Math.hypot(b.x - a.x, b.y - a.y);
    if (len > 1e-3) return { x: (b.x - a.x) / len, y: (b.y - a.y) / len };
  }
  return { x: 1, y: 0 };
}

/** Path length from the ego (base_link at the origin, projected on the path) to the plan's end, m. */
function remainingPathM(pts: P[]): number {
  let best = 0, bestD = Infinity, bestU = 0;
  for (let i = 0; i + 1 < pts.length; i++) {
    const a = pts[i] as P, b = pts[i + 1] as P;
    const dx = b.x - a.x, dy = b.y - a.y;
    const l2 = dx * dx + dy * dy;
    const u = l2 > 1e-12 ? clamp(-(a.x * dx + a.y * dy) / l2, 0, 1) : 0;
    const dd = Math.hypot(a.x + u * dx, a.y + u * dy);
    if (dd < bestD) {
      bestD = dd;
      best = i;
      bestU = u;
    }
  }
  let rem = 0;
  for (let i = best; i + 1 < pts.length; i++) {
    const a = pts[i] as P, b = pts[i + 1] as P;
    const len = Math.hypot(b.x - a.x, b.y - a.y);
    rem += i === best ? (1 - bestU) * len : len;
  }
  // the ego past the end point (ahead of it along the last segment): negative distance
  const e = pts[pts.length - 1] as P;
  const tan = tangentAt(pts, Infinity);
  const ahead = -(e.x * tan.x + e.y * tan.y);
  return best === pts.length - 2 && bestU >= 1 && ahead > 0 ? -ahead : rem;
}
