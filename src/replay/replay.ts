/**
 * Bag replay: reads a rosbag2 recording, feeds its camera, instruction and odometry topics to
 * the very node logic that runs live (VlaNodeLogic over a ReplayPort whose clock is the bag's),
 * records everything the node publishes into an output bag, writes a per-frame protobuf trace,
 * and scores the plans against the ego's recorded future path.
 *
 * Two clocks: "every-set" (default) stops the bag's clock while the model runs, so every
 * synchronised set is inferred and results do not depend on the machine's speed; "rate" plays
 * the bag against the wall clock (×rate), so a slow model drops sets as it would on the car.
 * A bag that fails part-way (truncated, bad CRC, missing split) ends reading; everything read
 * before it is still evaluated and reported with the error.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';

import type { BudgetSpec, NativePruneOptions } from '../engine/addon-types.js';
import { isPrunePolicy, PRUNE_POLICIES, type PrunePolicyName } from '../engine/policies.js';
import type { InferOutput, Waypoint } from '../engine/engine.js';
import { VlaNodeLogic, type EngineLike, type InferenceRecord } from '../pipeline/node.js';
import type { NodeConfig } from '../pipeline/params.js';
import { MessageCodec } from '../msgs/codec.js';
import { cdrHeaderStampNs, type OdometryMsg, type TfMsg } from '../msgs/convert.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { openBag, type BagInfo, type BagMessage, type BagReader } from '../bag/reader.js';
import { BagWriter } from '../bag/writer.js';
import { ReplayPort, type PublishedRecord } from './port.js';
import { latencyStats } from './report.js';
import type { BagSummary, ComplexityBucket, FrameSummary, LatencyStage, ReplayReport, ReportError, SettingResult } from './report-types.js';
import { EgoPath, HORIZONS_S, planDistance, plannedAt, planningErrors, scoreFrame, yawFromQuaternion, type PoseSample, type ScoredFrame } from './score.js';
import { TraceWriter, type TraceFrame } from './trace.js';

export interface ReplaySetting {
  policy: PrunePolicyName;
  budget?: BudgetSpec;
}

/** What replay needs of an engine (the real Engine, or a fake in tests). */
export interface ReplayEngine extends EngineLike {
  readonly info: { backend: string; nParams: number; numWaypoints: number; waypointDtS: number };
}

export interface ReplayProgress {
  setting: number;
  settings: number;
  label: string;
  bagTimeS: number;
  durationS: number;
  frames: number;
  messagesRead: number;
}

export interface ReplayOptions {
  bag: string;
  config: NodeConfig;
  configPath: string;
  engine: ReplayEngine;
  outDir: string;
  /** Default: the config's own policy and budget. */
  settings?: Array<ReplaySetting | 'config'>;
  /** Real-time factor; undefined = every-set mode. */
  rate?: number;
  /** Topic remaps applied after resolution: from -> to. */
  remaps?: ReadonlyMap<string, string>;
  /** Ground-truth topic (nav_msgs/Odometry or tf2_msgs/TFMessage); default the config's odometry, else the bag's first odometry, else /tf. */
  groundTruthTopic?: string;
  /** With tf: the ego's frame (default base_link); its transforms from the parent (odom, map) give the path. */
  groundTruthFrame?: string;
  writeBag?: boolean;
  writeTrace?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: ReplayProgress) => void;
  log?: Logger;
}

const NODE_NAME = 'autoprune_ros';
const ODOM = 'nav_msgs/msg/Odometry';
const TF = 'tf2_msgs/msg/TFMessage';

export function settingLabel(s: ReplaySetting): string {
  return s.policy === 'none' || !s.budget ? s.policy : `${s.policy} ${s.budget.kind}:${s.budget.value}`;
}

export function settingSlug(label: string): string {
  return label.replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-+|-+$/g, '') || 'setting';
}

/**
 * Parses `--sweep policy=none,autoprune,fastv budget=64,128,192` (budget values are tokens
 * unless written kind:value). `none` is run once, without a budget.
 */
export function parseSweep(args: string[]): ReplaySetting[] {
  let policies: string[] | undefined;
  let budgets: string[] | undefined;
  for (const a of args) {
    const eq = a.indexOf('=');
    const key = a.slice(0, eq), vals = a.slice(eq + 1).split(',').map((v) => v.trim()).filter(Boolean);
    if (eq <= 0 || !vals.length) throw new VlaError(ErrorCodes.ARGS, `--sweep takes key=v1,v2,... (policy=, budget=), got '${a}'`);
    if (key === 'policy') policies = vals;
    else if (key === 'budget') budgets = vals;
    else throw new VlaError(ErrorCodes.ARGS, `--sweep: unknown key '${key}' (policy, budget)`);
  }
  if (!policies) throw new VlaError(ErrorCodes.ARGS, '--sweep needs policy=...');
  const out: ReplaySetting[] = [];
  for (const p of policies) {
    if (!isPrunePolicy(p)) throw new VlaError(ErrorCodes.ARGS, `--sweep: unknown policy '${p}' (${PRUNE_POLICIES.join(', ')})`);
    if (p === 'none') {
      out.push({ policy: 'none' });
      continue;
    }
    if (!budgets) throw new VlaError(ErrorCodes.ARGS, `--sweep: policy '${p}' needs budget=...`);
    for (const b of budgets) {
      const [kind, value] = b.includes(':') ? (b.split(':') as [string, string]) : ['tokens', b];
      const v = Number(value);
      if ((kind !== 'tokens' && kind !== 'flops') || !(v > 0)) throw new VlaError(ErrorCodes.ARGS, `--sweep: budget '${b}' is not <tokens> or tokens:<T> / flops:<GFLOP>`);
      out.push({ policy: p, budget: { kind, value: v } });
    }
  }
  return out;
}

function bagSummary(info: BagInfo): BagSummary {
  return {
    path: info.path,
    storage: info.storage,
    files: info.files,
    startNs: info.startNs.toString(),
    durationS: Number(info.durationNs) / 1e9,
    messageCount: info.messageCount,
    topics: info.topics.map((t) => ({ name: t.name, type: t.type, count: t.messageCount })),
  };
}

function errorOf(err: unknown): ReportError {
  const e = VlaError.from(err);
  const d = e.details ?? {};
  return {
    code: e.code,
    message: e.message,
    ...(typeof d.file === 'string' ? { file: d.file } : {}),
    ...(typeof d.offset === 'number' ? { offset: d.offset } : typeof d.offset === 'bigint' ? { offset: Number(d.offset) } : {}),
  };
}

interface FrameResult {
  rec: InferenceRecord;
  gt: Array<{ x: number; y: number } | null>;
  gtH: Array<{ x: number; y: number } | null>;
  score: ScoredFrame;
}

/**
 * Pulls from an async iterator into a bounded queue (by count and bytes) on its own, so parsing
 * happens while the consumer waits on something else. An error is delivered after the messages
 * queued before it, as the iterator produced them.
 */
class ReadAhead {
  private readonly queue: BagMessage[] = [];
  private bytes = 0;
  private error: unknown;
  private done = false;
  private stopped = false;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;
  private readonly pump: Promise<void>;

  constructor(
    private readonly it: AsyncGenerator<BagMessage>,
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {
    this.pump = this.run();
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        while (!this.stopped && (this.queue.length >= this.maxCount || this.bytes >= this.maxBytes)) await new Promise<void>((r) => (this.wakeProducer = r));
        if (this.stopped) return;
        const r = await this.it.next();
        if (r.done) break;
        this.queue.push(r.value);
        this.bytes += r.value.data.byteLength;
        this.wakeConsumer?.();
      }
    } catch (err) {
      this.error = err;
    } finally {
      this.done = true;
      this.wakeConsumer?.();
    }
  }

  /** The next message; undefined at the end; throws the reader's error once the queue is drained. */
  async next(): Promise<BagMessage | undefined> {
    for (;;) {
      const m = this.queue.shift();
      if (m) {
        this.bytes -= m.data.byteLength;
        this.wakeProducer?.();
        return m;
      }
      if (this.done) {
        if (this.error !== undefined) {
          const e = this.error;
          this.error = undefined;
          throw e;
        }
        return undefined;
      }
      await new Promise<void>((r) => (this.wakeConsumer = r));
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.wakeProducer?.();
    await this.pump;
    await this.it.return(undefined).catch(() => undefined);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** Checks the node's subscriptions against the bag before anything runs. */
function preflight(info: BagInfo, subs: Map<string, string[]>, config: NodeConfig, codec: MessageCodec, port: ReplayPort, log: Logger): string[] {
  const notes: string[] = [];
  const byName = new Map(info.topics.map((t) => [t.name, t]));
  const cameraTopics = new Set(config.node.cameras.map((c) => port.resolve(c.topic)));
  for (const [topic, types] of subs) {
    const t = byName.get(topic);
    const want = types[0] as string;
    if (!t) {
      if (cameraTopics.has(topic) && config.node.missingCamera === 'wait') {
        const images = info.topics.filter((x) => x.type.startsWith('sensor_msgs/msg/') && x.type.includes('Image')).map((x) => x.name);
        throw new VlaError(ErrorCodes.INPUT, `camera topic ${topic} is not in the bag (its image topics: ${images.join(', ') || 'none'}); remap it with --remap ${topic}:=<topic>, or set missing_camera: partial`, { topic });
      }
      notes.push(`${topic} (${want}) is not in the bag`);
      log.warn({ topic, type: want }, 'subscribed topic not in the bag');
      continue;
    }
    if (!types.includes(t.type)) {
      throw new VlaError(ErrorCodes.MSG_TYPE, `${topic} is ${t.type} in the bag, but the node expects ${types.join(' or ')}`, { topic, type: t.type });
    }
    if (!codec.knows(t.type)) throw new VlaError(ErrorCodes.MSG_TYPE, `${topic}: message type ${t.type} has no definition in the bag or in the standard set`, { topic, type: t.type });
  }
  return notes;
}

/** Replays the bag once per setting and returns the report (not yet written). */
export async function replayBag(opts: ReplayOptions): Promise<{ report: ReplayReport; traces: string[]; bags: string[] }> {
  const log = opts.log ?? componentLogger('replay');
  const t0 = performance.now();
  const settings = opts.settings?.length ? opts.settings : ['config' as const];
  const multi = settings.length > 1;
  let reader: BagReader;
  try {
    reader = await openBag(opts.bag);
  } catch (err) {
    // Not even the bag's layout could be read: an empty report that says why.
    const e = errorOf(VlaError.from(err, ErrorCodes.BAG));
    log.error({ code: e.code, ...(e.file ? { file: e.file } : {}) }, e.message);
    return { report: emptyReport(opts, t0, e), traces: [], bags: [] };
  }
  const info = reader.info;
  const codec = new MessageCodec();
  let defs: Map<string, string> = new Map();
  try {
    defs = await reader.definitions();
  } catch (err) {
    log.warn({ code: VlaError.from(err).code }, `cannot read the bag's message definitions: ${(err as Error).message}`);
  }
  for (const [type, text] of defs) {
    try {
      codec.addDefinition(type, text);
    } catch (err) {
      log.warn({ type, code: VlaError.from(err).code }, 'bag definition not usable; the standard one is used');
    }
  }

  const report: ReplayReport = {
    kind: 'autoprune-ros.replay-report',
    version: 1,
    createdAt: new Date().toISOString(),
    bag: bagSummary(info),
    model: { path: opts.config.engine.modelPath, name: path.basename(opts.config.engine.modelPath), cameras: [...opts.engine.cameras], params: opts.engine.info.nParams, backend: opts.engine.info.backend },
    config: opts.configPath,
    mode: opts.rate === undefined ? { kind: 'every-set', rate: null } : { kind: 'rate', rate: opts.rate },
    messagesRead: 0,
    wallS: 0,
    overheadFraction: 0,
    interrupted: false,
    error: null,
    groundTruth: null,
    settings: [],
    outputs: { bag: null, trace: null, markdown: '', svgs: [] },
  };
  const traces: string[] = [];
  const bags: string[] = [];
  const results: Array<{ setting: SettingResult; plans: Map<bigint, Waypoint[]> }> = [];
  const dtS = opts.engine.info.waypointDtS;
  const wpTimes = Array.from({ length: opts.engine.info.numWaypoints }, (_, i) => (i + 1) * dtS);
  const horizonNs = BigInt(Math.round(Math.max(3, wpTimes[wpTimes.length - 1] ?? 0) * 1e9));
  let egoPath: EgoPath | undefined; // ground truth, read on the first pass
  let totalInferenceMs = 0;

  try {
    for (let si = 0; si < settings.length; si++) {
      if (opts.signal?.aborted) break;
      const setting = settings[si] as ReplaySetting | 'config';
      const prune: NativePruneOptions | undefined = setting === 'config' ? opts.config.node.prune : setting.policy === 'none' ? undefined : { ...(opts.config.node.prune ?? {}), policy: setting.policy, ...(setting.budget ? { budget: setting.budget } : {}) };
      const label =
        setting === 'config'
          ? opts.config.node.deadlineMs !== undefined
            ? `${prune?.policy ?? 'autoprune'} latency:${opts.config.node.deadlineMs}ms`
            : settingLabel({ policy: prune?.policy ?? 'none', ...(prune?.budget ? { budget: prune.budget } : {}) })
          : settingLabel(setting);
      const settingDir = multi ? path.join(opts.outDir, 'settings', settingSlug(label)) : opts.outDir;
      await mkdir(settingDir, { recursive: true });
      const r = await runSetting({ ...opts, log }, reader, info, codec, { label, prune, deadline: setting === 'config' }, settingDir, si, settings.length, wpTimes, horizonNs, egoPath);
      egoPath ??= r.egoPath;
      report.groundTruth ??= r.groundTruth;
      report.messagesRead = Math.max(report.messagesRead, r.messagesRead);
      totalInferenceMs += r.setting.inferenceMs;
      results.push({ setting: r.setting, plans: r.plans });
      if (r.trace) traces.push(r.trace);
      if (r.bag) bags.push(r.bag);
      if (r.error && !report.error) report.error = r.error;
      if (r.interrupted) {
        report.interrupted = true;
        break;
      }
      if (r.fatal) break;
    }
  } finally {
    await reader.close();
  }

  // Agreement with the unpruned plans, frame by frame, where the sweep has `none`.
  const none = results.find((x) => x.setting.policy === 'none');
  for (const x of results) {
    if (!none) {
      x.setting.agreementWithNone = null;
      continue;
    }
    const ds: Array<{ adeM: number; fdeM: number }> = [];
    for (const [stamp, wps] of x.plans) {
      const ref = none.plans.get(stamp);
      const d = ref ? planDistance(wps, ref) : null;
      if (d) ds.push(d);
    }
    x.setting.agreementWithNone = { n: ds.length, adeM: ds.length ? mean(ds.map((d) => d.adeM)) : null, fdeM: ds.length ? mean(ds.map((d) => d.fdeM)) : null };
  }
  report.settings = results.map((x) => x.setting);
  report.wallS = (performance.now() - t0) / 1000;
  report.overheadFraction = report.wallS > 0 ? Math.max(0, 1 - totalInferenceMs / 1000 / report.wallS) : 0;
  report.outputs.trace = traces[0] ?? null;
  report.outputs.bag = bags[0] ?? null;
  return { report, traces, bags };
}

function emptyReport(opts: ReplayOptions, t0: number, error: ReportError): ReplayReport {
  return {
    kind: 'autoprune-ros.replay-report',
    version: 1,
    createdAt: new Date().toISOString(),
    bag: { path: path.resolve(opts.bag), storage: opts.bag.endsWith('.db3') ? 'sqlite3' : 'mcap', files: [], startNs: '0', durationS: 0, messageCount: 0, topics: [] },
    model: { path: opts.config.engine.modelPath, name: path.basename(opts.config.engine.modelPath), cameras: [...opts.engine.cameras], params: opts.engine.info.nParams, backend: opts.engine.info.backend },
    config: opts.configPath,
    mode: opts.rate === undefined ? { kind: 'every-set', rate: null } : { kind: 'rate', rate: opts.rate },
    messagesRead: 0,
    wallS: (performance.now() - t0) / 1000,
    overheadFraction: 0,
    interrupted: false,
    error,
    groundTruth: null,
    settings: [],
    outputs: { bag: null, trace: null, markdown: '', svgs: [] },
  };
}

interface SettingRun {
  setting: SettingResult;
  plans: Map<bigint, Waypoint[]>;
  egoPath: EgoPath;
  /** "odometry /topic" or "tf /tf (base_link)", null without ground truth. */
  groundTruth: string | null;
  messagesRead: number;
  trace: string | null;
  bag: string | null;
  error: ReportError | null;
  interrupted: boolean;
  fatal: boolean;
}

async function runSetting(
  opts: ReplayOptions & { log: Logger },
  reader: BagReader,
  info: BagInfo,
  codec: MessageCodec,
  s: { label: string; prune: NativePruneOptions | undefined; deadline: boolean },
  dir: string,
  index: number,
  count: number,
  wpTimes: number[],
  horizonNs: bigint,
  knownPath: EgoPath | undefined,
): Promise<SettingRun> {
  const wall0 = performance.now();
  const log = opts.log.child({ setting: s.label });
  const startNs = info.startNs;
  const port = new ReplayPort(startNs > 0n ? startNs - 1n : 0n, NODE_NAME, opts.remaps ?? new Map());
  const nodeParams = { ...opts.config.node, modelName: opts.config.engine.modelPath, prune: s.prune };
  if (!s.deadline) delete (nodeParams as { deadlineMs?: number }).deadlineMs;
  const node = new VlaNodeLogic(port, opts.engine, nodeParams, codec, log);

  const results: FrameResult[] = [];
  const pending: InferenceRecord[] = [];
  const egoPath = knownPath ?? new EgoPath([]);
  const collectGt = !knownPath;
  let error: ReportError | null = null;
  let fatal = false;
  let interrupted = false;
  let messagesRead = 0;

  // Output bag: topics registered on first publish; writes chained (the MCAP writer is sequential).
  const writeBag = opts.writeBag !== false;
  const bagDir = path.join(dir, 'bag');
  let out: BagWriter | undefined;
  let chain: Promise<void> = Promise.resolve();
  let outErr: unknown;
  if (writeBag) {
    await rm(bagDir, { recursive: true, force: true });
    out = await BagWriter.create(bagDir);
  }
  const registered = new Set<string>();
  // Published messages are queued and written while the next inference runs (drainOut in waitBusy).
  let outQueue: PublishedRecord[] = [];
  port.onPublish = (m) => {
    if (out && !outErr) outQueue.push(m);
  };
  const drainOut = () => {
    if (!out || !outQueue.length) return;
    const w = out;
    const batch = outQueue;
    outQueue = [];
    chain = chain
      .then(async () => {
        for (const m of batch) {
          if (!registered.has(m.topic)) {
            registered.add(m.topic);
            await w.addTopic(m.topic, m.type, codec.definitionText(m.type), m.qos);
          }
          await w.write(m.topic, m.atNs, m.cdr);
        }
      })
      .catch((err) => {
        outErr ??= err;
      });
  };

  const traceFile = opts.writeTrace !== false ? path.join(dir, 'trace.pb') : null;
  const cameraOf = new Map(opts.config.node.cameras.map((c) => [c.camera, port.resolve(c.topic)]));
  const trace = traceFile
    ? TraceWriter.open(traceFile, {
        bagPath: info.path,
        bagStartNs: startNs,
        modelPath: opts.config.engine.modelPath,
        backend: opts.engine.info.backend,
        configPath: opts.configPath,
        label: s.label,
        policy: s.prune?.policy ?? 'none',
        budget: s.prune?.budget ? `${s.prune.budget.kind}:${s.prune.budget.value}` : '',
        pruneOptionsJson: JSON.stringify(s.prune ?? {}),
        cameras: [...opts.engine.cameras],
        waypointDtS: opts.engine.info.waypointDtS,
        createdAt: new Date().toISOString(),
        mode: opts.rate === undefined ? 'every-set' : 'rate',
        rate: opts.rate ?? 0,
      })
    : undefined;

  // Bag log times of camera frames, by topic and header stamp (the trace references inputs by bag time).
  const logTimes = new Map<string, Map<bigint, bigint>>();
  let frameIndex = 0;
  const finish = (rec: InferenceRecord) => {
    const gt = egoPath.futureInEgoFrame(rec.stampNs, wpTimes);
    const gtH = egoPath.futureInEgoFrame(rec.stampNs, HORIZONS_S);
    const score = scoreFrame(rec.output.waypoints, gt, gtH);
    results.push({ rec, gt, gtH, score });
    if (trace) trace.frame(traceFrame(frameIndex++, rec, gt, gtH, cameraOf, logTimes));
  };
  const flush = (all: boolean) => {
    // A frame is scored once the bag's clock is a second past its last waypoint: odometry
    // arrives late (transport, recorder), and interpolation needs the pose after the horizon.
    while (pending.length && (all || (pending[0] as InferenceRecord).stampNs + horizonNs + 1_000_000_000n < port.now())) finish(pending.shift() as InferenceRecord);
  };
  node.onResult = (rec) => pending.push(rec);
  node.onFailure = (stampNs, e) => {
    if (trace) trace.frame({ index: frameIndex++, stampNs, takenNs: port.now(), inputs: [], instruction: '', prompt: '', waypoints: [], groundTruth: [], groundTruthHorizons: [], prune: null, timings: null, errorCode: e.code, errorMessage: e.message });
  };

  node.start();
  const subs = port.subscriptions();
  // Ground truth: an odometry topic (asked for, the node's, or the bag's first), else tf.
  const typeOf = (t: string) => info.topics.find((x) => x.name === t)?.type;
  const asked = opts.groundTruthTopic ? port.resolve(opts.groundTruthTopic) : undefined;
  const nodeOdom = opts.config.node.odometryTopic ? port.resolve(opts.config.node.odometryTopic) : undefined;
  let groundTruthTopic: string | null =
    asked ?? (nodeOdom && typeOf(nodeOdom) === ODOM ? nodeOdom : (info.topics.find((t) => t.type === ODOM)?.name ?? info.topics.find((t) => t.type === TF && t.name === '/tf')?.name ?? null));
  const gtKind = groundTruthTopic ? typeOf(groundTruthTopic) : undefined;
  if (groundTruthTopic && gtKind !== ODOM && gtKind !== TF) {
    log.warn({ topic: groundTruthTopic, type: gtKind ?? 'absent' }, 'no odometry or tf for ground truth in the bag: planning errors are not computed');
    groundTruthTopic = null;
  }
  const childFrame = opts.groundTruthFrame ?? 'base_link';
  const groundTruthLabel = groundTruthTopic ? (gtKind === TF ? `tf ${groundTruthTopic} (${childFrame})` : `odometry ${groundTruthTopic}`) : null;
  const addTf = (msg: TfMsg) => {
    for (const t of msg.transforms) {
      if (t.child_frame_id.replace(/^\//, '') !== childFrame) continue;
      const tNs = BigInt(t.header.stamp.sec) * 1_000_000_000n + BigInt(t.header.stamp.nanosec);
      egoPath.add({ tNs, x: t.transform.translation.x, y: t.transform.translation.y, yaw: yawFromQuaternion(t.transform.rotation) });
    }
  };
  const addPose = (o: OdometryMsg) => {
    const tNs = BigInt(o.header.stamp.sec) * 1_000_000_000n + BigInt(o.header.stamp.nanosec);
    egoPath.add({ tNs, x: o.pose.pose.position.x, y: o.pose.pose.position.y, yaw: yawFromQuaternion(o.pose.pose.orientation) } satisfies PoseSample);
  };
  // The node decodes its odometry topic anyway: when it is the ground truth, take the poses from it.
  const gtFromNode = collectGt && groundTruthTopic !== null && gtKind === ODOM && nodeOdom === groundTruthTopic;
  if (gtFromNode) node.onOdometryMessage = addPose;
  const wanted = new Set(subs.keys());
  if (groundTruthTopic) wanted.add(groundTruthTopic);
  const cameraTopics = new Set(cameraOf.values());
  // Every-set mode waits for each inference; the main thread is idle meanwhile, so scoring and
  // tracing of earlier frames (and parsing of the next message, below) happen in that time.
  const waitBusy =
    opts.rate === undefined
      ? () => {
          const busy = node.busy;
          if (busy) {
            flush(false);
            drainOut();
          }
          return busy;
        }
      : undefined;
  const durationS = Number(info.durationNs) / 1e9;
  let lastProgress = 0;
  const progress = () => opts.onProgress?.({ setting: index, settings: count, label: s.label, bagTimeS: Number(port.now() - startNs) / 1e9, durationS, frames: results.length + pending.length, messagesRead });

  try {
    preflight(info, subs, opts.config, codec, port, log);
    const wallStart = performance.now();
    let bagFirst: bigint | undefined;
    // Messages are read ahead into a bounded queue: the bag is parsed while the model runs.
    const ahead = new ReadAhead(reader.messages({ topics: wanted }), 256, 64 << 20);
    try {
      for (;;) {
        const m = await ahead.next();
        if (!m) break;
        if (opts.signal?.aborted) {
          interrupted = true;
          break;
        }
        messagesRead++;
        if (collectGt && m.topic === groundTruthTopic && !gtFromNode) {
          try {
            if (gtKind === TF) addTf(codec.decode<TfMsg>(TF, m.data));
            else addPose(codec.decode<OdometryMsg>(ODOM, m.data));
          } catch (err) {
            log.warn({ code: VlaError.from(err).code, offset: m.offset }, 'message skipped for ground truth');
          }
        }
        if (cameraTopics.has(m.topic)) {
          const st = cdrHeaderStampNs(m.data);
          if (st !== undefined) {
            let mp = logTimes.get(m.topic);
            if (!mp) logTimes.set(m.topic, (mp = new Map()));
            mp.set(st, m.logTimeNs);
            if (mp.size > 256) mp.delete(mp.keys().next().value as bigint);
          }
        }
        if (opts.rate !== undefined) {
          bagFirst ??= m.logTimeNs;
          const rate = opts.rate;
          const mapped = () => (bagFirst as bigint) + BigInt(Math.round((performance.now() - wallStart) * 1e6 * rate));
          for (let now = mapped(); now < m.logTimeNs; now = mapped()) {
            await sleep(Math.max(0, Math.min(Number(m.logTimeNs - now) / 1e6 / rate, opts.config.node.tickMs)));
            await port.advanceTo(mapped() < m.logTimeNs ? mapped() : m.logTimeNs);
          }
        }
        await port.advanceTo(m.logTimeNs, waitBusy);
        port.deliver(m.topic, m.type, m.data);
        flush(false);
        if (opts.rate !== undefined || outQueue.length > 64) drainOut();
        const nowMs = performance.now();
        if (nowMs - lastProgress > 100) {
          lastProgress = nowMs;
          progress();
        }
      }
    } finally {
      await ahead.close();
    }
  } catch (err) {
    const e = VlaError.from(err, ErrorCodes.BAG);
    error = errorOf(e);
    // A bag fault ends reading; a bad configuration for this bag ends the run.
    fatal = !e.code.startsWith('VLA_E_BAG');
    log.error({ code: e.code, ...(error.file ? { file: error.file } : {}), ...(error.offset !== undefined ? { offset: error.offset } : {}) }, e.message);
  }
  // Let the last complete set be taken (a few ticks of bag time), then wait for it.
  if (!interrupted && !fatal) await port.advanceTo(port.now() + BigInt(Math.round(opts.config.node.tickMs * 3e6)), () => node.busy);
  await node.stop();
  flush(true);
  progress();
  drainOut();
  await chain;
  // Both files end with I/O waits: close them together.
  const [wroteBag] = await Promise.all([
    out ? out.close().then(() => bagDir, (err) => ((outErr ??= err), null)) : Promise.resolve(null),
    trace?.close({
      messagesRead: BigInt(messagesRead),
      interrupted,
      errorCode: error?.code ?? '',
      errorMessage: error?.message ?? '',
      errorFile: error?.file ?? '',
      errorOffset: BigInt(error?.offset ?? 0),
    }),
  ]);
  if (outErr) log.error({ code: VlaError.from(outErr).code }, `output bag: ${(outErr as Error).message}`);
  const wallMs = performance.now() - wall0;
  const setting = summarize(s.label, s.prune, node, results, wallMs, s.deadline ? opts.config.node.deadlineMs : undefined);
  const plans = new Map(results.map((r) => [r.rec.stampNs, r.rec.output.waypoints]));
  return { setting, plans, egoPath, groundTruth: egoPath.size ? groundTruthLabel : null, messagesRead, trace: traceFile, bag: wroteBag, error, interrupted, fatal };
}

function traceFrame(
  index: number,
  rec: InferenceRecord,
  gt: Array<{ x: number; y: number } | null>,
  gtH: Array<{ x: number; y: number } | null>,
  cameraOf: Map<string, string>,
  logTimes: Map<string, Map<bigint, bigint>>,
): TraceFrame {
  const o: InferOutput = rec.output;
  const p = o.prune;
  const t = o.timings;
  return {
    index,
    stampNs: rec.stampNs,
    takenNs: rec.takenNs,
    inputs: rec.frames.map((f) => {
      const topic = cameraOf.get(f.camera) ?? '';
      return { camera: f.camera, topic, stampNs: f.stampNs, logTimeNs: logTimes.get(topic)?.get(f.stampNs) ?? 0n };
    }),
    instruction: rec.instruction,
    prompt: rec.prompt,
    waypoints: o.waypoints,
    groundTruth: gt,
    groundTruthHorizons: gtH,
    prune: {
      policy: p.policy,
      nVisual: p.nVisual,
      kept: p.kept,
      merged: p.merged,
      keptPerView: p.keptPerView.flat(),
      views: p.keptPerView[0]?.length ?? 0,
      mi0: p.mi0,
      mi1: p.mi1,
      k: p.k,
      scale: p.scale,
      targetTokens: p.targetTokens,
      avgTokens: p.avgTokens,
      flops: p.flops,
      flopsUnpruned: p.flopsUnpruned,
      budgetMet: p.budgetMet,
      budget: p.budget ? `${p.budget.kind}:${p.budget.value}` : '',
    },
    timings: { ...t, sensorToPublishMs: rec.sensorToPublishMs },
    errorCode: '',
    errorMessage: '',
  };
}

/** Terciles of MI over the run: how the retention curve changes with scene complexity. */
function complexityBuckets(results: FrameResult[]): ComplexityBucket[] {
  const withMi = results.filter((r) => Number.isFinite(r.rec.output.prune.mi1) && r.rec.output.prune.kept.length);
  if (withMi.length < 3) return [];
  const sorted = [...withMi].sort((a, b) => a.rec.output.prune.mi1 - b.rec.output.prune.mi1);
  const labels = ['low', 'mid', 'high'];
  return labels.map((label, i) => {
    const part = sorted.slice(Math.floor((i * sorted.length) / 3), Math.floor(((i + 1) * sorted.length) / 3));
    const layers = part[0]?.rec.output.prune.kept.length ?? 0;
    return {
      label,
      miMin: part[0]?.rec.output.prune.mi1 ?? 0,
      miMax: part[part.length - 1]?.rec.output.prune.mi1 ?? 0,
      n: part.length,
      keptPerLayerMean: Array.from({ length: layers }, (_, l) => mean(part.map((r) => r.rec.output.prune.kept[l] ?? 0))),
    };
  });
}

/** A setting's figures; with a latency deadline, the budget is met when sensor to publish is within it. */
function summarize(label: string, prune: NativePruneOptions | undefined, node: VlaNodeLogic, results: FrameResult[], wallMs: number, deadlineMs: number | undefined): SettingResult {
  const c = node.counters;
  const outs = results.map((r) => r.rec.output);
  const stage = (f: (r: FrameResult) => number) => latencyStats(results.map(f));
  const latency: Record<LatencyStage, ReturnType<typeof latencyStats>> = {
    decode: stage((r) => r.rec.output.timings.decodeMs),
    tokenize: stage((r) => r.rec.output.timings.tokenizeMs),
    preprocess: stage((r) => r.rec.output.timings.preprocessMs),
    vision: stage((r) => r.rec.output.timings.visionMs),
    prefill: stage((r) => r.rec.output.timings.prefillMs),
    head: stage((r) => r.rec.output.timings.headMs),
    engine: stage((r) => r.rec.output.timings.engineMs),
    total: stage((r) => r.rec.output.timings.totalMs),
    sensorToPublish: stage((r) => r.rec.sensorToPublishMs),
  };
  const layers = Math.max(0, ...outs.map((o) => o.prune.kept.length));
  const xy = (p: { x: number; y: number } | null): [number, number] | null => (p ? [p.x, p.y] : null);
  const t0 = results[0]?.rec.stampNs;
  const series: FrameSummary[] = results.map((r) => {
    const o = r.rec.output;
    const lastWithGt = [...r.score.l2M].reverse().find((v) => v !== null) ?? null;
    return {
      tS: t0 === undefined ? 0 : Number(r.rec.stampNs - t0) / 1e9,
      totalMs: o.timings.totalMs,
      sensorToPublishMs: r.rec.sensorToPublishMs,
      keptMean: o.prune.kept.length ? mean(o.prune.kept) : o.prune.nVisual,
      mi: o.prune.mi1,
      relFlops: o.prune.flopsUnpruned > 0 ? o.prune.flops / o.prune.flopsUnpruned : 1,
      l2FinalM: lastWithGt,
      l2At3sM: r.score.l2At3sM,
      plannedAt3s: xy(plannedAt(o.waypoints, 3)),
      drivenAt3s: xy(r.gtH[2] ?? null),
    };
  });
  return {
    label,
    policy: prune?.policy ?? 'none',
    budget: prune?.budget ? `${prune.budget.kind}:${prune.budget.value}` : null,
    frames: { framesIn: c.framesIn, setsInferred: c.setsInferred, published: c.published, droppedStale: c.droppedStale, droppedSuperseded: c.droppedSuperseded, failed: c.failed, badInput: c.badInput },
    planning: planningErrors(results.map((r) => r.score)),
    agreementWithNone: null,
    latency,
    tokens: {
      visualIn: Math.max(0, ...outs.map((o) => o.prune.nVisual)),
      keptMean: mean(series.map((x) => x.keptMean)),
      keptPerLayerMean: Array.from({ length: layers }, (_, l) => mean(outs.map((o) => o.prune.kept[l] ?? o.prune.nVisual))),
      byComplexity: prune?.policy === 'autoprune' ? complexityBuckets(results) : [],
    },
    compute: {
      prefillGflopMean: mean(outs.map((o) => o.prune.flops / 1e9)),
      prefillGflopUnprunedMean: mean(outs.map((o) => o.prune.flopsUnpruned / 1e9)),
      relFlopsMean: mean(series.map((x) => x.relFlops)),
      budgetMetFraction: results.length ? results.filter((r) => (deadlineMs !== undefined ? r.rec.sensorToPublishMs <= deadlineMs : r.rec.output.prune.budgetMet)).length / results.length : 1,
    },
    inferenceMs: outs.reduce((a, o) => a + o.timings.totalMs, 0),
    wallMs,
    series,
  };
}
