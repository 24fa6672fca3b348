/**
 * What one replay setting leaves behind: the output bag (every message the node published, as
 * rosbag2 MCAP) and the per-frame protobuf trace. Published messages and trace frames are queued
 * and written while the next inference runs (drain); the MCAP writer is sequential, so writes
 * are chained.
 */
import path from 'node:path';

import { BagWriter } from '../bag/writer.js';
import type { InferOutput } from '../engine/engine.js';
import type { MessageCodec } from '../msgs/codec.js';
import { cdrHeaderStampNs } from '../msgs/convert.js';
import type { InferenceRecord } from '../pipeline/node.js';
import type { VlaError } from '../util/errors.js';
import type { PublishedRecord } from './port.js';
import { TraceWriter, type TraceFooter, type TraceFrame, type TraceHeader } from './trace.js';

type Point = { x: number; y: number } | null;

export interface RecorderOptions {
  /** The setting's output directory: bag/ and trace.pb go in it. */
  dir: string;
  writeBag: boolean;
  writeTrace: boolean;
  codec: MessageCodec;
  traceHeader: TraceHeader;
  /** Each camera's (resolved) topic: the trace references inputs by topic and bag time. */
  cameraTopics: ReadonlyMap<string, string>;
}

/** Camera frames remembered per topic for the trace's input references (bounded). */
const LOG_TIMES_PER_TOPIC = 256;

export class Recorder {
  private chain: Promise<void> = Promise.resolve();
  private queue: PublishedRecord[] = [];
  private readonly registered = new Set<string>();
  private outErr: unknown;
  /** Bag log times of camera frames, by topic and header stamp. */
  private readonly logTimes = new Map<string, Map<bigint, bigint>>();
  private frameIndex = 0;

  private constructor(
    private readonly out: BagWriter | undefined,
    readonly bagDir: string,
    private readonly trace: TraceWriter | undefined,
    readonly traceFile: string | null,
    private readonly codec: MessageCodec,
    private readonly cameraTopics: ReadonlyMap<string, string>,
  ) {}

  static async open(o: RecorderOptions): Promise<Recorder> {
    const bagDir = path.join(o.dir, 'bag');
    let out: BagWriter | undefined;
    // Never removes anything: the bag goes into a new (or empty) directory, or the writer refuses.
    if (o.writeBag) out = await BagWriter.create(bagDir);
    const traceFile = o.writeTrace ? path.join(o.dir, 'trace.pb') : null;
    const trace = traceFile ? TraceWriter.open(traceFile, o.traceHeader) : undefined;
    return new Recorder(out, bagDir, trace, traceFile, o.codec, o.cameraTopics);
  }

  /** A message the node published (the port's onPublish). */
  published(m: PublishedRecord): void {
    if (this.out && !this.outErr) this.queue.push(m);
  }

  /** Published messages not yet handed to the writer. */
  get queued(): number {
    return this.queue.length;
  }

  /** Hands the queued messages to the bag writer (topics registered on first use) and the trace's frames to its file. */
  drain(): void {
    this.trace?.flush();
    if (!this.out || !this.queue.length) return;
    const w = this.out;
    const batch = this.queue;
    this.queue = [];
    this.chain = this.chain
      .then(async () => {
        for (const m of batch) {
          if (!this.registered.has(m.topic)) {
            this.registered.add(m.topic);
            await w.addTopic(m.topic, m.type, this.codec.definitionText(m.type), m.qos);
          }
          await w.write(m.topic, m.atNs, m.cdr);
        }
      })
      .catch((err) => {
        this.outErr ??= err;
      });
  }

  /** A camera message read from the bag: its log time, by header stamp, for the trace. */
  cameraMessage(topic: string, data: Uint8Array, logTimeNs: bigint): void {
    const st = cdrHeaderStampNs(data);
    if (st === undefined) return;
    let mp = this.logTimes.get(topic);
    if (!mp) this.logTimes.set(topic, (mp = new Map()));
    mp.set(st, logTimeNs);
    if (mp.size > LOG_TIMES_PER_TOPIC) mp.delete(mp.keys().next().value as bigint);
  }

  /** A scored inference, into the trace. */
  frame(rec: InferenceRecord, gt: Point[], gtH: Point[]): void {
    if (this.trace) this.trace.frame(traceFrame(this.frameIndex++, rec, gt, gtH, this.cameraTopics, this.logTimes));
  }

  /** A failed inference, into the trace with its code. */
  failure(stampNs: bigint, takenNs: bigint, e: VlaError): void {
    if (this.trace) this.trace.frame({ index: this.frameIndex++, stampNs, takenNs, inputs: [], instruction: '', prompt: '', waypoints: [], groundTruth: [], groundTruthHorizons: [], prune: null, timings: null, errorCode: e.code, errorMessage: e.message });
  }

  /**
   * Closes the bag and the trace together (both end with I/O waits). Returns the bag directory,
   * or null when none was written or writing it failed (outError says why).
   */
  async close(footer: Omit<TraceFooter, 'frames'>): Promise<string | null> {
    await this.chain;
    const [bag] = await Promise.all([
      this.out ? this.out.close().then(() => this.bagDir, (err) => ((this.outErr ??= err), null)) : Promise.resolve(null),
      this.trace?.close(footer),
    ]);
    return bag;
  }

  /** The first error writing the output bag, if any. */
  get outError(): unknown {
    return this.outErr;
  }
}

function traceFrame(index: number, rec: InferenceRecord, gt: Point[], gtH: Point[], cameraOf: ReadonlyMap<string, string>, logTimes: Map<string, Map<bigint, bigint>>): TraceFrame {
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
