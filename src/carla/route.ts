/**
 * The CARLA leaderboard's route as instructions for the model. The leaderboard's ROS 2 agent
 * interface publishes the route once (carla_msgs/msg/CarlaRoute on /carla/hero/global_plan,
 * transient local): world poses in the ROS frame (x east, y north; the leaderboard flips CARLA's
 * y) and, per pose, the road option of the maneuver that starts there. The ego's position comes
 * from the GNSS sensor (sensor_msgs/NavSatFix) through CARLA's own geo projection; its progress
 * along the route picks the option in force, and the next turn or lane change within a preview
 * distance is announced early, as the model was trained (an instruction 20-70 m before the
 * intersection). ROS-free.
 */
import { INSTRUCTIONS, type ScenarioKind } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';

/** carla_msgs/msg/CarlaRoute road options (agents.navigation.local_planner.RoadOption). */
export const ROAD_OPTION = { VOID: -1, LEFT: 1, RIGHT: 2, STRAIGHT: 3, LANEFOLLOW: 4, CHANGELANELEFT: 5, CHANGELANERIGHT: 6 } as const;
export type RoadOption = (typeof ROAD_OPTION)[keyof typeof ROAD_OPTION];

/**
 * The instruction the bundled model knows for each road option (its training vocabulary,
 * src/sample/scenario.ts). STRAIGHT (cross an intersection) has no kind of its own in that world:
 * the road is followed, which is what crossing straight is.
 */
const KIND_OF: Readonly<Record<RoadOption, ScenarioKind>> = Object.freeze({
  [ROAD_OPTION.VOID]: 'keep_lane',
  [ROAD_OPTION.LEFT]: 'turn_left',
  [ROAD_OPTION.RIGHT]: 'turn_right',
  [ROAD_OPTION.STRAIGHT]: 'keep_lane',
  [ROAD_OPTION.LANEFOLLOW]: 'keep_lane',
  [ROAD_OPTION.CHANGELANELEFT]: 'change_left',
  [ROAD_OPTION.CHANGELANERIGHT]: 'change_right',
});

/** The instruction for a road option; VLA_E_INPUT for a value the message does not define. */
export function instructionFor(option: number): string {
  const kind = KIND_OF[option as RoadOption];
  if (!kind) throw new VlaError(ErrorCodes.INPUT, `road option ${option} is not one of carla_msgs/CarlaRoute's (-1, 1..6)`);
  return INSTRUCTIONS[kind][0] as string;
}

/** Options that are announced ahead (a maneuver), as opposed to following the road. */
const MANEUVERS = new Set<number>([ROAD_OPTION.LEFT, ROAD_OPTION.RIGHT, ROAD_OPTION.CHANGELANELEFT, ROAD_OPTION.CHANGELANERIGHT]);

const EARTH_RADIUS_EQUA_M = 6378137.0;

/**
 * A GNSS fix in the leaderboard route's frame (x east, y north, m): the inverse of CARLA's
 * location-to-GPS projection (Mercator scaled at the map's reference latitude), with the map's
 * OpenDRIVE geoReference (lat/lon 0/0 in the CARLA towns checked; a parameter for others).
 */
export function gnssToRouteFrame(latDeg: number, lonDeg: number, ref: { latDeg: number; lonDeg: number }): { x: number; y: number } {
  if (![latDeg, lonDeg, ref.latDeg, ref.lonDeg].every(Number.isFinite)) throw new VlaError(ErrorCodes.INPUT, 'gnss: latitude and longitude must be finite');
  const scale = Math.cos((ref.latDeg * Math.PI) / 180);
  const mx = (lon: number) => (scale * lon * Math.PI * EARTH_RADIUS_EQUA_M) / 180;
  const my = (lat: number) => scale * EARTH_RADIUS_EQUA_M * Math.log(Math.tan(((90 + lat) * Math.PI) / 360));
  return { x: mx(lonDeg) - mx(ref.lonDeg), y: my(latDeg) - my(ref.latDeg) };
}

export interface RoutePoint {
  x: number;
  y: number;
  option: number;
}

/**
 * Progress along the route: the index of the next route point is advanced once the ego is
 * within `reachedM` of it or past it (projection on the segment), never moved back, and
 * searched only a few points ahead so a route that passes the same place twice is followed in
 * order.
 */
export class RouteTracker {
  private next = 1;

  constructor(
    readonly points: readonly RoutePoint[],
    private readonly previewM = 40,
    private readonly reachedM = 3,
  ) {
    if (points.length < 2) throw new VlaError(ErrorCodes.INPUT, `route: ${points.length} point(s); a route needs at least two`);
    for (const [i, p] of points.entries()) {
      if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) throw new VlaError(ErrorCodes.INPUT, `route: point ${i} is not finite`);
      instructionFor(p.option);
    }
  }

  /** Index of the next route point (1 at the start, points.length once done). */
  get nextIndex(): number {
    return this.next;
  }

  get done(): boolean {
    return this.next >= this.points.length;
  }

  /** Updates progress with the ego's position; returns the road option in force (with the preview). */
  update(x: number, y: number): number {
    const pts = this.points;
    for (let look = 0; look < 8 && this.next < pts.length; look++) {
      const a = pts[this.next - 1] as RoutePoint, b = pts[this.next] as RoutePoint;
      const dx = b.x - a.x, dy = b.y - a.y;
      const len2 = dx * dx + dy * dy;
      const u = len2 > 1e-9 ? ((x - a.x) * dx + (y - a.y) * dy) / len2 : 1;
      if (Math.hypot(x - b.x, y - b.y) < this.reachedM || u >= 1) this.next++;
      else break;
    }
    return this.option(x, y);
  }

  /** The next point's option, or the first maneuver within previewM along the route. */
  private option(x: number, y: number): number {
    const pts = this.points;
    if (this.done) return ROAD_OPTION.LANEFOLLOW;
    // a point's option is the maneuver the route makes there (the GlobalRoutePlanner's trace)
    const current = (pts[this.next] as RoutePoint).option;
    if (MANEUVERS.has(current)) return current;
    let along = Math.hypot((pts[this.next] as RoutePoint).x - x, (pts[this.next] as RoutePoint).y - y);
    for (let i = this.next; i < pts.length && along <= this.previewM; i++) {
      const p = pts[i] as RoutePoint;
      if (MANEUVERS.has(p.option)) return p.option;
      const q = pts[i + 1];
      if (q) along += Math.hypot(q.x - p.x, q.y - p.y);
    }
    return current;
  }
}
