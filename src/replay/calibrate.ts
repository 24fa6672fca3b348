/**
 * AutoPrune's calibration for one model on validation drives (docs/autoprune.md, "Calibration";
 * the file's format: docs/model-format.md). What it does today:
 *  - measures MI_1 (the complexity signal) on every validation frame at each budget, with the
 *    flat schedule (k0 = gamma = 0), and the flat schedule's skill retained;
 *  - normalises MI_1 per budget: centre = the median, scale = half the 10-90 % range, so that
 *    k = max(k0 - gamma (MI_1 - centre) / scale, 0) with the reference's k0 = 0.4 and gamma = 0.2
 *    moves across the model's actual MI range (0.2 at the 90th percentile, 0.6 at the 10th)
 *    instead of being 0 on every frame; the engine takes the equivalent k0' = k0 + gamma centre /
 *    scale and gamma' = gamma / scale; x0 is the reference's 14.9 of 32 layers scaled to the depth;
 *  - runs that adaptive schedule on the same frames and says whether it beats the flat one.
 * Not yet: a search over shapes and scoring rows, tuning the baselines with the same budget,
 * and taking the calibrated values by default at inference.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';

import type { InferInput, InferOutput } from '../engine/engine.js';
import { PRUNE_OPTION_DEFAULTS } from '../engine/policies.js';
import type { NodeConfig } from '../pipeline/params.js';
import { SPLIT_SEED_BASE } from '../sample/dataset.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { evaluateDrives, type DriveEntry, type EvaluationReport } from './evaluate.js';
import { settingLabel, type ReplayEngine } from './replay.js';

export const CALIBRATION_FORMAT = 'autoprune-ros-calibration';
export const CALIBRATION_VERSION = 1;

export interface BudgetCalibration {
  /** The budget as a share of the visual tokens (0.33) and as tokens (average per layer). */
  share: number;
  tokens: number;
  /** MI_1 over the validation frames (flat schedule), bits. */
  mi1: { n: number; min: number; p10: number; median: number; p90: number; max: number };
  /** The normalisation: z = (MI_1 - centre) / scale. */
  centre: number;
  scale: number;
  /** What the engine takes (x0, k0, gamma of k = max(k0 - gamma MI_1, 0)). */
  engine: { x0: number; k0: number; gamma: number };
  /** Skill retained at L2@3s on the validation frames (share of the model's gain over constant velocity kept). */
  validation: { flatSkill: number | null; adaptiveSkill: number | null; adaptiveBeatsFlat: boolean | null; kRange: [number, number] | null };
}

export interface CalibrationFile {
  format: typeof CALIBRATION_FORMAT;
  version: typeof CALIBRATION_VERSION;
  createdAt: string;
  toolVersion: string;
  model: { path: string; weightsSha256: string; layers: number; visualTokens: number };
  drives: Array<{ bag: string; seed: number | null; kind: string | null; complexity: string | null }>;
  frames: number;
  /** The options besides the curve every run used (positions, recycling, scoring rows). */
  pruneOptions: Record<string, unknown>;
  budgets: BudgetCalibration[];
  /** What this calibration does not cover yet (said, not hidden). */
  notCovered: string[];
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

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface CalibrateOptions {
  drives: DriveEntry[];
  config: NodeConfig;
  configPath: string;
  engine: ReplayEngine & { info: { nParams: number } };
  modelPath: string;
  layers: number;
  visualTokens: number;
  /** Shares of the visual tokens, e.g. [0.33, 0.22, 0.11]. */
  shares: number[];
  outDir: string;
  toolVersion: string;
  log?: Logger;
  onProgress?: (what: string) => void;
}

/** The reference's x0 (14.9 of 32 layers) at this depth. */
export function depthScaledX0(layers: number): number {
  return Number(((PRUNE_OPTION_DEFAULTS.x0 * layers) / 32).toFixed(1));
}

export async function calibrate(o: CalibrateOptions): Promise<CalibrationFile> {
  refuseTestDrives(o.drives);
  const t0 = performance.now();
  const x0 = depthScaledX0(o.layers);
  const budgets = o.shares.map((share) => ({ share, tokens: Math.max(1, Math.round(share * o.visualTokens)) }));
  // MI_1 and k of every autoprune frame, by setting label.
  const mi = new Map<string, number[]>();
  const ks = new Map<string, number[]>();
  const recording: ReplayEngine & { info: { nParams: number } } = {
    cameras: o.engine.cameras,
    info: o.engine.info,
    infer: async (input: InferInput): Promise<InferOutput> => {
      const out = await o.engine.infer(input);
      if (input.prune?.policy === 'autoprune' && out.prune.kept.length) {
        const label = settingLabel({ policy: 'autoprune', ...(input.prune.budget ? { budget: input.prune.budget } : {}) });
        (mi.get(label) ?? mi.set(label, []).get(label)!).push(out.prune.mi1);
        (ks.get(label) ?? ks.set(label, []).get(label)!).push(out.prune.k);
      }
      return out;
    },
  };
  const run = async (what: string, settings: Parameters<typeof evaluateDrives>[0]['settings'], curve: { x0: number; k0: number; gamma: number }): Promise<EvaluationReport> => {
    o.onProgress?.(what);
    const config: NodeConfig = { ...o.config, pruneOptions: { ...o.config.pruneOptions, ...curve }, node: { ...o.config.node, prune: undefined } };
    return evaluateDrives({ drives: o.drives, config, configPath: o.configPath, engine: recording, modelPath: o.modelPath, visualTokens: o.visualTokens, settings, outDir: path.join(o.outDir, 'calibration-runs'), command: 'calibrate', timing: { every: 1, repeats: 0 }, ...(o.log ? { log: o.log } : {}) });
  };
  // Pass 1: none, constant velocity and the flat schedule at every budget; MI_1 per frame.
  const flat = await run(
    'flat schedule (k = 0) at every budget, MI_1 per frame',
    [{ policy: 'none' }, ...budgets.map((b) => ({ policy: 'autoprune' as const, budget: { kind: 'tokens' as const, value: b.tokens } }))],
    { x0, k0: 0, gamma: 0 },
  );
  const row = (r: EvaluationReport, label: string) => r.rows.find((x) => x.label === label)?.all;
  const cv = row(flat, 'constant velocity')?.l2At3sM ?? null;
  const none = row(flat, 'none')?.l2At3sM ?? null;
  const skill = (l2: number | null | undefined) => (cv !== null && none !== null && l2 != null && cv - none > 0 ? (cv - l2) / (cv - none) : null);
  const out: BudgetCalibration[] = [];
  for (const b of budgets) {
    const label = `autoprune tokens:${b.tokens}`;
    const v = [...(mi.get(label) ?? [])].sort((a, c) => a - c);
    if (!v.length) throw new VlaError(ErrorCodes.INPUT, `calibrate: no frame ran autoprune at tokens:${b.tokens} on these drives`);
    const stats = { n: v.length, min: v[0] as number, p10: quantile(v, 0.1), median: quantile(v, 0.5), p90: quantile(v, 0.9), max: v[v.length - 1] as number };
    const centre = stats.median;
    const scale = Math.max((stats.p90 - stats.p10) / 2, 1e-6);
    const ref = { k0: PRUNE_OPTION_DEFAULTS.k0, gamma: PRUNE_OPTION_DEFAULTS.gamma };
    const engine = { x0, k0: ref.k0 + (ref.gamma * centre) / scale, gamma: ref.gamma / scale };
    // Pass 2: the adaptive schedule with the normalised MI, same frames.
    ks.delete(label);
    const adaptive = await run(`adaptive schedule at tokens:${b.tokens}`, [{ policy: 'autoprune', budget: { kind: 'tokens', value: b.tokens } }], engine);
    const kv = ks.get(label) ?? [];
    const flatSkill = skill(row(flat, label)?.l2At3sM);
    const adaptiveSkill = skill(row(adaptive, label)?.l2At3sM);
    out.push({
      ...b,
      mi1: stats,
      centre,
      scale,
      engine,
      validation: { flatSkill, adaptiveSkill, adaptiveBeatsFlat: flatSkill !== null && adaptiveSkill !== null ? adaptiveSkill > flatSkill : null, kRange: kv.length ? [Math.min(...kv), Math.max(...kv)] : null },
    });
  }
  const weights = path.join(o.modelPath, 'model.safetensors');
  return {
    format: CALIBRATION_FORMAT,
    version: CALIBRATION_VERSION,
    createdAt: new Date().toISOString(),
    toolVersion: o.toolVersion,
    model: { path: o.modelPath, weightsSha256: existsSync(weights) ? await sha256File(weights) : '', layers: o.layers, visualTokens: o.visualTokens },
    drives: flat.drives.map((d) => ({ bag: path.basename(d.dir), seed: d.seed ?? null, kind: d.kind ?? null, complexity: d.complexity ?? null })),
    frames: flat.drives.reduce((a, d) => a + d.frames, 0),
    pruneOptions: { ...o.config.pruneOptions },
    budgets: out,
    notCovered: [
      'no search over curve shapes and scoring rows: the normalisation above with the reference k0 and gamma is the one adaptive setting tried',
      "the baselines' free parameters (FastV's layer, PDrop's stages, SparseVLM's schedule) are not tuned",
      'inference does not take these values by default: pass --x0/--k0/--gamma (or autoprune_x0/_k0/_gamma) from budgets[].engine',
    ],
    runSeconds: (performance.now() - t0) / 1000,
  };
}
