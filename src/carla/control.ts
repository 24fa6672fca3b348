/**
 * The CARLA leaderboard side of the node, over a RosPort (no rclnodejs here): the route becomes
 * the model's instruction, and the model's plan becomes carla_msgs/msg/CarlaEgoVehicleControl
 * through the project's one tracking controller (src/control/tracker.ts, the closed-loop
 * simulator's too).
 *
 * Every CARLA tick the bridge publishes the speedometer stamped with the simulation time; the
 * leaderboard takes a control only when its stamp is that tick's time (within 1 ms) and not a
 * repeat. So one control goes out per speedometer message, stamped with its stamp, from the
 * latest plan (followed from where the ego was at the plan's camera stamp: dead reckoning on
 * speed and the IMU's heading gives the ego's motion since then), or a brake when there is no
 * plan yet, the plan is older than its horizon, or the route is done.
 *
 *   in:  route (CarlaRoute, transient local), speedometer (CarlaSpeedometer), IMU (sensor_msgs/Imu),
 *        GNSS (sensor_msgs/NavSatFix), the node's trajectory (autoprune_ros_msgs/Trajectory)
 *   out: vehicle_control_cmd (CarlaEgoVehicleControl), the node's instruction (std_msgs/String,
 *        transient local), /carla/hero/status (std_msgs/Bool true, transient local: agent ready)
 */
import { TrackingController, type ControlCommand, type PlanPoint } from '../control/tracker.js';
import type { VehicleParams } from '../control/vehicle.js';
import { MessageCodec } from '../msgs/codec.js';
import { QOS_LATCHED, QOS_SENSOR_DATA, type QosProfile, type RosPort } from '../msgs/port.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { gnssToRouteFrame, instructionFor, ROAD_OPTION, RouteTracker } from './route.js';

export const CARLA_TYPES = {
  control: 'carla_msgs/msg/CarlaEgoVehicleControl',
  route: 'carla_msgs/msg/CarlaRoute',
  speedometer: 'carla_msgs/msg/CarlaSpeedometer',
  imu: 'sensor_msgs/msg/Imu',
  gnss: 'sensor_msgs/msg/NavSatFix',
  trajectory: 'autoprune_ros_msgs/msg/Trajectory',
  instruction: 'std_msgs/msg/String',
  status: 'std_msgs/msg/Bool',
} as const;

/** The leaderboard's subscription: QoSProfile(depth=1), reliable and volatile. */
const QOS_CONTROL: QosProfile = { reliability: 'reliable', durability: 'volatile', depth: 1 };
/** The bridge publishes sensors with qos_profile=10: reliable, keep last 10. */
const QOS_BRIDGE: QosProfile = { reliability: 'reliable', durability: 'volatile', depth: 10 };

/**
 * A Lincoln MKZ 2020, the leaderboard's hero vehicle, with base_link on the rear axle (where the
 * agent places the cameras). Estimates: wheelbase from its wheel positions, the road-wheel angle
 * at full steer from the vehicle's physics control (read vehicle.get_physics_control() to set
 * these for another vehicle); pedal-to-acceleration gains measured in no CARLA run here.
 */
export const CARLA_LINCOLN_MKZ: Readonly<VehicleParams> = Object.freeze({
  wheelbaseM: 2.875,
  baseLinkAheadOfRearAxleM: 0,
  maxSteerRad: (70 * Math.PI) / 180 - 1e-6,
  maxSteerRateRadps: 2.0,
  maxAccelMps2: 3.5,
  maxDecelMps2: 8.0,
  accelTimeConstantS: 0.3,
  bodyFrontM: 3.8,
  bodyRearM: 1.0,
  bodyWidthM: 1.9,
});

export interface CarlaControlParams {
  speedometerTopic: string;
  imuTopic: string;
  gnssTopic: string;
  routeTopic: string;
  trajectoryTopic: string;
  controlTopic: string;
  instructionTopic: string;
  statusTopic: string;
  /** A turn or lane change within this distance along the route is announced, m. */
  previewM: number;
  /** A plan older than this (its horizon) is not followed: the car brakes, s. */
  maxPlanAgeS: number;
  /** Deceleration of that stop, m/s^2. */
  stopDecelMps2: number;
  /** The map's OpenDRIVE geoReference. */
  geoReference: { latDeg: number; lonDeg: number };
  vehicle: VehicleParams;
}

interface Pose {
  tNs: bigint;
  x: number;
  y: number;
  yaw: number;
}

interface Plan {
  stampNs: bigint;
  points: PlanPoint[];
}

interface Stamp {
  sec: number;
  nanosec: number;
}
const ns = (s: Stamp): bigint => BigInt(s.sec) * 1_000_000_000n + BigInt(s.nanosec);
const stampOf = (t: bigint): Stamp => ({ sec: Number(t / 1_000_000_000n), nanosec: Number(t % 1_000_000_000n) });

/** Yaw of a quaternion (rotation about z), rad. */
export function yawOf(q: { x: number; y: number; z: number; w: number }): number {
  return Math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z));
}

export interface CarlaControlCounters {
  controls: number;
  plans: number;
  stops: number;
  badInput: number;
  lastError: string;
}

export class CarlaControlLogic {
  readonly counters: CarlaControlCounters = { controls: 0, plans: 0, stops: 0, badInput: 0, lastError: '' };
  private readonly tracker: TrackingController;
  private readonly stops: Array<() => void> = [];
  private readonly pubControl: (cdr: Uint8Array) => void;
  private readonly pubInstruction: (cdr: Uint8Array) => void;
  private readonly pubStatus: (cdr: Uint8Array) => void;
  /** Dead-reckoned poses (odometry frame), oldest first, ~10 s. */
  private readonly history: Pose[] = [];
  private yaw: number | undefined;
  private lastSpeedNs: bigint | undefined;
  private plan: Plan | undefined;
  private route: RouteTracker | undefined;
  private gnssOffset: { x: number; y: number } | undefined;
  private lastGnss: { x: number; y: number } | undefined;
  private instruction = '';
  /** The last command sent (tests, diagnostics). */
  lastCommand: ControlCommand | undefined;
  private readonly log: Logger;

  constructor(
    private readonly port: RosPort,
    private readonly params: CarlaControlParams,
    private readonly codec = new MessageCodec(),
    log?: Logger,
  ) {
    this.log = log ?? componentLogger('carla');
    this.tracker = new TrackingController(params.vehicle);
    this.pubControl = port.advertise(params.controlTopic, CARLA_TYPES.control, QOS_CONTROL);
    this.pubInstruction = port.advertise(params.instructionTopic, CARLA_TYPES.instruction, QOS_LATCHED);
    this.pubStatus = port.advertise(params.statusTopic, CARLA_TYPES.status, QOS_LATCHED);
  }

  start(): void {
    const p = this.params;
    const on = (topic: string, type: string, qos: QosProfile, f: (m: never) => void) =>
      this.stops.push(
        this.port.subscribe(topic, type, qos, (cdr) => {
          let m: never;
          try {
            m = this.codec.decode(type, cdr) as never;
          } catch (err) {
            return this.bad(VlaError.from(err, ErrorCodes.CDR), topic);
          }
          try {
            f(m);
          } catch (err) {
            this.bad(VlaError.from(err, ErrorCodes.INPUT), topic);
          }
        }),
      );
    on(p.routeTopic, CARLA_TYPES.route, QOS_LATCHED, (m) => this.onRoute(m));
    on(p.imuTopic, CARLA_TYPES.imu, QOS_BRIDGE, (m: { orientation: { x: number; y: number; z: number; w: number } }) => {
      this.yaw = yawOf(m.orientation);
    });
    on(p.gnssTopic, CARLA_TYPES.gnss, QOS_BRIDGE, (m: { latitude: number; longitude: number }) => this.onGnss(m));
    on(p.trajectoryTopic, CARLA_TYPES.trajectory, QOS_SENSOR_DATA, (m) => this.onTrajectory(m));
    on(p.speedometerTopic, CARLA_TYPES.speedometer, QOS_BRIDGE, (m: { header: { stamp: Stamp }; speed: number }) => this.onSpeed(ns(m.header.stamp), m.speed));
    // the agent is ready: the leaderboard's ROS2Agent waits for this before its first tick
    this.pubStatus(this.codec.encode(CARLA_TYPES.status, { data: true }));
  }

  stop(): void {
    for (const s of this.stops.splice(0)) s();
  }

  get currentInstruction(): string {
    return this.instruction;
  }

  private bad(e: VlaError, topic: string): void {
    this.counters.badInput++;
    this.counters.lastError = `${e.code}: ${e.message}`;
    this.log.warn({ code: e.code, topic }, e.message);
  }

  private onRoute(m: { road_options: ArrayLike<number>; poses: Array<{ position: { x: number; y: number } }> }): void {
    const points = m.poses.map((p, i) => ({ x: p.position.x, y: p.position.y, option: Number(m.road_options[i] ?? ROAD_OPTION.VOID) }));
    if (m.road_options.length !== m.poses.length) throw new VlaError(ErrorCodes.INPUT, `route: ${m.road_options.length} road options for ${m.poses.length} poses`);
    this.route = new RouteTracker(points, this.params.previewM);
    this.gnssOffset = undefined;
    this.log.info({ points: points.length }, 'route received');
    if (this.lastGnss) this.onRoutePosition(this.lastGnss);
  }

  private onGnss(m: { latitude: number; longitude: number }): void {
    const g = gnssToRouteFrame(m.latitude, m.longitude, this.params.geoReference);
    this.lastGnss = g;
    if (this.route) this.onRoutePosition(g);
  }

  /** The ego's route position from GNSS, anchored at the route's start where the ego is spawned. */
  private onRoutePosition(g: { x: number; y: number }): void {
    const route = this.route as RouteTracker;
    if (!this.gnssOffset) {
      const start = route.points[0] as { x: number; y: number };
      this.gnssOffset = { x: start.x - g.x, y: start.y - g.y };
      this.log.info({ offsetM: Math.hypot(this.gnssOffset.x, this.gnssOffset.y) }, 'GNSS anchored at the route start');
    }
    const option = route.update(g.x + this.gnssOffset.x, g.y + this.gnssOffset.y);
    const text = instructionFor(option);
    if (text !== this.instruction) {
      this.instruction = text;
      this.pubInstruction(this.codec.encode(CARLA_TYPES.instruction, { data: text }));
      this.log.info({ option, instruction: text, nextPoint: route.nextIndex }, 'instruction');
    }
  }

  private onTrajectory(m: { header: { stamp: Stamp }; waypoints: Array<{ time_from_start: Stamp; x_m: number; y_m: number }> }): void {
    const points = m.waypoints.map((w) => ({ tS: w.time_from_start.sec + w.time_from_start.nanosec / 1e9, x: w.x_m, y: w.y_m }));
    this.tracker.control({ plan: points, elapsedS: 0, pose: { x: 0, y: 0, yaw: 0 }, speedMps: 0 }); // checks the plan (VLA_E_INPUT)
    this.plan = { stampNs: ns(m.header.stamp), points };
    this.counters.plans++;
  }

  /** One tick: integrate the motion, then one control stamped with the tick's time. */
  private onSpeed(tNs: bigint, speedMps: number): void {
    if (!Number.isFinite(speedMps)) throw new VlaError(ErrorCodes.INPUT, `speedometer: speed ${speedMps} is not finite`);
    if (this.yaw === undefined) return this.stopAt(tNs);
    const last = this.history[this.history.length - 1];
    if (last && tNs <= last.tNs) throw new VlaError(ErrorCodes.INPUT, `speedometer: stamp ${tNs} ns does not advance`);
    const dt = last && this.lastSpeedNs !== undefined ? Number(tNs - this.lastSpeedNs) / 1e9 : 0;
    const x = (last?.x ?? 0) + speedMps * Math.cos(this.yaw) * dt;
    const y = (last?.y ?? 0) + speedMps * Math.sin(this.yaw) * dt;
    this.history.push({ tNs, x, y, yaw: this.yaw });
    while (this.history.length > 2 && Number(tNs - (this.history[0] as Pose).tNs) / 1e9 > 10) this.history.shift();
    this.lastSpeedNs = tNs;

    const plan = this.plan;
    const ageS = plan ? Number(tNs - plan.stampNs) / 1e9 : Infinity;
    if (!plan || ageS > this.params.maxPlanAgeS || ageS < -0.5 || this.route?.done) return this.stopAt(tNs);
    const at = this.poseAt(plan.stampNs);
    const now = this.history[this.history.length - 1] as Pose;
    const c = Math.cos(at.yaw), s = Math.sin(at.yaw);
    const dx = now.x - at.x, dy = now.y - at.y;
    const pose = { x: c * dx + s * dy, y: -s * dx + c * dy, yaw: now.yaw - at.yaw };
    this.send(tNs, this.tracker.control({ plan: plan.points, elapsedS: Math.max(0, ageS), pose, speedMps }));
  }

  /** The dead-reckoned pose at a stamp (linear between ticks; clamped to what is remembered). */
  private poseAt(tNs: bigint): Pose {
    const h = this.history;
    if (tNs <= (h[0] as Pose).tNs) return h[0] as Pose;
    for (let i = 1; i < h.length; i++) {
      const b = h[i] as Pose;
      if (tNs <= b.tNs) {
        const a = h[i - 1] as Pose;
        const f = Number(tNs - a.tNs) / Number(b.tNs - a.tNs);
        const dyaw = Math.atan2(Math.sin(b.yaw - a.yaw), Math.cos(b.yaw - a.yaw));
        return { tNs, x: a.x + f * (b.x - a.x), y: a.y + f * (b.y - a.y), yaw: a.yaw + f * dyaw };
      }
    }
    return h[h.length - 1] as Pose;
  }

  /** A straight brake (no IMU yet, no plan, a stale plan, the route done). */
  private stopAt(tNs: bigint): void {
    this.counters.stops++;
    this.send(tNs, this.tracker.stopCommand(0, this.params.stopDecelMps2));
  }

  private send(tNs: bigint, cmd: ControlCommand): void {
    this.lastCommand = cmd;
    this.counters.controls++;
    this.pubControl(
      this.codec.encode(CARLA_TYPES.control, {
        header: { stamp: stampOf(tNs), frame_id: '' },
        throttle: cmd.throttle,
        // CARLA steers right-positive; the tracker left-positive
        steer: -cmd.steer,
        brake: cmd.brake,
        hand_brake: false,
        reverse: false,
        gear: 0,
        manual_gear_shift: false,
      }),
    );
  }
}
