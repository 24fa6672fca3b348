/**
 * Closed-loop metrics as the driving benchmarks define them.
 *
 * Driving score (CARLA leaderboard 2.0, leaderboard/utils/statistics_manager.py):
 *   drivingScore = routeCompletion x infractionPenalty, with
 *   infractionPenalty = prod_j coefficient_j ^ count_j x (1 - outsideLanesPercent / 100).
 * Coefficients: collision with a vehicle 0.60, with a static object 0.65, a stop infraction
 * 0.80 (both running the stop line and not stopping behind the car ahead, our mapping). Route
 * completion is the route distance passed (within the road's half width of the route). The
 * leaderboard's "outside route lanes" share is the route distance passed while the ego's body
 * centre is off the road or in the oncoming lane. Driving in another lane than the route's (a
 * lane change not made, or not asked for) carries no penalty there, as on the leaderboard; it
 * is counted (outsideRouteLane) and the share driven in the route's lane is reported
 * (routeLanePercent). More than 30 m off the route ends the drive (route deviation), as do an
 * at-fault collision (the cars do not pass through each other) and standing still for 5 s short
 * of the route's end (blocked). Collisions where another car runs into the ego from behind are
 * not the ego's fault (nuPlan's at-fault rule, simplified) and are counted apart, without a
 * penalty.
 *
 * Comfort bounds are nuPlan's (ego_is_comfortable): longitudinal acceleration in [-4.05, 2.40]
 * m/s^2, |lateral acceleration| <= 4.89 m/s^2, |longitudinal jerk| <= 4.13 m/s^3, |yaw rate| <=
 * 0.95 rad/s, sampled at 10 Hz.
 */
import { LANE_WIDTH_M, laneY, ROAD_HALF_WIDTH_M, STOP_LINE_M } from '../sample/scenario.js';
import type { VehicleParams } from '../control/vehicle.js';
import type { BicycleState } from './bicycle.js';
import type { ExpertRoute } from './expert.js';
import { boxesOverlap, toFrame } from './geometry.js';
import { SimWorld, type ObjectState } from './world.js';

export type InfractionType = 'collisionVehicle' | 'collisionStatic' | 'collisionNotAtFault' | 'offRoad' | 'oncomingLane' | 'outsideRouteLane' | 'stopLine' | 'stopBehind' | 'routeDeviation';

/** CARLA leaderboard 2.0 penalty coefficients for the infractions that carry one. */
export const PENALTY_COEFFICIENTS: Readonly<Partial<Record<InfractionType, number>>> = Object.freeze({
  collisionVehicle: 0.6,
  collisionStatic: 0.65,
  stopLine: 0.8,
  stopBehind: 0.8,
});

export const NUPLAN_COMFORT = Object.freeze({ minLonAccelMps2: -4.05, maxLonAccelMps2: 2.4, maxAbsLatAccelMps2: 4.89, maxAbsLonJerkMps3: 4.13, maxAbsYawRateRadps: 0.95 });

/** Standing still this long short of the route's end ends the drive (the leaderboard's 180 s, scaled to our 8-14 s routes), s. */
export const BLOCKED_S = 5;
/** Off the route by more than this ends the drive (the leaderboard's route deviation), m. */
export const ROUTE_DEVIATION_M = 30;
/** base_link within this of the route counts as progress along it (the road's half width: the next lane counts), m. */
export const ROUTE_TOLERANCE_M = ROAD_HALF_WIDTH_M;
/** base_link farther than this from the route is outside the route's lane (half a lane plus the leaderboard's 1.3 m allowance), m. */
export const ROUTE_LANE_TOLERANCE_M = LANE_WIDTH_M / 2 + 1.3;

export interface InfractionEvent {
  tS: number;
  type: InfractionType;
  /** World position of the ego's base_link, m. */
  x: number;
  y: number;
  /** Traffic object involved, if any. */
  object: number | null;
  detail: string;
}

export type InfractionCounts = Record<InfractionType, number>;

export interface ComfortStats {
  maxLonAccelMps2: number;
  minLonAccelMps2: number;
  maxAbsLatAccelMps2: number;
  maxAbsLonJerkMps3: number;
  maxAbsYawRateRadps: number;
  rmsLonAccelMps2: number;
  rmsLatAccelMps2: number;
  rmsLonJerkMps3: number;
  /** Share of 10 Hz samples inside all of nuPlan's bounds. */
  withinBoundsFraction: number;
  /** Every sample inside the bounds (nuPlan's ego_is_comfortable). */
  comfortable: boolean;
}

export interface DriveMetrics {
  status: 'completed' | 'timeout' | 'collision' | 'route-deviation' | 'blocked' | 'interrupted';
  /** Percent of the route driven, 0..100. */
  routeCompletion: number;
  infractionPenalty: number;
  /** routeCompletion x infractionPenalty, 0..100. */
  drivingScore: number;
  /** Route completed without any penalised infraction (Bench2Drive's success). */
  success: boolean;
  routeLengthM: number;
  drivenM: number;
  simTimeS: number;
  infractions: InfractionCounts;
  /** Share of the route completed while off the road or in the oncoming lane (the leaderboard's outside route lanes), percent. */
  outsideLanesPercent: number;
  /** Share of the route completed in the route's own lane (how well a lane instruction was followed), percent. */
  routeLanePercent: number;
  events: InfractionEvent[];
  /** Smallest constant-velocity time to collision with an object ahead (5 s horizon), s; null if none. */
  minTtcS: number | null;
  /** Seconds with a time to collision under 1.5 s. */
  ttcUnder1p5sS: number;
  comfort: ComfortStats;
}

const round = (v: number, digits = 6) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : v);

interface Contact {
  inContact: boolean;
  lastContactS: number;
}

export class DriveMonitor {
  readonly counts: InfractionCounts = { collisionVehicle: 0, collisionStatic: 0, collisionNotAtFault: 0, offRoad: 0, oncomingLane: 0, outsideRouteLane: 0, stopLine: 0, stopBehind: 0, routeDeviation: 0 };
  readonly events: InfractionEvent[] = [];
  private progressD = 0;
  private drivenM = 0;
  private outsideM = 0;
  private inLaneM = 0;
  private wasOffRoad = false;
  private wasOncoming = false;
  private wasOutsideLane = false;
  private ranStopLine = false;
  private stoppedBehind = false;
  private hitStopVehicle = false;
  private readonly contacts = new Map<number, Contact>();
  private roadS = 0;
  private frontS = 0;
  private minTtc: number | null = null;
  private ttcLowS = 0;
  private readonly comfort = { lon: [] as number[], lat: [] as number[], yawRate: [] as number[] };
  private stillSinceS: number | null = null;
  /** Set when the drive must end early. */
  terminated: 'collision' | 'route-deviation' | 'blocked' | null = null;

  constructor(
    private readonly world: SimWorld,
    private readonly route: ExpertRoute,
    private readonly vehicle: VehicleParams,
  ) {}

  get routeLengthM(): number {
    return this.route.routeEndD;
  }

  /** Percent of the route driven so far. */
  get routeCompletion(): number {
    const L = this.route.routeEndD;
    return L < 0.5 ? 100 : Math.min(100, (100 * this.progressD) / L);
  }

  /** The route is done: its end reached (stop kinds: and standing still there for a second). */
  routeDone(tS: number): boolean {
    const L = this.route.routeEndD;
    if (this.progressD < L - (this.route.stopD !== null ? 1.0 : 0.5)) return false;
    if (this.route.stopD === null) return true;
    return this.stillSinceS !== null && tS - this.stillSinceS >= 1.0;
  }

  private event(tS: number, type: InfractionType, s: BicycleState, object: number | null, detail: string): void {
    this.counts[type]++;
    this.events.push({ tS: round(tS, 3), type, x: round(s.x, 3), y: round(s.y, 3), object, detail });
  }

  /** After each physics step: progress, collisions, lanes, stop rules. */
  update(tS: number, s: BicycleState, prev: BicycleState, objects: ObjectState[]): void {
    const v = this.vehicle;
    const step = Math.hypot(s.x - prev.x, s.y - prev.y);
    this.drivenM += step;
    this.stillSinceS = s.v < 0.1 ? (this.stillSinceS ?? tS) : null;
    if (this.stillSinceS !== null && tS - this.stillSinceS >= BLOCKED_S && !this.routeDone(tS)) this.terminated ??= 'blocked';
    // route progress (the leaderboard's: route distance passed) and deviation
    const end = this.route.routeEndD;
    const before = this.progressD;
    const p = this.route.path.project(s.x, s.y, this.progressD - 2, this.progressD + 30);
    if (p.dist <= ROUTE_TOLERANCE_M) this.progressD = Math.max(this.progressD, Math.min(end, p.d));
    else {
      const far = this.route.path.project(s.x, s.y);
      if (far.dist > ROUTE_DEVIATION_M && !this.terminated) {
        this.event(tS, 'routeDeviation', s, null, `${far.dist.toFixed(1)} m off the route`);
        this.terminated = 'route-deviation';
      }
    }
    const passed = this.progressD - before;
    // outside the route's lanes: off the road, in the oncoming lane, or in another lane than the route's
    const off = (v.bodyFrontM - v.bodyRearM) / 2;
    const bc = { x: s.x + off * Math.cos(s.yaw), y: s.y + off * Math.sin(s.yaw) };
    const rp = this.world.roadPose(bc.x, bc.y, s.yaw, this.roadS);
    this.roadS = rp.s;
    const offRoad = !this.world.onRoad(rp);
    const oncoming = !offRoad && this.world.inOncomingLane(rp);
    const outsideLane = !offRoad && !oncoming && p.dist > ROUTE_LANE_TOLERANCE_M;
    if (offRoad && !this.wasOffRoad) this.event(tS, 'offRoad', s, null, `body centre ${Math.abs(rp.l).toFixed(2)} m from the road's centre line`);
    if (oncoming && !this.wasOncoming) this.event(tS, 'oncomingLane', s, null, 'body centre in the oncoming lane');
    if (outsideLane && !this.wasOutsideLane) this.event(tS, 'outsideRouteLane', s, null, `${p.dist.toFixed(2)} m beside the route (another lane than the route's)`);
    if (offRoad || oncoming) this.outsideM += passed;
    else if (!outsideLane) this.inLaneM += passed;
    this.wasOffRoad = offRoad;
    this.wasOncoming = oncoming;
    this.wasOutsideLane = outsideLane;
    // the front bumper against the stop line and the car to stop behind
    const front = this.world.roadPose(s.x + v.bodyFrontM * Math.cos(s.yaw), s.y + v.bodyFrontM * Math.sin(s.yaw), s.yaw, this.frontS);
    this.frontS = front.s;
    const sc = this.world.scenario;
    if (sc.kind === 'stop_at_intersection' && sc.intersectionSM !== null && !this.ranStopLine) {
      if (front.s > sc.intersectionSM - STOP_LINE_M + 0.2 && Math.abs(front.l) <= ROAD_HALF_WIDTH_M) {
        this.ranStopLine = true;
        this.event(tS, 'stopLine', s, null, 'the front bumper crossed the stop line');
      }
    }
    const stopJ = sc.stop?.reason === 'vehicle' ? sc.stop.vehicle : undefined;
    if (stopJ !== undefined && !this.stoppedBehind && s.v < 0.1) {
      const o = objects[stopJ];
      if (o) {
        const gap = o.sLow - front.s;
        if (gap > -0.05 && gap <= 8 && Math.abs(front.l - laneY(o.spec.lane)) < 1.75) this.stoppedBehind = true;
      }
    }
    // collisions
    const ego = SimWorld.egoBox(s.x, s.y, s.yaw, v.bodyFrontM, v.bodyRearM, v.bodyWidthM);
    for (const o of objects) {
      const hit = boxesOverlap(ego, o.box);
      const c = this.contacts.get(o.index) ?? { inContact: false, lastContactS: -Infinity };
      if (hit && !c.inContact && tS - c.lastContactS > 5) {
        const rel = toFrame(s, o.box.cx, o.box.cy);
        const closing = o.vx * Math.cos(s.yaw) + o.vy * Math.sin(s.yaw);
        const fromBehind = rel.x < -v.bodyRearM / 2 && closing > s.v + 0.1;
        if (fromBehind) this.event(tS, 'collisionNotAtFault', s, o.index, `object ${o.index} (${o.spec.kind}) ran into the ego from behind`);
        else {
          this.event(tS, o.spec.kind === 'barrier' ? 'collisionStatic' : 'collisionVehicle', s, o.index, `with object ${o.index} (${o.spec.kind}${o.spec.speedMps > 0 ? `, ${o.speedMps.toFixed(1)} m/s` : ', standing'}) at ${s.v.toFixed(1)} m/s`);
          if (o.index === stopJ) this.hitStopVehicle = true;
          this.terminated ??= 'collision';
        }
      }
      if (hit) c.lastContactS = tS;
      c.inContact = hit;
      this.contacts.set(o.index, c);
    }
  }

  /** At 10 Hz: time to collision with objects ahead (constant velocities), comfort samples. */
  sample10Hz(s: BicycleState, objects: ObjectState[]): void {
    const v = this.vehicle;
    let ttc: number | null = null;
    const ex = Math.cos(s.yaw) * s.v, ey = Math.sin(s.yaw) * s.v;
    for (const o of objects) {
      const rel = toFrame(s, o.box.cx, o.box.cy);
      if (rel.x <= 0 || rel.x > 80 || Math.abs(rel.y) > 20) continue;
      const ego0 = SimWorld.egoBox(s.x, s.y, s.yaw, v.bodyFrontM, v.bodyRearM, v.bodyWidthM);
      if (boxesOverlap(ego0, o.box)) continue;
      for (let k = 1; k <= 50; k++) {
        const tau = k * 0.1;
        const egoB = { ...ego0, cx: ego0.cx + ex * tau, cy: ego0.cy + ey * tau };
        const ob = { ...o.box, cx: o.box.cx + o.vx * tau, cy: o.box.cy + o.vy * tau };
        if (boxesOverlap(egoB, ob)) {
          if (ttc === null || tau < ttc) ttc = tau;
          break;
        }
      }
    }
    if (ttc !== null) {
      this.minTtc = this.minTtc === null ? ttc : Math.min(this.minTtc, ttc);
      if (ttc < 1.5) this.ttcLowS += 0.1;
    }
    this.comfort.lon.push(s.accelMps2);
    this.comfort.lat.push(s.v * s.yawRate);
    this.comfort.yawRate.push(s.yawRate);
  }

  finish(tS: number, status: DriveMetrics['status'], last: BicycleState): DriveMetrics {
    const sc = this.world.scenario;
    if (sc.stop?.reason === 'vehicle' && !this.stoppedBehind && !this.hitStopVehicle && status !== 'interrupted') this.event(tS, 'stopBehind', last, sc.stop.vehicle ?? null, 'did not come to rest behind the car to stop behind');
    const L = this.route.routeEndD;
    // the leaderboard's share: of the route distance completed
    const outsidePct = this.progressD > 0.5 ? Math.min(100, (100 * this.outsideM) / this.progressD) : 0;
    let penalty = 1;
    for (const [k, coef] of Object.entries(PENALTY_COEFFICIENTS)) penalty *= (coef as number) ** this.counts[k as InfractionType];
    penalty *= 1 - outsidePct / 100;
    const rc = status === 'completed' ? 100 : this.routeCompletion;
    const penalised = (Object.keys(PENALTY_COEFFICIENTS) as InfractionType[]).some((k) => this.counts[k] > 0) || outsidePct > 0;
    return {
      status,
      routeCompletion: round(rc),
      infractionPenalty: round(penalty),
      drivingScore: round(rc * penalty),
      success: status === 'completed' && !penalised && this.counts.routeDeviation === 0,
      routeLengthM: round(L, 3),
      drivenM: round(this.drivenM, 3),
      simTimeS: round(tS, 3),
      infractions: { ...this.counts },
      outsideLanesPercent: round(outsidePct),
      routeLanePercent: round(this.progressD > 0.5 ? Math.min(100, (100 * this.inLaneM) / this.progressD) : 100),
      events: this.events,
      minTtcS: this.minTtc === null ? null : round(this.minTtc, 3),
      ttcUnder1p5sS: round(this.ttcLowS, 3),
      comfort: comfortStats(this.comfort.lon, this.comfort.lat, this.comfort.yawRate),
    };
  }
}

function comfortStats(lon: number[], lat: number[], yawRate: number[]): ComfortStats {
  const n = lon.length;
  const jerk: number[] = [];
  for (let i = 1; i < n; i++) jerk.push(((lon[i] as number) - (lon[i - 1] as number)) / 0.1);
  const maxAbs = (xs: number[]) => xs.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  const rms = (xs: number[]) => (xs.length ? Math.sqrt(xs.reduce((a, x) => a + x * x, 0) / xs.length) : 0);
  const b = NUPLAN_COMFORT;
  let within = 0;
  for (let i = 0; i < n; i++) {
    const a = lon[i] as number;
    const j = i > 0 ? (jerk[i - 1] as number) : 0;
    if (a >= b.minLonAccelMps2 && a <= b.maxLonAccelMps2 && Math.abs(lat[i] as number) <= b.maxAbsLatAccelMps2 && Math.abs(j) <= b.maxAbsLonJerkMps3 && Math.abs(yawRate[i] as number) <= b.maxAbsYawRateRadps) within++;
  }
  return {
    maxLonAccelMps2: round(n ? Math.max(...lon) : 0, 4),
    minLonAccelMps2: round(n ? Math.min(...lon) : 0, 4),
    maxAbsLatAccelMps2: round(maxAbs(lat), 4),
    maxAbsLonJerkMps3: round(maxAbs(jerk), 4),
    maxAbsYawRateRadps: round(maxAbs(yawRate), 4),
    rmsLonAccelMps2: round(rms(lon), 4),
    rmsLatAccelMps2: round(rms(lat), 4),
    rmsLonJerkMps3: round(rms(jerk), 4),
    withinBoundsFraction: round(n ? within / n : 1, 4),
    comfortable: within === n,
  };
}
