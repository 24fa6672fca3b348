/**
 * A model's calibration (`<model>/calibration.json`, written by `autoprune-ros calibrate`;
 * docs/model-format.md) as inference uses it: the stored setting of the budget nearest to the
 * requested one (by share of the visual tokens), for the policy that runs, under the options the
 * user gave explicitly. Without a usable file, the reference's values with x0 scaled to the depth.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import type { NativePruneOptions, PrunePolicyName } from './addon-types.js';
import { PRUNE_OPTION_DEFAULTS } from './policies.js';
import { ErrorCodes } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

export const CALIBRATION_FILE = 'calibration.json';
export const CALIBRATION_FORMAT = 'autoprune-ros-calibration';

/** The prune options besides policy and budget (every path can set them; calibration tunes some). */
export const PRUNE_OPTION_KEYS = ['x0', 'k0', 'gamma', 'recycle', 'reindexPositions', 'scoreRows', 'parity', 'fastvLayer', 'pdropLayers'] as const;
export type PruneOptionKey = (typeof PRUNE_OPTION_KEYS)[number];
/** A prune option's value: pdropLayers is a list of layers, the others scalars. */
export type PruneOptionValue = number | boolean | string | readonly number[];

/** The options calibrate searches per policy (what each policy exposes), and so what inference takes from the file. */
export const TUNED_OPTIONS: Readonly<Partial<Record<PrunePolicyName, readonly PruneOptionKey[]>>> = Object.freeze({
  autoprune: ['x0', 'k0', 'gamma', 'scoreRows'],
  fastv: ['fastvLayer', 'reindexPositions'],
  pdrop: ['pdropLayers', 'reindexPositions'],
  'sparsevlm-fixed': ['scoreRows', 'recycle'],
});

/**
 * A prune request as the engine wrapper takes it: the addon's options, and which of the option
 * keys the user set (a CLI flag, a parameter in the user's file). Calibration replaces only the
 * others. Absent: every key present is explicit (an API caller means what it passes).
 */
export type PruneRequest = NativePruneOptions & { explicit?: readonly PruneOptionKey[] };

/** One evaluated setting of the search, with its validation skill (null when it could not run). */
export interface CalibrationCandidate {
  options: Partial<Record<PruneOptionKey, PruneOptionValue>>;
  /** Skill retained at L2@3s (share of the model's gain over constant velocity kept). */
  skill: number | null;
  l2At3sM: number | null;
  /** Why it was not evaluated (e.g. the budget cannot be met with it). */
  skipped?: string;
}

export interface PolicyCalibration {
  /** The options inference applies for this policy at this budget (the best candidate). */
  chosen: Partial<Record<PruneOptionKey, PruneOptionValue>>;
  skill: number | null;
  /** Every candidate tried, in search order (the search is visible). */
  candidates: CalibrationCandidate[];
  note?: string;
}

/** What a stored budget holds, version 1 or 2, as inference reads it. */
interface StoredBudget {
  share: number;
  tokens: number;
  engine?: { x0: number; k0: number; gamma: number };
  policies?: Partial<Record<PrunePolicyName, PolicyCalibration>>;
}

export interface LoadedCalibration {
  path: string;
  version: 1 | 2;
  budgets: StoredBudget[];
}

/** What ran, as results report it: the file's setting, the reference's values, or only the user's. */
export interface CalibrationUse {
  source: 'file' | 'reference' | 'explicit';
  /** The calibration file read (null: none used). */
  path: string | null;
  /** The request's budget as a share of its visual tokens, and the stored budget's share taken. */
  budgetShare: number | null;
  storedShare: number | null;
  /** The options taken from the file or the reference (the user's explicit ones are not listed). */
  applied: Partial<Record<PruneOptionKey, PruneOptionValue>>;
  /** reference: why no file was used ('disabled', 'missing', 'weights mismatch', 'unreadable', 'not calibrated for this policy'). */
  reason?: string;
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Reads DIR/calibration.json for inference: null (with one structured log line) when there is no
 * file, when it is not a calibration, or when it belongs to other weights (VLA_E_CALIBRATION,
 * warned and not used).
 */
export async function loadCalibration(modelDir: string, log?: Logger): Promise<{ calibration: LoadedCalibration | null; reason: string }> {
  const file = path.join(modelDir, CALIBRATION_FILE);
  if (!existsSync(file)) {
    log?.info({ event: 'calibration', source: 'reference', path: null, reason: 'missing' }, `no ${CALIBRATION_FILE} in the model directory: the reference's prune options are used (x0 scaled to the depth); run autoprune-ros calibrate`);
    return { calibration: null, reason: 'missing' };
  }
  let doc: Record<string, unknown>;
  try {
    if (statSync(file).size > 16 << 20) throw new Error('over 16 MiB');
    doc = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    if (doc.format !== CALIBRATION_FORMAT || (doc.version !== 1 && doc.version !== 2) || !Array.isArray(doc.budgets)) throw new Error(`not an ${CALIBRATION_FORMAT} file of version 1 or 2`);
  } catch (err) {
    log?.warn({ event: 'calibration', code: ErrorCodes.CALIBRATION, source: 'reference', path: file, reason: 'unreadable' }, `${file}: ${(err as Error).message}; not used, the reference's prune options are used`);
    return { calibration: null, reason: 'unreadable' };
  }
  const weights = path.join(modelDir, 'model.safetensors');
  const want = (doc.model as { weightsSha256?: unknown } | undefined)?.weightsSha256;
  const have = existsSync(weights) ? await sha256File(weights) : '';
  if (typeof want !== 'string' || want !== have) {
    log?.warn(
      { event: 'calibration', code: ErrorCodes.CALIBRATION, source: 'reference', path: file, reason: 'weights mismatch', fileWeightsSha256: want, weightsSha256: have },
      `${file} was made for other weights (SHA-256 ${String(want).slice(0, 12)}, these are ${have.slice(0, 12)}); not used, the reference's prune options are used: run autoprune-ros calibrate again`,
    );
    return { calibration: null, reason: 'weights mismatch' };
  }
  const budgets = (doc.budgets as StoredBudget[]).filter((b) => typeof b?.share === 'number' && b.share > 0);
  log?.info({ event: 'calibration', source: 'file', path: file, version: doc.version, shares: budgets.map((b) => b.share) }, `prune options from ${file} (the nearest calibrated budget's, where not set explicitly)`);
  return { calibration: { path: file, version: doc.version as 1 | 2, budgets }, reason: '' };
}

/** The stored budget nearest to a share of the visual tokens (the first on a tie). */
export function nearestBudget<B extends { share: number }>(budgets: readonly B[], share: number): B | undefined {
  let best: B | undefined;
  for (const b of budgets) if (!best || Math.abs(b.share - share) < Math.abs(best.share - share)) best = b;
  return best;
}

/** The options a stored budget holds for a policy: version 2's chosen setting, version 1's AutoPrune curve. */
export function storedOptions(b: StoredBudget, policy: PrunePolicyName): Partial<Record<PruneOptionKey, PruneOptionValue>> | undefined {
  const p = b.policies?.[policy];
  if (p) return p.chosen;
  // version 1 (no policies): its normalised curve; in version 2 `engine` is only a record, and a policy not searched is not calibrated
  if (policy === 'autoprune' && b.engine && !b.policies) return { x0: b.engine.x0, k0: b.engine.k0, gamma: b.engine.gamma };
  return undefined;
}

/** The reference's x0 (14.9 of 32 layers) at this depth. */
export function depthScaledX0(layers: number): number {
  return Number(((PRUNE_OPTION_DEFAULTS.x0 * layers) / 32).toFixed(1));
}

/**
 * The options a request runs with: the user's explicit ones, then the calibration's setting for
 * this policy at the nearest budget (or the reference's, x0 scaled to `layers`), then the rest
 * as given. `share` is the request's budget as a share of its visual tokens (null: unknown).
 */
export function resolvePrune(
  prune: PruneRequest,
  calibration: LoadedCalibration | null,
  o: { layers: number; share: number | null; reason: string },
): { prune: NativePruneOptions; use: CalibrationUse } {
  const { explicit, ...native } = prune;
  const given = new Set<string>(explicit ?? PRUNE_OPTION_KEYS.filter((k) => native[k] !== undefined));
  const policy = native.policy ?? 'none';
  const tuned = TUNED_OPTIONS[policy] ?? [];
  const free = tuned.filter((k) => !given.has(k));
  const stored = calibration && o.share !== null ? nearestBudget(calibration.budgets, o.share) : undefined;
  // A policy whose search ran nothing has an empty choice: the reference's then.
  const chosen = stored ? storedOptions(stored, policy) : undefined;
  const fromFile = chosen && Object.keys(chosen).length ? chosen : undefined;
  const applied: CalibrationUse['applied'] = {};
  let source: CalibrationUse['source'];
  let reason: string | undefined;
  if (fromFile) {
    for (const k of free) if (fromFile[k] !== undefined) applied[k] = fromFile[k];
    source = Object.keys(applied).length ? 'file' : tuned.length ? 'explicit' : 'reference';
  } else {
    if (free.includes('x0')) applied.x0 = depthScaledX0(o.layers);
    for (const k of free) if (k !== 'x0') applied[k] = PRUNE_OPTION_DEFAULTS[k];
    source = tuned.length && !free.length ? 'explicit' : 'reference';
    reason = calibration ? (o.share === null ? 'budget share unknown' : 'not calibrated for this policy') : o.reason;
  }
  const use: CalibrationUse = {
    source,
    path: fromFile && calibration ? calibration.path : null,
    budgetShare: o.share,
    storedShare: fromFile && stored ? stored.share : null,
    applied,
    ...(source === 'reference' && reason ? { reason } : {}),
  };
  return { prune: { ...native, ...(applied as Partial<NativePruneOptions>) }, use };
}
