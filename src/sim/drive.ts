/**
 * One closed-loop drive: the node logic (the same VlaNodeLogic that runs live and in replay) in
 * the loop of the synthetic world, on a virtual clock.
 *
 * Each 10 ms step moves the ego with a kinematic bicycle model under the tracking controller's
 * last command; at the camera rate the views are rendered from the ego's actual pose at their
 * stamps and delivered to the node's camera topics after a transport delay (the bags' timing);
 * odometry (50 Hz) and the instruction are published as in the bags. When the node takes a set,
 * the planner runs at once (the virtual clock stands still) and its plan is released after the
 * modelled inference latency, during which the node is busy and the controller keeps following
 * the previous plan. A plan older than `maxPlanAgeMs` makes the controller stop the car (a safe
 * stop, counted). Events at one instant go in a fixed order (physics, plan releases, the node's
 * timers, deliveries, captures, control), so a run is reproducible to the byte with a
 * deterministic latency model.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { TrackingController, checkPlan, type ControlCommand, type PlanPoint, type TrackerGains } from '../control/tracker.js';
import { checkVehicleParams, SYNTHETIC_CAR, type VehicleParams } from '../control/vehicle.js';
import type { CalibrationUse, PruneRequest } from '../engine/calibration.js';
import type { InferInput, InferOutput } from '../engine/engine.js';
import { VlaNodeLogic, type EngineLike } from '../pipeline/node.js';
import type { NodeConfig } from '../pipeline/params.js';
import { MessageCodec } from '../msgs/codec.js';
import { QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA, type QosProfile } from '../msgs/port.js';
import { BagWriter } from '../bag/writer.js';
import { constantVelocityPlanner } from '../replay/evaluate.js';
import { latencyStats } from '../replay/report.js';
import { cameraTiming, encodeJpeg } from '../sample/drive.js';
import { renderView, type CameraName } from '../sample/render.js';
import { ROAD_HALF_WIDTH_M, type Scenario } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { renderAnimation, type AnimationFrame } from './animation.js';
import { stepBicycle, type BicycleState } from './bicycle.js';
import { ExpertPlanner, FrameRegistry, expertEngine, expertRoute } from './expert.js';
import { fromFrame } from './geometry.js';
import { DEVICE_PROFILES, LatencyModel, latencyIsDeterministic, latencyLabel, type LatencySpec, type ModelArith } from './latency.js';
import { DriveMonitor } from './metrics.js';
import { SimPort } from './port.js';
import { topDownSvg } from './svg.js';
import type { DriveReport, PlannerKind } from './types.js';
import { SimWorld, type ObjectState } from './world.js';

export interface PlannerEngine extends EngineLike {
  readonly info: { backend: string; nParams: number; numWaypoints: number; waypointDtS: number };
}

export interface DriveOptions {
  scenario: Scenario;
  /** 'seed' or the scenario file's name (for the report). */
  scenarioSource: string;
  planner: PlannerKind;
  /** The model (planner 'model'); its waypoint times are also used by the reference planners. */
  engine?: PlannerEngine;
  /** The model's arithmetic for device latency (null: no model). */
  modelArith: ModelArith | null;
  /** Model path as reported. */
  modelLabel: string | null;
  /** Reference planners' waypoints when no engine is given. */
  waypoints?: { count: number; dtS: number };
  config: NodeConfig;
  configLabel: string;
  prune: PruneRequest | undefined;
  /** Keep the config's latency deadline (budget_kind latency) instead of `prune`. */
  deadline: boolean;
  label: string;
  latency: LatencySpec;
  maxPlanAgeMs?: number;
  safeStopDecelMps2?: number;
  reactiveTraffic?: boolean;
  cameraHz?: number;
  odomHz?: number;
  width?: number;
  height?: number;
  /** The drive times out at this simulated time (default twice the scenario's duration plus 2 s: an ego at half the expert's pace finishes), s. */
  timeoutS?: number;
  vehicle?: VehicleParams;
  gains?: Partial<TrackerGains>;
  outDir: string;
  writeBag?: boolean;
  writeAnimation?: boolean;
  writeSvg?: boolean;
  signal?: AbortSignal;
  log?: Logger;
  onProgress?: (simS: number, endS: number) => void;
}

const NS = 1_000_000_000n;
/** Virtual start time: 2026-01-01T00:00:00Z, as the generated bags. */
const T0_NS = 1_767_225_600n * NS;
const DT_NS = 10_000_000n;
const TRAJECTORY_TOPIC = '/autoprune_ros/output/trajectory';

// Events at one instant, in this order.
const PRIO = { step: 0, complete: 1, timer: 2, deliver: 3, capture: 4, control: 5 } as const;

interface Ev {
  t: bigint;
  prio: number;
  seq: number;
  run: () => Promise<void> | void;
}

/** A binary min-heap of events by (time, priority, insertion). */
class EventQueue {
  private readonly a: Ev[] = [];
  private seq = 0;
  private static less(x: Ev, y: Ev): boolean {
    return x.t < y.t || (x.t === y.t && (x.prio < y.prio || (x.prio === y.prio && x.seq < y.seq)));
  }
  push(t: bigint, prio: number, run: Ev['run']): void {
    const a = this.a;
    a.push({ t, prio, seq: this.seq++, run });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!EventQueue.less(a[i] as Ev, a[p] as Ev)) break;
      [a[i], a[p]] = [a[p] as Ev, a[i] as Ev];
      i = p;
    }
  }
  peek(): Ev | undefined {
    return this.a[0];
  }
  pop(): Ev | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && EventQueue.less(a[l] as Ev, a[m] as Ev)) m = l;
        if (r < a.length && EventQueue.less(a[r] as Ev, a[m] as Ev)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m] as Ev, a[i] as Ev];
        i = m;
      }
    }
    return top;
  }
}

interface Started {
  startNs: bigint;
  real: Promise<InferOutput>;
  resolve: (o: InferOutput) => void;
  reject: (e: unknown) => void;
  /** The result, once known (held back until its release). */
  out?: InferOutput;
}

/**
 * The engine the node sees: it runs the planner at once (virtual time stands still meanwhile)
 * and answers only when the simulator releases the result, after the modelled latency.
 */
class InferenceGate implements EngineLike {
  started: Started | undefined;
  /** The first inference's calibration use (the options are the same for the whole drive). */
  calibration: CalibrationUse | null = null;
  readonly cameras: string[];
  constructor(
    private readonly inner: EngineLike,
    private readonly clock: () => bigint,
  ) {
    this.cameras = inner.cameras;
  }
  infer(input: InferInput): Promise<InferOutput> {
    const real = this.inner.infer(input);
    real.then((r) => {
      this.calibration ??= r.calibration ?? null;
    }, () => undefined);
    return new Promise<InferOutput>((resolve, reject) => {
      this.started = { startNs: this.clock(), real, resolve, reject };
    });
  }
}

interface Plan {
  stampNs: bigint;
  receivedNs: bigint;
  points: PlanPoint[];
  /** base_link at the stamp, world frame. */
  origin: { x: number; y: number; yaw: number };
}

const stampMsg = (ns: bigint) => ({ sec: Number(ns / NS), nanosec: Number(ns % NS) });
const quat = (yaw: number) => ({ x: 0, y: 0, z: Math.sin(yaw / 2), w: Math.cos(yaw / 2) });
const sToNs = (s: number) => BigInt(Math.round(s * 1e9));
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
const r6 = (v: number | null) => (v === null || !Number.isFinite(v) ? v : Number(v.toFixed(6)));

function roundStats(s: ReturnType<typeof latencyStats>): ReturnType<typeof latencyStats> {
  return { n: s.n, meanMs: r6(s.meanMs), p50Ms: r6(s.p50Ms), p95Ms: r6(s.p95Ms), p99Ms: r6(s.p99Ms), maxMs: r6(s.maxMs) };
}

/** Runs one drive and writes DIR/report.json (and the SVG, animation, bag); returns the report. */
export async function runDrive(o: DriveOptions): Promise<DriveReport> {
  const log = o.log ?? componentLogger('sim');
  const sc = o.scenario;
  const vehicle = checkVehicleParams({ ...(o.vehicle ?? SYNTHETIC_CAR) });
  const controller = new TrackingController(vehicle, o.gains);
  const maxPlanAgeMs = o.maxPlanAgeMs ?? 1000;
  const safeStopDecel = o.safeStopDecelMps2 ?? 4;
  const cameraHz = o.cameraHz ?? 10;
  const odomHz = o.odomHz ?? 50;
  const width = o.width ?? 320, height = o.height ?? 180;
  const timeoutS = o.timeoutS ?? 2 * sc.durationS + 2;
  if (!(maxPlanAgeMs > 0 && maxPlanAgeMs <= 60_000)) throw new VlaError(ErrorCodes.SIM_CONFIG, `the plan-age limit must be in (0, 60000] ms, got ${maxPlanAgeMs}`);
  if (!(safeStopDecel > 0 && safeStopDecel <= vehicle.maxDecelMps2)) throw new VlaError(ErrorCodes.SIM_CONFIG, `the safe-stop deceleration must be in (0, ${vehicle.maxDecelMps2}] m/s^2, got ${safeStopDecel}`);
  if (!(cameraHz > 0 && cameraHz <= 100) || !(odomHz > 0 && odomHz <= 1000)) throw new VlaError(ErrorCodes.SIM_CONFIG, `camera rate 0-100 Hz, odometry rate 0-1000 Hz (got ${cameraHz}, ${odomHz})`);
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 16 && height >= 16 && width <= 4096 && height <= 4096)) throw new VlaError(ErrorCodes.SIM_CONFIG, `camera images must be 16..4096 pixels a side, got ${width}x${height}`);
  if (!(timeoutS > 0 && timeoutS <= 590)) throw new VlaError(ErrorCodes.SIM_CONFIG, `the timeout must be in (0, 590] s, got ${timeoutS}`);
  const world = new SimWorld(sc, { horizonS: timeoutS + 1, reactive: o.reactiveTraffic ?? false });
  const route = expertRoute(world);
  const monitor = new DriveMonitor(world, route, vehicle);
  const codec = new MessageCodec();
  const port = new SimPort(T0_NS);
  const queue = new EventQueue();
  const frames = new FrameRegistry();

  // --- ego state and its history (one sample per step)
  const nMax = world.maxSteps;
  const hist = { x: new Float64Array(nMax), y: new Float64Array(nMax), yaw: new Float64Array(nMax), v: new Float64Array(nMax), yawRate: new Float64Array(nMax) };
  const e0 = { x: world.expert.x[0] as number, y: world.expert.y[0] as number, yaw: world.expert.yaw[0] as number };
  let state: BicycleState = { ...e0, v: world.expert.v[0] as number, steerRad: 0, accelMps2: 0, yawRate: 0 };
  let stepIndex = 0;
  const record = () => {
    hist.x[stepIndex] = state.x;
    hist.y[stepIndex] = state.y;
    hist.yaw[stepIndex] = state.yaw;
    hist.v[stepIndex] = state.v;
    hist.yawRate[stepIndex] = state.yawRate;
  };
  record();
  let cmd: ControlCommand = { steerRad: 0, steer: 0, throttle: 0, brake: 0, accelMps2: 0, targetSpeedMps: state.v, stopping: false, lookahead: null };
  /** The ego at tS: recorded steps interpolated; past the last step, stepped on under the current command. */
  const egoAt = (tS: number): BicycleState => {
    const fi = tS / world.dtS;
    if (fi <= stepIndex) {
      const i = Math.max(0, Math.min(stepIndex - 1, Math.floor(fi)));
      const f = stepIndex === 0 ? 0 : Math.max(0, Math.min(1, fi - i));
      const j = Math.min(stepIndex, i + 1);
      const lerp = (a: Float64Array) => (a[i] as number) + ((a[j] as number) - (a[i] as number)) * f;
      const dyaw = Math.atan2(Math.sin((hist.yaw[j] as number) - (hist.yaw[i] as number)), Math.cos((hist.yaw[j] as number) - (hist.yaw[i] as number)));
      return { x: lerp(hist.x), y: lerp(hist.y), yaw: (hist.yaw[i] as number) + f * dyaw, v: lerp(hist.v), yawRate: lerp(hist.yawRate), steerRad: state.steerRad, accelMps2: state.accelMps2 };
    }
    return stepBicycle(state, cmd, vehicle, (fi - stepIndex) * world.dtS);
  };
  let roadGuess = 0;
  const roadOf = (s: { x: number; y: number; yaw: number }) => world.roadPose(s.x, s.y, s.yaw, roadGuess);

  // --- the planner behind the node
  const wpCount = o.engine?.info.numWaypoints ?? o.waypoints?.count ?? 6;
  const wpDt = o.engine?.info.waypointDtS ?? o.waypoints?.dtS ?? 0.5;
  const nodeCameras = o.config.node.cameras;
  const cameraNames = nodeCameras.map((c) => c.camera);
  let planner: EngineLike;
  if (o.planner === 'model') {
    if (!o.engine) throw new VlaError(ErrorCodes.SIM_CONFIG, 'the model planner needs a loaded model');
    planner = o.engine;
  } else if (o.planner === 'expert') {
    const ex = new ExpertPlanner(world, route);
    planner = expertEngine(ex, frames, (stampNs) => {
      const tS = Number(stampNs - T0_NS) / 1e9;
      const s = egoAt(tS);
      return { tS, ego: s, objects: world.objectsAt(tS) };
    }, o.engine?.cameras ?? cameraNames, wpCount, wpDt);
  } else planner = constantVelocityPlanner(o.engine?.cameras ?? cameraNames, wpCount, wpDt);
  const latency = new LatencyModel(o.latency, o.planner === 'model' ? o.modelArith : null);
  const gate = new InferenceGate(planner, () => port.now());

  const nodeParams = { ...o.config.node, modelName: o.modelLabel ?? o.planner, prune: o.prune };
  if (!o.deadline) delete (nodeParams as { deadlineMs?: number }).deadlineMs;
  const node = new VlaNodeLogic(port, gate, nodeParams, codec, log.child({ component: 'node' }));

  // --- output bag
  const bagDir = path.join(o.outDir, 'bag');
  let bag: BagWriter | undefined;
  let chain: Promise<void> = Promise.resolve();
  let bagErr: unknown;
  const registered = new Set<string>();
  await mkdir(o.outDir, { recursive: true });
  if (o.writeBag !== false) {
    await rm(bagDir, { recursive: true, force: true });
    bag = await BagWriter.create(bagDir);
  }
  const toBag = (topic: string, type: string, qos: QosProfile, atNs: bigint, cdr: Uint8Array) => {
    if (!bag || bagErr) return;
    const w = bag;
    chain = chain
      .then(async () => {
        if (!registered.has(topic)) {
          registered.add(topic);
          await w.addTopic(topic, type, codec.definitionText(type), qos);
        }
        await w.write(topic, atNs, cdr);
      })
      .catch((err) => {
        bagErr ??= err;
      });
  };

  // --- plans as the node publishes them
  const plans: Plan[] = [];
  let invalidPlans = 0;
  let plansReceived = 0;
  let ended = false;
  port.onPublish = (m) => {
    if (ended) return;
    toBag(m.topic, m.type, m.qos, m.atNs, m.cdr);
    if (m.topic !== TRAJECTORY_TOPIC) return;
    try {
      const msg = codec.decode<{ header: { stamp: { sec: number; nanosec: number } }; waypoints: Array<{ time_from_start: { sec: number; nanosec: number }; x_m: number; y_m: number }> }>(m.type, m.cdr);
      const stampNs = BigInt(msg.header.stamp.sec) * NS + BigInt(msg.header.stamp.nanosec);
      const points = msg.waypoints.map((w) => ({ tS: w.time_from_start.sec + w.time_from_start.nanosec / 1e9, x: w.x_m, y: w.y_m }));
      checkPlan(points);
      const at = egoAt(Number(stampNs - T0_NS) / 1e9);
      plans.push({ stampNs, receivedNs: m.atNs, points, origin: { x: at.x, y: at.y, yaw: at.yaw } });
      plansReceived++;
      if (plans.length > 4) plans.shift();
    } catch (err) {
      invalidPlans++;
      log.warn({ code: VlaError.from(err).code }, `plan ignored: ${(err as Error).message}`);
    }
  };

  // --- inputs: instruction, odometry, cameras
  const instrTopic = port.resolve(o.config.node.instructionTopic);
  const STRING = 'std_msgs/msg/String';
  const ODOM = 'nav_msgs/msg/Odometry';
  const TF = 'tf2_msgs/msg/TFMessage';
  const deliver = (atNs: bigint, topic: string, type: string, qos: QosProfile, cdr: Uint8Array, latch = false) => {
    queue.push(atNs, PRIO.deliver, () => {
      port.deliver(topic, type, cdr, latch);
      toBag(topic, type, qos, atNs, cdr);
    });
  };
  deliver(T0_NS, instrTopic, STRING, QOS_LATCHED, codec.encode(STRING, { data: sc.instruction }), true);
  for (const later of sc.laterInstructions) deliver(T0_NS + sToNs(later.tS), instrTopic, STRING, QOS_LATCHED, codec.encode(STRING, { data: later.text }), true);

  const odomTopic = o.config.node.odometryTopic ? port.resolve(o.config.node.odometryTopic) : '/localization/odometry';
  const endNs = T0_NS + sToNs(timeoutS);
  for (let i = 0; T0_NS + sToNs(i / odomHz) <= endNs; i++) {
    const tS = i / odomHz;
    queue.push(T0_NS + sToNs(tS), PRIO.capture, () => {
      const e = egoAt(tS);
      const st = T0_NS + sToNs(tS);
      const pose = { position: { x: e.x, y: e.y, z: 0 }, orientation: quat(e.yaw) };
      deliver(st + 2_000_000n, odomTopic, ODOM, QOS_SENSOR_DATA, codec.encode(ODOM, {
        header: { stamp: stampMsg(st), frame_id: 'odom' },
        child_frame_id: 'base_link',
        pose: { pose, covariance: new Float64Array(36) },
        twist: { twist: { linear: { x: e.v, y: 0, z: 0 }, angular: { x: 0, y: 0, z: e.yawRate } }, covariance: new Float64Array(36) },
      }));
      toBag('/tf', TF, QOS_DEFAULT, st, codec.encode(TF, { transforms: [{ header: { stamp: stampMsg(st), frame_id: 'odom' }, child_frame_id: 'base_link', transform: { translation: { x: e.x, y: e.y, z: 0 }, rotation: quat(e.yaw) } }] }));
    });
  }

  const anim: AnimationFrame[] = [];
  const animEvery = Math.max(1, Math.round(cameraHz / 5));
  let currentPlan: Plan | undefined;
  const IMG = 'sensor_msgs/msg/CompressedImage';
  const RAW = 'sensor_msgs/msg/Image';
  const nFrames = Math.floor(timeoutS * cameraHz + 1e-9);
  for (let fi = 0; fi < nFrames; fi++) {
    nodeCameras.forEach((c, ci) => {
      const { skewNs, delayNs } = cameraTiming(sc.seed, fi, ci);
      const st = T0_NS + sToNs((fi + 0.5) / cameraHz) + skewNs;
      queue.push(st, PRIO.capture, async () => {
        const tS = Number(st - T0_NS) / 1e9;
        const e = egoAt(tS);
        const rp = roadOf(e);
        const view = renderView(world.renderOptions(rp, tS, c.camera as CameraName, width, height));
        const header = { stamp: stampMsg(st), frame_id: `camera_${c.camera}` };
        let cdr: Uint8Array;
        if (c.type === IMG) {
          const jpeg = await encodeJpeg(view);
          const bytes = new Uint8Array(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength);
          if (o.planner === 'expert') frames.add(bytes, st);
          cdr = codec.encode(IMG, { header, format: 'jpeg', data: bytes });
        } else {
          if (o.planner === 'expert') frames.add(view.data, st);
          cdr = codec.encode(RAW, { header, height: view.height, width: view.width, encoding: 'rgb8', is_bigendian: 0, step: view.step, data: view.data });
        }
        deliver(st + delayNs, port.resolve(c.topic), c.type, c.qos ?? QOS_SENSOR_DATA, cdr);
        if (ci === 0 && o.writeAnimation !== false && fi % animEvery === 0) {
          anim.push({ tS, camera: view, ego: { x: e.x, y: e.y, yaw: e.yaw, v: e.v }, objects: world.objectsAt(tS).map((ob) => ob.box), plan: currentPlan ? currentPlan.points.map((p) => fromFrame(currentPlan!.origin, p.x, p.y)) : [], safeStop });
        }
      });
    });
  }

  // --- inference latency
  const latencies: number[] = [];
  const kept: number[] = [];
  const relFlops: number[] = [];
  let visualTokens: number | null = null;
  let failed = 0;
  // the request whose result is held back until its release (the node is busy meanwhile)
  let held: Started | undefined;
  const settleStarted = async () => {
    const s = gate.started;
    if (!s) return;
    gate.started = undefined;
    held = s;
    try {
      const out = await s.real;
      const lat = latency.latency(out);
      s.out = { ...out, timings: lat.timings };
      latencies.push(lat.totalMs);
      if (out.prune.nVisual > 0) {
        visualTokens = out.prune.nVisual;
        kept.push(out.prune.kept.length ? out.prune.kept.reduce((a, b) => a + b, 0) / out.prune.kept.length : out.prune.nVisual);
        relFlops.push(out.prune.flopsUnpruned > 0 ? out.prune.flops / out.prune.flopsUnpruned : 1);
      }
      queue.push(s.startNs + sToNs(lat.totalMs / 1e3), PRIO.complete, async () => {
        held = undefined;
        s.resolve({ ...out, timings: lat.timings });
        await node.busy;
      });
    } catch (err) {
      failed++;
      queue.push(s.startNs, PRIO.complete, async () => {
        held = undefined;
        s.reject(err);
        await node.busy;
      });
    }
  };

  // --- physics and control
  let safeStop = false;
  let safeStops = 0;
  let safeStopSteps = 0;
  const planAges: number[] = [];
  let status: DriveReport['metrics']['status'] | null = null;
  const controlNow = () => {
    const now = port.now();
    const plan = plans.length ? (plans[plans.length - 1] as Plan) : undefined;
    currentPlan = plan;
    const ageMs = plan ? Number(now - plan.stampNs) / 1e6 : Number(now - T0_NS) / 1e6;
    const stale = ageMs > maxPlanAgeMs;
    if (stale && !safeStop) {
      safeStops++;
      log.debug({ ageMs }, 'safe stop: the newest plan is too old');
    }
    safeStop = stale;
    if (safeStop) {
      safeStopSteps++;
      cmd = controller.stopCommand(state.steerRad, safeStopDecel);
      return;
    }
    if (!plan) {
      // before the first plan: hold speed and wheel (the car coasts on)
      cmd = { steerRad: state.steerRad, steer: state.steerRad / vehicle.maxSteerRad, throttle: 0, brake: 0, accelMps2: 0, targetSpeedMps: state.v, stopping: false, lookahead: null };
      return;
    }
    planAges.push(ageMs);
    const c = Math.cos(plan.origin.yaw), s = Math.sin(plan.origin.yaw);
    const dx = state.x - plan.origin.x, dy = state.y - plan.origin.y;
    cmd = controller.control({ plan: plan.points, elapsedS: Number(now - plan.stampNs) / 1e9, pose: { x: dx * c + dy * s, y: -dx * s + dy * c, yaw: state.yaw - plan.origin.yaw }, speedMps: state.v });
  };

  const STATE_TOPIC = '/sim/state';
  const EVENTS_TOPIC = '/sim/events';
  const DIAG = 'diagnostic_msgs/msg/DiagnosticArray';
  let eventsWritten = 0;
  const sampleBag = (tS: number, objects: ObjectState[]) => {
    const st = T0_NS + sToNs(tS);
    const kv = (key: string, value: number | string | boolean) => ({ key, value: typeof value === 'number' ? value.toFixed(4) : String(value) });
    const plan = plans[plans.length - 1];
    toBag(STATE_TOPIC, DIAG, QOS_DEFAULT, st, codec.encode(DIAG, {
      header: { stamp: stampMsg(st), frame_id: 'odom' },
      status: [{ level: safeStop ? 1 : 0, name: 'autoprune_ros: closed loop', message: safeStop ? 'safe stop: plan too old' : 'OK', hardware_id: 'sim', values: [
        kv('speed_mps', state.v), kv('accel_mps2', state.accelMps2), kv('steer_rad', state.steerRad), kv('throttle', cmd.throttle), kv('brake', cmd.brake),
        kv('target_speed_mps', cmd.targetSpeedMps), kv('plan_age_ms', plan ? Number(port.now() - plan.stampNs) / 1e6 : -1), kv('route_completion', monitor.routeCompletion), kv('safe_stop', safeStop),
      ] }],
    }));
    toBag('/sim/objects', 'visualization_msgs/msg/MarkerArray', QOS_DEFAULT, st, codec.encode('visualization_msgs/msg/MarkerArray', { markers: objects.map((ob) => marker(ob, st)) }));
    for (; eventsWritten < monitor.events.length; eventsWritten++) toBag(EVENTS_TOPIC, STRING, QOS_DEFAULT, st, codec.encode(STRING, { data: JSON.stringify(monitor.events[eventsWritten]) }));
  };

  let lastProgress = -1;
  const lastStep = Math.min(nMax - 1, Math.round(timeoutS / world.dtS));
  for (let i = 1; i <= lastStep; i++) {
    const t = T0_NS + BigInt(i) * DT_NS;
    queue.push(t, PRIO.step, () => {
      if (status) return;
      const prev = state;
      state = stepBicycle(state, cmd, vehicle, world.dtS);
      stepIndex = i;
      record();
      const rp = roadOf(state);
      roadGuess = rp.s;
      world.step(Math.abs(rp.l) < ROAD_HALF_WIDTH_M ? { s: rp.s, l: rp.l, v: state.v * Math.cos(rp.psi) } : undefined);
      const tS = i * world.dtS;
      const objects = world.objectsAt(tS);
      monitor.update(tS, state, prev, objects);
      if (i % 10 === 0) {
        monitor.sample10Hz(state, objects);
        sampleBag(tS, objects);
      }
      if (monitor.terminated) status = monitor.terminated;
      else if (monitor.routeDone(tS)) status = 'completed';
      else if (i >= lastStep) status = 'timeout';
      if (o.onProgress && Math.floor(tS * 2) !== lastProgress) {
        lastProgress = Math.floor(tS * 2);
        o.onProgress(tS, timeoutS);
      }
    });
    queue.push(t, PRIO.control, () => {
      if (!status) controlNow();
    });
  }
  queue.push(T0_NS, PRIO.control, controlNow);

  // --- the loop
  node.start();
  for (;;) {
    if (status) break;
    if (o.signal?.aborted) {
      status = 'interrupted';
      break;
    }
    const ev = queue.peek();
    const tt = port.nextTimerNs();
    if (tt !== undefined && (!ev || tt < ev.t || (tt === ev.t && ev.prio > PRIO.timer))) {
      port.setClock(tt);
      port.fireDueTimers();
      await settleStarted();
      continue;
    }
    if (!ev) break;
    queue.pop();
    port.setClock(ev.t);
    await ev.run();
  }
  status ??= 'timeout';
  const simS = stepIndex * world.dtS;
  // release a plan still held back, so the node's inference ends; what it publishes now is not
  // recorded, and the counters are taken before
  ended = true;
  const c = { ...node.counters };
  for (const pending of [gate.started, held]) {
    if (!pending) continue;
    const out = pending.out ?? (await pending.real.catch(() => undefined));
    if (out) pending.resolve(out);
    else pending.reject(new VlaError(ErrorCodes.INTERNAL, 'the drive ended'));
  }
  await node.stop().catch(() => undefined);

  const metrics = monitor.finish(simS, status, state);
  sampleBag(simS, world.objectsAt(simS));
  const report: DriveReport = {
    kind: 'autoprune-ros.drive-report',
    version: 1,
    scenario: { seed: sc.seed, kind: sc.kind, instruction: sc.instruction, complexity: sc.complexity, durationS: sc.durationS, source: o.scenarioSource, spec: sc },
    planner: { kind: o.planner, label: o.label, model: o.planner === 'model' ? o.modelLabel : null, policy: o.planner === 'model' ? (o.prune?.policy ?? 'none') : o.planner, budget: o.planner === 'model' && o.prune?.budget ? `${o.prune.budget.kind}:${o.prune.budget.value}` : null, calibration: o.planner === 'model' ? gate.calibration : null },
    setup: {
      latency: latencyLabel(o.latency),
      deterministic: latencyIsDeterministic(o.latency),
      device: o.latency.kind === 'device' ? { ...DEVICE_PROFILES[o.latency.device] } : null,
      maxPlanAgeMs,
      safeStopDecelMps2: safeStopDecel,
      reactiveTraffic: o.reactiveTraffic ?? false,
      cameraHz,
      odomHz,
      simDtS: world.dtS,
      timeoutS,
      image: { width, height },
      vehicle,
      gains: controller.gains,
      config: o.configLabel,
    },
    interrupted: status === 'interrupted',
    metrics,
    planAgeAtUse: roundStats(latencyStats(planAges)),
    inferenceLatency: roundStats(latencyStats(latencies)),
    inference: { count: latencies.length, failed, keptTokensMean: r6(mean(kept)), visualTokens, relFlopsMean: r6(mean(relFlops)) },
    plans: { received: plansReceived, invalid: invalidPlans },
    safeStops: { count: safeStops, timeS: Number((safeStopSteps * world.dtS).toFixed(3)) },
    node: { framesIn: c.framesIn, setsInferred: c.setsInferred, published: c.published, droppedStale: c.droppedStale, droppedSuperseded: c.droppedSuperseded, failed: c.failed, badInput: c.badInput },
    outputs: { svg: null, animation: null, bag: null },
  };
  // the drive's own record in the bag: the final report, latched
  toBag('/sim/report', STRING, QOS_LATCHED, T0_NS + sToNs(simS), codec.encode(STRING, { data: JSON.stringify({ metrics: report.metrics, planner: report.planner }) }));
  await chain;
  if (bag) {
    try {
      await bag.close();
      if (!bagErr) report.outputs.bag = 'bag';
    } catch (err) {
      bagErr ??= err;
    }
    if (bagErr) log.error({ code: VlaError.from(bagErr).code }, `bag: ${(bagErr as Error).message}`);
  }
  const driven: Array<{ x: number; y: number }> = [];
  for (let i = 0; i <= stepIndex; i += 10) driven.push({ x: hist.x[i] as number, y: hist.y[i] as number });
  if (o.writeSvg !== false) {
    await writeFile(path.join(o.outDir, 'topdown.svg'), topDownSvg({ world, route, driven, events: metrics.events, endS: simS, title: `${sc.seed} ${sc.kind}: ${o.label}`, subtitle: `'${sc.instruction}' — RC ${metrics.routeCompletion.toFixed(1)}%, DS ${metrics.drivingScore.toFixed(1)}, ${metrics.status}` }));
    report.outputs.svg = 'topdown.svg';
  }
  if (o.writeAnimation !== false && anim.length) {
    await renderAnimation(path.join(o.outDir, 'drive.webp'), anim, { world, route, frameDelayMs: Math.round(1000 / (cameraHz / animEvery)) });
    report.outputs.animation = 'drive.webp';
  }
  await writeFile(path.join(o.outDir, 'report.json'), JSON.stringify(report, null, 1) + '\n');
  return report;
}

/** A traffic object as a Foxglove cube marker. */
function marker(o: ObjectState, stNs: bigint) {
  const colour = o.spec.color;
  return {
    header: { stamp: stampMsg(stNs), frame_id: 'odom' },
    ns: 'traffic',
    id: o.index,
    type: 1,
    action: 0,
    pose: { position: { x: o.box.cx, y: o.box.cy, z: o.spec.heightM / 2 }, orientation: quat(o.box.yaw) },
    scale: { x: o.spec.lengthM, y: o.spec.widthM, z: o.spec.heightM },
    color: { r: colour[0] / 255, g: colour[1] / 255, b: colour[2] / 255, a: 0.9 },
    lifetime: { sec: 0, nanosec: 200_000_000 },
    frame_locked: false,
    points: [],
    colors: [],
    texture_resource: '',
    texture: { header: { stamp: { sec: 0, nanosec: 0 }, frame_id: '' }, format: '', data: new Uint8Array(0) },
    uv_coordinates: [],
    text: '',
    mesh_resource: '',
    mesh_file: { filename: '', data: new Uint8Array(0) },
    mesh_use_embedded_materials: false,
  };
}
