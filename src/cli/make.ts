/**
 * The generators: `make-tiny-model` (a deterministic generated model), `make-sample-drive` (the
 * synthetic drive bag, or one scenario episode), `make-test-drives` (the held-out test split as
 * bags and a drives.json) and `make-dataset` (the training dataset).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';

import { bagInfoJson } from '../bag/reader.js';
import { makeModel } from '../model/tiny.js';
import { makeDataset, RECOVERY_DEFAULTS, SPLIT_SEED_BASE, splitSeeds } from '../sample/dataset.js';
import { makeSampleDrive, makeScenarioDrive, TEST_DRIVE_ODOM_TAIL_S } from '../sample/drive.js';
import { SCENARIO_KINDS, sampleScenario } from '../sample/scenario.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { nonNegativeInt as count, nonNegativeInt, positiveNumber as positive, type Io } from './common.js';

export function registerMakeTinyModel(program: Command, io: Io): void {
  program
    .command('make-tiny-model')
    .description('write a deterministic generated model (config.json, model.safetensors, tokenizer.json)')
    .requiredOption('--out <dir>', 'output directory')
    .addOption(new Option('--preset <name>', 'size').choices(['tiny', 'mid']).default('tiny'))
    .addOption(new Option('--dtype <dtype>', 'weight dtype (default: F32 for tiny, F16 for mid)').choices(['F32', 'F16', 'BF16']))
    .addOption(new Option('--head <head>', 'default action head').choices(['waypoints', 'text']).default('waypoints'))
    .option('--seed <n>', 'random seed', nonNegativeInt('--seed'), 1)
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; preset: 'tiny' | 'mid'; dtype?: 'F32' | 'F16' | 'BF16'; head: 'waypoints' | 'text'; seed: number; json?: boolean }) => {
      const t0 = performance.now();
      await makeModel(o.out, { preset: o.preset, dtype: o.dtype, head: o.head, seed: o.seed });
      const ms = performance.now() - t0;
      io.out(o.json ? JSON.stringify({ out: o.out, preset: o.preset, seed: o.seed, ms }) : `wrote ${o.preset} model to ${o.out} in ${ms.toFixed(0)} ms`);
    });
}

export function registerMakeSampleDrive(program: Command, io: Io): void {
  program
    .command('make-sample-drive')
    .description('write the deterministic synthetic multi-camera sample drive (rosbag2 MCAP), or with --scenario one generated episode (the quick start drives --scenario 900001)')
    .requiredOption('--out <dir>', 'bag directory to create')
    .option('--duration <s>', 'seconds of driving (default 12; an episode sets its own)', positive('--duration'))
    .option('--camera-hz <hz>', 'camera rate', positive('--camera-hz'), 10)
    .option('--seed <n>', 'textures, traffic colours, timing jitter (default 1; an episode uses its seed)', count('--seed'))
    .option('--scenario <seed>', 'write the generated episode of this scenario seed instead of the fixed drive (test split: 900000 and up)', count('--scenario'))
    .option('--width <px>', 'image width', count('--width'), 320)
    .option('--height <px>', 'image height', count('--height'), 180)
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; duration?: number; cameraHz: number; seed?: number; scenario?: number; width: number; height: number; json?: boolean }) => {
      if (o.scenario !== undefined && (o.duration !== undefined || o.seed !== undefined)) throw new VlaError(ErrorCodes.ARGS, '--scenario sets the duration and the seed: drop --duration and --seed');
      const t0 = performance.now();
      const sc = o.scenario !== undefined ? sampleScenario(o.scenario) : undefined;
      const info = sc
        ? await makeScenarioDrive(o.out, sc, { cameraHz: o.cameraHz, width: o.width, height: o.height, odomTailS: TEST_DRIVE_ODOM_TAIL_S })
        : await makeSampleDrive(o.out, { durationS: o.duration ?? 12, cameraHz: o.cameraHz, seed: o.seed ?? 1, width: o.width, height: o.height });
      const ms = performance.now() - t0;
      const what = sc ? { scenario: { seed: sc.seed, kind: sc.kind, instruction: sc.instruction, complexity: sc.complexity } } : {};
      io.out(
        o.json
          ? JSON.stringify({ ...bagInfoJson(info), ...what, ms })
          : `wrote ${o.out}${sc ? ` (scenario ${sc.seed}: ${sc.kind}, '${sc.instruction}', ${sc.complexity})` : ''}: ${info.messageCount} messages, ${(Number(info.durationNs) / 1e9).toFixed(1)} s, in ${ms.toFixed(0)} ms`,
      );
    });
}

export function registerMakeTestDrives(program: Command, io: Io): void {
  program
    .command('make-test-drives')
    .description('write the first N test-split episodes (or validation ones, --split val) as bags DIR/<split>-<seed>/ and a DIR/drives.json listing them')
    .requiredOption('--out <dir>', 'directory to create the bags in')
    .option('--count <n>', 'episodes', count('--count'), 10)
    .option('--per-kind <k>', 'instead: the first k episodes of every instruction kind (a stratified set)', count('--per-kind'))
    .addOption(new Option('--split <split>', 'test: held-out drives for final tables; val: validation drives for tuning and calibration').choices(['test', 'val']).default('test'))
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; count: number; perKind?: number; split: 'test' | 'val'; json?: boolean }) => {
      if (o.count < 1) throw new VlaError(ErrorCodes.ARGS, '--count must be at least 1');
      if (o.perKind !== undefined && o.perKind < 1) throw new VlaError(ErrorCodes.ARGS, '--per-kind must be at least 1');
      const t0 = performance.now();
      const drives: Array<{ seed: number; bag: string; kind: string; instruction: string; complexity: string; durationS: number }> = [];
      const scenarios: Array<ReturnType<typeof sampleScenario>> = [];
      if (o.perKind === undefined) {
        for (const seed of splitSeeds(o.split, o.count)) scenarios.push(sampleScenario(seed));
      } else {
        // walk the split's seeds in order and keep each kind's first k episodes
        const have = new Map<string, number>();
        const base = SPLIT_SEED_BASE[o.split];
        for (let seed = base; scenarios.length < o.perKind * SCENARIO_KINDS.length && seed < base + 100_000; seed++) {
          const sc = sampleScenario(seed);
          const n = have.get(sc.kind) ?? 0;
          if (n < o.perKind) {
            have.set(sc.kind, n + 1);
            scenarios.push(sc);
          }
        }
      }
      for (const sc of scenarios) {
        const seed = sc.seed;
        const bag = `${o.split}-${seed}`;
        await makeScenarioDrive(path.join(o.out, bag), sc, { odomTailS: TEST_DRIVE_ODOM_TAIL_S });
        drives.push({ seed, bag, kind: sc.kind, instruction: sc.instruction, complexity: sc.complexity, durationS: sc.durationS });
        if (!o.json) io.err(`${bag}: ${sc.kind}, '${sc.instruction}', ${sc.complexity}, ${sc.durationS.toFixed(1)} s`);
      }
      const list = path.join(o.out, 'drives.json');
      try {
        await mkdir(o.out, { recursive: true });
        await writeFile(list, JSON.stringify({ format: 'autoprune-ros-test-drives', version: 1, split: o.split, drives }, null, 2) + '\n');
      } catch (err) {
        throw new VlaError(ErrorCodes.IO, `${list}: ${(err as Error).message}`, { file: list }, { cause: err });
      }
      const ms = performance.now() - t0;
      io.out(o.json ? JSON.stringify({ dir: o.out, split: o.split, drives, ms }) : `wrote ${drives.length} ${o.split === 'val' ? 'validation' : 'test'} drives and ${list} in ${(ms / 1000).toFixed(1)} s`);
    });
}

/** The command line as parsed (commander keeps it on the root command, untyped). */
function commandLine(cmd: Command): string[] {
  let root: Command = cmd;
  while (root.parent) root = root.parent;
  const raw = (root as unknown as { rawArgs?: unknown }).rawArgs;
  return Array.isArray(raw) ? ['autoprune-ros', ...raw.slice(2).map(String)] : ['autoprune-ros', cmd.name()];
}

export function registerMakeDataset(program: Command, io: Io): void {
  program
    .command('make-dataset')
    .description('write a training dataset of synthetic episodes: JPEG views (frames.bin), prompt token ids and future waypoints (index.json), tokenizer')
    .requiredOption('--out <dir>', 'dataset directory')
    .option('--train <n>', 'training episodes (seeds 1000 and up)', count('--train'), 3000)
    .option('--val <n>', 'validation episodes (seeds 500000 and up)', count('--val'), 300)
    .option('--test <n>', 'test episodes (seeds 900000 and up)', count('--test'), 300)
    .option('--frames-per-episode <k>', 'instants per episode', count('--frames-per-episode'), 2)
    .option('--width <px>', 'image width', count('--width'), 320)
    .option('--height <px>', 'image height', count('--height'), 180)
    .option('--recovery-per-episode <k>', 'training split: extra samples per episode with the ego displaced off the expert path and the path back as target (0: none)', count('--recovery-per-episode'), 0)
    .option('--recovery-lateral <m>', 'largest lateral displacement of a recovery sample, m', Number, RECOVERY_DEFAULTS.maxLateralM)
    .option('--recovery-heading <rad>', 'largest heading error of a recovery sample, rad', Number, RECOVERY_DEFAULTS.maxHeadingRad)
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print one JSON object')
    .action(async (o: { out: string; train: number; val: number; test: number; framesPerEpisode: number; width: number; height: number; recoveryPerEpisode: number; recoveryLateral: number; recoveryHeading: number; progress?: boolean; json?: boolean }, cmd: Command) => {
      const showBar = o.progress !== false && !o.json && process.stderr.isTTY === true;
      const bar = showBar ? new cliProgress.SingleBar({ stream: process.stderr, format: 'episodes |{bar}| {value}/{total} | ETA {eta_formatted}', hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
      try {
        bar?.start(o.train + o.val + o.test, 0);
        const r = await makeDataset(o.out, {
          train: o.train,
          val: o.val,
          test: o.test,
          framesPerEpisode: o.framesPerEpisode,
          width: o.width,
          height: o.height,
          ...(o.recoveryPerEpisode > 0 ? { recovery: { perEpisode: o.recoveryPerEpisode, maxLateralM: o.recoveryLateral, maxHeadingRad: o.recoveryHeading } } : {}),
          command: commandLine(cmd),
          onProgress: (done) => bar?.update(done),
        });
        bar?.stop();
        io.out(o.json ? JSON.stringify(r) : `wrote ${r.dir}: ${r.samples} samples from ${r.episodes} episodes, frames.bin ${(r.framesBytes / 1e6).toFixed(1)} MB, in ${(r.ms / 1000).toFixed(1)} s`);
      } finally {
        bar?.stop();
      }
    });
}
