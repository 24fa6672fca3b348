/**
 * Synthetic driving episodes for training and testing: a seed gives a road (straights and bends),
 * maybe an intersection, traffic, lighting and a task (the instruction); the simulation gives the
 * ego's ground-truth path for that task, so the future path depends on both what the cameras see
 * (lead distance, lanes, the intersection) and the instruction words.
 *
 * Frames: the world frame `odom` (x, y, yaw; the ego starts at the origin heading +x) and the road
 * frame (arc length s along the main road's middle lane, lateral l left positive, heading psi
 * relative to the road tangent). Around an intersection the road is straight, so there (s, l) is
 * also a Cartesian frame and a turning ego's path is exact in it.
 */
import { ErrorCodes, VlaError } from '../util/errors.js';
import type { CameraName, RenderOptions, Rgb, Vehicle } from './render.js';

export type ScenarioKind = 'keep_lane' | 'change_left' | 'change_right' | 'turn_left' | 'turn_right' | 'stop_behind' | 'stop_at_intersection';
export type Complexity = 'low' | 'medium' | 'high';

export const SCENARIO_KINDS: readonly ScenarioKind[] = Object.freeze(['keep_lane', 'change_left', 'change_right', 'turn_left', 'turn_right', 'stop_behind', 'stop_at_intersection']);

/** Phrasings per kind; a scenario's seed picks one. */
export const INSTRUCTIONS: Readonly<Record<ScenarioKind, readonly string[]>> = Object.freeze({
  keep_lane: ['keep the lane', 'follow the road', 'keep lane and follow the road', 'stay in your lane'],
  change_left: ['change to the left lane', 'move over to the left lane', 'change lanes to the left'],
  change_right: ['change to the right lane', 'move over to the right lane', 'change lanes to the right'],
  turn_left: ['turn left at the next intersection', 'take the next left', 'turn left at the crossing'],
  turn_right: ['turn right at the next intersection', 'take the next right', 'turn right at the crossing'],
  stop_behind: ['stop behind the car ahead', 'stop behind the stopped car', 'pull up behind the car in front'],
  stop_at_intersection: ['stop at the stop line', 'stop at the intersection', 'come to a stop at the line'],
});

export const LANE_WIDTH_M = 3.5;
/** Half width of the main road (three lanes); the renderer's asphalt reaches 0.3 m further. */
export const ROAD_HALF_WIDTH_M = 1.5 * LANE_WIDTH_M;
/** Half width of the crossing road's asphalt as the renderer draws it. */
export const CROSSING_HALF_WIDTH_M = ROAD_HALF_WIDTH_M + 0.5;
/** Simulation step, s. */
export const SIM_DT_S = 0.01;
/** Simulated beyond the episode so its last frames have 3 s of future, s. */
export const SIM_TAIL_S = 3.5;

/** Ego body around base_link (the camera position): front overhang, rear, width, m. */
export const EGO_FRONT_M = 1.0;
export const EGO_REAR_M = 3.5;
export const EGO_WIDTH_M = 1.8;
/** Distance base_link to the stopped car's rear at standstill (stop_behind), m. */
export const STOP_GAP_M = 3.0;
/** The renderer's stop line: its centre lies this far before the crossing road's centre, m. */
export const STOP_LINE_M = ROAD_HALF_WIDTH_M + 1.15;
/** base_link this far behind the stop line at standstill, m (the front camera still sees the line). */
const STOP_LINE_STANDOFF_M = 4.0;
/** Road straight this far either side of an intersection (turn geometry and renderer need it), m. */
const STRAIGHT_AROUND_INTERSECTION_M = 100;
/** The renderer shows one curvature: the mean over this look-ahead (as the sample drive did), m. */
const CURVATURE_LOOKAHEAD_M = 40;

/** Ego longitudinal model: IDM (max accel, comfortable decel, time gap, standstill gap). */
export const EGO_IDM = { a: 1.2, b: 2.0, t: 1.4, s0: STOP_GAP_M };
export const TRAFFIC_IDM = { a: 1.0, b: 2.0, t: 1.5, s0: 2.5 };
export const EGO_MAX_BRAKE = 4.0;
export const EGO_MAX_ACCEL = 2.0;
/** Below this speed a lane change (and its heading) is stretched in time, m/s. */
const LANE_CHANGE_REF_SPEED = 6;

/** A bend: constant curvature over [startM, endM], ramped linearly over `rampM` outside. */
export interface RoadBend {
  startM: number;
  endM: number;
  /** 1/m, left positive. */
  curvature: number;
}

export interface RoadSpec {
  rampM: number;
  /** Ordered by start; where ramps overlap, the first bend wins. */
  bends: RoadBend[];
}

export type TrafficKind = 'car' | 'parked' | 'barrier';

export interface TrafficObject {
  kind: TrafficKind;
  /** Lane (0 middle, +1 left, -1 right); fractional on the lane edges (parked cars, barriers). */
  lane: number;
  /** Arc length of the box's low-s end at t = 0, m (the rear of a car driving along the road). */
  sM: number;
  /** +1 along the road, -1 oncoming. */
  direction: 1 | -1;
  /** Desired speed for the IDM, m/s; 0 stands still. */
  speedMps: number;
  /** Scripted speed, piecewise linear [tS, m/s] knots (replaces the IDM; the sample drive). */
  speedProfile?: Array<[number, number]>;
  color: Rgb;
  lengthM: number;
  widthM: number;
  heightM: number;
}

export interface LaneChangePlan {
  startS: number;
  /** At or above 6 m/s; slower, the move stretches (the heading stays moderate). */
  durationS: number;
  direction: 1 | -1;
}

export interface TurnPlan {
  direction: 1 | -1;
  radiusM: number;
  /** Speed through the arc, m/s. */
  speedMps: number;
  /** Arc length where the arc starts (the ego ends in the crossing road's middle lane), m. */
  arcStartSM: number;
  /** Cruise speed on the crossing road, m/s. */
  exitSpeedMps: number;
}

export interface StopPlan {
  reason: 'vehicle' | 'stop_line';
  /** Arc length where base_link comes to rest, m. */
  targetSM: number;
  /** For 'vehicle': the index in `traffic` of the stopped car. */
  vehicle?: number;
}

export interface Scenario {
  seed: number;
  kind: ScenarioKind;
  /** Latched at t = 0. */
  instruction: string;
  /** Later instructions (the sample drive changes its once). */
  laterInstructions: Array<{ tS: number; text: string }>;
  durationS: number;
  ego: {
    initialSpeedMps: number;
    cruiseSpeedMps: number;
    /** Scripted speed, piecewise linear [tS, m/s] knots (replaces the controllers; the sample drive). */
    speedProfile?: Array<[number, number]>;
  };
  road: RoadSpec;
  /** Arc length of the crossing road's centre line, or null. */
  intersectionSM: number | null;
  /** The left lane carries oncoming traffic. */
  leftLaneOncoming: boolean;
  laneChange: LaneChangePlan | null;
  turn: TurnPlan | null;
  stop: StopPlan | null;
  traffic: TrafficObject[];
  /** Brightness: light + lightWave * cos(t / 3 s). */
  light: number;
  lightWave: number;
  /** Tree density 0..1 (0: no trees). */
  trees: number;
  textureSeed: number;
  /** From what the cameras see: mean objects within 60 m, trees, intersection, bends. */
  complexity: Complexity;
  complexityScore: number;
}

export interface EgoState {
  tS: number;
  /** World frame (odom), m and rad. */
  x: number;
  y: number;
  yaw: number;
  /** Speed along the path, m/s. */
  v: number;
  /** rad/s. */
  yawRate: number;
  /** Road frame: arc length, lateral offset from the middle lane's centre, heading to the tangent. */
  s: number;
  l: number;
  psi: number;
}

export interface ScenarioSim {
  scenario: Scenario;
  dtS: number;
  /** Samples i = 0..n-1 at t = i * dtS. */
  n: number;
  x: Float64Array;
  y: Float64Array;
  yaw: Float64Array;
  v: Float64Array;
  yawRate: Float64Array;
  s: Float64Array;
  l: Float64Array;
  psi: Float64Array;
  /** Per traffic object: its low-s end over time. */
  trafficS: Float64Array[];
  /** Time the ego first stands still (stop kinds), the turn arc starts and ends, s; null if never. */
  events: { stoppedS: number | null; arcStartS: number | null; arcEndS: number | null };
}

// ---------------------------------------------------------------------------------------------
// randomness and small helpers

/** splitmix32 stream `stream` of `seed`: numbers in [0, 1), platform-independent (integer math only). */
export function seededRandom(seed: number, stream: number): () => number {
  let a = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul((stream + 1) | 0, 0x85ebca6b)) | 0;
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    z ^= z >>> 15;
    return (z >>> 0) / 4294967296;
  };
}

const rng = seededRandom;
const uniform = (r: () => number, a: number, b: number) => a + (b - a) * r();
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.min(xs.length - 1, Math.floor(r() * xs.length))] as T;
const clamp = (x: number, a: number, b: number) => Math.min(b, Math.max(a, x));
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** Piecewise linear interpolation of [t, value] knots, held constant outside. */
export function interpKnots(knots: ReadonlyArray<readonly [number, number]>, t: number): number {
  const first = knots[0];
  if (!first) return 0;
  if (t <= first[0]) return first[1];
  for (let i = 1; i < knots.length; i++) {
    const [t1, v1] = knots[i] as [number, number];
    if (t <= t1) {
      const [t0, v0] = knots[i - 1] as [number, number];
      return t1 === t0 ? v1 : v0 + ((v1 - v0) * (t - t0)) / (t1 - t0);
    }
  }
  return (knots[knots.length - 1] as [number, number])[1];
}

/** Road curvature at arc length s (1/m): the first bend whose ramped span holds s. */
export function curvatureAt(road: RoadSpec, sM: number): number {
  const ramp = road.rampM;
  for (const { startM: a, endM: b, curvature: k } of road.bends) {
    if (sM >= a - ramp && sM <= b + ramp) {
      const w = ramp > 0 ? Math.min(1, (sM - (a - ramp)) / ramp, (b + ramp - sM) / ramp) : 1;
      return k * Math.max(0, w);
    }
  }
  return 0;
}

/** The curvature the renderer gets: the mean over the next 40 m (10 samples, as the sample drive did). */
export function viewCurvature(road: RoadSpec, sM: number): number {
  let k = 0;
  for (let d = 0; d < CURVATURE_LOOKAHEAD_M; d += 4) k += curvatureAt(road, sM + d) / 10;
  return k;
}

/** The main road's centre line in the world frame, tabulated (s = 0 at the origin, heading +x). */
export class RoadGeometry {
  private static readonly DS = 0.25;
  private readonly theta: Float64Array;
  private readonly x: Float64Array;
  private readonly y: Float64Array;

  constructor(
    private readonly road: RoadSpec,
    maxSM: number,
  ) {
    const n = Math.ceil(Math.max(1, maxSM) / RoadGeometry.DS) + 2;
    this.theta = new Float64Array(n);
    this.x = new Float64Array(n);
    this.y = new Float64Array(n);
    const ds = RoadGeometry.DS;
    for (let i = 1; i < n; i++) {
      const th0 = this.theta[i - 1] as number;
      const th1 = th0 + curvatureAt(road, (i - 0.5) * ds) * ds;
      const mid = (th0 + th1) / 2;
      this.theta[i] = th1;
      this.x[i] = (this.x[i - 1] as number) + Math.cos(mid) * ds;
      this.y[i] = (this.y[i - 1] as number) + Math.sin(mid) * ds;
    }
  }

  /** Centre point and heading at s (straight before s = 0 and beyond the table). */
  at(sM: number): { x: number; y: number; theta: number } {
    const ds = RoadGeometry.DS;
    if (sM <= 0) return { x: sM, y: 0, theta: 0 };
    const last = this.theta.length - 1;
    const fi = sM / ds;
    if (fi >= last) {
      const th = this.theta[last] as number, e = sM - last * ds;
      return { x: (this.x[last] as number) + Math.cos(th) * e, y: (this.y[last] as number) + Math.sin(th) * e, theta: th };
    }
    const i = Math.floor(fi), f = fi - i;
    const lerp = (a: Float64Array) => (a[i] as number) + ((a[i + 1] as number) - (a[i] as number)) * f;
    return { x: lerp(this.x), y: lerp(this.y), theta: lerp(this.theta) };
  }

  /** World pose of a road-frame pose. */
  pose(sM: number, lM: number, psi: number): { x: number; y: number; yaw: number } {
    const c = this.at(sM);
    return { x: c.x - lM * Math.sin(c.theta), y: c.y + lM * Math.cos(c.theta), yaw: c.theta + psi };
  }

  get spec(): RoadSpec {
    return this.road;
  }
}

// ---------------------------------------------------------------------------------------------
// simulation

const smoother = (p: number) => p * p * p * (10 + p * (-15 + 6 * p));
const smootherSlope = (p: number) => 30 * p * p * (1 - p) * (1 - p);

export interface Leader {
  gapM: number;
  speedMps: number;
}

/** IDM acceleration toward v0 behind an optional leader. */
export function idm(p: { a: number; b: number; t: number; s0: number }, v: number, v0: number, lead: Leader | undefined): number {
  const free = v0 > 0 ? 1 - (v / v0) ** 4 : -1;
  if (!lead) return p.a * free;
  const sStar = p.s0 + Math.max(0, v * p.t + (v * (v - lead.speedMps)) / (2 * Math.sqrt(p.a * p.b)));
  return p.a * (free - (sStar / Math.max(0.1, lead.gapM)) ** 2);
}

/** Required constant deceleration to reach `vEnd` in `dM`, engaged gradually from 0.3 m/s^2 (so the start of braking is smooth). */
export function brakeFor(v: number, vEnd: number, dM: number): number {
  if (v <= vEnd) return Infinity;
  const need = (v * v - vEnd * vEnd) / (2 * Math.max(dM, 0.01));
  const w = clamp((need - 0.3) / 0.9, 0, 1);
  return -need * w;
}

/** Lateral centre of a lane (road frame), m. */
export const laneY = (lane: number) => lane * LANE_WIDTH_M;

/** Simulates the ego and the traffic over the episode plus a 3.5 s tail (deterministic). */
export function simulateScenario(sc: Scenario): ScenarioSim {
  validateScenario(sc);
  const dt = SIM_DT_S;
  const n = Math.round((sc.durationS + SIM_TAIL_S) / dt) + 1;
  const maxV = Math.max(sc.ego.cruiseSpeedMps, sc.ego.initialSpeedMps, ...(sc.ego.speedProfile ?? []).map((k) => k[1]), 1);
  const geo = new RoadGeometry(sc.road, maxV * (n * dt) + 200);
  const out: ScenarioSim = {
    scenario: sc,
    dtS: dt,
    n,
    x: new Float64Array(n),
    y: new Float64Array(n),
    yaw: new Float64Array(n),
    v: new Float64Array(n),
    yawRate: new Float64Array(n),
    s: new Float64Array(n),
    l: new Float64Array(n),
    psi: new Float64Array(n),
    trafficS: sc.traffic.map(() => new Float64Array(n)),
    events: { stoppedS: null, arcStartS: null, arcEndS: null },
  };
  const tr = sc.traffic.map((o) => ({ s: o.sM, v: o.speedProfile ? interpKnots(o.speedProfile, 0) : o.speedMps }));
  const lc = sc.laneChange;
  const turn = sc.turn;
  const stop = sc.stop;
  let s = 0, l = 0, psi = 0;
  let v = sc.ego.speedProfile ? interpKnots(sc.ego.speedProfile, 0) : sc.ego.initialSpeedMps;
  let mode: 'lane' | 'arc' | 'exit' = 'lane';
  let p = 0; // lane change progress 0..1
  let u = 0; // distance into the arc / exit
  let stopped = false;
  const next = new Float64Array(tr.length);

  const record = (i: number) => {
    const w = geo.pose(s, l, psi);
    out.x[i] = w.x;
    out.y[i] = w.y;
    out.yaw[i] = w.yaw;
    out.v[i] = v;
    out.s[i] = s;
    out.l[i] = l;
    out.psi[i] = psi;
    for (let j = 0; j < tr.length; j++) (out.trafficS[j] as Float64Array)[i] = (tr[j] as { s: number }).s;
  };
  record(0);

  for (let i = 1; i < n; i++) {
    const t = (i - 1) * dt;
    // --- ego longitudinal
    let vNext: number;
    if (sc.ego.speedProfile) vNext = Math.max(0, interpKnots(sc.ego.speedProfile, t + dt));
    else if (stopped) vNext = 0;
    else {
      let v0 = sc.ego.cruiseSpeedMps;
      if (turn && mode === 'arc') v0 = turn.speedMps;
      else if (turn && mode === 'exit') v0 = turn.exitSpeedMps;
      let a: number;
      if (mode === 'lane') {
        const targetL = lc && t >= lc.startS ? lc.direction * LANE_WIDTH_M : l;
        a = idm(EGO_IDM, v, v0, egoLeader(sc, tr, s, l, targetL));
        if (turn) a = Math.min(a, brakeFor(v, turn.speedMps, turn.arcStartSM - s));
      } else a = idm(EGO_IDM, v, v0, undefined);
      if (stop) {
        const d = stop.targetSM - s;
        a = d <= 0.01 ? -EGO_MAX_BRAKE : Math.min(a, brakeFor(v, 0, d));
      }
      a = clamp(a, -EGO_MAX_BRAKE, EGO_MAX_ACCEL);
      vNext = Math.max(0, v + a * dt);
      if (stop && vNext === 0) {
        stopped = true;
        if (out.events.stoppedS === null) out.events.stoppedS = round3(t + dt);
      }
    }
    const vMid = (v + vNext) / 2;
    let dist = vMid * dt;
    v = vNext;

    // --- ego path
    if (mode === 'lane') {
      if (lc && t + dt > lc.startS && p < 1) {
        const rate = Math.min(1 / Math.max(vMid, 1e-9), 1 / LANE_CHANGE_REF_SPEED) / lc.durationS; // progress per metre
        const lOld = l;
        p = Math.min(1, p + rate * dist);
        l = lc.direction * LANE_WIDTH_M * smoother(p);
        const along = Math.sqrt(Math.max(0, dist * dist - (l - lOld) ** 2));
        s += along / (1 - curvatureAt(sc.road, s) * l);
        // heading from the path's lateral slope per metre: defined at any speed, so a stop mid-change keeps it
        const perM = Math.min(1 / Math.max(v, 1e-9), 1 / LANE_CHANGE_REF_SPEED) / lc.durationS;
        psi = p < 1 ? Math.asin(clamp(lc.direction * LANE_WIDTH_M * smootherSlope(p) * perM, -0.95, 0.95)) : 0;
      } else {
        s += dist / (1 - curvatureAt(sc.road, s) * l);
      }
      if (turn && s >= turn.arcStartSM) {
        dist = s - turn.arcStartSM;
        s = turn.arcStartSM;
        mode = 'arc';
        u = 0;
        out.events.arcStartS = round3(t + dt);
      }
    }
    if (turn && mode !== 'lane') {
      u += dist;
      const quarter = (Math.PI / 2) * turn.radiusM;
      if (mode === 'arc' && u >= quarter) {
        mode = 'exit';
        out.events.arcEndS = round3(t + dt);
      }
      if (u < quarter) {
        const phi = u / turn.radiusM;
        s = turn.arcStartSM + turn.radiusM * Math.sin(phi);
        l = turn.direction * turn.radiusM * (1 - Math.cos(phi));
        psi = turn.direction * phi;
      } else {
        s = turn.arcStartSM + turn.radiusM;
        l = turn.direction * (turn.radiusM + (u - quarter));
        psi = (turn.direction * Math.PI) / 2;
      }
    }

    // --- traffic
    const egoAlong = v * Math.cos(psi);
    const egoNow = mode === 'lane' || Math.abs(l) < ROAD_HALF_WIDTH_M ? { s, l, v: egoAlong } : undefined;
    for (let j = 0; j < tr.length; j++) {
      const spec = sc.traffic[j] as TrafficObject;
      const o = tr[j] as { v: number };
      if (spec.speedProfile) next[j] = Math.max(0, interpKnots(spec.speedProfile, t + dt));
      else if (spec.speedMps <= 0) next[j] = 0;
      else next[j] = Math.max(0, o.v + clamp(idm(TRAFFIC_IDM, o.v, spec.speedMps, trafficLeader(sc, tr, j, egoNow)), -6, 1.5) * dt);
    }
    for (let j = 0; j < tr.length; j++) {
      const spec = sc.traffic[j] as TrafficObject;
      const o = tr[j] as { s: number; v: number };
      const vn = next[j] as number;
      o.s += spec.direction * ((o.v + vn) / 2) * dt;
      o.v = vn;
    }
    record(i);
  }
  // yaw rate by central differences of the (continuous) yaw
  for (let i = 0; i < n; i++) {
    const a = Math.max(0, i - 1), b = Math.min(n - 1, i + 1);
    out.yawRate[i] = b > a ? ((out.yaw[b] as number) - (out.yaw[a] as number)) / ((b - a) * dt) : 0;
  }
  return out;
}

/** The nearest object ahead of the ego overlapping its lane or its target lane (the stop target excluded: the stop controller handles it). */
function egoLeader(sc: Scenario, tr: Array<{ s: number; v: number }>, s: number, l: number, targetL: number): Leader | undefined {
  let best: Leader | undefined;
  for (let j = 0; j < sc.traffic.length; j++) {
    if (sc.stop?.vehicle === j) continue;
    const o = sc.traffic[j] as TrafficObject;
    const st = tr[j] as { s: number; v: number };
    const half = (o.widthM + EGO_WIDTH_M) / 2 + 0.15;
    const y = laneY(o.lane);
    if (Math.abs(y - l) > half && Math.abs(y - targetL) > half) continue;
    const gap = st.s - s;
    if (gap <= 0) continue;
    if (!best || gap < best.gapM) best = { gapM: gap, speedMps: o.direction * st.v };
  }
  return best;
}

/** The leader of traffic object j in its lane and direction (stationary objects and the ego included). */
export function trafficLeader(sc: Scenario, tr: Array<{ s: number; v: number }>, j: number, ego: { s: number; l: number; v: number } | undefined): Leader | undefined {
  const me = sc.traffic[j] as TrafficObject;
  const ms = (tr[j] as { s: number }).s;
  const dir = me.direction;
  let bestGap = Infinity, bestSpeed = 0;
  const n = sc.traffic.length;
  for (let k = 0; k <= n; k++) {
    let lowS: number, len: number, speedAlong: number;
    if (k === n) {
      // the ego, as a box from its rear to its front
      if (!ego || Math.abs(ego.l - laneY(me.lane)) >= (EGO_WIDTH_M + me.widthM) / 2 + 0.1) continue;
      lowS = ego.s - EGO_REAR_M;
      len = EGO_REAR_M + EGO_FRONT_M;
      speedAlong = ego.v;
    } else {
      if (k === j) continue;
      const o = sc.traffic[k] as TrafficObject;
      if (Math.abs(laneY(o.lane) - laneY(me.lane)) > (o.widthM + me.widthM) / 2 + 0.1) continue;
      if (o.direction !== dir && (o.speedMps > 0 || o.speedProfile)) continue; // moving the other way: not a leader
      const st = tr[k] as { s: number; v: number };
      lowS = st.s;
      len = o.lengthM;
      speedAlong = o.direction * st.v;
    }
    // ahead of me along my direction; the gap from my front to its back
    if (dir > 0 ? lowS <= ms : lowS + len >= ms + me.lengthM) continue;
    const gap = dir > 0 ? lowS - (ms + me.lengthM) : ms - (lowS + len);
    if (gap < -0.5) continue;
    if (gap < bestGap) {
      bestGap = gap;
      bestSpeed = dir * speedAlong;
    }
  }
  return bestGap === Infinity ? undefined : { gapM: Math.max(0.1, bestGap), speedMps: bestSpeed };
}

/** The ego's state at tS (linear between the 10 ms samples; clamped to the simulated span). */
export function egoAt(sim: ScenarioSim, tS: number): EgoState {
  const fi = clamp(tS / sim.dtS, 0, sim.n - 1);
  const i = Math.min(sim.n - 2, Math.floor(fi));
  const f = sim.n < 2 ? 0 : fi - i;
  const j = Math.min(sim.n - 1, i + 1);
  const lerp = (a: Float64Array) => (a[i] as number) + ((a[j] as number) - (a[i] as number)) * f;
  return { tS, x: lerp(sim.x), y: lerp(sim.y), yaw: lerp(sim.yaw), v: lerp(sim.v), yawRate: lerp(sim.yawRate), s: lerp(sim.s), l: lerp(sim.l), psi: lerp(sim.psi) };
}

/** Arc length of traffic object j's low-s end at tS. */
export function trafficAt(sim: ScenarioSim, j: number, tS: number): number {
  const a = sim.trafficS[j];
  if (!a) throw new VlaError(ErrorCodes.INPUT, `no traffic object ${j}`);
  const fi = clamp(tS / sim.dtS, 0, sim.n - 1);
  const i = Math.min(sim.n - 2, Math.floor(fi));
  const f = fi - i;
  return (a[i] as number) + ((a[Math.min(sim.n - 1, i + 1)] as number) - (a[i] as number)) * f;
}

/** The ego's future positions at tS + dtS .. tS + n dtS in the ego frame at tS (x forward, y left), m. */
export function futureWaypoints(sim: ScenarioSim, tS: number, n = 6, dtS = 0.5): Array<[number, number]> {
  const e = egoAt(sim, tS);
  const c = Math.cos(e.yaw), sn = Math.sin(e.yaw);
  const out: Array<[number, number]> = [];
  for (let i = 1; i <= n; i++) {
    const f = egoAt(sim, tS + i * dtS);
    const dx = f.x - e.x, dy = f.y - e.y;
    out.push([dx * c + dy * sn, -dx * sn + dy * c]);
  }
  return out;
}

/**
 * A recovery sample: the ego displaced from the expert's pose at tS by `lateralM` across the road
 * (left positive) and turned by `headingRad`, and the path back. The waypoints (ego frame of the
 * displaced pose, at tS + dtS .. tS + n dtS) are the expert's own future positions with the
 * displacement fading out as (1 - t / horizonS)^2: the car is back on the expert's path after
 * horizonS. Training on these teaches a planner trained on expert frames to steer back when its
 * own errors have moved it off the path (the closed-loop drift that open-loop data never shows).
 */
export function recoveryWaypoints(
  sim: ScenarioSim,
  tS: number,
  lateralM: number,
  headingRad: number,
  n = 6,
  dtS = 0.5,
  horizonS = 2,
): { pose: { s: number; l: number; psi: number }; waypoints: Array<[number, number]> } {
  if (!(horizonS > 0)) throw new VlaError(ErrorCodes.ARGS, `recovery horizon must be > 0 s, got ${horizonS}`);
  const e = egoAt(sim, tS);
  const theta = e.yaw - e.psi; // the road's tangent where the ego is
  const dx = -lateralM * Math.sin(theta), dy = lateralM * Math.cos(theta);
  const px = e.x + dx, py = e.y + dy, pyaw = e.yaw + headingRad;
  const c = Math.cos(pyaw), sn = Math.sin(pyaw);
  const waypoints: Array<[number, number]> = [];
  for (let i = 1; i <= n; i++) {
    const f = egoAt(sim, tS + i * dtS);
    const w = (1 - Math.min(1, (i * dtS) / horizonS)) ** 2;
    const qx = f.x + dx * w - px, qy = f.y + dy * w - py;
    waypoints.push([qx * c + qy * sn, -qx * sn + qy * c]);
  }
  return { pose: { s: e.s, l: e.l + lateralM, psi: e.psi + headingRad }, waypoints };
}

/** Brightness at tS. */
export function lightAt(sc: Scenario, tS: number): number {
  return sc.light + sc.lightWave * Math.cos(tS / 3);
}

/** Objects farther than this along the road are not drawn, m. */
const DRAW_AHEAD_M = 110;
const DRAW_BEHIND_M = 40;
/** The crossing road is drawn within this span of its centre, m (behind it, the three front cameras cannot see it). */
const INTERSECTION_AHEAD_M = 90;
const INTERSECTION_BEHIND_M = 40;

/**
 * Render options for one camera at tS: the scene the drive bag shows then. The texture seed
 * changes every 0.1 s (sensor grain), the tree layout is fixed to the road.
 */
export function renderOptionsAt(sc: Scenario, sim: ScenarioSim, tS: number, camera: CameraName, width: number, height: number): RenderOptions {
  return renderOptionsFor(sc, egoAt(sim, tS), (j) => trafficAt(sim, j, tS), tS, camera, width, height);
}

/**
 * Render options for one camera at tS with the ego at road-frame pose `ego` and traffic object
 * j's low-s end at `trafficS(j)`: the scene as the bags show it, from any ego pose (the closed-loop
 * simulator's). renderOptionsAt is this with the scenario's own ego and traffic.
 */
export function renderOptionsFor(sc: Scenario, ego: { s: number; l: number; psi: number }, trafficS: (j: number) => number, tS: number, camera: CameraName, width: number, height: number): RenderOptions {
  const e = ego;
  const vehicles: Vehicle[] = [];
  sc.traffic.forEach((o, j) => {
    const d = trafficS(j) - e.s;
    if (d < -DRAW_BEHIND_M || d > DRAW_AHEAD_M) return;
    vehicles.push({
      distance: d,
      lane: o.lane,
      color: o.color,
      length: o.lengthM,
      width: o.widthM,
      height: o.heightM,
      ...(o.direction < 0 ? { oncoming: true } : {}),
      ...(o.kind === 'barrier' ? { kind: 'barrier' as const } : {}),
    });
  });
  const inter = sc.intersectionSM === null ? undefined : sc.intersectionSM - e.s;
  return {
    camera,
    width,
    height,
    curvature: viewCurvature(sc.road, e.s),
    egoLateralM: e.l,
    egoHeadingRad: e.psi,
    vehicles,
    ...(inter !== undefined && inter > -INTERSECTION_BEHIND_M && inter < INTERSECTION_AHEAD_M ? { intersection: inter } : {}),
    light: lightAt(sc, tS),
    seed: sc.textureSeed * 100_003 + Math.floor(tS * 10 + 1e-9),
    trees: sc.trees,
    roadS: e.s,
    layoutSeed: sc.textureSeed,
  };
}

// ---------------------------------------------------------------------------------------------
// collisions, validation, complexity

/** Indices of traffic objects the ego's body touches at some time (sampled every 50 ms). */
export function egoCollisions(sim: ScenarioSim): number[] {
  const sc = sim.scenario;
  const hit = new Set<number>();
  const offsets = [-2.75, -1.25, 0.25];
  const r = 0.95 + 0.1;
  for (let i = 0; i < sim.n; i += 5) {
    const s = sim.s[i] as number, l = sim.l[i] as number, psi = sim.psi[i] as number;
    sc.traffic.forEach((o, j) => {
      if (hit.has(j)) return;
      const os = (sim.trafficS[j] as Float64Array)[i] as number;
      if (os > s + 12 || os + o.lengthM < s - 12) return;
      const y = laneY(o.lane);
      for (const c of offsets) {
        const cs = s + c * Math.cos(psi), cl = l + c * Math.sin(psi);
        const ds = Math.max(os - cs, 0, cs - (os + o.lengthM));
        const dl = Math.max(y - o.widthM / 2 - cl, 0, cl - (y + o.widthM / 2));
        if (ds * ds + dl * dl < r * r) {
          hit.add(j);
          return;
        }
      }
    });
  }
  return [...hit].sort((a, b) => a - b);
}

export function validateScenario(sc: Scenario): void {
  const bad = (what: string) => new VlaError(ErrorCodes.INPUT, `scenario ${sc?.seed}: ${what}`);
  if (!sc || typeof sc !== 'object') throw new VlaError(ErrorCodes.INPUT, 'scenario must be an object');
  if (!(sc.durationS > 0 && sc.durationS <= 600)) throw bad(`duration must be in (0, 600] s, got ${sc.durationS}`);
  if (!(sc.ego.initialSpeedMps >= 0 && sc.ego.initialSpeedMps < 60) || !(sc.ego.cruiseSpeedMps >= 0 && sc.ego.cruiseSpeedMps < 60)) throw bad('ego speeds must be in [0, 60) m/s');
  if (sc.turn) {
    const k = sc.intersectionSM;
    if (k === null) throw bad('a turn needs an intersection');
    for (let s = sc.turn.arcStartSM - 20; s <= k + 20; s += 1) if (curvatureAt(sc.road, s) !== 0) throw bad('the road must be straight around a turn');
  }
  sc.traffic.forEach((o, j) => {
    if (!(o.lengthM > 0 && o.widthM > 0 && o.heightM > 0) || !Number.isFinite(o.sM) || !Number.isFinite(o.lane) || !(o.speedMps >= 0)) throw bad(`traffic object ${j} is malformed`);
  });
}

/** Objects within this distance count as visible for the complexity label, m. */
const VISIBLE_M = 60;

/** Complexity from what the cameras see: objects within 60 m (mean over the episode), trees, intersection, bends. */
export function complexityOf(sim: ScenarioSim): { complexity: Complexity; score: number } {
  const sc = sim.scenario;
  let objects = 0, samples = 0, interSeen = false, bendSeen = false;
  for (let t = 0; t <= sc.durationS + 1e-9; t += 0.5) {
    const e = egoAt(sim, t);
    samples++;
    sc.traffic.forEach((_o, j) => {
      const d = trafficAt(sim, j, t) - e.s;
      if (Math.abs(d) < VISIBLE_M) objects++;
    });
    if (sc.intersectionSM !== null && sc.intersectionSM - e.s < 80 && sc.intersectionSM - e.s > -20) interSeen = true;
    if (Math.abs(viewCurvature(sc.road, e.s)) > 0.006) bendSeen = true;
  }
  const score = objects / Math.max(1, samples) + sc.trees + (interSeen ? 1 : 0) + (bendSeen ? 0.5 : 0);
  // thresholds near the tertiles of the sampled episodes
  const complexity: Complexity = score < 2.5 ? 'low' : score < 4.5 ? 'medium' : 'high';
  return { complexity, score: round3(score) };
}

// ---------------------------------------------------------------------------------------------
// sampling

const PALETTE: Rgb[] = [[185, 30, 35], [35, 70, 170], [220, 220, 225], [40, 40, 45], [200, 150, 30], [60, 120, 70], [150, 150, 155], [110, 40, 120]];
const BARRIER: Rgb = [235, 120, 20];
/** Parked cars stand on the shoulder (centre 5.6 m out), barriers on the edge line (5.075 m): clear of cars in the outer lanes. */
const PARKED_LANE = 1.6;
const BARRIER_LANE = 1.45;

export interface ScenarioOptions {
  /** Forces the kind (default: chosen by the seed). */
  kind?: ScenarioKind;
}

function checkSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0x7fffffff) throw new VlaError(ErrorCodes.ARGS, `scenario seed must be an integer in [0, 2^31), got ${seed}`);
}

/** The kind a seed gives (about 1/7 each). */
export function kindOfSeed(seed: number): ScenarioKind {
  checkSeed(seed);
  return pick(rng(seed, 0), SCENARIO_KINDS);
}

/**
 * A random episode, deterministic from the seed. Draws are rejected and redrawn (from the next
 * random stream) until the task completes inside the episode and nothing collides with the ego.
 */
export function sampleScenario(seed: number, opts: ScenarioOptions = {}): Scenario {
  checkSeed(seed);
  const kind = opts.kind ?? kindOfSeed(seed);
  if (!SCENARIO_KINDS.includes(kind)) throw new VlaError(ErrorCodes.ARGS, `unknown scenario kind '${kind}' (${SCENARIO_KINDS.join(', ')})`);
  for (let attempt = 0; attempt < 12; attempt++) {
    const sc = finish(draw(seed, kind, attempt));
    if (sc) return sc;
  }
  throw new VlaError(ErrorCodes.INTERNAL, `scenario ${seed} (${kind}): no valid draw in 12 attempts`);
}

/** Draws one candidate episode (not yet checked). */
function draw(seed: number, kind: ScenarioKind, attempt: number): Scenario {
  const r = rng(seed, 1 + attempt);
  const instruction = pick(r, INSTRUCTIONS[kind]);
  let v0 = uniform(r, 3, 13);
  const turnDir: 1 | -1 = kind === 'turn_left' ? 1 : -1;
  const radius = kind === 'turn_left' ? uniform(r, 9, 11) : uniform(r, 5.5, 6.5);
  const turnSpeed = kind === 'turn_left' ? uniform(r, 4.5, 6) : uniform(r, 4, 5);

  // intersection: always for turns and stops at the line, sometimes for the rest (so its presence does not give the task away)
  let interD: number | null = null;
  if (kind === 'turn_left' || kind === 'turn_right') {
    const need = radius + (v0 * v0 - turnSpeed * turnSpeed) / (2 * 2.0) + 3;
    interD = uniform(r, Math.max(20, need), 70);
  } else if (kind === 'stop_at_intersection') {
    const need = STOP_LINE_M + STOP_LINE_STANDOFF_M + (v0 * v0) / (2 * 2.5) + 2;
    interD = uniform(r, Math.max(20, need), 70);
  } else if (r() < 0.35) interD = uniform(r, 20, 120);
  const intersectionSM = interD;

  // road: straights and bends, straight around the intersection
  const rampM = 15;
  const bends: RoadBend[] = [];
  let at = rampM + uniform(r, 0, 80);
  while (at < 520) {
    const len = uniform(r, 25, 110);
    const k = uniform(r, 0.004, 0.02) * (r() < 0.5 ? -1 : 1);
    const straight = r() < 0.25 ? uniform(r, 60, 150) : uniform(r, 15, 90);
    const a = at, b = at + len;
    if (intersectionSM !== null && b + rampM > intersectionSM - STRAIGHT_AROUND_INTERSECTION_M && a - rampM < intersectionSM + STRAIGHT_AROUND_INTERSECTION_M) {
      at = intersectionSM + STRAIGHT_AROUND_INTERSECTION_M + rampM + 1; // + 1: clear of the window despite rounding
      continue;
    }
    bends.push({ startM: round3(a), endM: round3(b), curvature: round3(k * 1e3) / 1e3 });
    at = b + 2 * rampM + straight;
  }

  const cruiseLo = kind === 'stop_behind' || kind === 'stop_at_intersection' ? Math.max(6, v0) : Math.max(7, v0 - 1);
  const cruise = uniform(r, Math.min(cruiseLo, 14), 14);
  const leftLaneOncoming = kind === 'change_left' ? false : r() < 0.5;

  const traffic: TrafficObject[] = [];
  const color = () => {
    const c = pick(r, PALETTE);
    const j = (r() - 0.5) * 30;
    return [clamp(c[0] + j, 0, 255), clamp(c[1] + j, 0, 255), clamp(c[2] + j, 0, 255)].map((x) => Math.round(x)) as Rgb;
  };
  const carDims = () => ({ lengthM: round3(uniform(r, 4.0, 5.2)), widthM: round3(uniform(r, 1.7, 2.0)), heightM: round3(uniform(r, 1.4, 1.9)) });
  const free = (lane: number, s: number, len: number) =>
    traffic.every((o) => Math.abs(laneY(o.lane) - laneY(lane)) > (o.widthM + 2) / 2 + 0.2 || s + len + 8 < o.sM || o.sM + o.lengthM + 8 < s) &&
    (Math.abs(laneY(lane)) > (EGO_WIDTH_M + 2) / 2 + 0.2 || s > 12 || s + len < -EGO_REAR_M - 10) &&
    (intersectionSM === null || Math.abs(laneY(lane)) <= ROAD_HALF_WIDTH_M - 1 || Math.abs(s + len / 2 - intersectionSM) > 16);

  let stop: StopPlan | null = null;
  if (kind === 'stop_behind') {
    const dR = uniform(r, 12, 50);
    v0 = Math.min(v0, Math.sqrt(2 * 2.5 * (dR - STOP_GAP_M - 1)));
    traffic.push({ kind: 'car', lane: 0, sM: round3(dR), direction: 1, speedMps: 0, color: color(), ...carDims() });
    stop = { reason: 'vehicle', targetSM: round3(dR - STOP_GAP_M), vehicle: 0 };
  } else if (kind === 'stop_at_intersection' && intersectionSM !== null) {
    stop = { reason: 'stop_line', targetSM: round3(intersectionSM - STOP_LINE_M - STOP_LINE_STANDOFF_M) };
  }
  // a lead car in the ego lane: the path depends on its distance and speed
  const leadP = kind === 'keep_lane' ? 0.65 : kind === 'stop_behind' ? 0 : 0.35;
  if (r() < leadP) {
    const slow = kind === 'keep_lane' && r() < 0.5;
    const speed = slow ? uniform(r, 2, Math.max(3, cruise * 0.7)) : uniform(r, Math.max(3, cruise * 0.7), cruise + 2);
    const d = uniform(r, 15, 60);
    traffic.push({ kind: 'car', lane: 0, sM: round3(d), direction: 1, speedMps: round3(speed), color: color(), ...carDims() });
  }
  const total = Math.floor(r() * 7); // 0..6 objects in all
  let guard = 0;
  while (traffic.length < total && guard++ < 40) {
    const u = r();
    if (u < 0.15) {
      const side = r() < 0.75 ? -1 : 1;
      const s = uniform(r, 8, 90);
      const dims = { ...carDims(), widthM: round3(uniform(r, 1.7, 1.9)) };
      if (free(side * PARKED_LANE, s, dims.lengthM)) traffic.push({ kind: 'parked', lane: side * PARKED_LANE, sM: round3(s), direction: 1, speedMps: 0, color: color(), ...dims });
    } else if (u < 0.27) {
      const side = r() < 0.7 ? -1 : 1;
      const s = uniform(r, 8, 80);
      const len = round3(uniform(r, 1, 2.2));
      if (free(side * BARRIER_LANE, s, len)) traffic.push({ kind: 'barrier', lane: side * BARRIER_LANE, sM: round3(s), direction: 1, speedMps: 0, color: BARRIER, lengthM: len, widthM: 0.5, heightM: round3(uniform(r, 0.8, 1.1)) });
    } else {
      const lane = pick(r, [-1, 0, 1] as const);
      const dims = carDims();
      const oncoming = lane === 1 && leftLaneOncoming;
      let s: number;
      let speed: number;
      if (oncoming) {
        s = uniform(r, 15, 220);
        speed = uniform(r, 6, 14);
      } else if (lane === 0) {
        // ego lane: behind the ego (the lead car is placed above)
        s = uniform(r, -45, -14 - dims.lengthM);
        speed = uniform(r, Math.max(3, cruise - 3), cruise + 2);
      } else {
        s = uniform(r, -35, 90);
        speed = uniform(r, 4, 14);
      }
      if (free(lane, s, dims.lengthM)) traffic.push({ kind: 'car', lane, sM: round3(s), direction: oncoming ? -1 : 1, speedMps: round3(speed), color: color(), ...dims });
    }
  }

  const laneChange: LaneChangePlan | null =
    kind === 'change_left' || kind === 'change_right' ? { startS: round3(uniform(r, 0.2, 2.0)), durationS: round3(uniform(r, 3, 5)), direction: kind === 'change_left' ? 1 : -1 } : null;
  const turn: TurnPlan | null =
    (kind === 'turn_left' || kind === 'turn_right') && intersectionSM !== null
      ? { direction: turnDir, radiusM: round3(radius), speedMps: round3(turnSpeed), arcStartSM: round3(intersectionSM - radius), exitSpeedMps: round3(uniform(r, 6, 10)) }
      : null;
  const light = round3(uniform(r, 0.6, 1.15));
  const trees = r() < 0.35 ? 0 : round3(uniform(r, 0.4, 1));
  const durationS = round3(uniform(r, 8, 14));

  return {
    seed,
    kind,
    instruction,
    laterInstructions: [],
    durationS,
    ego: { initialSpeedMps: round3(v0), cruiseSpeedMps: round3(cruise) },
    road: { rampM, bends },
    intersectionSM: intersectionSM === null ? null : round3(intersectionSM),
    leftLaneOncoming,
    laneChange,
    turn,
    stop,
    traffic,
    light,
    lightWave: 0,
    trees,
    textureSeed: seed,
    complexity: 'low',
    complexityScore: 0,
  };
}

/**
 * Makes a drawn episode valid or rejects it: objects the ego would touch are removed (the ego's
 * path does not depend on them, except as leaders, so this converges in a few rounds), the
 * duration is stretched so the task happens inside the episode, and the complexity is labelled.
 */
function finish(sc: Scenario): Scenario | undefined {
  let cur: Scenario = { ...sc, durationS: 14 };
  let long: ScenarioSim | undefined;
  for (let round = 0; round < 6 && !long; round++) {
    const sim = simulateScenario(cur);
    const hits = egoCollisions(sim);
    if (hits.length === 0) long = sim;
    else if (cur.stop?.vehicle !== undefined && hits.includes(cur.stop.vehicle)) return undefined;
    else cur = withoutTraffic(cur, hits);
  }
  if (!long) return undefined;
  let durationS = sc.durationS;
  const ev = long.events;
  if (cur.stop) {
    if (ev.stoppedS === null || ev.stoppedS > 12.5) return undefined;
    // end a few seconds after the stop: not most of the episode standing still
    durationS = clamp(ev.stoppedS + uniform(rng(sc.seed, 1000), 1.5, 4), 8, 14);
  }
  if (cur.laneChange) {
    // end a little after the move: most frames then see it ongoing or ahead, not long done
    const target = cur.laneChange.direction * LANE_WIDTH_M;
    let done = -1;
    for (let i = 0; i < long.n && done < 0; i++) if (Math.abs((long.l[i] as number) - target) < 1e-3) done = i * long.dtS;
    if (done < 0 || done > 12) return undefined;
    durationS = clamp(done + uniform(rng(sc.seed, 1001), 1.5, 3.5), 8, 14);
  }
  if (cur.turn) {
    if (ev.arcEndS === null || ev.arcEndS > 13) return undefined;
    durationS = Math.max(durationS, ev.arcEndS + 1);
  }
  const final: Scenario = { ...cur, durationS: round3(Math.min(14, durationS)) };
  // the 14 s simulation covers the final duration: the dynamics do not depend on it
  const { complexity, score } = complexityOf({ ...long, scenario: final });
  return { ...final, complexity, complexityScore: score };
}

/** The scenario without the given traffic objects (the stop target's index is kept valid). */
function withoutTraffic(sc: Scenario, drop: number[]): Scenario {
  const keep = sc.traffic.map((_o, j) => j).filter((j) => !drop.includes(j));
  const stop = sc.stop && sc.stop.vehicle !== undefined ? { ...sc.stop, vehicle: keep.indexOf(sc.stop.vehicle) } : sc.stop;
  return { ...sc, traffic: keep.map((j) => sc.traffic[j] as TrafficObject), stop };
}

export interface RetaskOptions {
  /** Which phrasing (default 0). */
  phrasing?: number;
  /** Lane change start, s (default 1). */
  laneChangeStartS?: number;
}

/**
 * The same world (road, intersection, traffic, light) with another task: shows that the
 * instruction alone changes the path. Turns and stops at the line need an intersection ahead.
 * Objects the new path would touch are removed.
 */
export function retaskScenario(sc: Scenario, kind: ScenarioKind, opts: RetaskOptions = {}): Scenario {
  if (!SCENARIO_KINDS.includes(kind)) throw new VlaError(ErrorCodes.ARGS, `unknown scenario kind '${kind}'`);
  const phrasings = INSTRUCTIONS[kind];
  const instruction = phrasings[(opts.phrasing ?? 0) % phrasings.length] as string;
  let traffic = sc.traffic;
  let stop: StopPlan | null = null;
  let turn: TurnPlan | null = null;
  let laneChange: LaneChangePlan | null = null;
  const sI = sc.intersectionSM;
  if (kind === 'turn_left' || kind === 'turn_right' || kind === 'stop_at_intersection') {
    if (sI === null || sI < 15) throw new VlaError(ErrorCodes.INPUT, `scenario ${sc.seed}: '${kind}' needs an intersection ahead`);
  }
  if (kind === 'turn_left' || kind === 'turn_right') {
    const left = kind === 'turn_left';
    const radiusM = sc.turn && sc.turn.direction === (left ? 1 : -1) ? sc.turn.radiusM : left ? 10 : 6;
    turn = { direction: left ? 1 : -1, radiusM, speedMps: sc.turn?.speedMps ?? 5, arcStartSM: round3((sI as number) - radiusM), exitSpeedMps: sc.turn?.exitSpeedMps ?? 8 };
  } else if (kind === 'stop_at_intersection') {
    stop = { reason: 'stop_line', targetSM: round3((sI as number) - STOP_LINE_M - STOP_LINE_STANDOFF_M) };
  } else if (kind === 'stop_behind') {
    const j = sc.traffic.findIndex((o) => o.lane === 0 && o.speedMps === 0 && o.sM > 0);
    if (j >= 0) stop = { reason: 'vehicle', targetSM: round3((sc.traffic[j] as TrafficObject).sM - STOP_GAP_M), vehicle: j };
    else {
      traffic = [...traffic, { kind: 'car', lane: 0, sM: 30, direction: 1, speedMps: 0, color: [185, 30, 35], lengthM: 4.5, widthM: 1.8, heightM: 1.5 }];
      stop = { reason: 'vehicle', targetSM: 30 - STOP_GAP_M, vehicle: traffic.length - 1 };
    }
  } else if (kind === 'change_left' || kind === 'change_right') {
    laneChange = { startS: opts.laneChangeStartS ?? 1, durationS: sc.laneChange?.durationS ?? 4, direction: kind === 'change_left' ? 1 : -1 };
  }
  let cur: Scenario = { ...sc, kind, instruction, laneChange, turn, stop, traffic };
  for (let round = 0; round < 6; round++) {
    const hits = egoCollisions(simulateScenario(cur)).filter((j) => j !== cur.stop?.vehicle);
    if (hits.length === 0) break;
    cur = withoutTraffic(cur, hits);
  }
  const { complexity, score } = complexityOf(simulateScenario(cur));
  return { ...cur, complexity, complexityScore: score };
}

// ---------------------------------------------------------------------------------------------
// the fixed sample drive

/** Road of the sample drive: straights, a left bend, an S. */
export const SAMPLE_DRIVE_ROAD: Readonly<RoadSpec> = Object.freeze({
  rampM: 10,
  bends: [
    { startM: 40, endM: 110, curvature: 0.012 },
    { startM: 150, endM: 200, curvature: -0.015 },
    { startM: 200, endM: 240, curvature: 0.01 },
  ],
});

/** Ego speed of the sample drive: pulls away, cruises, slows behind the lead car, speeds up again. */
export const SAMPLE_DRIVE_SPEED: ReadonlyArray<[number, number]> = Object.freeze([
  [0, 6],
  [4, 10],
  [9, 10],
  [13, 6.4],
  [19, 10],
]) as ReadonlyArray<[number, number]>;

export interface SampleDriveScenarioOptions {
  durationS?: number;
  /** Textures and traffic colours (default 1). */
  seed?: number;
}

function hash2(a: number, b: number): number {
  let h = Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul(b | 0, 0x165667b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/**
 * The fixed sample drive as a scenario: the road and ego speed of the original drive; a lead car
 * that slows and pulls away again (it no longer drives backwards into the ego), a faster car
 * passing on the right and an oncoming car in the left lane; the instruction changes once.
 */
export function sampleDriveScenario(opts: SampleDriveScenarioOptions = {}): Scenario {
  const durationS = opts.durationS ?? 12;
  const seed = opts.seed ?? 1;
  if (!(durationS > 0 && durationS <= 600)) throw new VlaError(ErrorCodes.ARGS, `sample drive: duration must be in (0, 600] s, got ${durationS}`);
  const pal: Rgb[] = [[185, 30, 35], [35, 70, 170], [220, 220, 225], [40, 40, 45], [200, 150, 30]];
  const col = (i: number) => pal[Math.floor(hash2(seed, i) * pal.length)] as Rgb;
  const car = { lengthM: 4.5, widthM: 1.8, heightM: 1.5 };
  const traffic: TrafficObject[] = [
    { kind: 'car', lane: 0, sM: 30, direction: 1, speedMps: 8.5, speedProfile: [[0, 8.5], [8, 8.5], [10.9, 5], [13, 5], [19, 8.5]], color: col(1), ...car },
    { kind: 'car', lane: -1, sM: 5, direction: 1, speedMps: 12, speedProfile: [[0, 12]], color: col(2), ...car },
    { kind: 'car', lane: 1, sM: 260, direction: -1, speedMps: 11, speedProfile: [[0, 11]], color: col(3), ...car },
  ];
  const sc: Scenario = {
    seed,
    kind: 'keep_lane',
    instruction: 'follow the road and keep a safe distance to the car ahead',
    laterInstructions: [{ tS: durationS * 0.55, text: 'keep the lane and slow down for the car ahead' }],
    durationS,
    ego: { initialSpeedMps: 6, cruiseSpeedMps: 10, speedProfile: SAMPLE_DRIVE_SPEED.map(([t, v]) => [t, v] as [number, number]) },
    road: { rampM: SAMPLE_DRIVE_ROAD.rampM, bends: SAMPLE_DRIVE_ROAD.bends.map((b) => ({ ...b })) },
    intersectionSM: 300,
    leftLaneOncoming: true,
    laneChange: null,
    turn: null,
    stop: null,
    traffic,
    light: 0.9,
    lightWave: 0.1,
    trees: 1,
    textureSeed: seed,
    complexity: 'medium',
    complexityScore: 0,
  };
  const { complexity, score } = complexityOf(simulateScenario(sc));
  return { ...sc, complexity, complexityScore: score };
}
