/**
 * Message conversion, apart from the node (as Autoware keeps ros_utils apart from its nodes):
 * camera, instruction and odometry messages decoded into engine inputs, and an inference's
 * output built into the messages the node publishes (nav_msgs/Path, our Trajectory and Metrics,
 * Autoware's Trajectory, diagnostic_msgs/DiagnosticArray). Pure functions of their arguments:
 * the codec turns these objects into CDR bytes and back.
 */
import type { InferOutput, Waypoint } from '../engine/engine.js';
import { CHANNELS, channelsOf, type ImageInput } from '../engine/image.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import type { MessageCodec } from './codec.js';

/** builtin_interfaces/Time */
export interface TimeMsg {
  sec: number;
  nanosec: number;
}

/** std_msgs/Header */
export interface HeaderMsg {
  stamp: TimeMsg;
  frame_id: string;
}

export type ImageType = 'sensor_msgs/msg/Image' | 'sensor_msgs/msg/CompressedImage';

/** The message types the node publishes, by output. */
export const OUTPUT_TYPES = {
  path: 'nav_msgs/msg/Path',
  trajectory: 'autoprune_ros_msgs/msg/Trajectory',
  autoware: 'autoware_planning_msgs/msg/Trajectory',
  metrics: 'autoprune_ros_msgs/msg/Metrics',
  diagnostics: 'diagnostic_msgs/msg/DiagnosticArray',
} as const;

/** The fields of nav_msgs/Odometry the node and the replay use. */
export interface OdometryMsg {
  header: HeaderMsg;
  pose: { pose: { position: { x: number; y: number; z: number }; orientation: { x: number; y: number; z: number; w: number } } };
  twist: { twist: { linear: { x: number; y: number } } };
}

/** The fields of tf2_msgs/TFMessage the replay's ground truth uses. */
export interface TfMsg {
  transforms: Array<{ header: HeaderMsg; child_frame_id: string; transform: { translation: { x: number; y: number }; rotation: { x: number; y: number; z: number; w: number } } }>;
}

const NS_PER_S = 1_000_000_000n;

export function stampNs(h: HeaderMsg): bigint {
  return BigInt(h.stamp.sec) * NS_PER_S + BigInt(h.stamp.nanosec);
}

export function toStamp(ns: bigint): TimeMsg {
  return { sec: Number(ns / NS_PER_S), nanosec: Number(ns % NS_PER_S) };
}

/** header.stamp straight from CDR bytes (every stamped message starts with it), ns; undefined when too short. */
export function cdrHeaderStampNs(cdr: Uint8Array): bigint | undefined {
  if (cdr.byteLength < 12) return undefined;
  const dv = new DataView(cdr.buffer, cdr.byteOffset, cdr.byteLength);
  const le = (cdr[1] ?? 0) & 1;
  const sec = dv.getInt32(4, le === 1);
  const nsec = dv.getUint32(8, le === 1);
  return BigInt(sec) * NS_PER_S + BigInt(nsec);
}

// ---- decoding: messages in, engine inputs out ----

/**
 * A camera message as the engine's image input and the frame's stamp. A raw image whose
 * encoding the engine does not take, or whose size does not fit its bytes, is VLA_E_IMAGE
 * naming the camera; bytes that are not the message are the codec's VLA_E_CDR.
 */
export function decodeImage(codec: MessageCodec, type: ImageType, cdr: Uint8Array, camera: string): { image: ImageInput; stampNs: bigint } {
  if (type === 'sensor_msgs/msg/Image') {
    const m = codec.decode<{ header: HeaderMsg; width: number; height: number; step: number; encoding: string; is_bigendian: number; data: Uint8Array }>(type, cdr);
    const ch = channelsOf(m.encoding);
    if (ch === undefined) throw new VlaError(ErrorCodes.IMAGE, `camera '${camera}': encoding '${m.encoding}' is not supported (${Object.keys(CHANNELS).join(', ')})`);
    if (m.step < m.width * ch || m.data.byteLength < m.step * m.height || m.width === 0 || m.height === 0) {
      throw new VlaError(ErrorCodes.IMAGE, `camera '${camera}': ${m.width}x${m.height} ${m.encoding} with step ${m.step} does not fit ${m.data.byteLength} bytes`);
    }
    return { image: { data: m.data, width: m.width, height: m.height, step: m.step, encoding: m.encoding as keyof typeof CHANNELS }, stampNs: stampNs(m.header) };
  }
  const m = codec.decode<{ header: HeaderMsg; format: string; data: Uint8Array }>(type, cdr);
  return { image: { kind: 'compressed', data: m.data, format: m.format }, stampNs: stampNs(m.header) };
}

/** std_msgs/String: the text as sent (the node trims and bounds it). */
export function decodeInstruction(codec: MessageCodec, cdr: Uint8Array): string {
  return codec.decode<{ data: string }>('std_msgs/msg/String', cdr).data;
}

export function decodeOdometry(codec: MessageCodec, cdr: Uint8Array): OdometryMsg {
  return codec.decode<OdometryMsg>('nav_msgs/msg/Odometry', cdr);
}

/** The ego's planar speed, m/s; a non-finite one is VLA_E_INPUT. */
export function egoSpeedMps(m: OdometryMsg): number {
  const v = Math.hypot(m.twist.twist.linear.x, m.twist.twist.linear.y);
  if (!Number.isFinite(v)) throw new VlaError(ErrorCodes.INPUT, 'odometry speed is not finite');
  return v;
}

// ---- building: an inference out, messages to publish ----

interface PoseStamped {
  header: HeaderMsg;
  pose: { position: { x: number; y: number; z: number }; orientation: { x: number; y: number; z: number; w: number } };
}

const tNs = (w: Waypoint) => BigInt(Math.round(w.tS * 1e9));

/**
 * Each waypoint as a pose stamped at the set's stamp plus its time. The heading is the model's
 * yaw when it predicts one, else the direction from the previous waypoint (the ego origin first).
 */
function poses(setStampNs: bigint, frameId: string, wps: Waypoint[]): PoseStamped[] {
  return wps.map((w, i) => {
    const prev = i > 0 ? wps[i - 1] : { x: 0, y: 0 };
    const yaw = w.yaw ?? Math.atan2(w.y - (prev?.y ?? 0), w.x - (prev?.x ?? 0));
    return {
      header: { stamp: toStamp(setStampNs + tNs(w)), frame_id: frameId },
      pose: { position: { x: w.x, y: w.y, z: 0 }, orientation: { x: 0, y: 0, z: Math.sin(yaw / 2), w: Math.cos(yaw / 2) } },
    };
  });
}

/** nav_msgs/Path of the plan, stamped with the set's (camera) stamp. */
export function pathMsg(setStampNs: bigint, frameId: string, wps: Waypoint[]): { header: HeaderMsg; poses: PoseStamped[] } {
  return { header: { stamp: toStamp(setStampNs), frame_id: frameId }, poses: poses(setStampNs, frameId, wps) };
}

/** autoprune_ros_msgs/Trajectory: the waypoints with their times, the instruction and the model. */
export function trajectoryMsg(setStampNs: bigint, frameId: string, wps: Waypoint[], instruction: string, model: string) {
  return {
    header: { stamp: toStamp(setStampNs), frame_id: frameId },
    waypoints: wps.map((w) => ({ time_from_start: toStamp(tNs(w)), x_m: w.x, y_m: w.y, yaw_rad: w.yaw ?? 0, has_yaw: w.yaw !== undefined })),
    instruction,
    model,
  };
}

/** autoware_planning_msgs/Trajectory: velocities from consecutive waypoints (Autoware's controller tracks speed along the path). */
export function autowareTrajectoryMsg(setStampNs: bigint, frameId: string, wps: Waypoint[]) {
  const ps = poses(setStampNs, frameId, wps);
  const points = ps.map((p, i) => {
    const w = wps[i] as Waypoint;
    const prev = i > 0 ? (wps[i - 1] as Waypoint) : { x: 0, y: 0, tS: 0 };
    const dt = Math.max(1e-3, w.tS - prev.tS);
    return {
      time_from_start: toStamp(tNs(w)),
      pose: p.pose,
      longitudinal_velocity_mps: Math.hypot(w.x - prev.x, w.y - prev.y) / dt,
      lateral_velocity_mps: 0,
      acceleration_mps2: 0,
      heading_rate_rps: 0,
      front_wheel_angle_rad: 0,
      rear_wheel_angle_rad: 0,
    };
  });
  return { header: { stamp: toStamp(setStampNs), frame_id: frameId }, points };
}

export interface MetricsInput {
  /** From the set's newest camera stamp to publishing, ms. */
  sensorToPublishMs: number;
  /** Deadline mode: the latency budget, ms (the metrics then report a latency budget). */
  deadlineMs?: number;
  budgetMet: boolean;
  framesDropped: number;
  framesFailed: number;
}

/** autoprune_ros_msgs/Metrics: per-stage latency, pruning statistics and compute against the budget. */
export function metricsMsg(setStampNs: bigint, frameId: string, r: InferOutput, m: MetricsInput) {
  const p = r.prune;
  const t = r.timings;
  return {
    header: { stamp: toStamp(setStampNs), frame_id: frameId },
    decode_ms: t.decodeMs,
    tokenize_ms: t.tokenizeMs,
    preprocess_ms: t.preprocessMs,
    vision_ms: t.visionMs,
    prefill_ms: t.prefillMs,
    head_ms: t.headMs,
    engine_ms: t.engineMs,
    total_ms: t.totalMs,
    sensor_to_publish_ms: m.sensorToPublishMs,
    policy: p.policy,
    visual_tokens_in: p.nVisual,
    visual_tokens_kept: p.kept,
    visual_tokens_kept_per_view: p.keptPerView.flat(),
    views: r.cameras,
    mutual_information: p.mi1,
    slope_k: p.k,
    budget_kind: m.deadlineMs !== undefined ? 'latency' : (p.budget?.kind ?? 'none'),
    budget_value: m.deadlineMs ?? p.budget?.value ?? 0,
    budget_met: m.budgetMet,
    prefill_gflop: p.flops / 1e9,
    prefill_gflop_unpruned: p.flopsUnpruned / 1e9,
    frames_dropped: BigInt(m.framesDropped),
    frames_failed: BigInt(m.framesFailed),
  };
}

export interface DiagnosticInput {
  name: string;
  hardwareId: string;
  /** Empty: OK; otherwise WARN with these reasons. */
  reasons: string[];
  values: Array<[string, unknown]>;
}

/** diagnostic_msgs/DiagnosticArray with one status: OK, or WARN with the reasons joined. */
export function diagnosticsMsg(nowNs: bigint, d: DiagnosticInput) {
  const status = {
    level: d.reasons.length ? 1 : 0,
    name: d.name,
    message: d.reasons.length ? d.reasons.join('; ') : 'OK',
    hardware_id: d.hardwareId,
    values: d.values.map(([key, value]) => ({ key, value: String(value) })),
  };
  return { header: { stamp: toStamp(nowNs), frame_id: '' }, status: [status] };
}
