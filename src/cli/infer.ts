/** `infer` (one inference on image files) and `demo` (the tiny model on the bundled sample frames). */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Option, type Command } from 'commander';

import type { NativePruneOptions } from '../engine/addon-types.js';
import { Engine, type BackendName, type InferOutput, type StageTimingsMs } from '../engine/engine.js';
import type { ImageInput } from '../engine/image.js';
import type { PrunePolicyName } from '../engine/policies.js';
import { modelInstruction } from '../model/prompt.js';
import { percentile } from '../replay/latency.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';
import { DEFAULT_MODEL_DIR, SAMPLE_FRAMES_DIR } from '../util/paths.js';
import { addCalibrationFlag, addPruneOptionFlags, backendOption, budgetOption, ensureDefaultModel, finiteNumber, integerAtLeast, nonNegativeInt, policyOption, pruneOf, threadsOption, type Io, type CalibrationFlag, type PruneOptionFlags } from './common.js';

/** A compressed frame is at most this large (a 8192x8192 PNG of noise is ~200 MB). */
const MAX_IMAGE_FILE_BYTES = 256 << 20;

async function readImageFile(file: string): Promise<ImageInput> {
  // Only a regular file, bounded: a directory, a FIFO or /dev/zero is refused by name.
  return { kind: 'compressed', data: await readRegularFile(file, MAX_IMAGE_FILE_BYTES) };
}

function parseImageArgs(pairs: string[]): Array<[string, string]> {
  return pairs.map((p) => {
    const eq = p.indexOf('=');
    if (eq <= 0 || eq === p.length - 1) throw new VlaError(ErrorCodes.ARGS, `--image takes NAME=FILE, got '${p}'`);
    return [p.slice(0, eq), p.slice(eq + 1)];
  });
}

const STAGES = ['decodeMs', 'tokenizeMs', 'preprocessMs', 'visionMs', 'prefillMs', 'headMs', 'engineMs', 'totalMs'] as const;

/** Order statistics of one stage over the timed runs (nearest rank: values that occurred). */
interface StageStats {
  medianMs: number;
  p90Ms: number;
  minMs: number;
  maxMs: number;
}

/** Timings over --repeat runs after --warmup untimed ones. */
export interface TimingStats {
  runs: number;
  warmup: number;
  stages: Record<(typeof STAGES)[number], StageStats>;
  /** Why the figures may not be trusted (a busy machine), or null. */
  caveat: string | null;
}

/** Spread (p90 over median of the total) beyond which a run's timings are called noisy. */
const NOISY_SPREAD = 0.2;

export function timingStats(runs: StageTimingsMs[], warmup: number): TimingStats {
  const stages = Object.fromEntries(
    STAGES.map((k) => {
      const v = runs.map((t) => t[k]).sort((a, b) => a - b);
      return [k, { medianMs: percentile(v, 50), p90Ms: percentile(v, 90), minMs: v[0] as number, maxMs: v[v.length - 1] as number }];
    }),
  ) as TimingStats['stages'];
  const t = stages.totalMs;
  const spread = t.medianMs > 0 ? t.p90Ms / t.medianMs - 1 : 0;
  let caveat: string | null = null;
  if (runs.length >= 5 && spread > NOISY_SPREAD) caveat = `the total varies by ${(100 * spread).toFixed(0)}% between runs (p90 against median): the machine is busy, and differences between settings smaller than that are noise`;
  else if (warmup === 0) caveat = 'no warm-up run: the first inference pays for page faults and caches';
  return { runs: runs.length, warmup, stages, caveat };
}

function formatTimings(st: TimingStats): string[] {
  const f = (v: number) => v.toFixed(2).padStart(8);
  if (st.runs === 1) {
    const s = st.stages;
    return [
      `timings [ms], one run after ${st.warmup} warm-up run${st.warmup === 1 ? '' : 's'} (--repeat N for medians): decode ${s.decodeMs.medianMs.toFixed(2)}, tokenize ${s.tokenizeMs.medianMs.toFixed(2)}, preprocess ${s.preprocessMs.medianMs.toFixed(2)}, vision ${s.visionMs.medianMs.toFixed(2)}, ` +
        `prefill ${s.prefillMs.medianMs.toFixed(2)}, head ${s.headMs.medianMs.toFixed(2)}, total ${s.totalMs.medianMs.toFixed(2)}`,
      ...(st.caveat ? [`note: ${st.caveat}`] : []),
    ];
  }
  const lines = [`timings [ms] over ${st.runs} runs after ${st.warmup} warm-up run${st.warmup === 1 ? '' : 's'}:`, '  stage         median       p90       min       max'];
  for (const k of STAGES) {
    const v = st.stages[k];
    lines.push(`  ${k.replace(/Ms$/, '').padEnd(10)}  ${f(v.medianMs)}  ${f(v.p90Ms)}  ${f(v.minMs)}  ${f(v.maxMs)}`);
  }
  if (st.caveat) lines.push(`note: ${st.caveat}`);
  return lines;
}

function formatResult(r: InferOutput, instruction: string, model: string, st: TimingStats): string {
  const lines = [`model: ${model}`, `cameras: ${r.cameras.join(', ')}`, `instruction: ${instruction}`];
  if (r.text !== undefined) lines.push(`text: ${JSON.stringify(r.text)}`);
  if (r.waypoints.length) {
    lines.push('trajectory (ego frame, x forward, y left):');
    lines.push('   t [s]     x [m]     y [m]' + (r.waypoints[0]?.yaw !== undefined ? '  yaw [rad]' : ''));
    for (const w of r.waypoints) {
      lines.push(`  ${w.tS.toFixed(2).padStart(6)}  ${w.x.toFixed(3).padStart(8)}  ${w.y.toFixed(3).padStart(8)}` + (w.yaw !== undefined ? `  ${w.yaw.toFixed(3).padStart(8)}` : ''));
    }
  }
  lines.push(...formatTimings(st));
  lines.push(`tokens: prompt ${r.tokens.prompt} (visual ${r.tokens.visual}, text ${r.tokens.text}), generated ${r.tokens.generated}`);
  const p = r.prune;
  if (p.policy !== 'none') {
    lines.push(
      `pruning: ${p.policy}, budget ${p.budget ? `${p.budget.kind}:${p.budget.value}` : 'none'} (${p.budgetMet ? 'met' : 'MISSED'}), ` +
        `avg visual tokens ${p.avgTokens.toFixed(1)} of ${p.nVisual}, prefill FLOPs ${(100 * p.flops / p.flopsUnpruned).toFixed(1)}% of unpruned` +
        (p.policy === 'autoprune' ? `, MI ${p.mi1.toFixed(3)}, k ${p.k.toFixed(3)}` : ''),
    );
    lines.push(`kept per layer: ${p.kept.join(' ')}`);
    const c = r.calibration;
    if (c) lines.push(`prune options: ${c.source}${c.path ? ` (${c.path}, budget ${(100 * (c.storedShare ?? 0)).toFixed(0)} % for ${c.budgetShare === null ? '?' : (100 * c.budgetShare).toFixed(1)} %)` : c.reason ? ` (${c.reason})` : ''}${Object.keys(c.applied).length ? `: ${Object.entries(c.applied).map(([k, v]) => `${k} ${typeof v === 'number' ? Number(v.toFixed(4)) : v}`).join(', ')}` : ''}`);
  }
  return lines.join('\n');
}

function resultJson(r: InferOutput, model: string, backend: string, instruction: string, st: TimingStats) {
  const median = Object.fromEntries(STAGES.map((k) => [k, st.stages[k].medianMs])) as unknown as StageTimingsMs;
  return {
    model,
    backend,
    instruction,
    head: r.head,
    cameras: r.cameras,
    waypoints: r.waypoints,
    ...(r.text !== undefined ? { text: r.text, tokenIds: r.tokenIds, stopped: r.stopped } : {}),
    // per stage, the median over the timed runs (the run's own with --repeat 1)
    timings: median,
    timingStats: st,
    tokens: r.tokens,
    prune: r.prune,
    calibration: r.calibration ?? null,
  };
}

interface InferRunOptions {
  model: string;
  images: Array<[string, string]>;
  instruction: string;
  /** Ego speed (m/s) written into the prompt as the node does from odometry. */
  speed?: number;
  json?: boolean;
  backend: BackendName;
  threads: number;
  head?: 'waypoints' | 'text';
  maxNewTokens?: number;
  prune?: NativePruneOptions;
  /** false: --no-calibration. */
  calibration?: boolean;
  repeat: number;
  warmup: number;
}

async function runInfer(io: Io, opts: InferRunOptions): Promise<void> {
  const views: Record<string, ImageInput> = {};
  for (const [name, file] of opts.images) {
    if (views[name]) throw new VlaError(ErrorCodes.ARGS, `camera '${name}' is given twice`);
    views[name] = await readImageFile(file);
  }
  const instruction = modelInstruction(opts.instruction, opts.speed);
  const engine = await Engine.load(opts.model, { backend: opts.backend, threads: opts.threads, calibration: opts.calibration !== false });
  try {
    const input = { views, instruction, head: opts.head, maxNewTokens: opts.maxNewTokens, prune: opts.prune };
    // Warm-up runs are not timed: the first inference pays for page faults of the weights and cold caches.
    for (let i = 0; i < opts.warmup; i++) await engine.infer(input);
    const timings: StageTimingsMs[] = [];
    let r: InferOutput | undefined;
    for (let i = 0; i < opts.repeat; i++) {
      r = await engine.infer(input);
      timings.push(r.timings);
    }
    const st = timingStats(timings, opts.warmup);
    const last = r as InferOutput;
    io.out(opts.json ? JSON.stringify(resultJson(last, opts.model, engine.info.backend, instruction, st)) : formatResult(last, instruction, opts.model, st));
  } finally {
    await engine.dispose();
  }
}

const repeatOption = () => new Option('--repeat <n>', 'timed runs; timings are per-stage medians (and p90) over them').argParser(integerAtLeast('--repeat', 1)).default(1);
const warmupOption = () => new Option('--warmup <n>', 'untimed runs first (the first inference pays for page faults and cold caches)').argParser(nonNegativeInt('--warmup')).default(1);

/** The bundled default: the tiny model (generated on first use) on the sample frames. */
async function runDemo(io: Io, opts: { json?: boolean; backend: BackendName; threads: number; prune?: NativePruneOptions; calibration?: boolean; repeat: number; warmup: number }): Promise<void> {
  await ensureDefaultModel(DEFAULT_MODEL_DIR);
  const instruction = (await readFile(path.join(SAMPLE_FRAMES_DIR, 'instruction.txt'), 'utf8')).trim();
  const images: Array<[string, string]> = ['front', 'front_left', 'front_right'].map((c) => [c, path.join(SAMPLE_FRAMES_DIR, `${c}.jpg`)]);
  await runInfer(io, { model: DEFAULT_MODEL_DIR, images, instruction, json: opts.json, backend: opts.backend, threads: opts.threads, prune: opts.prune, ...(opts.calibration === false ? { calibration: false } : {}), repeat: opts.repeat, warmup: opts.warmup });
}

export function registerDemo(program: Command, io: Io): void {
  const cmd = program
    .command('demo')
    .description('run the tiny model on the bundled sample frames and print the trajectory and timings')
    .option('--json', 'print one JSON object')
    .addOption(backendOption('compute backend', 'auto'))
    .addOption(threadsOption(0))
    .addOption(policyOption('visual-token pruning policy (default: none, or autoprune with --budget)'))
    .addOption(budgetOption())
    .addOption(repeatOption())
    .addOption(warmupOption());
  addCalibrationFlag(addPruneOptionFlags(cmd)).action(async (o: { json?: boolean; backend: BackendName; threads: number; policy?: PrunePolicyName; budget?: string; repeat: number; warmup: number } & PruneOptionFlags & CalibrationFlag) => runDemo(io, { ...o, prune: pruneOf(o) }));
}

export function registerInfer(program: Command, io: Io): void {
  const cmd = program
    .command('infer')
    .description('run one inference on image files')
    .requiredOption('--model <dir>', 'model directory')
    .requiredOption('--image <name=file...>', 'camera name and JPEG/PNG file, once per view')
    .requiredOption('--instruction <text>', 'navigation instruction')
    .option('--speed <mps>', 'ego speed in m/s, written into the prompt as the node does from odometry (the bundled model was trained with it)', finiteNumber('--speed'))
    .addOption(new Option('--head <head>', 'action head (default: the model\'s)').choices(['waypoints', 'text']))
    .option('--max-new-tokens <n>', 'text head: tokens to generate at most', nonNegativeInt('--max-new-tokens'))
    .option('--json', 'print one JSON object')
    .addOption(backendOption('compute backend', 'auto'))
    .addOption(threadsOption(0))
    .addOption(policyOption('visual-token pruning policy (default: none, or autoprune with --budget)'))
    .addOption(budgetOption())
    .addOption(repeatOption())
    .addOption(warmupOption());
  addCalibrationFlag(addPruneOptionFlags(cmd)).action(
    async (o: { model: string; image: string[]; instruction: string; speed?: number; head?: 'waypoints' | 'text'; maxNewTokens?: number; json?: boolean; backend: BackendName; threads: number; policy?: PrunePolicyName; budget?: string; repeat: number; warmup: number } & PruneOptionFlags & CalibrationFlag) =>
      runInfer(io, { ...o, images: parseImageArgs(o.image), prune: pruneOf(o) }),
  );
}
