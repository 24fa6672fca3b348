/**
 * The closed-loop reports' contract: DIR/report.json of `drive` is a DriveReport, of `drive
 * --sweep` (and of `merge`) a SweepReport. Nothing in them depends on the wall clock or the
 * machine, so two runs with a deterministic latency model write the same bytes; wall times go to
 * DIR/timing.json.
 */
import type { CalibrationUse } from '../engine/calibration.js';
import type { LatencyStats } from '../replay/report-types.js';
import type { Scenario } from '../sample/scenario.js';
import type { TrackerGains } from '../control/tracker.js';
import type { VehicleParams } from '../control/vehicle.js';
import type { DeviceProfile } from './latency.js';
import type { DriveMetrics, InfractionCounts } from './metrics.js';

export type PlannerKind = 'model' | 'expert' | 'constant-velocity';

export interface DriveSetup {
  /** Latency model as given (`fixed:50`, `device:orin@llava-1.5-7b`, ...). */
  latency: string;
  /** Two runs give the same report (false with measured latency). */
  deterministic: boolean;
  device: DeviceProfile | null;
  maxPlanAgeMs: number;
  safeStopDecelMps2: number;
  reactiveTraffic: boolean;
  cameraHz: number;
  odomHz: number;
  simDtS: number;
  /** The drive ends at this simulated time if the route is not done, s. */
  timeoutS: number;
  image: { width: number; height: number };
  vehicle: VehicleParams;
  gains: TrackerGains;
  /** Node parameter file, relative to the package when inside it. */
  config: string;
}

export interface DriveReport {
  kind: 'autoprune-ros.drive-report';
  version: 1;
  scenario: {
    seed: number;
    kind: string;
    instruction: string;
    complexity: string;
    durationS: number;
    /** 'seed' (generated) or the scenario file's name. */
    source: string;
    /** The full scenario: drive it again with --scenario-file. */
    spec: Scenario;
  };
  planner: {
    kind: PlannerKind;
    /** e.g. "autoprune tokens:49", "expert", "constant velocity". */
    label: string;
    model: string | null;
    policy: string;
    budget: string | null;
    /**
     * Where the model's prune options came from (the engine's calibration use of the first
     * inference: the model's calibration.json, the reference's values or the user's); null for
     * the expert, constant velocity, an unpruned model or a drive without an inference.
     */
    calibration: CalibrationUse | null;
  };
  setup: DriveSetup;
  interrupted: boolean;
  metrics: DriveMetrics;
  /** Age of the plan the controller followed (now - its camera stamp), every control step. */
  planAgeAtUse: LatencyStats;
  /** Modelled inference latency of each frame. */
  inferenceLatency: LatencyStats;
  inference: {
    count: number;
    failed: number;
    /** Mean visual tokens per decoder layer, and entering the decoder. */
    keptTokensMean: number | null;
    visualTokens: number | null;
    /** Mean pruned / unpruned prefill FLOPs (docs/autoprune.md, "Budget"). */
    relFlopsMean: number | null;
  };
  plans: { received: number; invalid: number };
  safeStops: { count: number; timeS: number };
  node: { framesIn: number; setsInferred: number; published: number; droppedStale: number; droppedSuperseded: number; failed: number; badInput: number };
  /** Files beside report.json (relative), null when not written. */
  outputs: { svg: string | null; animation: string | null; bag: string | null };
}

/** One (scenario, setting) drive of a sweep, as the sweep keeps it. */
export interface SweepJobResult {
  /** Position in the sweep's job list (the shard split and the merge order). */
  job: number;
  seed: number;
  kind: string;
  complexity: string;
  label: string;
  planner: PlannerKind;
  policy: string;
  budget: string | null;
  status: DriveMetrics['status'];
  routeCompletion: number;
  infractionPenalty: number;
  drivingScore: number;
  success: boolean;
  infractions: InfractionCounts;
  outsideLanesPercent: number;
  routeLanePercent: number;
  minTtcS: number | null;
  planAgeMeanMs: number | null;
  planAgeP95Ms: number | null;
  latencyMeanMs: number | null;
  safeStops: number;
  keptTokensMean: number | null;
  relFlopsMean: number | null;
  maxAbsLonJerkMps3: number;
  comfortable: boolean;
  simTimeS: number;
  /** The drive's directory, relative to the sweep's. */
  dir: string;
}

/** One setting pooled over the sweep's scenarios (means over drives; infractions summed). */
export interface SweepRow {
  label: string;
  planner: PlannerKind;
  policy: string;
  budget: string | null;
  drives: number;
  routeCompletion: number;
  drivingScore: number;
  infractionPenalty: number;
  successRate: number;
  infractions: InfractionCounts;
  /** Penalised infractions per drive. */
  infractionsPerDrive: number;
  outsideLanesPercent: number;
  routeLanePercent: number;
  minTtcS: number | null;
  planAgeMeanMs: number | null;
  latencyMeanMs: number | null;
  safeStops: number;
  keptTokensMean: number | null;
  relFlopsMean: number | null;
  comfortableRate: number;
}

export interface SweepReport {
  kind: 'autoprune-ros.drive-sweep';
  version: 1;
  /** Everything that makes two sweeps the same sweep (merge checks it). */
  sweep: {
    scenarios: Array<{ seed: number; kind: string; complexity: string }>;
    settings: string[];
    latency: string;
    deterministic: boolean;
    model: string | null;
    maxPlanAgeMs: number;
    reactiveTraffic: boolean;
    config: string;
    jobs: number;
  };
  /** This report's part of the jobs; null for the whole sweep (one process, or merged). */
  shard: { index: number; count: number } | null;
  jobs: SweepJobResult[];
  rows: SweepRow[];
  byKind: Record<string, SweepRow[]>;
  byComplexity: Record<string, SweepRow[]>;
  interrupted: boolean;
}
