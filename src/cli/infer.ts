/** `infer` (one inference on image files) and `demo` (the tiny model on the bundled sample frames). */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Option, type Command } from 'commander';

import type { NativePruneOptions } from '../engine/addon-types.js';
import { Engine, type BackendName, type InferOutput } from '../engine/engine.js';
import type { ImageInput } from '../engine/image.js';
import type { PrunePolicyName } from '../engine/policies.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';
import { DEFAULT_MODEL_DIR, SAMPLE_FRAMES_DIR } from '../util/paths.js';
import { backendOption, budgetOption, ensureDefaultModel, nonNegativeInt, policyOption, pruneOf, threadsOption, type Io } from './common.js';

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

function formatResult(r: InferOutput, instruction: string, model: string): string {
  const lines = [`model: ${model}`, `cameras: ${r.cameras.join(', ')}`, `instruction: ${instruction}`];
  if (r.text !== undefined) lines.push(`text: ${JSON.stringify(r.text)}`);
  if (r.waypoints.length) {
    lines.push('trajectory (ego frame, x forward, y left):');
    lines.push('   t [s]     x [m]     y [m]' + (r.waypoints[0]?.yaw !== undefined ? '  yaw [rad]' : ''));
    for (const w of r.waypoints) {
      lines.push(`  ${w.tS.toFixed(2).padStart(6)}  ${w.x.toFixed(3).padStart(8)}  ${w.y.toFixed(3).padStart(8)}` + (w.yaw !== undefined ? `  ${w.yaw.toFixed(3).padStart(8)}` : ''));
    }
  }
  const t = r.timings;
  lines.push(
    `timings [ms]: decode ${t.decodeMs.toFixed(2)}, tokenize ${t.tokenizeMs.toFixed(2)}, preprocess ${t.preprocessMs.toFixed(2)}, vision ${t.visionMs.toFixed(2)}, ` +
      `prefill ${t.prefillMs.toFixed(2)}, head ${t.headMs.toFixed(2)}, total ${t.totalMs.toFixed(2)}`,
  );
  lines.push(`tokens: prompt ${r.tokens.prompt} (visual ${r.tokens.visual}, text ${r.tokens.text}), generated ${r.tokens.generated}`);
  const p = r.prune;
  if (p.policy !== 'none') {
    lines.push(
      `pruning: ${p.policy}, budget ${p.budget ? `${p.budget.kind}:${p.budget.value}` : 'none'} (${p.budgetMet ? 'met' : 'MISSED'}), ` +
        `avg visual tokens ${p.avgTokens.toFixed(1)} of ${p.nVisual}, prefill FLOPs ${(100 * p.flops / p.flopsUnpruned).toFixed(1)}% of unpruned` +
        (p.policy === 'autoprune' ? `, MI ${p.mi1.toFixed(3)}, k ${p.k.toFixed(3)}` : ''),
    );
    lines.push(`kept per layer: ${p.kept.join(' ')}`);
  }
  return lines.join('\n');
}

function resultJson(r: InferOutput, model: string, backend: string) {
  return {
    model,
    backend,
    head: r.head,
    cameras: r.cameras,
    waypoints: r.waypoints,
    ...(r.text !== undefined ? { text: r.text, tokenIds: r.tokenIds, stopped: r.stopped } : {}),
    timings: r.timings,
    tokens: r.tokens,
    prune: r.prune,
  };
}

async function runInfer(
  io: Io,
  opts: { model: string; images: Array<[string, string]>; instruction: string; json?: boolean; backend: BackendName; threads: number; head?: 'waypoints' | 'text'; maxNewTokens?: number; prune?: NativePruneOptions },
): Promise<void> {
  const engine = await Engine.load(opts.model, { backend: opts.backend, threads: opts.threads });
  try {
    const views: Record<string, ImageInput> = {};
    for (const [name, file] of opts.images) {
      if (views[name]) throw new VlaError(ErrorCodes.ARGS, `camera '${name}' is given twice`);
      views[name] = await readImageFile(file);
    }
    const r = await engine.infer({ views, instruction: opts.instruction, head: opts.head, maxNewTokens: opts.maxNewTokens, prune: opts.prune });
    io.out(opts.json ? JSON.stringify(resultJson(r, opts.model, engine.info.backend)) : formatResult(r, opts.instruction, opts.model));
  } finally {
    await engine.dispose();
  }
}

/** The bundled default: the tiny model (generated on first use) on the sample frames. */
async function runDemo(io: Io, opts: { json?: boolean; backend: BackendName; threads: number; prune?: NativePruneOptions }): Promise<void> {
  await ensureDefaultModel(DEFAULT_MODEL_DIR);
  const instruction = (await readFile(path.join(SAMPLE_FRAMES_DIR, 'instruction.txt'), 'utf8')).trim();
  const images: Array<[string, string]> = ['front', 'front_left', 'front_right'].map((c) => [c, path.join(SAMPLE_FRAMES_DIR, `${c}.jpg`)]);
  await runInfer(io, { model: DEFAULT_MODEL_DIR, images, instruction, json: opts.json, backend: opts.backend, threads: opts.threads, prune: opts.prune });
}

export function registerDemo(program: Command, io: Io): void {
  program
    .command('demo')
    .description('run the tiny model on the bundled sample frames and print the trajectory and timings')
    .option('--json', 'print one JSON object')
    .addOption(backendOption('compute backend', 'auto'))
    .addOption(threadsOption(0))
    .addOption(policyOption('visual-token pruning policy', 'none'))
    .addOption(budgetOption())
    .action(async (o: { json?: boolean; backend: BackendName; threads: number; policy: PrunePolicyName; budget?: string }) => runDemo(io, { ...o, prune: pruneOf(o) }));
}

export function registerInfer(program: Command, io: Io): void {
  program
    .command('infer')
    .description('run one inference on image files')
    .requiredOption('--model <dir>', 'model directory')
    .requiredOption('--image <name=file...>', 'camera name and JPEG/PNG file, once per view')
    .requiredOption('--instruction <text>', 'navigation instruction')
    .addOption(new Option('--head <head>', 'action head (default: the model\'s)').choices(['waypoints', 'text']))
    .option('--max-new-tokens <n>', 'text head: tokens to generate at most', nonNegativeInt('--max-new-tokens'))
    .option('--json', 'print one JSON object')
    .addOption(backendOption('compute backend', 'auto'))
    .addOption(threadsOption(0))
    .addOption(policyOption('visual-token pruning policy', 'none'))
    .addOption(budgetOption())
    .action(async (o: { model: string; image: string[]; instruction: string; head?: 'waypoints' | 'text'; maxNewTokens?: number; json?: boolean; backend: BackendName; threads: number; policy: PrunePolicyName; budget?: string }) =>
      runInfer(io, { ...o, images: parseImageArgs(o.image), prune: pruneOf(o) }),
    );
}
