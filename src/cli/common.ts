/**
 * What every subcommand shares: the one Io, argument parsers that throw coded errors, the
 * common options (backend, threads, policy, budget) and the bundled default model.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { Option, type Command } from 'commander';

import type { NativePruneOptions } from '../engine/addon-types.js';
import { PRUNE_OPTION_KEYS } from '../engine/calibration.js';
import { parseBudget } from '../engine/engine.js';
import { PDROP_MAX_STAGES, PRUNE_POLICIES, SCORE_ROWS, type PrunePolicyName, type ScoreRowsName } from '../engine/policies.js';
import { makeModel } from '../model/tiny.js';
import { loadParamsFile, overridePruneOptions, type NodeConfig } from '../pipeline/params.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { DEFAULT_MODEL_DIR, resolveModelPath } from '../util/paths.js';

/** Where a command writes: stdout for results, stderr for errors and progress lines. */
export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const STDIO: Io = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

/** Sets the process's exit status from inside an action (commander resolves actions without one). */
export type SetExit = (code: number) => void;

/** Exit status of a run that was interrupted (as a shell reports SIGINT). */
export const EXIT_INTERRUPTED = 130;

export function nonNegativeInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new VlaError(ErrorCodes.ARGS, `${name} must be a non-negative integer, got '${v}'`);
    return n;
  };
}

export function integerAtLeast(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new VlaError(ErrorCodes.ARGS, `${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
}

/**
 * A list of layer indices, "a,b,c": 1..max non-negative integers, strictly increasing (their
 * range against the model's depth is the engine's to check).
 */
export function layerList(name: string, max: number) {
  return (v: string): number[] => {
    const parts = v.split(',').map((x) => x.trim());
    if (!v.trim() || parts.length > max || parts.some((x) => !/^\d+$/.test(x))) {
      throw new VlaError(ErrorCodes.ARGS, `${name} must be 1 to ${max} comma-separated non-negative integer layer indices (e.g. 3,7,11), got '${v}'`);
    }
    const layers = parts.map(Number);
    if (layers.some((l, i) => i > 0 && l <= (layers[i - 1] as number))) throw new VlaError(ErrorCodes.ARGS, `${name} must be strictly increasing, got '${v}'`);
    return layers;
  };
}

export function finiteNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new VlaError(ErrorCodes.ARGS, `${name} must be a number, got '${v}'`);
    return n;
  };
}

export function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new VlaError(ErrorCodes.ARGS, `${name} must be a positive number, got '${v}'`);
    return n;
  };
}

export const BACKENDS = ['cpu', 'cuda', 'auto'] as const;

/** --backend; without dflt the option stays unset (replay and evaluate then use the config's). */
export function backendOption(description: string, dflt?: 'auto'): Option {
  const o = new Option('--backend <name>', description).choices(BACKENDS);
  return dflt ? o.default(dflt) : o;
}

export function threadsOption(dflt?: number): Option {
  const o = new Option('--threads <n>', 'CPU threads (0 = all cores)').argParser(nonNegativeInt('--threads'));
  return dflt === undefined ? o : o.default(dflt);
}

/** --policy, choices from PRUNE_POLICIES; without dflt the option stays unset (replay then uses the config's). */
export function policyOption(description: string, dflt?: PrunePolicyName): Option {
  const o = new Option('--policy <name>', description).choices(PRUNE_POLICIES);
  return dflt ? o.default(dflt) : o;
}

/** The bag size limits (src/bag/limits.ts), in MiB. */
export function maxChunkOption(): Option {
  return new Option('--max-chunk-mib <n>', 'largest MCAP chunk (decompressed) or record a bag may hold, MiB (default 128)').argParser(positiveNumber('--max-chunk-mib'));
}
export function maxMessageOption(): Option {
  return new Option('--max-message-mib <n>', 'largest message a bag may hold, MiB (default 128)').argParser(positiveNumber('--max-message-mib'));
}
export function maxDb3Option(): Option {
  return new Option('--max-db3-mib <n>', 'largest .db3 file read (held in memory), MiB (default 1024)').argParser(positiveNumber('--max-db3-mib'));
}

export function budgetOption(description = 'pruning budget: tokens:<avg visual tokens per layer> or flops:<prefill GFLOP>; alone, it implies --policy autoprune'): Option {
  return new Option('--budget <spec>', description);
}

/** What --budget alone means: the project's own policy. */
export const POLICY_OF_A_BARE_BUDGET: PrunePolicyName = 'autoprune';

/**
 * The prune options of --policy and --budget: no policy and no budget is no pruning, a budget
 * alone implies AutoPrune, a policy other than none needs a budget, and none takes none.
 */
export function pruneOf(o: { policy?: PrunePolicyName; budget?: string } & PruneOptionFlags): NativePruneOptions | undefined {
  const policy = o.policy ?? (o.budget !== undefined ? POLICY_OF_A_BARE_BUDGET : 'none');
  const options = pruneOptionsOf(o);
  if (policy === 'none') {
    if (o.budget !== undefined) throw new VlaError(ErrorCodes.ARGS, '--policy none prunes nothing and takes no --budget');
    if (Object.keys(options).length) throw new VlaError(ErrorCodes.ARGS, `pruning options (${Object.keys(options).join(', ')}) need a pruning policy and --budget`);
    return undefined;
  }
  if (o.budget === undefined) throw new VlaError(ErrorCodes.ARGS, `--policy ${policy} needs --budget tokens:<T> or flops:<GFLOP>`);
  return { policy, budget: parseBudget(o.budget), ...options };
}

/** The bundled default model is generated on first use; any other model must exist. */
export async function ensureDefaultModel(modelDir: string): Promise<void> {
  if (path.resolve(modelDir) === DEFAULT_MODEL_DIR && !existsSync(path.join(DEFAULT_MODEL_DIR, 'config.json'))) await makeModel(DEFAULT_MODEL_DIR, { preset: 'tiny' });
}

/** A path as the user would type it: relative to the working directory when under it, else absolute. */
export function shortPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : path.resolve(p);
}


/** The prune-option flags as commander parses them (undefined: not given). */
export type PruneOptionFlags = Pick<NativePruneOptions, (typeof PRUNE_OPTION_KEYS)[number]>;

/**
 * The options besides policy and budget that reach the engine (docs/autoprune.md): on infer,
 * replay, evaluate and calibrate alike. Unset flags leave the config's (or the engine's) value.
 */
export function addPruneOptionFlags(cmd: Command): Command {
  return cmd
    .option('--x0 <x>', 'AutoPrune logistic centre', finiteNumber('--x0'))
    .option('--k0 <k>', 'AutoPrune base slope', finiteNumber('--k0'))
    .option('--gamma <g>', 'AutoPrune MI sensitivity', finiteNumber('--gamma'))
    .option('--recycle', 'merge the best pruned tokens into recycled tokens (DPC-kNN; autoprune, sparsevlm-fixed)')
    .option('--no-recycle', 'drop pruned tokens (the default)')
    .option('--reindex-positions', 're-index RoPE positions after each compaction')
    .option('--no-reindex-positions', 'keep the original RoPE positions (the default)')
    .addOption(new Option('--score-rows <rows>', 'rows whose attention scores the visual tokens (autoprune, sparsevlm-fixed; default instruction)').choices(SCORE_ROWS))
    .option('--parity', "the reference's behaviour: re-indexing (not fastv), recycling, tail rows, its DPC-kNN tie rule")
    .option('--fastv-layer <K>', "FastV's K: one drop after layer K-1", integerAtLeast('--fastv-layer', 1))
    .option('--pdrop-layers <a,b,c>', "PDrop's stage layers, 0-based (each stage prunes after its layer; default: after L/4, L/2, 3L/4)", layerList('--pdrop-layers', PDROP_MAX_STAGES));
}

/** --no-calibration (commander: calibration false when given). */
export interface CalibrationFlag {
  calibration?: boolean;
}

/**
 * --no-calibration: the model's calibration.json is not read and the options the user leaves
 * unset take the reference's values (x0 scaled to the depth), for parity runs.
 */
export function addCalibrationFlag(cmd: Command): Command {
  return cmd.option('--no-calibration', "do not take unset prune options from the model's calibration.json: the reference's values (parity runs)");
}

/** The prune options the flags set (only those given). */
export function pruneOptionsOf(o: PruneOptionFlags): Partial<NativePruneOptions> {
  const r: Partial<NativePruneOptions> = {};
  for (const k of PRUNE_OPTION_KEYS) if (o[k] !== undefined) (r as Record<string, unknown>)[k] = o[k];
  return r;
}

/**
 * A node parameter file as replay, evaluate and calibrate run it: --model, --backend,
 * --threads and --no-calibration over the file's values, the model path resolved, then the prune-option flags.
 */
export function loadCliConfig(configFile: string, o: PruneOptionFlags & CalibrationFlag & { model?: string; backend?: string; threads?: number }): NodeConfig {
  const overrides: Record<string, unknown> = {};
  if (o.calibration === false) overrides.use_calibration = false;
  if (o.model) overrides.model_path = o.model;
  if (o.backend) overrides.backend = o.backend;
  if (o.threads !== undefined) overrides.threads = o.threads;
  const config = loadParamsFile(configFile, overrides);
  config.engine.modelPath = resolveModelPath(config.engine.modelPath);
  overridePruneOptions(config, pruneOptionsOf(o));
  return config;
}
