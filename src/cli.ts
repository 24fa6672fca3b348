/**
 * autoprune-ros command line. Subcommands print one JSON object on stdout with --json; a
 * failure exits non-zero with "CODE: message" on stderr.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Command, CommanderError, Option } from 'commander';

import { packageRoot } from './native/addon.js';
import { loadAddon } from './native/addon.js';
import type { NativePruneOptions, PrunePolicyName } from './native/addon-types.js';
import { Engine, parseBudget, type BackendName, type InferOutput } from './native/engine.js';
import type { ImageInput } from './native/image.js';
import { makeModel } from './model/tiny.js';
import { registerReplayCommands } from './replay/cli.js';
import { registerEvaluateCommand } from './replay/evaluate-cli.js';
import { registerDriveCommands } from './sim/cli.js';
import { ErrorCodes, VlaError } from './util/errors.js';

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

const SAMPLE_DIR = path.join(packageRoot, 'assets', 'sample');
const DEFAULT_MODEL_DIR = path.join(packageRoot, 'build', 'models', 'tiny');

function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new VlaError(ErrorCodes.ARGS, `${name} must be a non-negative integer, got '${v}'`);
    return n;
  };
}

async function readImageFile(file: string): Promise<ImageInput> {
  try {
    return { kind: 'compressed', data: await readFile(file) };
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
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
  if (!existsSync(path.join(DEFAULT_MODEL_DIR, 'config.json'))) await makeModel(DEFAULT_MODEL_DIR, { preset: 'tiny' });
  const instruction = (await readFile(path.join(SAMPLE_DIR, 'instruction.txt'), 'utf8')).trim();
  const images: Array<[string, string]> = ['front', 'front_left', 'front_right'].map((c) => [c, path.join(SAMPLE_DIR, `${c}.jpg`)]);
  await runInfer(io, { model: DEFAULT_MODEL_DIR, images, instruction, json: opts.json, backend: opts.backend, threads: opts.threads, prune: opts.prune });
}

export function buildProgram(io: Io, setExit: (code: number) => void = () => undefined): Command {
  const program = new Command()
    .name('autoprune-ros')
    .description('Run a LLaVA-style driving VLA with AutoPrune visual-token pruning; evaluate it by replaying rosbag2 recordings (default: replay the generated sample drive with the tiny model)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()), outputError: () => undefined });
  const backend = () => new Option('--backend <name>', 'compute backend').choices(['cpu', 'cuda', 'auto']).default('auto');
  const threads = () => new Option('--threads <n>', 'CPU threads (0 = all cores)').argParser(int('--threads')).default(0);
  const POLICIES: PrunePolicyName[] = ['none', 'autoprune', 'fastv', 'pdrop', 'sparsevlm-fixed', 'cls-prior', 'random'];
  const policy = () => new Option('--policy <name>', 'visual-token pruning policy').choices(POLICIES).default('none');
  const budget = () => new Option('--budget <spec>', 'pruning budget: tokens:<avg visual tokens per layer> or flops:<prefill GFLOP>');
  const pruneOf = (o: { policy: PrunePolicyName; budget?: string }): NativePruneOptions | undefined => {
    if (o.policy === 'none') return undefined;
    if (!o.budget) throw new VlaError(ErrorCodes.ARGS, `--policy ${o.policy} needs --budget tokens:<T> or flops:<GFLOP>`);
    return { policy: o.policy, budget: parseBudget(o.budget) };
  };

  program
    .command('demo')
    .description('run the tiny model on the bundled sample frames and print the trajectory and timings')
    .option('--json', 'print one JSON object')
    .addOption(backend())
    .addOption(threads())
    .addOption(policy())
    .addOption(budget())
    .action(async (o: { json?: boolean; backend: BackendName; threads: number; policy: PrunePolicyName; budget?: string }) => runDemo(io, { ...o, prune: pruneOf(o) }));

  program
    .command('make-tiny-model')
    .description('write a deterministic generated model (config.json, model.safetensors, tokenizer.json)')
    .requiredOption('--out <dir>', 'output directory')
    .addOption(new Option('--preset <name>', 'size').choices(['tiny', 'mid']).default('tiny'))
    .addOption(new Option('--dtype <dtype>', 'weight dtype (default: F32 for tiny, F16 for mid)').choices(['F32', 'F16', 'BF16']))
    .addOption(new Option('--head <head>', 'default action head').choices(['waypoints', 'text']).default('waypoints'))
    .option('--seed <n>', 'random seed', int('--seed'), 1)
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; preset: 'tiny' | 'mid'; dtype?: 'F32' | 'F16' | 'BF16'; head: 'waypoints' | 'text'; seed: number; json?: boolean }) => {
      const t0 = performance.now();
      await makeModel(o.out, { preset: o.preset, dtype: o.dtype, head: o.head, seed: o.seed });
      const ms = performance.now() - t0;
      io.out(o.json ? JSON.stringify({ out: o.out, preset: o.preset, seed: o.seed, ms }) : `wrote ${o.preset} model to ${o.out} in ${ms.toFixed(0)} ms`);
    });

  program
    .command('infer')
    .description('run one inference on image files')
    .requiredOption('--model <dir>', 'model directory')
    .requiredOption('--image <name=file...>', 'camera name and JPEG/PNG file, once per view')
    .requiredOption('--instruction <text>', 'navigation instruction')
    .addOption(new Option('--head <head>', 'action head (default: the model\'s)').choices(['waypoints', 'text']))
    .option('--max-new-tokens <n>', 'text head: tokens to generate at most', int('--max-new-tokens'))
    .option('--json', 'print one JSON object')
    .addOption(backend())
    .addOption(threads())
    .addOption(policy())
    .addOption(budget())
    .action(async (o: { model: string; image: string[]; instruction: string; head?: 'waypoints' | 'text'; maxNewTokens?: number; json?: boolean; backend: BackendName; threads: number; policy: PrunePolicyName; budget?: string }) =>
      runInfer(io, { ...o, images: parseImageArgs(o.image), prune: pruneOf(o) }),
    );

  const num = (name: string) => (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new VlaError(ErrorCodes.ARGS, `${name} must be a number, got '${v}'`);
    return n;
  };
  program
    .command('schedule')
    .description("AutoPrune's per-layer schedule and prefill FLOPs for a budget, without a model (one JSON object)")
    .option('--layers <n>', 'decoder layers', int('--layers'), 32)
    .option('--visual-tokens <n>', 'visual tokens entering the decoder (all views)', int('--visual-tokens'), 576)
    .requiredOption('--budget <spec>', 'tokens:<T> or flops:<GFLOP>')
    .option('--mi <bits>', 'complexity signal MI_1', num('--mi'), 0)
    .option('--x0 <x>', 'logistic centre', num('--x0'))
    .option('--k0 <k>', 'base slope', num('--k0'))
    .option('--gamma <g>', 'MI sensitivity', num('--gamma'))
    .option('--model <config>', 'take hidden and FFN sizes from a config.json (or model directory)')
    .option('--hidden <d>', 'hidden size', int('--hidden'))
    .option('--ffn <m>', 'FFN size', int('--ffn'))
    .option('--prefix-tokens <n>', 'tokens before the image', int('--prefix-tokens'), 35)
    .option('--text-tokens <n>', 'tokens after the image', int('--text-tokens'), 40)
    .action(async (o: { layers: number; visualTokens: number; budget: string; mi: number; x0?: number; k0?: number; gamma?: number; model?: string; hidden?: number; ffn?: number; prefixTokens: number; textTokens: number }) => {
      const b = parseBudget(o.budget);
      let hidden = o.hidden ?? 4096;
      let ffn = o.ffn ?? 11008;
      let layers = o.layers;
      if (o.model) {
        const file = o.model.endsWith('.json') ? o.model : path.join(o.model, 'config.json');
        let cfg: { text_config?: { hidden_size?: number; intermediate_size?: number; num_hidden_layers?: number } };
        try {
          cfg = JSON.parse(await readFile(file, 'utf8'));
        } catch (err) {
          throw new VlaError(ErrorCodes.CONFIG, `${file}: ${(err as Error).message}`);
        }
        hidden = o.hidden ?? cfg.text_config?.hidden_size ?? 4096;
        ffn = o.ffn ?? cfg.text_config?.intermediate_size ?? 11008;
        layers = cfg.text_config?.num_hidden_layers ?? layers;
      }
      const s = loadAddon().schedule({
        layers,
        visualTokens: o.visualTokens,
        ...(b.kind === 'tokens' ? { budgetTokens: b.value } : { budgetFlops: b.value }),
        mi: o.mi,
        x0: o.x0,
        k0: o.k0,
        gamma: o.gamma,
        hidden,
        ffn,
        prefixTokens: o.prefixTokens,
        textTokens: o.textTokens,
      });
      io.out(JSON.stringify({ layers, visualTokens: o.visualTokens, budget: b, mi: o.mi, hidden, ffn, ...s }));
    });
  registerReplayCommands(program, io, setExit);
  registerEvaluateCommand(program, io, setExit);
  registerDriveCommands(program, io, setExit);
  return program;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[], io: Io = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') }): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;  // --help, --version
      io.err(`${ErrorCodes.ARGS}: ${err.message.replace(/^error: /, '')}`);
      return 2;
    }
    const e = VlaError.from(err);
    io.err(`${e.code}: ${e.message}`);
    return e.code === ErrorCodes.ARGS ? 2 : 1;
  }
}
