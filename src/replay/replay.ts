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
 *
 * This file orchestrates; the parts of a setting's run are ground-truth.ts (the ego path),
 * recorder.ts (output bag and trace), pacing.ts (the two clocks) and summary.ts (its figures).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

import type { BagLimits } from '../bag/limits.js';
import { ReadAhead } from '../bag/read-ahead.js';
import { openBag, type BagInfo, type BagReader } from '../bag/reader.js';
import type { BudgetSpec } from '../engine/addon-types.js';
import type { PruneRequest } from '../engine/calibration.js';
import type { Waypoint } from '../engine/engine.js';
import { isPrunePolicy, PRUNE_POLICIES, type PrunePolicyName } from '../engine/policies.js';
import { MessageCodec } from '../msgs/codec.js';
import { VlaNodeLogic, type EngineLike, type InferenceRecord } from '../pipeline/node.js';
import type { NodeConfig } from '../pipeline/params.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { chooseGroundTruth, GroundTruthCollector } from './ground-truth.js';
import { checkOutputApart } from './outdir.js';
import { everySetPacing, ratePacing, type Pacing } from './pacing.js';
import { ReplayPort } from './port.js';
import { Recorder } from './recorder.js';
import type { BagSummary, ReplayReport, ReportError, SettingResult } from './report-types.js';
import { EgoPath, HORIZONS_S, planDistance, scoreFrame } from './score.js';
import { summarize, type FrameResult } from './summary.js';

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
  /** Size limits on the bag's chunks, messages and .db3 files (default DEFAULT_BAG_LIMITS). */
  limits?: BagLimits;
  signal?: AbortSignal;
  onProgress?: (p: ReplayProgress) => void;
  log?: Logger;
}

const NODE_NAME = 'autoprune_ros';

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
  // Before anything is written: never into (or around) the input.
  checkOutputApart(opts.bag, opts.outDir);
  let reader: BagReader;
  try {
    reader = await openBag(opts.bag, opts.limits ? { limits: opts.limits } : {});
  } catch (err) {
    // Not even the bag's layout could be read: an empty report that says why.
    const e = errorOf(VlaError.from(err, ErrorCodes.BAG));
    log.debug({ code: e.code, ...(e.file ? { file: e.file } : {}) }, e.message);
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
    overheadFraction: opts.rate === undefined ? 0 : null,
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
      const prune: PruneRequest | undefined = setting === 'config' ? opts.config.node.prune : setting.policy === 'none' ? undefined : { ...(opts.config.pruneOptions ?? {}), ...(opts.config.node.prune ?? {}), explicit: opts.config.explicitPruneOptions ?? [], policy: setting.policy, ...(setting.budget ? { budget: setting.budget } : {}) };
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
  // In rate mode the wall clock follows the bag's: time not spent inferring is waiting, not overhead.
  report.overheadFraction = opts.rate !== undefined ? null : report.wallS > 0 ? Math.max(0, 1 - totalInferenceMs / 1000 / report.wallS) : 0;
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
    overheadFraction: opts.rate === undefined ? 0 : null,
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
  s: { label: string; prune: PruneRequest | undefined; deadline: boolean },
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
  // The clock starts at the first message read, not at metadata.yaml's starting_time (0, missing
  // or wrong in a hand-made or damaged bag).
  const port = new ReplayPort(undefined, NODE_NAME, opts.remaps ?? new Map());
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

  const cameraOf = new Map(opts.config.node.cameras.map((c) => [c.camera, port.resolve(c.topic)]));
  const recorder = await Recorder.open({
    dir,
    writeBag: opts.writeBag !== false,
    writeTrace: opts.writeTrace !== false,
    codec,
    cameraTopics: cameraOf,
    traceHeader: {
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
    },
  });
  port.onPublish = (m) => recorder.published(m);

  const finish = (rec: InferenceRecord) => {
    const gt = egoPath.futureInEgoFrame(rec.stampNs, wpTimes);
    const gtH = egoPath.futureInEgoFrame(rec.stampNs, HORIZONS_S);
    const score = scoreFrame(rec.output.waypoints, gt, gtH);
    results.push({ rec, gt, gtH, score });
    recorder.frame(rec, gt, gtH);
  };
  const flush = (all: boolean) => {
    // A frame is scored once the bag's clock is a second past its last waypoint: odometry
    // arrives late (transport, recorder), and interpolation needs the pose after the horizon.
    while (pending.length && (all || (pending[0] as InferenceRecord).stampNs + horizonNs + 1_000_000_000n < port.now())) finish(pending.shift() as InferenceRecord);
  };
  node.onResult = (rec) => pending.push(rec);
  node.onFailure = (stampNs, e) => recorder.failure(stampNs, port.now(), e);

  node.start();
  const subs = port.subscriptions();
  const nodeOdom = opts.config.node.odometryTopic ? port.resolve(opts.config.node.odometryTopic) : undefined;
  const gtChoice = chooseGroundTruth(info, opts.groundTruthTopic ? port.resolve(opts.groundTruthTopic) : undefined, nodeOdom, opts.groundTruthFrame ?? 'base_link', log);
  const gt = new GroundTruthCollector(egoPath, gtChoice, codec, log);
  // The node decodes its odometry topic anyway: when it is the ground truth, take the poses from it.
  const gtFromNode = collectGt && gtChoice.kind === 'odometry' && nodeOdom === gtChoice.topic;
  if (gtFromNode) node.onOdometryMessage = (o) => gt.addPose(o);
  const wanted = new Set(subs.keys());
  if (gtChoice.topic) wanted.add(gtChoice.topic);
  const cameraTopics = new Set(cameraOf.values());
  const durationS = Number(info.durationNs) / 1e9;
  let lastProgress = 0;
  const progress = () => opts.onProgress?.({ setting: index, settings: count, label: s.label, bagTimeS: Number(port.now() - startNs) / 1e9, durationS, frames: results.length + pending.length, messagesRead });

  try {
    preflight(info, subs, opts.config, codec, port, log);
    // Every-set mode waits for each inference; the main thread is idle meanwhile, so scoring and
    // tracing of earlier frames (and parsing of the next message, below) happen in that time.
    const pacing: Pacing =
      opts.rate === undefined
        ? everySetPacing(port, () => node.busy, () => {
            flush(false);
            recorder.drain();
          })
        : ratePacing(port, opts.rate, opts.config.node.tickMs, { log, ...(opts.signal ? { signal: opts.signal } : {}) });
    // Messages are read ahead into a bounded queue: the bag is parsed while the model runs.
    // And decoded there, for the node's subscriptions: the node's own decode then takes the result.
    const ahead = new ReadAhead(reader.messages({ topics: wanted }), 256, 64 << 20, (m) => {
      if (subs.get(m.topic)?.includes(m.type)) codec.predecode(m.type, m.data);
    });
    let lastYield = performance.now();
    try {
      for (;;) {
        const m = ahead.poll() ?? (await ahead.next());
        if (!m) break;
        // Messages already read and decompressed come as resolved promises (microtasks): give the
        // event loop a turn now and then, or a signal (Ctrl-C) would wait for the end of the bag.
        if (performance.now() - lastYield > 50) {
          await new Promise<void>((r) => setImmediate(r));
          lastYield = performance.now();
        }
        if (opts.signal?.aborted) {
          interrupted = true;
          break;
        }
        messagesRead++;
        if (collectGt && m.topic === gtChoice.topic && !gtFromNode) gt.take(m);
        if (cameraTopics.has(m.topic)) recorder.cameraMessage(m.topic, m.data, m.logTimeNs);
        const advancing = pacing.advanceTo(m.logTimeNs);
        if (advancing) await advancing;
        port.deliver(m.topic, m.type, m.data);
        // Every-set mode scores and traces in idle(), while the model runs.
        if (pacing.mode === 'rate') flush(false);
        if (pacing.mode === 'rate' || recorder.queued > 64) recorder.drain();
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
    // The error goes into the report, and whoever reads report.error prints it: a log line at
    // error level would say it twice.
    log.debug({ code: e.code, ...(error.file ? { file: error.file } : {}), ...(error.offset !== undefined ? { offset: error.offset } : {}) }, e.message);
  }
  // Let the last complete set be taken (a few ticks of bag time), then wait for it.
  if (!interrupted && !fatal) await port.advanceTo(port.now() + BigInt(Math.round(opts.config.node.tickMs * 3e6)), () => node.busy);
  await node.stop();
  flush(true);
  progress();
  recorder.drain();
  const wroteBag = await recorder.close({
    messagesRead: BigInt(messagesRead),
    interrupted,
    errorCode: error?.code ?? '',
    errorMessage: error?.message ?? '',
    errorFile: error?.file ?? '',
    errorOffset: BigInt(error?.offset ?? 0),
  });
  if (recorder.outError) log.error({ code: VlaError.from(recorder.outError).code }, `output bag: ${(recorder.outError as Error).message}`);
  const wallMs = performance.now() - wall0;
  const setting = summarize(s.label, s.prune, node, results, wallMs, s.deadline ? opts.config.node.deadlineMs : undefined);
  const plans = new Map(results.map((r) => [r.rec.stampNs, r.rec.output.waypoints]));
  return { setting, plans, egoPath, groundTruth: egoPath.size ? gtChoice.label : null, messagesRead, trace: recorder.traceFile, bag: wroteBag, error, interrupted, fatal };
}
