/**
 * The node logic: camera frames and an instruction in (CDR through a RosPort), synchronised
 * sets through the engine one at a time, trajectory, path, metrics and diagnostics out, stamped
 * with the camera stamp of the set. No rclnodejs here: the same class runs live, in memory and
 * in replay. Bad input is logged with its code, counted and reported; the node keeps running.
 */
import { modelInstruction } from '../model/prompt.js';
import type { PruneRequest } from '../engine/calibration.js';
import type { InferInput, InferOutput } from '../engine/engine.js';
import type { ImageInput } from '../engine/image.js';
import { MessageCodec } from '../msgs/codec.js';
import {
  autowareTrajectoryMsg,
  decodeImage,
  decodeInstruction,
  decodeOdometry,
  diagnosticsMsg,
  egoSpeedMps,
  metricsMsg,
  OUTPUT_TYPES,
  pathMsg,
  trajectoryMsg,
  type ImageType,
  type OdometryMsg,
} from '../msgs/convert.js';
import { QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA, type QosProfile, type RosPort } from '../msgs/port.js';
import { ErrorCodes, VlaError, type ErrorCode } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { DeadlineController } from './budget.js';
import { FrameSync, type FrameSet, type MissingCameraPolicy } from './sync.js';

export type { ImageType, OdometryMsg };

export interface CameraInput {
  camera: string;
  topic: string;
  type: ImageType;
  qos?: QosProfile;
}

export interface NodeParams {
  cameras: CameraInput[];
  instructionTopic: string;
  /** Used until an instruction arrives. */
  defaultInstruction: string;
  outputFrame: string;
  slopMs: number;
  maxAgeMs: number;
  missingCamera: MissingCameraPolicy;
  /** How often the node looks for a complete set, ms. */
  tickMs: number;
  /** Stamps further ahead of the clock than this are rejected, ms. */
  futureToleranceMs: number;
  latencyWarnMs: number;
  maxInstructionChars: number;
  modelName: string;
  /** The prune request (its `explicit` keys win over the model's calibration). */
  prune?: PruneRequest;
  /** Deadline mode: the token budget is set between frames to keep the p95 latency under this, ms. */
  deadlineMs?: number;
  /** nav_msgs/Odometry: the ego speed goes into the prompt while fresh (maxAgeMs). */
  odometryTopic?: string;
  /** Also publish autoware_planning_msgs/Trajectory on ~/output/autoware_trajectory. */
  publishAutowareTrajectory?: boolean;
  /** An inference not done after this long is reported failed (VLA_E_TIMEOUT), ms; 0 or absent: no deadline. */
  inferenceTimeoutMs?: number;
}

/** What the node needs of an engine (a fake in tests). */
export interface EngineLike {
  readonly cameras: string[];
  infer(input: InferInput): Promise<InferOutput>;
  /** Throws a coded error for an instruction every inference would refuse (the real Engine's; optional). */
  checkInstruction?(instruction: string): void;
}

/** Whether a plan can be published: waypoints present, every number finite. */
export function planProblem(r: InferOutput): string | undefined {
  if (!r.waypoints.length) return r.text !== undefined ? `the model's text names no waypoint (${JSON.stringify(r.text.slice(0, 80))})` : 'the model returned no waypoint';
  for (const [i, w] of r.waypoints.entries()) {
    if (!Number.isFinite(w.x) || !Number.isFinite(w.y) || (w.yaw !== undefined && !Number.isFinite(w.yaw))) return `waypoint ${i} is not finite (x ${w.x}, y ${w.y}${w.yaw !== undefined ? `, yaw ${w.yaw}` : ''})`;
  }
  return undefined;
}

export interface NodeCounters {
  framesIn: number;
  setsInferred: number;
  published: number;
  failed: number;
  badInput: number;
  droppedStale: number;
  droppedSuperseded: number;
  lastErrorCode: ErrorCode | '';
  lastError: string;
}

/** One inference as replay and tracing see it (the published messages carry a subset). */
export interface InferenceRecord {
  /** The set's stamp (its newest camera stamp), ns. */
  stampNs: bigint;
  /** Each view's own stamp, ns, camera order. */
  frames: Array<{ camera: string; stampNs: bigint }>;
  /** The instruction as received, and as the model saw it (with the ego speed). */
  instruction: string;
  prompt: string;
  /** Clock when the set was taken, ns. */
  takenNs: bigint;
  output: InferOutput;
  sensorToPublishMs: number;
}

const TOPICS = {
  path: '~/output/path',
  trajectory: '~/output/trajectory',
  autoware: '~/output/autoware_trajectory',
  metrics: '~/output/metrics',
  diagnostics: '/diagnostics',
};

/** Every configured camera must be one of the model's (VLA_E_INPUT naming the first that is not). */
export function checkCameras(cameras: ReadonlyArray<{ camera: string }>, modelCameras: readonly string[]): void {
  for (const c of cameras) {
    if (!modelCameras.includes(c.camera)) throw new VlaError(ErrorCodes.INPUT, `camera '${c.camera}' is not one of the model's (${modelCameras.join(', ')})`);
  }
}

/**
 * Each camera reads its own topic: two cameras on one topic (the same name twice, or two names
 * remapped onto one) would feed one image as two views. VLA_E_PARAMS naming both.
 */
export function checkDistinctTopics(cameras: ReadonlyArray<{ camera: string; topic: string }>, port: Pick<RosPort, 'resolve'>): void {
  const seen = new Map<string, string>();
  for (const c of cameras) {
    const t = port.resolve ? port.resolve(c.topic) : c.topic;
    const other = seen.get(t);
    if (other !== undefined) throw new VlaError(ErrorCodes.PARAMS, `cameras '${other}' and '${c.camera}' both read ${t}${t !== c.topic ? ` (after remapping)` : ''}: each camera needs its own topic`, { topic: t });
    seen.set(t, c.camera);
  }
}

/** The token range deadline mode's controller moves in; it starts at the top. */
export const DEADLINE_TOKENS = { minTokens: 4, maxTokens: 4096 } as const;

export class VlaNodeLogic {
  readonly counters: NodeCounters = { framesIn: 0, setsInferred: 0, published: 0, failed: 0, badInput: 0, droppedStale: 0, droppedSuperseded: 0, lastErrorCode: '', lastError: '' };
  private readonly sync: FrameSync<ImageInput>;
  private instruction: string;
  private inFlight: Promise<void> | undefined;
  private readonly pub: Record<Exclude<keyof typeof TOPICS, 'autoware'>, (cdr: Uint8Array) => void>;
  private readonly pubAutoware: ((cdr: Uint8Array) => void) | undefined;
  private ego: { speedMps: number; atNs: bigint } | undefined;
  private readonly stops: Array<() => void> = [];
  private lastLatencyMs = 0;
  private readonly lastSeenNs = new Map<string, bigint>();
  private lastBudgetMet = true;
  private readonly log: Logger;
  private readonly deadline: DeadlineController | undefined;
  /** An inference that overran inferenceTimeoutMs and still runs: no new one starts before it ends. */
  private overrun: Promise<unknown> | undefined;
  /** Called after each successful inference, before its messages are published (replay, tracing). */
  onResult: ((r: InferenceRecord) => void) | undefined;
  /** Called with each odometry message the node decoded (replay takes its ground truth from them). */
  onOdometryMessage: ((msg: OdometryMsg) => void) | undefined;
  /** Called when an inference fails (the node logs, counts and goes on). */
  onFailure: ((stampNs: bigint, err: VlaError) => void) | undefined;

  constructor(
    private readonly port: RosPort,
    private readonly engine: EngineLike,
    private readonly params: NodeParams,
    private readonly codec = new MessageCodec(),
    log?: Logger,
  ) {
    this.log = log ?? componentLogger('node');
    checkCameras(params.cameras, engine.cameras);
    checkDistinctTopics(params.cameras, port);
    const order = engine.cameras.filter((c) => params.cameras.some((p) => p.camera === c));
    this.sync = new FrameSync<ImageInput>({ cameras: order, slopMs: params.slopMs, maxAgeMs: params.maxAgeMs, missingCamera: params.missingCamera });
    this.instruction = params.defaultInstruction;
    if (params.deadlineMs !== undefined) this.deadline = new DeadlineController({ deadlineMs: params.deadlineMs, ...DEADLINE_TOKENS });
    this.pub = {
      path: port.advertise(TOPICS.path, OUTPUT_TYPES.path, QOS_DEFAULT),
      trajectory: port.advertise(TOPICS.trajectory, OUTPUT_TYPES.trajectory, QOS_DEFAULT),
      metrics: port.advertise(TOPICS.metrics, OUTPUT_TYPES.metrics, QOS_DEFAULT),
      diagnostics: port.advertise(TOPICS.diagnostics, OUTPUT_TYPES.diagnostics, QOS_DEFAULT),
    };
    if (params.publishAutowareTrajectory) this.pubAutoware = port.advertise(TOPICS.autoware, OUTPUT_TYPES.autoware, QOS_DEFAULT);
  }

  start(): void {
    for (const c of this.params.cameras) {
      this.stops.push(this.port.subscribe(c.topic, c.type, c.qos ?? QOS_SENSOR_DATA, (cdr) => this.onFrame(c, cdr)));
    }
    this.stops.push(this.port.subscribe(this.params.instructionTopic, 'std_msgs/msg/String', QOS_LATCHED, (cdr) => this.onInstruction(cdr)));
    if (this.params.odometryTopic) {
      this.stops.push(this.port.subscribe(this.params.odometryTopic, 'nav_msgs/msg/Odometry', QOS_SENSOR_DATA, (cdr) => this.onOdometry(cdr)));
    }
    this.stops.push(this.port.timer(this.params.tickMs, () => this.tick()));
    this.stops.push(this.port.timer(1000, () => this.publishDiagnostics()));
  }

  /** Stops subscriptions and timers; resolves when the running inference has finished. */
  async stop(): Promise<void> {
    for (const s of this.stops.splice(0)) s();
    await this.inFlight;
    await this.overrun;
  }

  /** The running inference, if any (tests and replay wait on it). */
  get busy(): Promise<void> | undefined {
    return this.inFlight;
  }

  /** Camera frames waiting for a set (bounded by cameras x ring depth). */
  get heldFrames(): number {
    return this.sync.held;
  }

  get currentInstruction(): string {
    return this.instruction;
  }

  private bad(code: ErrorCode, message: string, fields: Record<string, unknown> = {}): void {
    this.counters.badInput++;
    this.counters.lastErrorCode = code;
    this.counters.lastError = message;
    this.log.warn({ code, ...fields }, message);
  }

  private onFrame(c: CameraInput, cdr: Uint8Array): void {
    this.counters.framesIn++;
    this.lastSeenNs.set(c.camera, this.port.now());
    let img: ImageInput;
    let t: bigint;
    try {
      ({ image: img, stampNs: t } = decodeImage(this.codec, c.type, cdr, c.camera));
    } catch (err) {
      const e = VlaError.from(err, ErrorCodes.CDR);
      this.bad(e.code, e.message, { camera: c.camera, topic: c.topic });
      return;
    }
    if (t > this.port.now() + BigInt(Math.round(this.params.futureToleranceMs * 1e6))) {
      this.bad(ErrorCodes.INPUT, `camera '${c.camera}': stamp ${t} ns is ahead of the clock ${this.port.now()} ns`, { camera: c.camera });
      return;
    }
    if (!this.sync.push({ camera: c.camera, stampNs: t, data: img })) {
      this.bad(ErrorCodes.INPUT, `camera '${c.camera}': stamp ${t} ns is not newer than the last frame used`, { camera: c.camera });
    }
  }

  private onInstruction(cdr: Uint8Array): void {
    let text: string;
    try {
      text = decodeInstruction(this.codec, cdr);
    } catch (err) {
      const e = VlaError.from(err, ErrorCodes.CDR);
      this.bad(e.code, e.message, { topic: this.params.instructionTopic });
      return;
    }
    const trimmed = text.trim();
    if (!trimmed) return this.bad(ErrorCodes.INPUT, 'empty instruction ignored; keeping the previous one');
    if ([...trimmed].length > this.params.maxInstructionChars) {
      return this.bad(ErrorCodes.INPUT, `instruction of ${[...trimmed].length} characters ignored (limit ${this.params.maxInstructionChars})`);
    }
    // What every inference would refuse (the image token, a prompt longer than the model takes)
    // is refused here, once, and the previous instruction kept.
    try {
      this.engine.checkInstruction?.(trimmed);
    } catch (err) {
      const e = VlaError.from(err, ErrorCodes.INPUT);
      return this.bad(e.code, `instruction ignored, keeping the previous one: ${e.message}`);
    }
    this.instruction = trimmed;
    this.log.info({ instruction: trimmed }, 'instruction');
  }

  private onOdometry(cdr: Uint8Array): void {
    try {
      const m = decodeOdometry(this.codec, cdr);
      this.onOdometryMessage?.(m);
      this.ego = { speedMps: egoSpeedMps(m), atNs: this.port.now() };
    } catch (err) {
      const e = VlaError.from(err, ErrorCodes.CDR);
      this.bad(e.code, e.message, { topic: this.params.odometryTopic });
    }
  }

  /** The instruction as the model sees it: with the ego speed while odometry is fresh. */
  private promptInstruction(instruction: string): string {
    const e = this.ego;
    if (!e || Number(this.port.now() - e.atNs) / 1e6 > this.params.maxAgeMs) return instruction;
    return modelInstruction(instruction, e.speedMps);
  }

  /** Takes the newest complete set if the engine is idle; never queues more than one. */
  tick(): void {
    const s = this.sync.stats;
    this.counters.droppedStale = s.droppedStale;
    this.counters.droppedSuperseded = s.droppedSuperseded;
    if (this.inFlight || this.overrun) return;
    const set = this.sync.take(this.port.now());
    if (!set) return;
    this.inFlight = this.run(set).finally(() => {
      this.inFlight = undefined;
    });
  }

  /** The token budget deadline mode will use for the next frame. */
  get deadlineBudgetTokens(): number | undefined {
    return this.deadline?.budgetTokens;
  }

  private async run(set: FrameSet<ImageInput>): Promise<void> {
    const views: Record<string, ImageInput> = {};
    for (const f of set.frames) views[f.camera] = f.data;
    const instruction = this.instruction;
    const waitedMs = Number(this.port.now() - set.stampNs) / 1e6;
    let prune = this.params.prune;
    const budgetTokens = this.deadline?.budgetTokens;
    if (budgetTokens !== undefined) prune = { ...prune, policy: prune?.policy ?? 'autoprune', budget: { kind: 'tokens', value: budgetTokens } };
    const takenNs = this.port.now();
    const prompt = this.promptInstruction(instruction);
    let r: InferOutput;
    try {
      r = await this.withDeadline(this.engine.infer({ views, instruction: prompt, prune }));
      // A plan that is not finite, or empty, is never published.
      const problem = planProblem(r);
      if (problem) throw new VlaError(ErrorCodes.OUTPUT, `frame ${set.stampNs}: ${problem}; nothing published`);
    } catch (err) {
      const e = VlaError.from(err);
      this.counters.failed++;
      this.counters.lastErrorCode = e.code;
      this.counters.lastError = e.message;
      this.log.error({ code: e.code, stampNs: String(set.stampNs) }, e.message);
      this.onFailure?.(set.stampNs, e);
      return;
    }
    this.counters.setsInferred++;
    // Sensor to publish: the set's age when it was taken plus the inference's own wall time
    // (holds for a live clock and for the virtual clock of tests and replay alike).
    const latencyMs = waitedMs + r.timings.totalMs;
    if (this.deadline && budgetTokens !== undefined) this.deadline.observe(Math.min(budgetTokens, r.prune.nVisual), latencyMs);
    this.onResult?.({ stampNs: set.stampNs, frames: set.frames.map((f) => ({ camera: f.camera, stampNs: f.stampNs })), instruction, prompt, takenNs, output: r, sensorToPublishMs: latencyMs });
    this.publish(set, instruction, r, latencyMs);
  }

  /**
   * The inference, or VLA_E_TIMEOUT once inferenceTimeoutMs has passed (wall time): the node then
   * reports the frame failed and goes on with its timers and inputs; the engine cannot be
   * interrupted, so the next set is taken once the late inference has ended (its result dropped).
   */
  private withDeadline(p: Promise<InferOutput>): Promise<InferOutput> {
    const ms = this.params.inferenceTimeoutMs;
    if (!ms || !(ms > 0)) return p;
    return new Promise<InferOutput>((resolve, reject) => {
      const timer = setTimeout(() => {
        const late = p.catch(() => undefined).finally(() => {
          if (this.overrun === late) this.overrun = undefined;
        });
        this.overrun = late;
        reject(new VlaError(ErrorCodes.TIMEOUT, `inference did not finish within inference_timeout_ms ${ms} ms; frame reported failed`));
      }, ms);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  private publish(set: FrameSet<ImageInput>, instruction: string, r: InferOutput, latencyMs: number): void {
    const c = this.codec;
    const frame = this.params.outputFrame;
    this.pub.path(c.encode(OUTPUT_TYPES.path, pathMsg(set.stampNs, frame, r.waypoints)));
    this.pub.trajectory(c.encode(OUTPUT_TYPES.trajectory, trajectoryMsg(set.stampNs, frame, r.waypoints, instruction, this.params.modelName)));
    if (this.pubAutoware) this.pubAutoware(c.encode(OUTPUT_TYPES.autoware, autowareTrajectoryMsg(set.stampNs, frame, r.waypoints)));
    this.lastLatencyMs = latencyMs;
    const deadlineMs = this.params.deadlineMs;
    this.lastBudgetMet = deadlineMs !== undefined ? latencyMs <= deadlineMs : r.prune.budgetMet;
    const metrics = metricsMsg(set.stampNs, frame, r, {
      sensorToPublishMs: latencyMs,
      ...(deadlineMs !== undefined ? { deadlineMs } : {}),
      budgetMet: this.lastBudgetMet,
      framesDropped: this.counters.droppedStale + this.counters.droppedSuperseded,
      framesFailed: this.counters.failed,
    });
    this.pub.metrics(c.encode(OUTPUT_TYPES.metrics, metrics));
    this.counters.published++;
  }

  /** diagnostic_msgs/DiagnosticArray: OK, or WARN with the reasons. */
  publishDiagnostics(): void {
    const reasons: string[] = [];
    if (this.counters.badInput) reasons.push(`bad input ${this.counters.badInput} (last: ${this.counters.lastErrorCode})`);
    if (this.counters.failed) reasons.push(`failed inferences ${this.counters.failed}`);
    if (this.overrun) reasons.push('an inference overran inference_timeout_ms and still runs');
    if (!this.lastBudgetMet) reasons.push('compute budget missed');
    const now = this.port.now();
    for (const c of this.params.cameras) {
      const seen = this.lastSeenNs.get(c.camera);
      if (seen === undefined || Number(now - seen) / 1e6 > this.params.maxAgeMs) reasons.push(`camera '${c.camera}' silent`);
    }
    if (this.lastLatencyMs > this.params.latencyWarnMs) reasons.push(`latency ${this.lastLatencyMs.toFixed(1)} ms over ${this.params.latencyWarnMs} ms`);
    const diag = diagnosticsMsg(now, {
      name: 'autoprune_ros: pipeline',
      hardwareId: this.params.modelName,
      reasons,
      values: [
        ['frames_in', this.counters.framesIn],
        ['sets_inferred', this.counters.setsInferred],
        ['frames_dropped_stale', this.counters.droppedStale],
        ['frames_dropped_superseded', this.counters.droppedSuperseded],
        ['bad_input', this.counters.badInput],
        ['failed', this.counters.failed],
        ['last_error', this.counters.lastError],
        ['sensor_to_publish_ms', this.lastLatencyMs.toFixed(3)],
      ],
    });
    this.pub.diagnostics(this.codec.encode(OUTPUT_TYPES.diagnostics, diag));
  }
}
