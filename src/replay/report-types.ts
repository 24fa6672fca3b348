/**
 * The replay report's contract: report.json is exactly a ReplayReport; report.md and the SVG
 * charts beside it are rendered from it (report.ts). Units are in the field names.
 */
import type { NativePruneStats } from '../engine/addon-types.js';
import type { CalibrationUse } from '../engine/calibration.js';

/** Order statistics of one latency series, ms. Null fields when n = 0. */
export interface LatencyStats {
  n: number;
  meanMs: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

/** Open-loop planning error against the ego's future path (metres). Null where no frame had ground truth that far ahead. */
export interface PlanningErrors {
  /** Frames scored (with ground truth at least up to the first waypoint). */
  n: number;
  l2At1sM: number | null;
  l2At2sM: number | null;
  l2At3sM: number | null;
  /** Mean over waypoints and frames of the L2 distance. */
  adeM: number | null;
  /** L2 at the last waypoint, mean over frames that have it. */
  fdeM: number | null;
}

export type LatencyStage = 'decode' | 'tokenize' | 'preprocess' | 'vision' | 'prefill' | 'head' | 'engine' | 'total' | 'sensorToPublish';

/** Kept visual tokens per decoder layer, averaged over the frames of one complexity bucket. */
export interface ComplexityBucket {
  /** e.g. "low", "mid", "high": terciles of MI over the run. */
  label: string;
  miMin: number;
  miMax: number;
  n: number;
  keptPerLayerMean: number[];
}

/** One frame as the report needs it (the trace holds more). */
export interface FrameSummary {
  /** Camera stamp of the set, seconds from the bag's start. */
  tS: number;
  totalMs: number;
  sensorToPublishMs: number;
  keptMean: number;
  mi: number;
  relFlops: number;
  /** L2 at the last waypoint that has ground truth (m), null without ground truth. */
  l2FinalM: number | null;
  /** L2 at 3 s (m), null where the bag ends earlier. */
  l2At3sM: number | null;
  /** Planned ego-frame position 3 s ahead [x, y] (m), null when the plan is shorter. */
  plannedAt3s?: [number, number] | null;
  /** Driven ego-frame position 3 s ahead [x, y] (m), null where the bag ends earlier. */
  drivenAt3s?: [number, number] | null;
}

/** One policy/budget setting replayed over the bag. */
export interface SettingResult {
  /** "none", "autoprune tokens:64", "fastv flops:1.5", ... */
  label: string;
  policy: string;
  /** "tokens:64", "flops:1.5" or null. */
  budget: string | null;
  /** The prune options the engine ran with (its own echo, parity resolved); null without pruning. */
  pruneOptions?: NativePruneStats['options'] | null;
  /** Where those options came from (calibration file, reference, the user's), from the first frame; null without pruning. */
  calibration?: CalibrationUse | null;
  frames: {
    framesIn: number;
    setsInferred: number;
    published: number;
    droppedStale: number;
    droppedSuperseded: number;
    failed: number;
    badInput: number;
    /** The last failure or bad input ("CODE: message"), when there was one. */
    lastError?: string;
  };
  planning: PlanningErrors;
  /** Distance of this setting's trajectories from the unpruned ones on the same frames (sweeps with `none`). */
  agreementWithNone: { n: number; adeM: number | null; fdeM: number | null } | null;
  /** Per stage, over the frames after the first latencyWarmupFrames (the first inference warms caches). */
  latency: Record<LatencyStage, LatencyStats>;
  latencyWarmupFrames: number;
  tokens: {
    visualIn: number;
    /** Mean over frames of the mean kept tokens across layers. */
    keptMean: number;
    keptPerLayerMean: number[];
    byComplexity: ComplexityBucket[];
  };
  compute: {
    prefillGflopMean: number;
    prefillGflopUnprunedMean: number;
    /** Mean of per-frame pruned / unpruned prefill FLOPs. */
    relFlopsMean: number;
    /** Fraction of frames that met the budget (1 when there is none). */
    /** Share of published frames that met the budget; null when none was published. */
    budgetMetFraction: number | null;
  };
  /** Sum of inference wall time (ms) and of the replay's wall time spent on this setting. */
  inferenceMs: number;
  wallMs: number;
  /** Frames in bag-time order, for the plots. */
  series: FrameSummary[];
}

export interface BagSummary {
  path: string;
  storage: 'mcap' | 'sqlite3';
  files: string[];
  startNs: string;
  durationS: number;
  messageCount: number;
  topics: Array<{ name: string; type: string; count: number }>;
}

export interface ReportError {
  code: string;
  message: string;
  file?: string;
  offset?: number;
}

export interface ReplayReport {
  kind: 'autoprune-ros.replay-report';
  version: 1;
  createdAt: string;
  bag: BagSummary;
  model: { path: string; name: string; cameras: string[]; params: number; backend: string };
  config: string;
  mode: { kind: 'every-set' | 'rate'; rate: number | null };
  /** Messages read from the bag (all settings see the same ones). */
  messagesRead: number;
  wallS: number;
  /** Replay wall time not spent inside inference, as a fraction of wall time; null in rate mode, where the wall clock is the bag's. */
  overheadFraction: number | null;
  interrupted: boolean;
  /** The bag error that ended reading early (what came before it is evaluated), or null. */
  error: ReportError | null;
  /** Where ground truth came from ("odometry /odom"), or null when the bag has none. */
  groundTruth: string | null;
  settings: SettingResult[];
  /** The constant-velocity planner replayed on the same frames (replay --baseline), the yardstick of the charts; absent without. */
  constantVelocity?: SettingResult | null;
  outputs: { bag: string | null; trace: string | null; markdown: string; svgs: string[] };
}
