/**
 * Training data for a driving VLA from the synthetic world: per episode (a scenario seed) a few
 * instants, each with the three camera views as JPEG (exactly as the drive bags encode them),
 * the prompt token ids exactly as the engine builds them from what the node feeds it, and the
 * ground-truth future path (6 waypoints, 0.5 s apart, in the ego frame).
 *
 * Layout of the output directory:
 *   tokenizer.json, tokenizer_config.json  the tiny model's tokenizer (same build)
 *   frames.bin                              all JPEGs concatenated
 *   index.json                              everything else; written last (atomically), so a
 *                                           directory with an index.json is complete
 */
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { buildPrompt, DRIVING_PROMPT, modelInstruction } from '../model/prompt.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { IMAGE_TOKEN, writeTokenizer } from '../model/tokenizer-builder.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { encodeJpeg, JPEG_QUALITY } from './drive.js';
import { CAMERA_YAW_DEG, renderView, type CameraName } from './render.js';
import { egoAt, futureWaypoints, recoveryWaypoints, renderOptionsAt, renderOptionsFor, sampleScenario, seededRandom, simulateScenario, trafficAt, type Complexity, type ScenarioKind } from './scenario.js';

export type Split = 'train' | 'val' | 'test';
export const SPLITS: readonly Split[] = Object.freeze(['train', 'val', 'test']);

/** Episode seeds by split: disjoint ranges, so no episode is in two splits. */
export const SPLIT_SEED_BASE: Readonly<Record<Split, number>> = Object.freeze({ train: 1000, val: 500_000, test: 900_000 });
/** Most episodes a split may have (the ranges stay disjoint). */
export const MAX_EPISODES: Readonly<Record<Split, number>> = Object.freeze({ train: 499_000, val: 400_000, test: 1_000_000 });

export const DATASET_FORMAT = 'autoprune-ros-dataset';
export const DATASET_VERSION = 1;
export const NUM_WAYPOINTS = 6;
export const WAYPOINT_DT_S = 0.5;
/** As src/model/tiny.ts builds the tiny preset's tokenizer. */
const TOKENIZER = { vocabSize: 512, modelMaxLength: 512 } as const;
const MAX_INSTRUCTION_CHARS = 4096; // the engine's limit

export interface DatasetOptions {
  /** Episodes per split. */
  train: number;
  val: number;
  test: number;
  /** Instants per episode, drawn uniformly (seeded) over the episode. */
  framesPerEpisode: number;
  width?: number;
  height?: number;
  /** Camera order of every sample's frames (default front, front_left, front_right: the tiny model's). */
  cameras?: CameraName[];
  /** Recorded as index.json's generator.command (e.g. the command line). */
  command?: string[];
  /** Called after each episode. */
  onProgress?: (episodesDone: number, episodes: number) => void;
  /**
   * Recovery samples (training split only): per episode this many extra instants with the ego
   * displaced off the expert's pose and the path back as the target (recoveryWaypoints in
   * scenario.ts). Default 0: the expert's frames only.
   */
  recovery?: Partial<RecoveryOptions> & { perEpisode: number };
}

export interface RecoveryOptions {
  perEpisode: number;
  /** The lateral displacement is uniform in [-maxLateralM, maxLateralM], m. */
  maxLateralM: number;
  /** The heading error is uniform in [-maxHeadingRad, maxHeadingRad]. */
  maxHeadingRad: number;
  /** The displacement is gone after this long, s. */
  horizonS: number;
}
export const RECOVERY_DEFAULTS: Readonly<Omit<RecoveryOptions, 'perEpisode'>> = Object.freeze({ maxLateralM: 1.2, maxHeadingRad: 0.1, horizonS: 2 });

export interface DatasetSample {
  split: Split;
  episodeSeed: number;
  kind: ScenarioKind;
  complexity: Complexity;
  tS: number;
  instruction: string;
  /** What the node feeds the model: the instruction with the ego speed. */
  modelInstruction: string;
  speedMps: number;
  /** tokenizer.encode(buildPrompt(prompt, modelInstruction, cameras), {addBos: true}), as the engine does. */
  inputIds: number[];
  /** Ego frame at tS (x forward, y left), m, at tS + 0.5 .. 3.0 s. */
  waypoints: Array<[number, number]>;
  /** [offset, length] in frames.bin per camera, in `cameras` order. */
  frames: Array<[number, number]>;
  /** A recovery sample: how far the views' ego is displaced from the expert's pose (absent: on it). */
  recovery?: { lateralM: number; headingRad: number };
}

export interface DatasetIndex {
  format: typeof DATASET_FORMAT;
  version: typeof DATASET_VERSION;
  generator: { tool: string; command: string[] | null; options: Record<string, unknown> };
  cameras: CameraName[];
  width: number;
  height: number;
  numWaypoints: number;
  waypointDtS: number;
  imageTokenId: number;
  bosTokenId: number;
  prompt: { system_prompt: string; prompt_template: string; image_prompt: string; image_token: string };
  splits: Record<Split, { seeds: number[]; episodes: number; samples: number }>;
  samples: DatasetSample[];
}

export interface DatasetResult {
  dir: string;
  episodes: number;
  samples: number;
  framesBytes: number;
  ms: number;
}

/** The episode seeds of a split. */
export function splitSeeds(split: Split, count: number): number[] {
  if (!SPLITS.includes(split)) throw new VlaError(ErrorCodes.ARGS, `unknown split '${split}' (${SPLITS.join(', ')})`);
  if (!Number.isInteger(count) || count < 0 || count > MAX_EPISODES[split]) throw new VlaError(ErrorCodes.ARGS, `${split} episodes must be an integer in [0, ${MAX_EPISODES[split]}], got ${count}`);
  return Array.from({ length: count }, (_, i) => SPLIT_SEED_BASE[split] + i);
}

/** The instants of an episode: uniform over [0, duration] from the episode's own stream, sorted, ms resolution. */
export function episodeInstants(seed: number, durationS: number, count: number): number[] {
  const r = seededRandom(seed, 7_000);
  return Array.from({ length: count }, () => Math.round(r() * durationS * 1000) / 1000).sort((a, b) => a - b);
}

function checkRecovery(r: DatasetOptions['recovery']): RecoveryOptions | undefined {
  if (r === undefined) return undefined;
  const o = { ...RECOVERY_DEFAULTS, ...r };
  if (!Number.isInteger(o.perEpisode) || o.perEpisode < 0 || o.perEpisode > 100) throw new VlaError(ErrorCodes.ARGS, `recovery samples per episode must be an integer in [0, 100], got ${o.perEpisode}`);
  if (!(o.maxLateralM >= 0 && o.maxLateralM <= 3)) throw new VlaError(ErrorCodes.ARGS, `recovery lateral displacement must be in [0, 3] m, got ${o.maxLateralM}`);
  if (!(o.maxHeadingRad >= 0 && o.maxHeadingRad <= 0.5)) throw new VlaError(ErrorCodes.ARGS, `recovery heading error must be in [0, 0.5] rad, got ${o.maxHeadingRad}`);
  if (!(o.horizonS > 0 && o.horizonS <= 3)) throw new VlaError(ErrorCodes.ARGS, `recovery horizon must be in (0, 3] s, got ${o.horizonS}`);
  return o.perEpisode > 0 ? o : undefined;
}

function checkOptions(o: DatasetOptions): { width: number; height: number; cameras: CameraName[] } {
  if (!o || typeof o !== 'object') throw new VlaError(ErrorCodes.ARGS, 'dataset options must be an object');
  for (const split of SPLITS) splitSeeds(split, o[split]); // validates the counts
  if (o.train + o.val + o.test < 1) throw new VlaError(ErrorCodes.ARGS, 'the dataset needs at least one episode');
  if (!Number.isInteger(o.framesPerEpisode) || o.framesPerEpisode < 1 || o.framesPerEpisode > 1000) {
    throw new VlaError(ErrorCodes.ARGS, `frames per episode must be an integer in [1, 1000], got ${o.framesPerEpisode}`);
  }
  const width = o.width ?? 320, height = o.height ?? 180;
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < 16 || v > 2048) throw new VlaError(ErrorCodes.ARGS, `${name} must be an integer in [16, 2048] pixels, got ${v}`);
  }
  const cameras = o.cameras ?? ['front', 'front_left', 'front_right'];
  if (!Array.isArray(cameras) || cameras.length === 0) throw new VlaError(ErrorCodes.ARGS, 'at least one camera is needed');
  for (const c of cameras) if (!(c in CAMERA_YAW_DEG)) throw new VlaError(ErrorCodes.ARGS, `unknown camera '${c}' (${Object.keys(CAMERA_YAW_DEG).join(', ')})`);
  if (new Set(cameras).size !== cameras.length) throw new VlaError(ErrorCodes.ARGS, `cameras repeat: ${cameras.join(', ')}`);
  return { width, height, cameras: [...cameras] };
}

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

/** JPEGs being encoded at once: rendering (this thread) overlaps encoding (sharp's threads). */
const IN_FLIGHT_SAMPLES = 8;

/**
 * Writes a dataset into outDir (created if needed; an existing index.json is removed first, so
 * an interrupted run never looks complete). Deterministic: same options, same bytes.
 */
export async function makeDataset(outDir: string, opts: DatasetOptions): Promise<DatasetResult> {
  const t0 = performance.now();
  const { width, height, cameras } = checkOptions(opts);
  const recovery = checkRecovery(opts.recovery);
  const dir = path.resolve(outDir);
  const indexFile = path.join(dir, 'index.json');
  const io = (err: unknown, file: string) => new VlaError(ErrorCodes.IO, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  try {
    await mkdir(dir, { recursive: true });
    await rm(indexFile, { force: true });
  } catch (err) {
    throw io(err, dir);
  }

  await writeTokenizer(dir, TOKENIZER);
  const tok = await loadTokenizer(dir);
  const imageTokenId = tok.tokenId(IMAGE_TOKEN);
  if (imageTokenId === undefined || tok.bosId === undefined) throw new VlaError(ErrorCodes.TOKENIZER, `${dir}: the tokenizer has no ${IMAGE_TOKEN} or BOS token`);

  const framesFile = path.join(dir, 'frames.bin');
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(framesFile, 'w');
  } catch (err) {
    throw io(err, framesFile);
  }
  const samples: DatasetSample[] = [];
  const splits = {} as DatasetIndex['splits'];
  let offset = 0;
  let episodesDone = 0;
  const episodes = opts.train + opts.val + opts.test;
  // samples whose JPEGs are still being encoded, in order
  const pending: Array<{ sample: DatasetSample; jpegs: Promise<Buffer[]> }> = [];
  const flushOne = async () => {
    const p = pending.shift();
    if (!p) return;
    const jpegs = await p.jpegs;
    for (const j of jpegs) {
      try {
        await fh.write(j, 0, j.length, offset);
      } catch (err) {
        throw io(err, framesFile);
      }
      p.sample.frames.push([offset, j.length]);
      offset += j.length;
    }
    samples.push(p.sample);
  };
  try {
    for (const split of SPLITS) {
      const seeds = splitSeeds(split, opts[split]);
      const perEpisode = opts.framesPerEpisode + (recovery && split === 'train' ? recovery.perEpisode : 0);
      splits[split] = { seeds, episodes: seeds.length, samples: seeds.length * perEpisode };
      for (const seed of seeds) {
        const sc = sampleScenario(seed);
        const sim = simulateScenario(sc);
        if (sc.instruction.length > MAX_INSTRUCTION_CHARS || sc.instruction.includes(IMAGE_TOKEN)) throw new VlaError(ErrorCodes.INTERNAL, `scenario ${seed}: instruction the engine would refuse`);
        // the expert's instants, then (training split only) the recovery samples of the episode
        const instants: Array<{ tS: number; lateralM?: number; headingRad?: number }> = episodeInstants(seed, sc.durationS, opts.framesPerEpisode).map((tS) => ({ tS }));
        if (recovery && split === 'train') {
          const r = seededRandom(seed, 7_001); // its own stream: the expert samples stay as they were
          for (let i = 0; i < recovery.perEpisode; i++) {
            const tS = Math.round(r() * sc.durationS * 1000) / 1000;
            instants.push({ tS, lateralM: round4((2 * r() - 1) * recovery.maxLateralM), headingRad: round4((2 * r() - 1) * recovery.maxHeadingRad) });
          }
        }
        for (const at of instants) {
          const tS = at.tS;
          const speedMps = egoAt(sim, tS).v;
          const instr = modelInstruction(sc.instruction, speedMps);
          // as src/engine/engine.ts: buildPrompt with the model's prompt fields, then encode with BOS
          const inputIds = Array.from(tok.encode(buildPrompt(DRIVING_PROMPT, instr, cameras.length), { addBos: true }));
          const rec = at.lateralM !== undefined && recovery ? recoveryWaypoints(sim, tS, at.lateralM, at.headingRad ?? 0, NUM_WAYPOINTS, WAYPOINT_DT_S, recovery.horizonS) : undefined;
          const sample: DatasetSample = {
            split,
            episodeSeed: seed,
            kind: sc.kind,
            complexity: sc.complexity,
            tS,
            instruction: sc.instruction,
            modelInstruction: instr,
            speedMps,
            inputIds,
            waypoints: (rec ? rec.waypoints : futureWaypoints(sim, tS, NUM_WAYPOINTS, WAYPOINT_DT_S)).map(([x, y]) => [round4(x), round4(y)]),
            frames: [],
            ...(rec ? { recovery: { lateralM: at.lateralM as number, headingRad: at.headingRad as number } } : {}),
          };
          const view = (camera: CameraName) =>
            rec ? renderOptionsFor(sc, rec.pose, (j) => trafficAt(sim, j, tS), tS, camera, width, height) : renderOptionsAt(sc, sim, tS, camera, width, height);
          const jpegs = Promise.all(cameras.map((camera) => encodeJpeg(renderView(view(camera)), JPEG_QUALITY)));
          jpegs.catch(() => undefined); // awaited in order by flushOne
          pending.push({ sample, jpegs });
          if (pending.length >= IN_FLIGHT_SAMPLES) await flushOne();
        }
        opts.onProgress?.(++episodesDone, episodes);
      }
    }
    while (pending.length) await flushOne();
  } finally {
    await fh.close().catch(() => undefined);
  }

  const index: DatasetIndex = {
    format: DATASET_FORMAT,
    version: DATASET_VERSION,
    generator: {
      tool: 'autoprune-ros make-dataset',
      command: opts.command ?? null,
      options: { train: opts.train, val: opts.val, test: opts.test, framesPerEpisode: opts.framesPerEpisode, width, height, cameras, jpegQuality: JPEG_QUALITY, tokenizer: TOKENIZER, ...(recovery ? { recovery } : {}) },
    },
    cameras,
    width,
    height,
    numWaypoints: NUM_WAYPOINTS,
    waypointDtS: WAYPOINT_DT_S,
    imageTokenId,
    bosTokenId: tok.bosId,
    prompt: { system_prompt: DRIVING_PROMPT.system_prompt, prompt_template: DRIVING_PROMPT.prompt_template, image_prompt: DRIVING_PROMPT.image_prompt, image_token: IMAGE_TOKEN },
    splits,
    samples,
  };
  const tmp = `${indexFile}.tmp`;
  try {
    await writeFile(tmp, JSON.stringify(index) + '\n');
    await rename(tmp, indexFile);
  } catch (err) {
    throw io(err, indexFile);
  }
  return { dir, episodes, samples: samples.length, framesBytes: offset, ms: performance.now() - t0 };
}
