/** A replay setting's figures from its scored frames: latency per stage, tokens, compute, planning errors. */
import type { NativePruneOptions } from '../engine/addon-types.js';
import type { InferenceRecord, VlaNodeLogic } from '../pipeline/node.js';
import { afterWarmup, LATENCY_WARMUP_FRAMES, latencyStats } from './latency.js';
import type { ComplexityBucket, FrameSummary, LatencyStage, SettingResult } from './report-types.js';
import { plannedAt, planningErrors, type ScoredFrame } from './score.js';

/** One inference with its ground truth (at the waypoint times and at 1, 2, 3 s) and its score. */
export interface FrameResult {
  rec: InferenceRecord;
  gt: Array<{ x: number; y: number } | null>;
  gtH: Array<{ x: number; y: number } | null>;
  score: ScoredFrame;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

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
export function summarize(label: string, prune: NativePruneOptions | undefined, node: VlaNodeLogic, results: FrameResult[], wallMs: number, deadlineMs: number | undefined): SettingResult {
  const c = node.counters;
  const outs = results.map((r) => r.rec.output);
  // The first inference of a run warms caches and allocations: not a latency the car would see.
  const stage = (f: (r: FrameResult) => number) => latencyStats(afterWarmup(results.map(f)));
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
    pruneOptions: prune ? (outs.find((o) => o.prune.options)?.prune.options ?? null) : null,
    calibration: prune ? (outs.find((o) => o.calibration)?.calibration ?? null) : null,
    frames: { framesIn: c.framesIn, setsInferred: c.setsInferred, published: c.published, droppedStale: c.droppedStale, droppedSuperseded: c.droppedSuperseded, failed: c.failed, badInput: c.badInput, ...(c.lastErrorCode ? { lastError: `${c.lastErrorCode}: ${c.lastError}` } : {}) },
    planning: planningErrors(results.map((r) => r.score)),
    agreementWithNone: null,
    latency,
    latencyWarmupFrames: Math.min(LATENCY_WARMUP_FRAMES, Math.max(0, results.length - 1)),
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
      budgetMetFraction: results.length ? results.filter((r) => (deadlineMs !== undefined ? r.rec.sensorToPublishMs <= deadlineMs : r.rec.output.prune.budgetMet)).length / results.length : null,
    },
    inferenceMs: outs.reduce((a, o) => a + o.timings.totalMs, 0),
    wallMs,
    series,
  };
}
