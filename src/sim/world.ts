/**
 * The synthetic world around a closed-loop ego: the scenario's road, its expert's path (the
 * route) and its traffic. Traffic follows the scenario's own simulation by default
 * (non-reactive: the motion recorded beside the expert, as a log replay); with `reactive` it
 * runs the scenario's car-following model live and reacts to the closed-loop ego.
 *
 * Positions of traffic are kept per simulation step, so the cameras (rendered at their own
 * stamps) and the privileged expert see the world at any past instant.
 */
import {
  CROSSING_HALF_WIDTH_M,
  EGO_WIDTH_M,
  idm,
  interpKnots,
  laneY,
  renderOptionsFor,
  ROAD_HALF_WIDTH_M,
  RoadGeometry,
  SIM_DT_S,
  simulateScenario,
  trafficLeader,
  TRAFFIC_IDM,
  type Scenario,
  type ScenarioSim,
  type TrafficObject,
} from '../sample/scenario.js';
import type { CameraName, RenderOptions } from '../sample/render.js';
import type { Box } from './geometry.js';

export interface RoadPose {
  /** Arc length along the main road's middle lane, m. */
  s: number;
  /** Lateral offset from the middle lane's centre, m (left positive). */
  l: number;
  /** Heading relative to the road tangent, rad. */
  psi: number;
}

export interface ObjectState {
  index: number;
  spec: TrafficObject;
  /** Low-s end along the road, m. */
  sLow: number;
  /** Speed along its direction of travel, m/s (>= 0). */
  speedMps: number;
  box: Box;
  /** World velocity, m/s. */
  vx: number;
  vy: number;
}

const clamp = (v: number, a: number, b: number) => Math.min(b, Math.max(a, v));

export interface WorldOptions {
  /** Simulated span (the expert and scripted traffic are simulated this long plus a tail), s. */
  horizonS: number;
  reactive: boolean;
}

export class SimWorld {
  readonly scenario: Scenario;
  /** The scenario simulated over the whole horizon: the expert's path and non-reactive traffic. */
  readonly expert: ScenarioSim;
  readonly geo: RoadGeometry;
  readonly dtS = SIM_DT_S;
  readonly reactive: boolean;
  /** Traffic low-s ends per step (step i at i * dtS), and speeds now. */
  private readonly hist: Float64Array[];
  private readonly speed: Float64Array;
  private steps = 0;

  constructor(sc: Scenario, opts: WorldOptions) {
    this.scenario = sc;
    this.reactive = opts.reactive;
    this.expert = simulateScenario({ ...sc, durationS: opts.horizonS });
    const maxV = Math.max(sc.ego.cruiseSpeedMps, sc.ego.initialSpeedMps, ...(sc.ego.speedProfile ?? []).map((k) => k[1]), 1);
    this.geo = new RoadGeometry(sc.road, maxV * 2 * (opts.horizonS + 5) + 300);
    const n = this.expert.n;
    this.hist = sc.traffic.map(() => new Float64Array(n));
    this.speed = new Float64Array(sc.traffic.length);
    sc.traffic.forEach((o, j) => {
      (this.hist[j] as Float64Array)[0] = o.sM;
      this.speed[j] = o.speedProfile ? interpKnots(o.speedProfile, 0) : o.speedMps;
    });
    this.steps = 1;
  }

  /** Steps recorded (the last at (steps - 1) * dtS). */
  get recordedSteps(): number {
    return this.steps;
  }

  /** The last step the world can run (its histories end there). */
  get maxSteps(): number {
    return this.expert.n;
  }

  /**
   * Advances traffic by one step to step index `steps`. `ego` is the closed-loop ego on the main
   * road (arc length, lateral offset, speed along the road), or undefined when it is off it.
   */
  step(ego: { s: number; l: number; v: number } | undefined): void {
    const i = this.steps;
    if (i >= this.expert.n) return;
    const sc = this.scenario;
    const dt = this.dtS;
    if (!this.reactive) {
      sc.traffic.forEach((_o, j) => {
        const a = this.expert.trafficS[j] as Float64Array;
        (this.hist[j] as Float64Array)[i] = a[i] as number;
        this.speed[j] = Math.abs(((a[i] as number) - (a[i - 1] as number)) / dt);
      });
    } else {
      // The scenario's own update (src/sample/scenario.ts), with the closed-loop ego as a possible leader.
      const t = (i - 1) * dt;
      const tr = sc.traffic.map((_o, j) => ({ s: (this.hist[j] as Float64Array)[i - 1] as number, v: this.speed[j] as number }));
      const next = tr.map((o, j) => {
        const spec = sc.traffic[j] as TrafficObject;
        if (spec.speedProfile) return Math.max(0, interpKnots(spec.speedProfile, t + dt));
        if (spec.speedMps <= 0) return 0;
        return Math.max(0, o.v + clamp(idm(TRAFFIC_IDM, o.v, spec.speedMps, trafficLeader(sc, tr, j, ego)), -6, 1.5) * dt);
      });
      tr.forEach((o, j) => {
        const spec = sc.traffic[j] as TrafficObject;
        const vn = next[j] as number;
        (this.hist[j] as Float64Array)[i] = o.s + spec.direction * ((o.v + vn) / 2) * dt;
        this.speed[j] = vn;
      });
    }
    this.steps++;
  }

  /** Low-s end of object j at tS (interpolated between steps; past the last step, extrapolated at its speed). */
  trafficS(j: number, tS: number): number {
    const h = this.hist[j] as Float64Array;
    const fi = Math.max(0, tS / this.dtS);
    const last = this.steps - 1;
    if (fi >= last) {
      const spec = this.scenario.traffic[j] as TrafficObject;
      return (h[last] as number) + spec.direction * (this.speed[j] as number) * (fi - last) * this.dtS;
    }
    const i = Math.floor(fi), f = fi - i;
    return (h[i] as number) + ((h[i + 1] as number) - (h[i] as number)) * f;
  }

  /** Every object's state at tS. */
  objectsAt(tS: number): ObjectState[] {
    return this.scenario.traffic.map((spec, j) => {
      const sLow = this.trafficS(j, tS);
      const sLater = this.trafficS(j, tS + 0.05);
      const speedMps = Math.abs(sLater - sLow) / 0.05;
      const sc = sLow + spec.lengthM / 2;
      const p = this.geo.pose(sc, laneY(spec.lane), 0);
      const heading = p.yaw + (spec.direction < 0 ? Math.PI : 0);
      return {
        index: j,
        spec,
        sLow,
        speedMps,
        box: { cx: p.x, cy: p.y, yaw: p.yaw, halfL: spec.lengthM / 2, halfW: spec.widthM / 2 },
        vx: speedMps * Math.cos(heading),
        vy: speedMps * Math.sin(heading),
      };
    });
  }

  /** Road-frame pose of a world pose; `sGuess` near the answer (the last one) keeps it on the right branch. */
  roadPose(x: number, y: number, yaw: number, sGuess: number): RoadPose {
    let s = sGuess;
    for (let k = 0; k < 12; k++) {
      const c = this.geo.at(s);
      const ds = (x - c.x) * Math.cos(c.theta) + (y - c.y) * Math.sin(c.theta);
      s += ds;
      if (Math.abs(ds) < 1e-7) break;
    }
    const c = this.geo.at(s);
    const l = -(x - c.x) * Math.sin(c.theta) + (y - c.y) * Math.cos(c.theta);
    return { s, l, psi: Math.atan2(Math.sin(yaw - c.theta), Math.cos(yaw - c.theta)) };
  }

  /** What camera `camera` sees at tS with the ego at road pose `ego` (the bags' renderer and scene). */
  renderOptions(ego: RoadPose, tS: number, camera: CameraName, width: number, height: number): RenderOptions {
    return renderOptionsFor(this.scenario, ego, (j) => this.trafficS(j, tS), tS, camera, width, height);
  }

  /** Whether a road-frame point is on asphalt meant for driving: the main road, or the crossing road. */
  onRoad(p: { s: number; l: number }): boolean {
    if (Math.abs(p.l) <= ROAD_HALF_WIDTH_M) return true;
    const sI = this.scenario.intersectionSM;
    return sI !== null && Math.abs(p.s - sI) <= ROAD_HALF_WIDTH_M;
  }

  /** Whether a road-frame point is in the oncoming lane of the main road (outside the crossing). */
  inOncomingLane(p: { s: number; l: number }): boolean {
    if (!this.scenario.leftLaneOncoming) return false;
    const sI = this.scenario.intersectionSM;
    if (sI !== null && Math.abs(p.s - sI) <= CROSSING_HALF_WIDTH_M) return false;
    return p.l > laneY(0.5) && p.l <= ROAD_HALF_WIDTH_M;
  }

  /** The ego's body as a box around base_link. */
  static egoBox(x: number, y: number, yaw: number, frontM: number, rearM: number, widthM = EGO_WIDTH_M): Box {
    const off = (frontM - rearM) / 2;
    return { cx: x + off * Math.cos(yaw), cy: y + off * Math.sin(yaw), yaw, halfL: (frontM + rearM) / 2, halfW: widthM / 2 };
  }
}
