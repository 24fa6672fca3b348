/**
 * The scenario's expert as a closed-loop planner (the upper bound). It is privileged: it knows
 * the route (the path the scenario's own expert drives: lane changes, turns, stops) and the true
 * state of the world at the frame's stamp, and plans from the ego's actual state then with the
 * scenario's own driver model (IDM with the expert's parameters toward the cruise speed, braking
 * for the turn's speed and for the stop target; leaders along the route predicted at constant
 * speed). Because it plans from what is true at the stamp, its plans age like any planner's: a
 * late plan has not seen what happened since.
 */
import type { InferInput, InferOutput, Waypoint } from '../engine/engine.js';
import type { EngineLike } from '../pipeline/node.js';
import { brakeFor, EGO_IDM, EGO_MAX_ACCEL, EGO_MAX_BRAKE, EGO_WIDTH_M, idm, interpKnots, type Leader } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { Polyline, toFrame } from './geometry.js';
import type { ObjectState, SimWorld } from './world.js';

export interface ExpertRoute {
  /** base_link of the scenario's expert over the whole simulated span. */
  path: Polyline;
  /** Path distance at the scenario's duration: the route the drive is scored on, m. */
  routeEndD: number;
  /** Where the expert comes to rest (stop kinds), m along the path. */
  stopD: number | null;
  /** Start and end of the turn's arc, m along the path. */
  arcStartD: number | null;
  arcEndD: number | null;
}

/** The route of a world: the expert's path and the distances where its behaviour changes. */
export function expertRoute(world: SimWorld): ExpertRoute {
  const e = world.expert;
  const pts: Array<{ x: number; y: number }> = [];
  for (let i = 0; i < e.n; i++) pts.push({ x: e.x[i] as number, y: e.y[i] as number });
  const path = new Polyline(pts, 0.05);
  // distance travelled by time t, from the raw samples, then snapped onto the polyline
  const raw = new Float64Array(e.n);
  for (let i = 1; i < e.n; i++) raw[i] = (raw[i - 1] as number) + Math.hypot((e.x[i] as number) - (e.x[i - 1] as number), (e.y[i] as number) - (e.y[i - 1] as number));
  const dAt = (tS: number) => {
    const i = Math.min(e.n - 1, Math.max(0, Math.round(tS / e.dtS)));
    return path.project(e.x[i] as number, e.y[i] as number, (raw[i] as number) - 1, (raw[i] as number) + 1).d;
  };
  const sc = world.scenario;
  const ev = e.events;
  return {
    path,
    routeEndD: dAt(sc.durationS),
    stopD: sc.stop ? dAt(ev.stoppedS ?? sc.durationS) : null,
    arcStartD: sc.turn && ev.arcStartS !== null ? dAt(ev.arcStartS) : null,
    arcEndD: sc.turn && ev.arcEndS !== null ? dAt(ev.arcEndS) : null,
  };
}

const clamp = (v: number, a: number, b: number) => Math.min(b, Math.max(a, v));

export class ExpertPlanner {
  private lastD = 0;

  constructor(
    private readonly world: SimWorld,
    readonly route: ExpertRoute,
  ) {}

  /** Path distance of a pose (near the last answer; anywhere when far from it). */
  progressOf(x: number, y: number): { d: number; dist: number } {
    let p = this.route.path.project(x, y, this.lastD - 10, this.lastD + 40);
    if (p.dist > 8) p = this.route.path.project(x, y);
    this.lastD = p.d;
    return p;
  }

  /** The leader along the route ahead of path distance d0 (the stop target excluded: the stop rule handles it). */
  private leader(d0: number, objects: ObjectState[]): Leader | undefined {
    const stopVehicle = this.world.scenario.stop?.reason === 'vehicle' ? this.world.scenario.stop.vehicle : undefined;
    let best: Leader | undefined;
    for (const o of objects) {
      if (o.index === stopVehicle) continue;
      const p = this.route.path.project(o.box.cx, o.box.cy, d0 - 5, d0 + 120);
      if (p.dist > o.box.halfW + EGO_WIDTH_M / 2 + 0.15) continue;
      const t = this.route.path.at(p.d);
      const along = o.vx * t.tx + o.vy * t.ty;
      // moving across or against the route: not a leader (the scenario's expert yields to neither)
      if (o.speedMps > 0.5 && along < 0.5 * o.speedMps) continue;
      const gap = p.d - o.box.halfL - d0;
      if (gap <= 0) continue;
      if (!best || gap < best.gapM) best = { gapM: gap, speedMps: Math.max(0, along) };
    }
    return best;
  }

  /** The scenario expert's acceleration at path distance d, speed v, time t. */
  private accel(d: number, v: number, tS: number, lead: Leader | undefined): number {
    const sc = this.world.scenario;
    const r = this.route;
    if (sc.ego.speedProfile) {
      const target = interpKnots(sc.ego.speedProfile, tS + 0.1);
      return clamp((target - v) / 0.1, -EGO_MAX_BRAKE, EGO_MAX_ACCEL);
    }
    const turn = sc.turn;
    const inArc = turn && r.arcStartD !== null && d >= r.arcStartD && (r.arcEndD === null || d < r.arcEndD);
    const afterArc = turn && r.arcEndD !== null && d >= r.arcEndD;
    let v0 = sc.ego.cruiseSpeedMps;
    if (turn && inArc) v0 = turn.speedMps;
    else if (turn && afterArc) v0 = turn.exitSpeedMps;
    let a: number;
    if (!inArc && !afterArc) {
      a = idm(EGO_IDM, v, v0, lead);
      if (turn && r.arcStartD !== null) a = Math.min(a, brakeFor(v, turn.speedMps, r.arcStartD - d));
    } else a = idm(EGO_IDM, v, v0, undefined);
    if (r.stopD !== null) {
      const left = r.stopD - d;
      a = left <= 0.01 ? -EGO_MAX_BRAKE : Math.min(a, brakeFor(v, 0, left));
    }
    return clamp(a, -EGO_MAX_BRAKE, EGO_MAX_ACCEL);
  }

  /**
   * The plan at stampS from the ego's state then, in its frame: positions along the route at
   * the given times, with the speed the expert's driver model gives over them.
   */
  plan(stampS: number, ego: { x: number; y: number; yaw: number; v: number }, objects: ObjectState[], timesS: readonly number[]): Waypoint[] {
    const d0 = this.progressOf(ego.x, ego.y).d;
    const lead0 = this.leader(d0, objects);
    const horizon = Math.max(...timesS);
    const dt = 0.05;
    let d = d0, v = Math.max(0, ego.v), t = 0;
    let gap = lead0?.gapM ?? 0;
    const out: Waypoint[] = [];
    let k = 0;
    const sorted = [...timesS].sort((a, b) => a - b);
    while (k < sorted.length) {
      const target = sorted[k] as number;
      if (t >= target - 1e-9) {
        const p = this.route.path.at(d);
        const q = toFrame(ego, p.x, p.y);
        out.push({ tS: target, x: q.x, y: q.y });
        k++;
        continue;
      }
      const lead = lead0 ? { gapM: Math.max(0.1, gap), speedMps: lead0.speedMps } : undefined;
      const a = this.accel(d, v, stampS + t, lead);
      const vn = Math.max(0, v + a * dt);
      const step = ((v + vn) / 2) * dt;
      d = Math.min(d + step, this.route.path.length);
      if (lead0) gap += lead0.speedMps * dt - step;
      v = vn;
      t += dt;
      if (t > horizon + 1) break;
    }
    return out;
  }
}

/** Finds the stamp of the frames a planner was given (the expert is privileged: it recognises them). */
export class FrameRegistry {
  private readonly stamps = new Map<string, bigint>();
  private readonly order: string[] = [];

  private static key(data: Uint8Array): string {
    // FNV-1a over the bytes, with the length: JPEG frames differ in both
    let h = 0x811c9dc5;
    for (let i = 0; i < data.length; i++) h = Math.imul(h ^ (data[i] as number), 0x01000193);
    return `${data.length}:${(h >>> 0).toString(16)}`;
  }

  add(data: Uint8Array, stampNs: bigint): void {
    const k = FrameRegistry.key(data);
    if (!this.stamps.has(k)) this.order.push(k);
    this.stamps.set(k, stampNs);
    while (this.order.length > 256) this.stamps.delete(this.order.shift() as string);
  }

  /** The newest stamp among the views (the node stamps a set with its newest frame). */
  stampOf(views: InferInput['views']): bigint {
    let best: bigint | undefined;
    for (const v of Object.values(views)) {
      const st = this.stamps.get(FrameRegistry.key(v.data));
      if (st !== undefined && (best === undefined || st > best)) best = st;
    }
    if (best === undefined) throw new VlaError(ErrorCodes.INTERNAL, 'expert planner: frames it was given were not rendered by this simulation');
    return best;
  }
}

/** An engine-like planner around the expert (no model; no compute). */
export function expertEngine(
  planner: ExpertPlanner,
  frames: FrameRegistry,
  worldAt: (stampNs: bigint) => { ego: { x: number; y: number; yaw: number; v: number }; objects: ObjectState[]; tS: number },
  cameras: string[],
  numWaypoints: number,
  waypointDtS: number,
): EngineLike & { info: { backend: string; nParams: number; numWaypoints: number; waypointDtS: number } } {
  const times = Array.from({ length: numWaypoints }, (_, i) => (i + 1) * waypointDtS);
  return {
    cameras,
    info: { backend: 'expert', nParams: 0, numWaypoints, waypointDtS },
    infer: async (input: InferInput): Promise<InferOutput> => {
      const w = worldAt(frames.stampOf(input.views));
      return {
        head: 'waypoints',
        waypoints: planner.plan(w.tS, w.ego, w.objects, times),
        tokenIds: [],
        stopped: true,
        cameras: Object.keys(input.views),
        timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, headMs: 0, engineMs: 0, totalMs: 0 },
        tokens: { prompt: 0, visual: 0, text: 0, generated: 0 },
        memory: { peakActivationBytes: 0, prefillHostReads: 0 },
        prune: { policy: 'none', nVisual: 0, kept: [], merged: [], keptPerView: [], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: 0, avgTokens: 0, flops: 0, flopsUnpruned: 0, budgetMet: true },
      };
    },
  };
}
