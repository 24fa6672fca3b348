/**
 * Accuracy against compute over a set of drives: every drive is replayed with the same sweep of
 * pruning policies and budgets (and a constant-velocity baseline), and the per-drive results are
 * pooled frame-weighted into one table, per complexity bucket too, with an accuracy-against-FLOPs
 * chart. `evaluate` in the CLI; the README's accuracy table is its output.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { egoSpeedOf } from '../model/prompt.js';
import type { InferInput, InferOutput } from '../engine/engine.js';
import type { NativePruneOptions } from '../engine/addon-types.js';
import type { NodeConfig } from '../pipeline/params.js';
import { ErrorCodes, VlaError, type ErrorCode } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';
import type { Logger } from '../util/logger.js';
import { afterWarmup, latencyCaveats, LATENCY_NOTE, spreadOf, type Spread } from './latency.js';
import { replayBag, settingLabel, type ReplayEngine, type ReplaySetting } from './replay.js';
import type { PlanningErrors, SettingResult } from './report-types.js';
import { constantVelocityPlan } from './score.js';
import { scatterChart } from './svg.js';

/** One drive of drives.json (written by `make-test-drives`). */
export interface DriveEntry {
  dir: string;
  seed?: number;
  kind?: string;
  instruction?: string;
  complexity?: string;
}

/** Pooled figures of one setting over some frames. */
export interface PooledPlanning extends PlanningErrors {
  /** Frames whose inference failed: with n = 0, the policy cannot meet the budget on this model. */
  failed: number;
  /** Frame-weighted mean of per-frame pruned / unpruned prefill FLOPs. */
  relFlops: number;
  keptMean: number;
  /** Mean total inference time per frame (ms, CPU as run), from each run's mean (warm-up frames left out). */
  totalMsMean: number;
  /** Quartiles of the total inference time per frame over the pooled frames, each run's warm-up frames left out; null for the baseline or without frames. */
  latency?: Spread | null;
  /** Fraction of the model's L2@3s gain over constant velocity that this setting keeps (1 = as unpruned). */
  skillRetained: number | null;
  /** ADE(none) / ADE(setting): the seed's "Ratio" read as an error ratio (1 = as unpruned). */
  adeRatio: number | null;
}

/** Timed repeats of one setting: warm, repeated, medians (see EvaluateOptions.timing). */
export interface SettingTiming {
  /** Frames timed with repeats. */
  frames: number;
  /** Median over the timed frames of each frame's median wall time over its repeats (the frame just ran: warm), ms. */
  wallMsMedian: number | null;
  /** Median over every frame of the process CPU time (all threads) of one inference, ms. */
  cpuMsMedian: number | null;
  /** wallMsMedian of `none` / this row's (null without a `none` row). */
  speedup: number | null;
}

/** AutoPrune's complexity signal in one bucket of frames: MI_1 and the slope k it gave. */
export interface ComplexitySignal {
  n: number;
  mi1Mean: number;
  mi1Min: number;
  mi1Max: number;
  kMean: number;
  kMin: number;
  kMax: number;
}

export interface EvaluationRow {
  label: string;
  policy: string;
  budget: string | null;
  /** Warm repeated wall time, CPU time and speed-up over `none` (absent for the baseline). */
  timing?: SettingTiming | null;
  /** autoprune rows: MI_1 and k per complexity bucket (the drives' labels). */
  complexitySignal?: Record<string, ComplexitySignal>;
  /** The prune options the engine ran with (its echo); null without pruning. */
  pruneOptions?: SettingResult['pruneOptions'];
  /** Where the options came from (the first drive's): calibration file, reference, the user's. */
  calibration?: SettingResult['calibration'];
  all: PooledPlanning;
  byComplexity: Record<string, PooledPlanning>;
  byKind: Record<string, PooledPlanning>;
}

export interface EvaluationReport {
  kind: 'autoprune-ros.evaluation';
  version: 1;
  createdAt: string;
  model: { path: string; params: number; visualTokens: number };
  drives: Array<DriveEntry & { frames: number }>;
  command: string;
  /** The prune options besides policy and budget every pruned row ran with. */
  pruneOptions?: Partial<NativePruneOptions>;
  /** How the rows' timing was measured (EvaluateOptions.timing). */
  timing?: { every: number; repeats: number };
  rows: EvaluationRow[];
}

const CV_LABEL = 'constant velocity';

/** A planner that goes straight ahead at the ego speed the node writes into the prompt. */
export function constantVelocityPlanner(cameras: string[], numWaypoints: number, waypointDtS: number): ReplayEngine {
  const times = Array.from({ length: numWaypoints }, (_, i) => (i + 1) * waypointDtS);
  return {
    cameras,
    info: { backend: 'baseline', nParams: 0, numWaypoints, waypointDtS },
    infer: async (input: InferInput): Promise<InferOutput> => {
      return {
        head: 'waypoints',
        // without odometry the node sends no speed: standing still is the only constant velocity known
        waypoints: constantVelocityPlan(egoSpeedOf(input.instruction) ?? 0, times),
        tokenIds: [],
        stopped: true,
        cameras: Object.keys(input.views),
        timings: { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, headMs: 0, engineMs: 0, totalMs: 0 },
        tokens: { prompt: 0, visual: 0, text: 0, generated: 0 },
        memory: { peakActivationBytes: 0, prefillHostReads: 0 },
        prune: { policy: 'none', nVisual: 0, kept: [], merged: [], keptPerView: [], mi0: 0, mi1: 0, k: 0, scale: 1, targetTokens: 0, avgTokens: 0, flops: 0, flopsUnpruned: 0, budgetMet: true },
      };
    },
  };
}

/** A bag: a rosbag2 directory (metadata.yaml, or .mcap/.db3 splits) or a single .mcap/.db3 file. */
function isBag(p: string): boolean {
  try {
    if (statSync(p).isDirectory()) return existsSync(path.join(p, 'metadata.yaml')) || readdirSync(p).some((f) => f.endsWith('.mcap') || f.endsWith('.db3'));
    return p.endsWith('.mcap') || p.endsWith('.db3');
  } catch {
    return false;
  }
}

/**
 * The drives of a directory: those drives.json lists (written by `make-test-drives`; the format
 * is in docs/replay.md), else every bag in it (a bag directory or a .mcap/.db3 file each, in
 * name order; no kind or complexity, so the per-bucket tables say "unknown"). A directory that
 * is itself a bag is one drive.
 */
export async function readDrives(dir: string): Promise<DriveEntry[]> {
  const file = path.join(dir, 'drives.json');
  if (!existsSync(file)) {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch (err) {
      throw new VlaError(ErrorCodes.IO, `${dir}: ${(err as Error).message}`, { file: dir }, { cause: err });
    }
    if (isBag(dir) && !entries.some((f) => isBag(path.join(dir, f)) && statSync(path.join(dir, f)).isDirectory())) return [{ dir: path.resolve(dir) }];
    const bags = entries.map((f) => path.join(dir, f)).filter(isBag);
    if (!bags.length) throw new VlaError(ErrorCodes.INPUT, `${dir}: no drives.json and no bags (rosbag2 directories, .mcap or .db3 files) in it; write test drives with \`autoprune-ros make-test-drives --out ${dir}\``, { file: dir });
    return bags.map((b) => ({ dir: path.resolve(b) }));
  }
  let raw: unknown;
  try {
    raw = JSON.parse((await readRegularFile(file, 64 << 20)).toString('utf8'));
  } catch (err) {
    if (err instanceof VlaError) throw err;
    throw new VlaError(ErrorCodes.IO, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  const list = Array.isArray(raw) ? raw : (raw as { drives?: unknown }).drives;
  if (!Array.isArray(list) || !list.length) throw new VlaError(ErrorCodes.INPUT, `${file}: no drives listed`);
  return list.map((d, i) => {
    // make-test-drives names the bag directory `bag` (relative to drives.json); `dir` is accepted too
    const e = d as Partial<DriveEntry> & { bag?: string };
    const rel = e.bag ?? e.dir;
    if (typeof rel !== 'string' || !rel) throw new VlaError(ErrorCodes.INPUT, `${file}: drive ${i} names no bag directory`);
    const { bag: _bag, ...rest } = e;
    return { ...rest, dir: path.resolve(dir, rel) } as DriveEntry;
  });
}

interface Acc {
  n: number;
  /** Frames whose inference failed (for example a budget the policy cannot meet). */
  failed: number;
  sums: Record<'l2At1sM' | 'l2At2sM' | 'l2At3sM' | 'adeM' | 'fdeM' | 'relFlops' | 'keptMean' | 'totalMs', number>;
  /** Total inference time of every frame after each run's warm-up. */
  totalMs: number[];
}
const newAcc = (): Acc => ({ n: 0, failed: 0, sums: { l2At1sM: 0, l2At2sM: 0, l2At3sM: 0, adeM: 0, fdeM: 0, relFlops: 0, keptMean: 0, totalMs: 0 }, totalMs: [] });

/** Adds one drive's setting result, weighted by its scored frames. */
function accumulate(a: Acc, s: SettingResult): void {
  a.failed += s.frames.failed;
  const n = s.planning.n;
  if (!n) return;
  a.n += n;
  const p = s.planning;
  for (const k of ['l2At1sM', 'l2At2sM', 'l2At3sM', 'adeM', 'fdeM'] as const) a.sums[k] += n * (p[k] ?? Number.NaN);
  a.sums.relFlops += n * s.compute.relFlopsMean;
  a.sums.keptMean += n * s.tokens.keptMean;
  a.sums.totalMs += n * (s.latency.total.meanMs ?? 0);
  if (s.policy !== 'baseline') a.totalMs.push(...afterWarmup(s.series.map((f) => f.totalMs), s.latencyWarmupFrames ?? 0));
}

function finish(a: Acc): PooledPlanning {
  const m = (k: keyof Acc['sums']) => (a.n ? a.sums[k] / a.n : Number.NaN);
  const nul = (v: number) => (Number.isFinite(v) ? v : null);
  return { n: a.n, failed: a.failed, l2At1sM: nul(m('l2At1sM')), l2At2sM: nul(m('l2At2sM')), l2At3sM: nul(m('l2At3sM')), adeM: nul(m('adeM')), fdeM: nul(m('fdeM')), relFlops: m('relFlops'), keptMean: m('keptMean'), totalMsMean: m('totalMs'), latency: spreadOf(a.totalMs), skillRetained: null, adeRatio: null };
}

function withRatios(p: PooledPlanning, none: PooledPlanning | undefined, cv: PooledPlanning | undefined): PooledPlanning {
  if (!none) return p;
  const gain = cv?.l2At3sM != null && none.l2At3sM != null ? cv.l2At3sM - none.l2At3sM : null;
  return {
    ...p,
    skillRetained: gain !== null && gain > 0 && cv?.l2At3sM != null && p.l2At3sM != null ? (cv.l2At3sM - p.l2At3sM) / gain : null,
    adeRatio: none.adeM != null && p.adeM ? none.adeM / p.adeM : null,
  };
}

export interface EvaluateOptions {
  drives: DriveEntry[];
  config: NodeConfig;
  configPath: string;
  engine: ReplayEngine & { info: { nParams: number } };
  modelPath: string;
  visualTokens: number;
  settings: ReplaySetting[];
  outDir: string;
  command: string;
  /** Recorded in the report (what the config and flags gave every pruned row). */
  pruneOptions?: Partial<NativePruneOptions>;
  /**
   * Timing: every `every`-th frame of a setting is inferred `repeats` more times right after
   * its own inference (so warm) and the median of those is its wall time; default every 10th, 3
   * repeats; repeats 0 turns the repeats off (CPU time is measured on every frame regardless).
   */
  timing?: { every: number; repeats: number };
  log?: Logger;
  signal?: AbortSignal;
  onDrive?: (i: number, drive: DriveEntry) => void;
}

/** Replays every drive with every setting (and the constant-velocity baseline) and pools the results. */
export async function evaluateDrives(o: EvaluateOptions): Promise<EvaluationReport> {
  const labels: string[] = [];
  const meta = new Map<string, { policy: string; budget: string | null; pruneOptions?: SettingResult['pruneOptions']; calibration?: SettingResult['calibration'] }>();
  const pools = new Map<string, { all: Acc; byC: Map<string, Acc>; byK: Map<string, Acc> }>();
  const pool = (label: string) => {
    let p = pools.get(label);
    if (!p) {
      p = { all: newAcc(), byC: new Map(), byK: new Map() };
      pools.set(label, p);
      labels.push(label);
    }
    return p;
  };
  const sub = (m: Map<string, Acc>, k: string) => {
    let a = m.get(k);
    if (!a) m.set(k, (a = newAcc()));
    return a;
  };
  const cv = constantVelocityPlanner(o.engine.cameras, o.engine.info.numWaypoints, o.engine.info.waypointDtS);
  const drives: EvaluationReport['drives'] = [];
  const timing = o.timing ?? { every: 10, repeats: 3 };
  const probe = probeEngine(o.engine, timing);
  for (const [i, d] of o.drives.entries()) {
    if (o.signal?.aborted) break;
    o.onDrive?.(i, d);
    probe.complexity = d.complexity ?? 'unknown';
    const outDir = path.join(o.outDir, 'drives', path.basename(d.dir));
    const runs: SettingResult[] = [];
    for (const [engine, settings] of [[cv, [{ policy: 'none' } as ReplaySetting]], [probe.engine, o.settings]] as const) {
      const { report } = await replayBag({ bag: d.dir, config: o.config, configPath: o.configPath, engine, outDir, settings: [...settings], writeBag: false, writeTrace: false, ...(o.signal ? { signal: o.signal } : {}), ...(o.log ? { log: o.log } : {}) });
      if (report.error) throw new VlaError(report.error.code as ErrorCode, `${d.dir}: ${report.error.message}`, { drive: d.dir });
      const res = report.settings.map((s) => (engine === cv ? { ...s, label: CV_LABEL, policy: 'baseline' } : s));
      runs.push(...res);
    }
    drives.push({ ...d, dir: path.relative(process.cwd(), d.dir) || d.dir, frames: runs[0]?.planning.n ?? 0 });
    for (const s of runs) {
      meta.set(s.label, { policy: s.policy, budget: s.budget, pruneOptions: s.pruneOptions ?? null, calibration: s.calibration ?? null });
      const p = pool(s.label);
      accumulate(p.all, s);
      accumulate(sub(p.byC, d.complexity ?? 'unknown'), s);
      accumulate(sub(p.byK, d.kind ?? 'unknown'), s);
    }
  }
  const none = pools.get('none');
  const cvp = pools.get(CV_LABEL);
  const noneWall = probe.timing('none').wallMsMedian;
  const rows: EvaluationRow[] = labels.map((label) => {
    const p = pools.get(label)!;
    const per = (m: Map<string, Acc>, noneM?: Map<string, Acc>, cvM?: Map<string, Acc>) =>
      Object.fromEntries([...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, a]) => [k, withRatios(finish(a), noneM?.get(k) && finish(noneM.get(k)!), cvM?.get(k) && finish(cvM.get(k)!))]));
    const m = meta.get(label)!;
    const t = m.policy === 'baseline' ? null : probe.timing(label);
    const signal = m.policy === 'autoprune' ? probe.signal(label) : undefined;
    return {
      label,
      ...m,
      timing: t && { ...t, speedup: noneWall && t.wallMsMedian ? noneWall / t.wallMsMedian : null },
      ...(signal ? { complexitySignal: signal } : {}),
      all: withRatios(finish(p.all), none && finish(none.all), cvp && finish(cvp.all)),
      byComplexity: per(p.byC, none?.byC, cvp?.byC),
      byKind: per(p.byK, none?.byK, cvp?.byK),
    };
  });
  return { kind: 'autoprune-ros.evaluation', version: 1, createdAt: new Date().toISOString(), model: { path: o.modelPath, params: o.engine.info.nParams, visualTokens: o.visualTokens }, drives, command: o.command, ...(o.pruneOptions ? { pruneOptions: o.pruneOptions } : {}), timing, rows };
}

const median = (v: number[]): number | null => {
  const s = v.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return null;
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? (s[h] as number) : ((s[h - 1] as number) + (s[h] as number)) / 2;
};

/**
 * The engine wrapped to time each setting (labels as replay names sweep settings) and to keep
 * AutoPrune's MI_1 and k per complexity bucket. CPU time is the process's (every engine thread)
 * over one inference; the wall time of a timed frame is the median of `repeats` inferences run
 * right after its own, on the same input (warm caches, the same frame).
 */
function probeEngine(engine: ReplayEngine, timing: { every: number; repeats: number }) {
  const wall = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const seen = new Map<string, number>();
  const sig = new Map<string, Map<string, { mi1: number[]; k: number[] }>>();
  const push = (m: Map<string, number[]>, k: string, v: number) => {
    const a = m.get(k);
    if (a) a.push(v);
    else m.set(k, [v]);
  };
  const self = {
    complexity: 'unknown',
    engine: {
      cameras: engine.cameras,
      info: engine.info,
      infer: async (input: InferInput): Promise<InferOutput> => {
        const label = input.prune?.policy && input.prune.policy !== 'none' ? settingLabel({ policy: input.prune.policy, ...(input.prune.budget ? { budget: input.prune.budget } : {}) }) : 'none';
        const c0 = process.cpuUsage();
        const out = await engine.infer(input);
        const c = process.cpuUsage(c0);
        push(cpu, label, (c.user + c.system) / 1000);
        const i = seen.get(label) ?? 0;
        seen.set(label, i + 1);
        if (timing.repeats > 0 && i % Math.max(1, timing.every) === 0) {
          const t: number[] = [];
          for (let r = 0; r < timing.repeats; r++) {
            const t0 = performance.now();
            await engine.infer(input);
            t.push(performance.now() - t0);
          }
          push(wall, label, median(t) as number);
        }
        if (input.prune?.policy === 'autoprune' && out.prune.kept.length) {
          let byC = sig.get(label);
          if (!byC) sig.set(label, (byC = new Map()));
          let b = byC.get(self.complexity);
          if (!b) byC.set(self.complexity, (b = { mi1: [], k: [] }));
          b.mi1.push(out.prune.mi1);
          b.k.push(out.prune.k);
        }
        return out;
      },
    } as ReplayEngine,
    timing: (label: string): SettingTiming => ({ frames: wall.get(label)?.length ?? 0, wallMsMedian: median(wall.get(label) ?? []), cpuMsMedian: median(cpu.get(label) ?? []), speedup: null }),
    signal: (label: string): Record<string, ComplexitySignal> | undefined => {
      const byC = sig.get(label);
      if (!byC) return undefined;
      const mean = (v: number[]) => v.reduce((a, x) => a + x, 0) / v.length;
      return Object.fromEntries(
        [...byC.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([c, v]) => [c, { n: v.mi1.length, mi1Mean: mean(v.mi1), mi1Min: Math.min(...v.mi1), mi1Max: Math.max(...v.mi1), kMean: mean(v.k), kMin: Math.min(...v.k), kMax: Math.max(...v.k) }]),
      );
    },
  };
  return self;
}

const f3 = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3));
const pc = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : `${(100 * v).toFixed(1)}%`);

/** The table as Markdown: one row per setting, pooled over all drives. */
export function evaluationTable(r: EvaluationReport, pick?: (row: EvaluationRow) => PooledPlanning | undefined): string[] {
  // The pooled table carries the timing (measured per setting over all drives); subsets do not.
  const timed = !pick && r.rows.some((row) => row.timing);
  const get = pick ?? ((row: EvaluationRow) => row.all);
  // Reports written before the medians (no `latency`) carry means: the header says which.
  const median = r.rows.some((row) => row.all.latency);
  const L = timed
    ? ['| setting | kept tokens | rel. prefill FLOPs | CPU ms / frame | wall ms / frame | speed-up | L2@1s [m] | L2@2s [m] | L2@3s [m] | ADE [m] | FDE [m] | skill retained | ADE ratio |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    : [`| setting | kept tokens | rel. prefill FLOPs | ms / frame (${median ? 'median' : 'mean'}) | L2@1s [m] | L2@2s [m] | L2@3s [m] | ADE [m] | FDE [m] | skill retained | ADE ratio |`, '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'];
  const num = (v: number | null | undefined, d: number) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(d));
  for (const row of r.rows) {
    const p = get(row);
    if (!p) continue;
    if (!p.n) {
      if (p.failed) L.push(`| ${row.label} | – | – | – |${timed ? ' – | – |' : ''} cannot meet this budget on this model (${p.failed} frames refused) | | | | | | |`);
      continue;
    }
    const base = row.policy === 'baseline';
    const time = timed ? (base ? '– | – | –' : `${num(row.timing?.cpuMsMedian, 2)} | ${num(row.timing?.wallMsMedian, 2)} | ${row.timing?.speedup != null ? `${row.timing.speedup.toFixed(2)}×` : '–'}`) : base ? '–' : (p.latency?.medianMs ?? p.totalMsMean).toFixed(2);
    L.push(`| ${row.label} | ${base ? '–' : `${p.keptMean.toFixed(1)} / ${r.model.visualTokens}`} | ${base ? '–' : pc(p.relFlops)} | ${time} | ${f3(p.l2At1sM)} | ${f3(p.l2At2sM)} | ${f3(p.l2At3sM)} | ${f3(p.adeM)} | ${f3(p.fdeM)} | ${base ? '–' : pc(p.skillRetained)} | ${base ? '–' : pc(p.adeRatio)} |`);
  }
  return L;
}

/** AutoPrune's MI_1 and slope k per complexity bucket, one line per budget. */
export function complexitySignalTable(r: EvaluationReport): string[] {
  const rows = r.rows.filter((row) => row.complexitySignal);
  if (!rows.length) return [];
  const order = ['low', 'medium', 'high'];
  const rank = (b: string) => (order.includes(b) ? order.indexOf(b) : order.length);
  const buckets = [...new Set(rows.flatMap((row) => Object.keys(row.complexitySignal ?? {})))].sort((a, c) => rank(a) - rank(c) || a.localeCompare(c));
  const L = [`| setting | ${buckets.map((b) => `${b}: MI_1 mean [min, max]; k mean [min, max]`).join(' | ')} |`, `| --- |${buckets.map(() => ' --- |').join('')}`];
  for (const row of rows) {
    const cell = (b: string) => {
      const c = row.complexitySignal?.[b];
      return c ? `${c.mi1Mean.toFixed(2)} [${c.mi1Min.toFixed(2)}, ${c.mi1Max.toFixed(2)}]; ${c.kMean.toFixed(3)} [${c.kMin.toFixed(3)}, ${c.kMax.toFixed(3)}]` : '–';
    };
    L.push(`| ${row.label} | ${buckets.map(cell).join(' | ')} |`);
  }
  return L;
}

/** MI_1 (x) and k (y) per complexity bucket, one point per bucket and budget (autoprune rows). */
export function complexitySignalChart(r: EvaluationReport): string {
  const pts = r.rows.flatMap((row) =>
    Object.entries(row.complexitySignal ?? {}).map(([b, c]) => ({ x: c.mi1Mean, y: c.kMean, label: `${b} (${row.budget?.replace('tokens:', 'T=') ?? ''})`, group: b })),
  );
  return scatterChart({ title: "AutoPrune's complexity signal per complexity bucket (mean over frames)", xLabel: 'MI_1 [bits]', yLabel: 'slope k', points: pts });
}

/** Rows whose latency the run cannot tell from the unpruned row's (pooled frames, interquartile ranges). */
export function evaluationCaveats(r: EvaluationReport): string[] {
  const none = r.rows.find((row) => row.policy === 'none');
  if (!none) return [];
  return latencyCaveats({ label: none.label, spread: none.all.latency ?? null }, r.rows.filter((row) => row.policy !== 'baseline').map((row) => ({ label: row.label, spread: row.all.latency ?? null })));
}

export function evaluationMarkdown(r: EvaluationReport): string {
  const frames = r.drives.reduce((a, d) => a + d.frames, 0);
  const L = [
    '# Accuracy against compute',
    '',
    `Model \`${r.model.path}\` (${r.model.params.toLocaleString('en-US')} parameters, ${r.model.visualTokens} visual tokens per frame), ${r.drives.length} held-out drives, ${frames} scored frames. Command: \`${r.command}\`.`,
    '',
    'Errors are open-loop L2 distances between the planned and the driven future ego positions, frame-weighted over the drives. Skill retained: (L2@3s of constant velocity − L2@3s of the setting) / (the same for `none`), the share of what the model gains over a constant-velocity planner that survives pruning. ADE ratio: ADE of `none` / ADE of the setting. Rel. prefill FLOPs: the decoder prefill\'s FLOPs (Σ over layers of 4nd² + 2n²d + 3ndm) against the unpruned prefill.',
    '',
    ...evaluationTable(r),
    '',
    ...(r.rows.some((row) => row.timing)
      ? [
          `CPU ms / frame: median over every frame of the process CPU time (all threads) of one inference. Wall ms / frame: every ${r.timing?.every ?? 10}th frame of each setting is inferred again ${r.timing?.repeats ?? 3} times right after its own inference (warm), the median of those; the column is the median over those frames. Speed-up: the wall time of \`none\` over the setting's.`,
          '',
        ]
      : []),
    ...(r.rows.some((row) => row.all.latency) ? [`Latency: ${LATENCY_NOTE}.`, ...evaluationCaveats(r).map((c) => `- **Within the noise:** ${c}.`), ''] : []),
    ...(r.rows.some((row) => row.complexitySignal)
      ? ["## AutoPrune's complexity signal", '', 'MI_1 (the instruction rows\' mutual information with the visual tokens at layer 1, bits) and the slope k = max(k0 − γ·MI_1, 0) it gives, per complexity bucket:', '', ...complexitySignalTable(r), '', '![MI_1 and k per complexity bucket](mi-k-complexity.svg)', '']
      : []),
  ];
  const buckets = [...new Set(r.rows.flatMap((row) => Object.keys(row.byComplexity)))];
  for (const b of buckets) {
    L.push(`## Complexity: ${b}`, '', ...evaluationTable(r, (row) => row.byComplexity[b]), '');
  }
  const kinds = [...new Set(r.rows.flatMap((row) => Object.keys(row.byKind)))];
  for (const k of kinds) L.push(`## Instruction kind: ${k}`, '', ...evaluationTable(r, (row) => row.byKind[k]), '');
  L.push('![Accuracy against prefill FLOPs](accuracy-flops.svg)', '');
  return L.join('\n');
}

export function evaluationChart(r: EvaluationReport): string {
  const pts = r.rows.filter((row) => row.policy !== 'baseline').map((row) => ({ x: 100 * row.all.relFlops, y: row.all.l2At3sM, label: row.budget ? row.budget.replace('tokens:', 'T=') : row.label, group: row.policy }));
  const cv = r.rows.find((row) => row.policy === 'baseline')?.all.l2At3sM;
  return scatterChart({ title: 'Accuracy against prefill FLOPs (held-out drives)', xLabel: '% of unpruned prefill FLOPs', yLabel: 'L2 at 3 s [m]', points: pts, connect: true, references: cv != null ? [{ y: cv, label: CV_LABEL }] : [] });
}

/** evaluation.json, evaluation.md and accuracy-flops.svg in outDir (each written whole, then renamed). */
export async function writeEvaluation(outDir: string, r: EvaluationReport): Promise<{ json: string; markdown: string; chart: string; signalChart?: string }> {
  await mkdir(outDir, { recursive: true });
  const put = async (name: string, text: string) => {
    const file = path.join(outDir, name);
    await writeFile(`${file}.tmp`, text);
    await rename(`${file}.tmp`, file);
    return file;
  };
  return {
    json: await put('evaluation.json', JSON.stringify(r, null, 1) + '\n'),
    chart: await put('accuracy-flops.svg', evaluationChart(r)),
    ...(r.rows.some((row) => row.complexitySignal) ? { signalChart: await put('mi-k-complexity.svg', complexitySignalChart(r)) } : {}),
    markdown: await put('evaluation.md', evaluationMarkdown(r)),
  };
}
