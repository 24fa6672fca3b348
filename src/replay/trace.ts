/**
 * Replay traces: length-delimited protobuf Records (src/replay/trace.proto) written by protobufjs,
 * one Header, a Frame per inference, a Footer. Nanosecond times are uint64 on the wire and
 * bigint here (they exceed 2^53). Reading checks every record and names the one that is bad.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import protobuf from 'protobufjs';

import type { NativePruneStats } from '../engine/addon-types.js';
import type { StageTimingsMs, Waypoint } from '../engine/engine.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { packageRoot } from '../util/paths.js';
import { planDistance, planningErrors, scoreFrame, type Point2, type ScoredFrame } from './score.js';
import type { PlanningErrors } from './report-types.js';

export const TRACE_PROTO = path.join(packageRoot, 'src', 'replay', 'trace.proto');
export const TRACE_KIND = 'autoprune-ros.trace';

export interface TraceHeader {
  bagPath: string;
  bagStartNs: bigint;
  modelPath: string;
  backend: string;
  configPath: string;
  label: string;
  policy: string;
  budget: string;
  pruneOptionsJson: string;
  cameras: string[];
  waypointDtS: number;
  createdAt: string;
  mode: string;
  rate: number;
}

/** The schedule as the trace stores it: the engine's stats with per-view counts flattened. */
export type TracePrune = Omit<NativePruneStats, 'policy' | 'keptPerView' | 'budget'> & {
  policy: string;
  /** Layer-major, `views` per layer. */
  keptPerView: number[];
  views: number;
  /** "tokens:64", "flops:1.5" or "". */
  budget: string;
};

export type TraceTimings = StageTimingsMs & { sensorToPublishMs: number };

export interface TraceFrame {
  index: number;
  stampNs: bigint;
  takenNs: bigint;
  inputs: Array<{ camera: string; topic: string; stampNs: bigint; logTimeNs: bigint }>;
  instruction: string;
  prompt: string;
  waypoints: Waypoint[];
  /** Per waypoint, null beyond the bag's end. */
  groundTruth: Array<Point2 | null>;
  /** At 1, 2 and 3 s. */
  groundTruthHorizons: Array<Point2 | null>;
  prune: TracePrune | null;
  timings: TraceTimings | null;
  errorCode: string;
  errorMessage: string;
}

export interface TraceFooter {
  frames: number;
  messagesRead: bigint;
  interrupted: boolean;
  errorCode: string;
  errorMessage: string;
  errorFile: string;
  errorOffset: bigint;
}

export interface Trace {
  file: string;
  header: TraceHeader;
  frames: TraceFrame[];
  /** Null when the run was killed before writing it. */
  footer: TraceFooter | null;
}

let recordType: protobuf.Type | undefined;
function Record(): protobuf.Type {
  recordType ??= protobuf.loadSync(TRACE_PROTO).lookupType('autoprune_ros.trace.Record');
  return recordType;
}

const gtToWire = (g: Point2 | null) => (g ? { valid: true, xM: g.x, yM: g.y } : { valid: false, xM: 0, yM: 0 });
const gtFromWire = (g: { valid?: boolean; xM?: number; yM?: number }): Point2 | null => (g.valid ? { x: g.xM ?? 0, y: g.yM ?? 0 } : null);

function frameToWire(f: TraceFrame): Record<string, unknown> {
  return {
    index: f.index,
    stampNs: f.stampNs.toString(),
    takenNs: f.takenNs.toString(),
    inputs: f.inputs.map((i) => ({ camera: i.camera, topic: i.topic, stampNs: i.stampNs.toString(), logTimeNs: i.logTimeNs.toString() })),
    instruction: f.instruction,
    prompt: f.prompt,
    waypoints: f.waypoints.map((w) => ({ tS: w.tS, xM: w.x, yM: w.y, hasYaw: w.yaw !== undefined, yawRad: w.yaw ?? 0 })),
    groundTruth: f.groundTruth.map(gtToWire),
    groundTruthHorizons: f.groundTruthHorizons.map(gtToWire),
    ...(f.prune ? { prune: f.prune } : {}),
    ...(f.timings ? { timings: f.timings } : {}),
    errorCode: f.errorCode,
    errorMessage: f.errorMessage,
  };
}

type Wire = { [k: string]: unknown };
const big = (v: unknown): bigint => BigInt((v as string | undefined) ?? '0');
const arr = <T>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);

function frameFromWire(o: Wire): TraceFrame {
  const p = o.prune as Wire | undefined;
  const t = o.timings as Wire | undefined;
  return {
    index: (o.index as number) ?? 0,
    stampNs: big(o.stampNs),
    takenNs: big(o.takenNs),
    inputs: arr<Wire>(o.inputs).map((i) => ({ camera: String(i.camera ?? ''), topic: String(i.topic ?? ''), stampNs: big(i.stampNs), logTimeNs: big(i.logTimeNs) })),
    instruction: String(o.instruction ?? ''),
    prompt: String(o.prompt ?? ''),
    waypoints: arr<Wire>(o.waypoints).map((w) => ({ tS: (w.tS as number) ?? 0, x: (w.xM as number) ?? 0, y: (w.yM as number) ?? 0, ...(w.hasYaw ? { yaw: (w.yawRad as number) ?? 0 } : {}) })),
    groundTruth: arr<Wire>(o.groundTruth).map(gtFromWire),
    groundTruthHorizons: arr<Wire>(o.groundTruthHorizons).map(gtFromWire),
    prune: p
      ? {
          policy: String(p.policy ?? ''),
          nVisual: (p.nVisual as number) ?? 0,
          kept: arr<number>(p.kept),
          merged: arr<number>(p.merged),
          keptPerView: arr<number>(p.keptPerView),
          views: (p.views as number) ?? 0,
          mi0: (p.mi0 as number) ?? 0,
          mi1: (p.mi1 as number) ?? 0,
          k: (p.k as number) ?? 0,
          scale: (p.scale as number) ?? 0,
          targetTokens: (p.targetTokens as number) ?? 0,
          avgTokens: (p.avgTokens as number) ?? 0,
          flops: (p.flops as number) ?? 0,
          flopsUnpruned: (p.flopsUnpruned as number) ?? 0,
          budgetMet: Boolean(p.budgetMet),
          budget: String(p.budget ?? ''),
        }
      : null,
    timings: t
      ? {
          decodeMs: (t.decodeMs as number) ?? 0,
          tokenizeMs: (t.tokenizeMs as number) ?? 0,
          preprocessMs: (t.preprocessMs as number) ?? 0,
          visionMs: (t.visionMs as number) ?? 0,
          prefillMs: (t.prefillMs as number) ?? 0,
          headMs: (t.headMs as number) ?? 0,
          engineMs: (t.engineMs as number) ?? 0,
          totalMs: (t.totalMs as number) ?? 0,
          sensorToPublishMs: (t.sensorToPublishMs as number) ?? 0,
        }
      : null,
    errorCode: String(o.errorCode ?? ''),
    errorMessage: String(o.errorMessage ?? ''),
  };
}

/**
 * Appends records to a trace file. Records are kept as objects and encoded and written in
 * batches by flush() (replay calls it while an inference runs) or once PENDING_MAX are held:
 * each write to the stream costs a thread-pool round trip, too dear to pay per frame between
 * inferences. close() flushes.
 */
export class TraceWriter {
  private readonly stream: WriteStream;
  private failed: Error | undefined;
  private frames = 0;
  private pending: Array<Record<string, unknown>> = [];

  private constructor(readonly file: string) {
    this.stream = createWriteStream(file);
    this.stream.on('error', (err) => {
      this.failed = err;
    });
  }

  static open(file: string, header: TraceHeader): TraceWriter {
    const w = new TraceWriter(file);
    w.record({
      header: { ...header, kind: TRACE_KIND, version: 1, bagStartNs: header.bagStartNs.toString() },
    });
    return w;
  }

  private record(obj: Record<string, unknown>): void {
    if (this.failed) throw new VlaError(ErrorCodes.IO, `${this.file}: ${this.failed.message}`, { file: this.file });
    this.pending.push(obj);
    if (this.pending.length >= PENDING_MAX) this.flush();
  }

  /** Encodes the records held and hands them to the stream in one write. */
  flush(): void {
    if (!this.pending.length) return;
    const batch = this.pending;
    this.pending = [];
    const R = Record();
    // Plain objects encode directly (uint64 as decimal strings); fromObject would copy each frame first.
    const w = protobuf.Writer.create();
    for (const obj of batch) R.encodeDelimited(obj, w);
    this.stream.write(w.finish());
  }

  frame(f: TraceFrame): void {
    this.frames++;
    this.record({ frame: frameToWire(f) });
  }

  async close(footer: Omit<TraceFooter, 'frames'>): Promise<void> {
    this.record({ footer: { ...footer, frames: this.frames, messagesRead: footer.messagesRead.toString(), errorOffset: footer.errorOffset.toString() } });
    this.flush();
    await new Promise<void>((resolve, reject) => this.stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    if (this.failed) throw new VlaError(ErrorCodes.IO, `${this.file}: ${this.failed.message}`, { file: this.file });
  }
}

/** Records held before TraceWriter writes them without waiting for flush(). */
const PENDING_MAX = 256;

/** Reads a whole trace; any malformed or truncated record is VLA_E_TRACE naming the record and offset. */
export async function readTrace(file: string): Promise<Trace> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  const R = Record();
  const reader = protobuf.Reader.create(bytes);
  let header: TraceHeader | undefined;
  const frames: TraceFrame[] = [];
  let footer: TraceFooter | null = null;
  let n = 0;
  while (reader.pos < reader.len) {
    const offset = reader.pos;
    let o: Wire;
    try {
      o = R.toObject(R.decodeDelimited(reader), { longs: String, defaults: true, arrays: true });
    } catch (err) {
      throw new VlaError(ErrorCodes.TRACE, `${file}: record ${n} at byte ${offset} is not a valid trace record (${(err as Error).message})`, { file, offset, record: n }, { cause: err });
    }
    if (n === 0) {
      const h = o.header as Wire | undefined;
      if (!h || h.kind !== TRACE_KIND) throw new VlaError(ErrorCodes.TRACE, `${file}: not an autoprune-ros trace (the first record is not its header)`, { file, offset: 0 });
      header = {
        bagPath: String(h.bagPath ?? ''),
        bagStartNs: big(h.bagStartNs),
        modelPath: String(h.modelPath ?? ''),
        backend: String(h.backend ?? ''),
        configPath: String(h.configPath ?? ''),
        label: String(h.label ?? ''),
        policy: String(h.policy ?? ''),
        budget: String(h.budget ?? ''),
        pruneOptionsJson: String(h.pruneOptionsJson ?? ''),
        cameras: arr<string>(h.cameras),
        waypointDtS: (h.waypointDtS as number) ?? 0,
        createdAt: String(h.createdAt ?? ''),
        mode: String(h.mode ?? ''),
        rate: (h.rate as number) ?? 0,
      };
    } else if (o.frame) {
      frames.push(frameFromWire(o.frame as Wire));
    } else if (o.footer) {
      const f = o.footer as Wire;
      footer = {
        frames: (f.frames as number) ?? 0,
        messagesRead: big(f.messagesRead),
        interrupted: Boolean(f.interrupted),
        errorCode: String(f.errorCode ?? ''),
        errorMessage: String(f.errorMessage ?? ''),
        errorFile: String(f.errorFile ?? ''),
        errorOffset: big(f.errorOffset),
      };
    } else {
      throw new VlaError(ErrorCodes.TRACE, `${file}: record ${n} at byte ${offset} is neither a frame nor a footer`, { file, offset, record: n });
    }
    n++;
  }
  if (!header) throw new VlaError(ErrorCodes.TRACE, `${file}: empty trace`, { file, offset: 0 });
  return { file, header, frames, footer };
}

/** Scores a trace's frames from the ground truth stored in it (no bag, no model). */
export function scoreTrace(t: Trace): { planning: PlanningErrors; scored: ScoredFrame[] } {
  const scored = t.frames.filter((f) => !f.errorCode).map((f) => scoreFrame(f.waypoints, f.groundTruth, f.groundTruthHorizons));
  return { planning: planningErrors(scored), scored };
}

export interface TraceDiff {
  a: string;
  b: string;
  matched: number;
  onlyInA: number;
  onlyInB: number;
  /** Frames whose plans are bit-identical. */
  identicalPlans: number;
  /** Frames whose kept-tokens-per-layer agree. */
  identicalSchedules: number;
  maxWaypointDiffM: number;
  /** Mean over matched frames of the mean waypoint distance between the two plans. */
  meanPlanDistanceM: number | null;
  planningA: PlanningErrors;
  planningB: PlanningErrors;
  meanTotalMsA: number | null;
  meanTotalMsB: number | null;
  /** True when everything but timings agrees. */
  identical: boolean;
}

/** Compares two traces frame by frame (matched by the set's stamp). Timings are reported, not compared. */
export function diffTraces(a: Trace, b: Trace): TraceDiff {
  if (a.header.bagStartNs !== b.header.bagStartNs) {
    throw new VlaError(ErrorCodes.TRACE, `${a.file} and ${b.file} come from different bags (start ${a.header.bagStartNs} vs ${b.header.bagStartNs} ns)`, { file: b.file });
  }
  const byStamp = new Map(b.frames.map((f) => [f.stampNs, f]));
  let matched = 0, identicalPlans = 0, identicalSchedules = 0, maxDiff = 0;
  const dists: number[] = [];
  for (const fa of a.frames) {
    const fb = byStamp.get(fa.stampNs);
    if (!fb) continue;
    matched++;
    const same = fa.waypoints.length === fb.waypoints.length && fa.waypoints.every((w, i) => {
      const v = fb.waypoints[i] as Waypoint;
      return w.tS === v.tS && w.x === v.x && w.y === v.y && w.yaw === v.yaw;
    });
    if (same) identicalPlans++;
    for (let i = 0; i < Math.min(fa.waypoints.length, fb.waypoints.length); i++) {
      const wa = fa.waypoints[i] as Waypoint, wb = fb.waypoints[i] as Waypoint;
      maxDiff = Math.max(maxDiff, Math.abs(wa.x - wb.x), Math.abs(wa.y - wb.y));
    }
    const d = planDistance(fa.waypoints, fb.waypoints);
    if (d) dists.push(d.adeM);
    const ka = fa.prune?.kept ?? [], kb = fb.prune?.kept ?? [];
    if (ka.length === kb.length && ka.every((k, i) => k === kb[i])) identicalSchedules++;
  }
  const meanOf = (xs: number[]) => (xs.length ? xs.reduce((x, y) => x + y, 0) / xs.length : null);
  const totals = (t: Trace) => meanOf(t.frames.flatMap((f) => (f.timings ? [f.timings.totalMs] : [])));
  const onlyInA = a.frames.length - matched;
  const onlyInB = b.frames.length - matched;
  return {
    a: a.file,
    b: b.file,
    matched,
    onlyInA,
    onlyInB,
    identicalPlans,
    identicalSchedules,
    maxWaypointDiffM: maxDiff,
    meanPlanDistanceM: meanOf(dists),
    planningA: scoreTrace(a).planning,
    planningB: scoreTrace(b).planning,
    meanTotalMsA: totals(a),
    meanTotalMsB: totals(b),
    identical: onlyInA === 0 && onlyInB === 0 && identicalPlans === matched && identicalSchedules === matched,
  };
}
