/**
 * Calibration of one model on validation drives (docs/autoprune.md, "Calibration"; the file's
 * format: docs/model-format.md):
 *  - measures MI_1 (the complexity signal) on every validation frame at each budget, with the
 *    flat schedule (k0 = gamma = 0), and normalises it per budget: centre = the median, scale =
 *    half the 10-90 % range, so that k = max(k0 - gamma (MI_1 - centre) / scale, 0) with the
 *    reference's k0 = 0.4 and gamma = 0.2 moves across the model's actual MI range; the engine
 *    takes the equivalent k0' = k0 + gamma centre / scale and gamma' = gamma / scale;
 *  - searches, at each budget, on the same frames and with the same number of evaluated settings
 *    per policy (the search budget), each policy's exposed free parameters: AutoPrune's shape
 *    (that adaptive curve or flat), x0 and scoring rows; FastV's layer K (and position
 *    re-indexing); PDrop's stage layers (and position re-indexing); SparseVLM's scoring rows and
 *    recycling; and keeps the best by skill retained at L2@3s, with every candidate's skill.
 * Inference takes the stored setting by default (src/engine/calibration.ts).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { loadAddon } from '../engine/addon.js';
import type { PrunePolicyName } from '../engine/addon-types.js';
import { CALIBRATION_FORMAT, depthScaledX0, PRUNE_OPTION_KEYS, sha256File, type CalibrationCandidate, type PolicyCalibration, type PruneOptionKey } from '../engine/calibration.js';
import type { InferInput, InferOutput } from '../engine/engine.js';
import { PRUNE_OPTION_DEFAULTS } from '../engine/policies.js';
import type { NodeConfig } from '../pipeline/params.js';
import { SPLIT_SEED_BASE } from '../sample/dataset.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { evaluateDrives, type DriveEntry, type EvaluationReport } from './evaluate.js';
import { settingLabel, type ReplayEngine, type ReplaySetting } from './replay.js';

export { CALIBRATION_FORMAT, depthScaledX0 };
export const CALIBRATION_VERSION = 2;

/** The policies calibrate searches (cls-prior and random have no free parameter besides the budget). */
export const SEARCHED_POLICIES = ['autoprune', 'fastv', 'pdrop', 'sparsevlm-fixed'] as const satisfies readonly PrunePolicyName[];
export type SearchedPolicy = (typeof SEARCHED_POLICIES)[number];

/** Settings evaluated per policy and budget unless --search-budget says otherwise. */
export const DEFAULT_SEARCH_BUDGET = 6;

export type CandidateOptions = CalibrationCandidate['options'];

export interface BudgetCalibration {
  /** The budget as a share of the visual tokens (0.33) and as tokens (average per layer). */
  share: number;
  tokens: number;
  /** MI_1 over the validation frames (flat schedule at the reference x0), bits. */
  mi1: { n: number; min: number; p10: number; median: number; p90: number; max: number };
  /** The normalisation: z = (MI_1 - centre) / scale. */
  centre: number;
  scale: number;
  /** The normalised adaptive curve at the reference x0 (x0, k0, gamma of k = max(k0 - gamma MI_1, 0)); what version 1 stored. */
  engine: { x0: number; k0: number; gamma: number };
  /**
   * AutoPrune's shapes compared on the validation frames: the best adaptive and the best flat
   * candidate's skill retained at L2@3s, and whether the adaptive one won; k's range over the
   * frames with the normalised curve at the reference x0.
   */
  validation: { flatSkill: number | null; adaptiveSkill: number | null; adaptiveBeatsFlat: boolean | null; kRange: [number, number] | null };
  /** Per policy: the chosen options (what inference applies) and every candidate tried. */
  policies: Partial<Record<SearchedPolicy, PolicyCalibration>>;
}

export interface CalibrationFile {
  format: typeof CALIBRATION_FORMAT;
  version: typeof CALIBRATION_VERSION;
  createdAt: string;
  toolVersion: string;
  model: { path: string; weightsSha256: string; layers: number; visualTokens: number };
  drives: Array<{ bag: string; seed: number | null; kind: string | null; complexity: string | null }>;
  frames: number;
  /** Settings evaluated per policy and budget (the same for every policy). */
  searchBudget: number;
  /** The options every run started from (those a candidate does not set). */
  pruneOptions: Record<string, unknown>;
  /** L2@3s of the unpruned model and of constant velocity on these frames (skill retained = (cv - l2) / (cv - none)). */
  reference: { noneL2At3sM: number | null; constantVelocityL2At3sM: number | null };
  budgets: BudgetCalibration[];
  /** What this calibration does not cover (said, not hidden). */
  notCovered: string[];
  /** Frames x settings inferred, and the wall time. */
  evaluations: number;
  runSeconds: number;
}

/** Drives of the test split (seeds from 900000, or bags named test-*) are refused: calibration tunes on validation only. */
export function refuseTestDrives(drives: DriveEntry[]): void {
  const test = drives.filter((d) => (d.seed !== undefined && d.seed >= SPLIT_SEED_BASE.test) || path.basename(d.dir).startsWith('test-'));
  if (test.length)
    throw new VlaError(
      ErrorCodes.ARGS,
      `calibrate tunes on validation drives only; ${test.length} of these are test-split drives (${test
        .slice(0, 3)
        .map((d) => path.basename(d.dir))
        .join(', ')}${test.length > 3 ? ', ...' : ''}): write validation drives with \`autoprune-ros make-test-drives --split val --out DIR\``,
    );
}

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return Number.NaN;
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i), hi = Math.ceil(i);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (i - lo);
}


const round1 = (v: number) => Number(v.toFixed(1));

/**
 * Layer indices given for a 32-layer model moved proportionally to `layers`, as the engine moves
 * its default PDrop stages (scale_layers in native/core/prune/policies.cpp), then kept within
 * 0..layers-2, where an explicit stage may be.
 */
export function scaleLayers(at32: readonly number[], layers: number): number[] {
  const out: number[] = [];
  let prev = -1;
  for (const a of at32) {
    const l = Math.min(layers - 1, Math.max(prev + 1, Math.round(((a + 1) * layers) / 32) - 1));
    if (l <= prev) break;
    out.push(l);
    prev = l;
  }
  return out.filter((l) => l <= layers - 2);
}

/**
 * PDrop's stage-layer sets the search tries besides the default (empty: the engine's stages after
 * layers 7, 15, 23 of 32, moved earlier when the budget needs it), given for 32 layers: earlier
 * stages close together, later ones, and the engine's own earlier fallback.
 */
export const PDROP_STAGE_SETS_AT_32: readonly (readonly number[])[] = Object.freeze([
  [3, 7, 11],
  [11, 19, 27],
  [1, 11, 21],
]);

/**
 * The candidates of one policy, in search order: the search evaluates the first `searchBudget`
 * of them that can meet the budget. Orders alternate AutoPrune's two shapes so that adaptive
 * and flat get the same number of tries.
 */
export function searchCandidates(policy: SearchedPolicy, layers: number, adaptive: { k0: number; gamma: number }): CandidateOptions[] {
  if (policy === 'autoprune') {
    const ref = depthScaledX0(layers);
    const [low, high] = [round1(layers * 0.25), round1(layers * 0.7)];
    const out: CandidateOptions[] = [];
    const add = (x0: number, scoreRows: string) => {
      out.push({ x0, k0: adaptive.k0, gamma: adaptive.gamma, scoreRows }, { x0, k0: 0, gamma: 0, scoreRows });
    };
    add(ref, 'instruction');
    if (low !== ref) add(low, 'instruction');
    add(ref, 'tail');
    if (high !== ref && high !== low) add(high, 'instruction');
    if (low !== ref) add(low, 'tail');
    if (high !== ref && high !== low) add(high, 'tail');
    return out;
  }
  if (policy === 'fastv') {
    const maxK = Math.max(1, layers - 1);
    const m = Math.min(maxK, 5);
    const spread = Array.from({ length: m }, (_, i) => (m === 1 ? 1 : Math.round(1 + (i * (maxK - 1)) / (m - 1))));
    const ks = [...new Set([Math.min(PRUNE_OPTION_DEFAULTS.fastvLayer, maxK), ...spread])];
    return [...ks.map((fastvLayer) => ({ fastvLayer, reindexPositions: false })), ...ks.map((fastvLayer) => ({ fastvLayer, reindexPositions: true }))];
  }
  if (policy === 'pdrop') {
    // The default first (as the engine scales it, a set equal to it is not tried again), then the others at this depth.
    const seen = new Set([JSON.stringify(scaleLayers([7, 15, 23], layers))]);
    const sets: number[][] = [[]];
    for (const at32 of PDROP_STAGE_SETS_AT_32) {
      const set = scaleLayers(at32, layers);
      if (set.length && !seen.has(JSON.stringify(set))) sets.push(set), seen.add(JSON.stringify(set));
    }
    return [...sets.map((pdropLayers) => ({ pdropLayers, reindexPositions: false })), ...sets.map((pdropLayers) => ({ pdropLayers, reindexPositions: true }))];
  }
  return [
    { scoreRows: 'instruction', recycle: false },
    { scoreRows: 'tail', recycle: false },
    { scoreRows: 'instruction', recycle: true },
    { scoreRows: 'tail', recycle: true },
    { scoreRows: 'last', recycle: false },
    { scoreRows: 'last', recycle: true },
  ];
}

/**
 * The best candidate: the highest skill retained at L2@3s, which on the same frames is the lowest
 * L2@3s (so it still ranks when the model does not beat constant velocity and skill is
 * undefined); the first of equals; none when no candidate ran.
 */
export function pickBest(candidates: readonly CalibrationCandidate[]): CalibrationCandidate | undefined {
  let best: CalibrationCandidate | undefined;
  for (const c of candidates) if (c.l2At3sM !== null && Number.isFinite(c.l2At3sM) && (!best || c.l2At3sM < (best.l2At3sM as number))) best = c;
  return best;
}

/** One setting to evaluate: a policy at a budget with some options. */
export interface SearchSetting {
  policy: PrunePolicyName;
  tokens: number;
  options: CandidateOptions;
}

/** A search planned: the candidates in order (those that cannot meet the budget marked skipped) and the settings to score. */
export interface SearchPlan {
  policy: SearchedPolicy;
  tokens: number;
  searchBudget: number;
  tried: CalibrationCandidate[];
  run: SearchSetting[];
}

/**
 * The search at one budget for one policy: the first `searchBudget` candidates that can meet the
 * budget are to be scored; the others before them are recorded as skipped.
 */
export function planSearch(policy: SearchedPolicy, tokens: number, candidates: readonly CandidateOptions[], searchBudget: number, feasible: (s: SearchSetting) => boolean): SearchPlan {
  const tried: CalibrationCandidate[] = [];
  const run: SearchSetting[] = [];
  for (const options of candidates) {
    if (run.length >= searchBudget) break;
    const s = { policy, tokens, options };
    if (!feasible(s)) {
      tried.push({ options, skill: null, l2At3sM: null, skipped: 'cannot meet the budget' });
      continue;
    }
    run.push(s);
    tried.push({ options, skill: null, l2At3sM: null });
  }
  return { policy, tokens, searchBudget, tried, run };
}

/** The plan's scores (one per setting to run, in order) in, the best candidate chosen. */
export function finishSearch(plan: SearchPlan, scores: ReadonlyArray<{ l2At3sM: number | null; skill: number | null }>): PolicyCalibration {
  const tried = plan.tried.map((c) => ({ ...c }));
  let i = 0;
  for (const c of tried) if (!c.skipped) Object.assign(c, scores[i++] ?? { l2At3sM: null, skill: null });
  const best = pickBest(tried);
  return {
    chosen: best ? best.options : {},
    skill: best ? best.skill : null,
    candidates: tried,
    ...(plan.run.length < plan.searchBudget ? { note: `${plan.run.length} of ${plan.searchBudget} settings: the policy exposes no more${tried.some((c) => c.skipped) ? ' that meet this budget' : ''}` } : {}),
  };
}

export interface CalibrateOptions {
  drives: DriveEntry[];
  config: NodeConfig;
  configPath: string;
  engine: ReplayEngine & { info: { nParams: number; hidden?: number; intermediate?: number } };
  modelPath: string;
  layers: number;
  visualTokens: number;
  /** Shares of the visual tokens, e.g. [0.33, 0.22, 0.11]. */
  shares: number[];
  /** Settings evaluated per policy and budget. */
  searchBudget?: number;
  policies?: readonly SearchedPolicy[];
  outDir: string;
  toolVersion: string;
  log?: Logger;
  onProgress?: (what: string) => void;
}

const optionsKey = (o: CandidateOptions) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k as PruneOptionKey]]));

export async function calibrate(o: CalibrateOptions): Promise<CalibrationFile> {
  refuseTestDrives(o.drives);
  const t0 = performance.now();
  const searchBudget = o.searchBudget ?? DEFAULT_SEARCH_BUDGET;
  const policies = o.policies ?? SEARCHED_POLICIES;
  const x0 = depthScaledX0(o.layers);
  const budgets = o.shares.map((share) => ({ share, tokens: Math.max(1, Math.round(share * o.visualTokens)) }));
  // MI_1 and k of every autoprune frame, by run and setting label.
  let runKey = '';
  const mi = new Map<string, number[]>();
  const ks = new Map<string, number[]>();
  let evaluations = 0;
  const recording: ReplayEngine & { info: { nParams: number } } = {
    cameras: o.engine.cameras,
    info: o.engine.info,
    infer: async (input: InferInput): Promise<InferOutput> => {
      const out = await o.engine.infer(input);
      evaluations++;
      if (input.prune?.policy === 'autoprune' && out.prune.kept.length) {
        const label = `${runKey}|${settingLabel({ policy: 'autoprune', ...(input.prune.budget ? { budget: input.prune.budget } : {}) })}`;
        (mi.get(label) ?? mi.set(label, []).get(label)!).push(out.prune.mi1);
        (ks.get(label) ?? ks.set(label, []).get(label)!).push(out.prune.k);
      }
      return out;
    },
  };
  // Every option explicit: the runs are what the candidates say, never the model's calibration.
  const run = async (what: string, settings: ReplaySetting[], options: CandidateOptions): Promise<EvaluationReport> => {
    o.onProgress?.(what);
    runKey = optionsKey(options);
    const config: NodeConfig = { ...o.config, pruneOptions: { ...o.config.pruneOptions, ...(options as Partial<NodeConfig['pruneOptions']>) }, explicitPruneOptions: [...PRUNE_OPTION_KEYS], node: { ...o.config.node, prune: undefined } };
    return evaluateDrives({ drives: o.drives, config, configPath: o.configPath, engine: recording, modelPath: o.modelPath, visualTokens: o.visualTokens, settings, outDir: path.join(o.outDir, 'calibration-runs'), command: 'calibrate', timing: { every: 1, repeats: 0 }, ...(o.log ? { log: o.log } : {}) });
  };
  const row = (r: EvaluationReport, label: string) => r.rows.find((x) => x.label === label)?.all;
  // Results by options key and setting label, so that no setting is inferred twice.
  const results = new Map<string, number | null>();
  const tokensBudget = (tokens: number) => ({ kind: 'tokens' as const, value: tokens });
  const remember = (options: CandidateOptions, r: EvaluationReport, settings: ReplaySetting[]) => {
    for (const s of settings) results.set(`${optionsKey(options)}|${settingLabel(s)}`, row(r, settingLabel(s))?.l2At3sM ?? null);
  };

  // Pass 1: none, constant velocity and the flat schedule at the reference x0 at every budget; MI_1 per frame.
  const flatRef: CandidateOptions = { x0, k0: 0, gamma: 0, scoreRows: 'instruction' };
  const pass1Settings: ReplaySetting[] = [{ policy: 'none' }, ...budgets.map((b) => ({ policy: 'autoprune' as const, budget: tokensBudget(b.tokens) }))];
  const flat = await run('flat schedule (k = 0) at every budget, MI_1 per frame', pass1Settings, flatRef);
  remember(flatRef, flat, pass1Settings.slice(1));
  const cv = row(flat, 'constant velocity')?.l2At3sM ?? null;
  const none = row(flat, 'none')?.l2At3sM ?? null;
  const skill = (l2: number | null | undefined) => (cv !== null && none !== null && l2 != null && cv - none > 0 ? (cv - l2) / (cv - none) : null);

  const norm = budgets.map((b) => {
    const v = [...(mi.get(`${optionsKey(flatRef)}|autoprune tokens:${b.tokens}`) ?? [])].sort((a, c) => a - c);
    if (!v.length) throw new VlaError(ErrorCodes.INPUT, `calibrate: no frame ran autoprune at tokens:${b.tokens} on these drives`);
    const stats = { n: v.length, min: v[0] as number, p10: quantile(v, 0.1), median: quantile(v, 0.5), p90: quantile(v, 0.9), max: v[v.length - 1] as number };
    const centre = stats.median;
    const scale = Math.max((stats.p90 - stats.p10) / 2, 1e-6);
    const ref = { k0: PRUNE_OPTION_DEFAULTS.k0, gamma: PRUNE_OPTION_DEFAULTS.gamma };
    return { ...b, mi1: stats, centre, scale, engine: { x0, k0: ref.k0 + (ref.gamma * centre) / scale, gamma: ref.gamma / scale } };
  });

  // Whether a setting can meet its budget at all (FastV with a late K cannot meet a small one).
  const addon = loadAddon();
  const feasible = (s: SearchSetting): boolean => {
    try {
      const opt = s.options as Record<string, unknown>;
      return addon.schedule({
        policy: s.policy,
        layers: o.layers,
        visualTokens: o.visualTokens,
        budgetTokens: s.tokens,
        mi: norm.find((n) => n.tokens === s.tokens)?.mi1.median ?? 0,
        ...(typeof opt.x0 === 'number' ? { x0: opt.x0 } : {}),
        ...(typeof opt.k0 === 'number' ? { k0: opt.k0 } : {}),
        ...(typeof opt.gamma === 'number' ? { gamma: opt.gamma } : {}),
        ...(typeof opt.recycle === 'boolean' ? { recycle: opt.recycle } : {}),
        ...(typeof opt.fastvLayer === 'number' ? { fastvLayer: opt.fastvLayer } : {}),
        ...(Array.isArray(opt.pdropLayers) ? { pdropLayers: opt.pdropLayers as number[] } : {}),
      }).budgetMet;
    } catch {
      return false;
    }
  };

  // Plan every budget's search, then infer grouped by options (one replay of the drives per group).
  const plans = norm.flatMap((n) => policies.map((policy) => planSearch(policy, n.tokens, searchCandidates(policy, o.layers, n.engine), searchBudget, feasible)));
  const labelOf = (s: SearchSetting) => settingLabel({ policy: s.policy, budget: tokensBudget(s.tokens) });
  const groups = new Map<string, { options: CandidateOptions; settings: ReplaySetting[] }>();
  for (const s of plans.flatMap((p) => p.run)) {
    const k = optionsKey(s.options);
    if (results.has(`${k}|${labelOf(s)}`)) continue;
    const g = groups.get(k) ?? groups.set(k, { options: s.options, settings: [] }).get(k)!;
    if (!g.settings.some((x) => settingLabel(x) === labelOf(s))) g.settings.push({ policy: s.policy, budget: tokensBudget(s.tokens) });
  }
  let gi = 0;
  for (const g of groups.values()) {
    const r = await run(`search ${++gi} of ${groups.size}: ${g.settings.map(settingLabel).join(', ')} with ${JSON.stringify(g.options)}`, g.settings, g.options);
    remember(g.options, r, g.settings);
  }
  const searched = plans.map((p) =>
    finishSearch(
      p,
      p.run.map((s) => {
        const l2 = results.get(`${optionsKey(s.options)}|${labelOf(s)}`) ?? null;
        return { l2At3sM: l2, skill: skill(l2) };
      }),
    ),
  );

  const out: BudgetCalibration[] = norm.map((n) => {
    const per: BudgetCalibration['policies'] = {};
    plans.forEach((p, i) => {
      if (p.tokens === n.tokens) per[p.policy] = searched[i] as PolicyCalibration;
    });
    const ap = per.autoprune?.candidates ?? [];
    const best = (adaptive: boolean) => pickBest(ap.filter((c) => (c.options.k0 !== 0 || c.options.gamma !== 0) === adaptive));
    const [bestAdaptive, bestFlat] = [best(true), best(false)];
    const [adaptiveSkill, flatSkill] = [bestAdaptive?.skill ?? null, bestFlat?.skill ?? null];
    const kv = ks.get(`${optionsKey({ x0, k0: n.engine.k0, gamma: n.engine.gamma, scoreRows: 'instruction' })}|autoprune tokens:${n.tokens}`) ?? [];
    return {
      ...n,
      validation: { flatSkill, adaptiveSkill, adaptiveBeatsFlat: bestAdaptive && bestFlat ? (bestAdaptive.l2At3sM as number) < (bestFlat.l2At3sM as number) : null, kRange: kv.length ? [Math.min(...kv), Math.max(...kv)] : null },
      policies: per,
    };
  });
  const weights = path.join(o.modelPath, 'model.safetensors');
  return {
    format: CALIBRATION_FORMAT,
    version: CALIBRATION_VERSION,
    createdAt: new Date().toISOString(),
    toolVersion: o.toolVersion,
    model: { path: o.modelPath, weightsSha256: existsSync(weights) ? await sha256File(weights) : '', layers: o.layers, visualTokens: o.visualTokens },
    drives: flat.drives.map((d) => ({ bag: path.basename(d.dir), seed: d.seed ?? null, kind: d.kind ?? null, complexity: d.complexity ?? null })),
    frames: flat.drives.reduce((a, d) => a + d.frames, 0),
    searchBudget,
    pruneOptions: { ...o.config.pruneOptions },
    reference: { noneL2At3sM: none, constantVelocityL2At3sM: cv },
    budgets: out,
    notCovered: [
      "PDrop's stage layers are not an option of the engine: only its position re-indexing is searched",
      'cls-prior and random have no free parameter besides the budget: not searched',
      `the search is a fixed grid per policy (src/replay/calibrate.ts, searchCandidates) cut to the first ${searchBudget} settings that meet the budget, not an optimiser`,
      ...policies.length < SEARCHED_POLICIES.length ? [`not searched here: ${SEARCHED_POLICIES.filter((p) => !policies.includes(p)).join(', ')}`] : [],
    ],
    evaluations,
    runSeconds: (performance.now() - t0) / 1000,
  };
}
