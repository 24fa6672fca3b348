import { existsSync } from 'node:fs';
import path from 'node:path';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFile } from '../util/fsafe.js';
import { componentLogger, type Logger } from '../util/logger.js';
import { buildPrompt, DEFAULT_PROMPT, type PromptConfig } from '../model/prompt.js';
import { loadTokenizer, type VlaTokenizer } from '../model/tokenizer.js';
import { loadAddon } from './addon.js';
import type { BudgetSpec, HeadKind, NativeEngine, NativeModelInfo, NativePruneStats, NativeResult, NativeView } from './addon-types.js';
import { loadCalibration, resolvePrune, type CalibrationUse, type LoadedCalibration, type PruneRequest } from './calibration.js';
import { toNativeView, type ImageInput } from './image.js';

export type BackendName = 'cpu' | 'cuda' | 'auto';

export interface EngineOptions {
  backend?: BackendName;
  /** CPU threads; 0 = all cores. */
  threads?: number;
  /** cuda: the GPU's ordinal. */
  device?: number;
  /** cuda: weight matrices on the GPU as the file's half dtype ('auto', F32 files become F16), or forced F16 / BF16. */
  weightDtype?: 'auto' | 'f16' | 'bf16';
  /** cuda: MiB of activation memory reserved at load (0: grown on the first inference and kept). */
  poolMiB?: number;
  /** Activation memory the backend may hold at once, MiB (0: no limit); an inference over it fails with VLA_E_OOM. */
  maxActivationMiB?: number;
  /** Calls waiting behind the running one before new calls are rejected with VLA_E_BUSY. */
  maxQueue?: number;
  /** Where JPEG frames are decoded: in the addon's worker thread when it has libjpeg (default), or with sharp. */
  jpegDecoder?: 'native' | 'sharp';
  /**
   * Read `<dir>/calibration.json` and take its prune options where a request does not set them
   * explicitly (default true); false: the reference's values (parity runs).
   */
  calibration?: boolean;
  logger?: Logger;
}

export interface InferInput {
  /** Views by camera name (any subset of the model's cameras; order follows the model), or an array in camera order. */
  views: Record<string, ImageInput> | ImageInput[];
  instruction: string;
  head?: HeadKind;
  maxNewTokens?: number;
  returnLogits?: boolean;
  returnHidden?: boolean;
  /**
   * Visual-token pruning for this inference; default none. Options not listed in `explicit`
   * (when it is given) come from the model's calibration for this policy and budget.
   */
  prune?: PruneRequest;
}

export interface Waypoint {
  /** Seconds from now. */
  tS: number;
  /** Metres, ego frame: x forward, y left. */
  x: number;
  y: number;
  /** Radians, when the model predicts it. */
  yaw?: number;
}

export interface StageTimingsMs {
  /** JPEG/PNG decoding in TypeScript (0 for raw frames). */
  decodeMs: number;
  tokenizeMs: number;
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  /** Waypoint head, or autoregressive decoding for the text head. */
  headMs: number;
  /** Native total (preprocess to head). */
  engineMs: number;
  /** Wall time of infer(), queueing excluded. */
  totalMs: number;
}

export interface InferOutput {
  head: HeadKind;
  waypoints: Waypoint[];
  /** Text head: the generated text (waypoints are parsed from it where it names them). */
  text?: string;
  tokenIds: number[];
  stopped: boolean;
  cameras: string[];
  timings: StageTimingsMs;
  tokens: { prompt: number; visual: number; text: number; generated: number };
  /** What pruning did: kept tokens per layer and view, MI, slope, FLOPs against the budget. */
  prune: NativePruneStats;
  /** Where the prune options came from (null without pruning): calibration file, reference or the user's. */
  calibration?: CalibrationUse | null;
  /** Backend memory: the most activation bytes held during the inference; device-to-host reads in the prefill. */
  memory: { peakActivationBytes: number; prefillHostReads: number };
  logits?: Float32Array;
  hidden?: Float32Array;
}

export interface ModelInfo extends NativeModelInfo {
  dir: string;
  prompt: PromptConfig & { image_token: string; stop_tokens: string[] };
}

const MAX_INSTRUCTION_CHARS = 4096;

/**
 * A loaded VLA model. Calls are serialised (one inference at a time in native code, the
 * rest queued up to maxQueue); dispose() frees native memory once the running call ends.
 */
export class Engine {
  private native: NativeEngine | undefined;
  private closed: Promise<void> | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private readonly log: Logger;

  private constructor(
    native: NativeEngine,
    readonly tokenizer: VlaTokenizer,
    readonly info: ModelInfo,
    private readonly stopIds: Int32Array,
    private readonly maxQueue: number,
    log: Logger,
    /** JPEG bytes go to the addon undecoded. */
    private readonly nativeJpeg: boolean,
    /** The model's calibration (null: none usable, or turned off; `reason` says which). */
    readonly calibration: { calibration: LoadedCalibration | null; reason: string },
  ) {
    this.native = native;
    this.log = log;
  }

  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    const log = (options.logger ?? componentLogger('engine')).child({ model: dir });
    const addon = loadAddon();
    const backend = options.backend ?? 'auto';
    const t0 = performance.now();
    let native: NativeEngine;
    try {
      native = await addon.load(dir, { backend, threads: options.threads ?? 0, device: options.device ?? 0, weightDtype: options.weightDtype ?? 'auto', poolMiB: options.poolMiB ?? 0, maxActivationMiB: options.maxActivationMiB ?? 0 });
    } catch (err) {
      throw VlaError.from(err);
    }
    try {
      const [tokenizer, prompt] = await Promise.all([loadTokenizer(dir), readPromptConfig(dir)]);
      const nativeInfo = native.info();
      const imageId = tokenizer.tokenId(prompt.image_token);
      if (imageId !== nativeInfo.imageTokenId) {
        throw new VlaError(ErrorCodes.CONFIG, `${dir}: the tokenizer maps ${prompt.image_token} to ${imageId ?? 'nothing'}, config.json says image_token_index ${nativeInfo.imageTokenId}`);
      }
      checkVocabulary(dir, tokenizer, nativeInfo);
      // eos_token_id -1 (or absent) means none; one outside the vocabulary fails above.
      const stops = new Set<number>(nativeInfo.eosId >= 0 ? [nativeInfo.eosId] : []);
      for (const s of prompt.stop_tokens) {
        const id = tokenizer.tokenId(s);
        if (id === undefined) throw new VlaError(ErrorCodes.CONFIG, `${dir}: stop token '${s}' is not in the tokenizer`);
        if (id >= nativeInfo.vocabSize) throw new VlaError(ErrorCodes.CONFIG, `${dir}: stop token '${s}' is id ${id}, outside config.json's vocab_size ${nativeInfo.vocabSize}`);
        stops.add(id);
      }
      const info: ModelInfo = { ...nativeInfo, dir, prompt };
      if (backend !== 'cpu' && nativeInfo.backend !== backend) {
        // auto falling back is what auto is for (info); a named backend that did not come is worth a warning
        log[backend === 'auto' ? 'info' : 'warn']({ requested: backend, backend: nativeInfo.backend, available: addon.backends, reason: addon.cudaUnavailable }, 'backend fallback');
      }
      log.info({ backend: nativeInfo.backend, cpuGemm: nativeInfo.cpuGemm, params: nativeInfo.nParams, cameras: nativeInfo.cameras, head: nativeInfo.head, loadMs: Math.round(performance.now() - t0) }, 'model loaded');
      const nativeJpeg = options.jpegDecoder !== 'sharp' && addon.features?.jpeg === true;
      let calibration: { calibration: LoadedCalibration | null; reason: string } = { calibration: null, reason: 'disabled' };
      if (options.calibration === false) log.info({ event: 'calibration', source: 'reference', path: null, reason: 'disabled' }, "calibration turned off: the reference's prune options are used (x0 scaled to the depth)");
      else calibration = await loadCalibration(dir, log);
      return new Engine(native, tokenizer, info, Int32Array.from(stops), options.maxQueue ?? 8, log, nativeJpeg, calibration);
    } catch (err) {
      native.dispose();
      throw VlaError.from(err, ErrorCodes.CONFIG);
    }
  }

  /**
   * The checks of load() that answer at once, without reading the model: the directory holds a
   * config.json, and a backend asked for by name is in this build and usable here. For callers
   * that must reply synchronously (a ROS parameter change); load() still checks everything.
   */
  static precheck(dir: string, options: Pick<EngineOptions, 'backend'> = {}): void {
    const config = path.join(dir, 'config.json');
    if (!existsSync(config)) throw new VlaError(ErrorCodes.IO, `${config}: cannot open (is this a model directory?)`, { file: config });
    if (options.backend === 'cuda') {
      const reason = loadAddon().cudaUnavailable;
      if (reason) throw new VlaError(ErrorCodes.BACKEND, `backend 'cuda': ${reason}`);
    }
  }

  get cameras(): string[] {
    return this.info.cameras;
  }

  get disposed(): boolean {
    return this.closed !== undefined;
  }

  /** Runs one inference; resolves with the trajectory (or text) and per-stage timings. */
  infer(input: InferInput): Promise<InferOutput> {
    if (this.closed) return Promise.reject(new VlaError(ErrorCodes.DISPOSED, 'the engine was disposed'));
    if (this.queued > this.maxQueue) {
      return Promise.reject(new VlaError(ErrorCodes.BUSY, `engine queue is full (${this.maxQueue} waiting)`));
    }
    this.queued++;
    const run = this.tail.then(
      () => this.run(input),
      () => this.run(input),
    );
    this.tail = run.catch(() => undefined).finally(() => this.queued--);
    return run;
  }

  /**
   * Stops accepting calls; those already accepted complete, then native memory is freed.
   * Resolves once it is. Calling it again returns the same promise.
   */
  dispose(): Promise<void> {
    this.closed ??= this.tail.then(() => {
      this.native?.dispose();
      this.native = undefined;
      this.log.debug('disposed');
    });
    return this.closed;
  }

  /**
   * A request's budget as a share of its visual tokens: tokens directly; a FLOP cap as the
   * tokens the flat AutoPrune schedule keeps under it (null when no schedule meets it).
   */
  private budgetShare(prune: PruneRequest, views: number, promptIds: number): number | null {
    const b = prune.budget;
    const visual = this.info.tokensPerView * views;
    if (!b || visual <= 0) return null;
    if (b.kind === 'tokens') return Math.min(1, b.value / visual);
    try {
      const queries = this.info.head === 'waypoints' ? this.info.numWaypoints : 0;
      const s = loadAddon().schedule({ policy: 'autoprune', layers: this.info.textLayers, visualTokens: visual, budgetFlops: b.value, k0: 0, gamma: 0, hidden: this.info.hidden, ffn: this.info.intermediate, prefixTokens: promptIds - views + queries, textTokens: 0 });
      return Math.min(1, s.avgTokens / visual);
    } catch {
      return null;
    }
  }

  private orderViews(views: InferInput['views']): { names: string[]; images: ImageInput[] } {
    const cams = this.info.cameras;
    if (Array.isArray(views)) {
      if (views.length === 0 || views.length > cams.length) {
        throw new VlaError(ErrorCodes.INPUT, `${views.length} views given, the model takes 1..${cams.length} (${cams.join(', ')})`);
      }
      return { names: cams.slice(0, views.length), images: views };
    }
    if (views === null || typeof views !== 'object') throw new VlaError(ErrorCodes.INPUT, 'views must be an object keyed by camera name or an array');
    for (const name of Object.keys(views)) {
      if (!cams.includes(name)) throw new VlaError(ErrorCodes.INPUT, `unknown camera '${name}' (model cameras: ${cams.join(', ')})`);
    }
    const names = cams.filter((c) => views[c] !== undefined);
    if (names.length === 0) throw new VlaError(ErrorCodes.INPUT, `no views given (model cameras: ${cams.join(', ')})`);
    return { names, images: names.map((n) => views[n] as ImageInput) };
  }

  /**
   * Throws the VLA_E_INPUT every inference would give this instruction: not a string, too long,
   * holding the image token, or a prompt (with every camera's view) longer than the model's
   * positions. The node checks an instruction once, when it arrives.
   */
  checkInstruction(instruction: string, views = this.info.cameras.length): void {
    if (typeof instruction !== 'string') throw new VlaError(ErrorCodes.INPUT, 'instruction must be a string');
    if (instruction.length > MAX_INSTRUCTION_CHARS) {
      throw new VlaError(ErrorCodes.INPUT, `instruction is ${instruction.length} characters, the limit is ${MAX_INSTRUCTION_CHARS}`);
    }
    if (instruction.includes(this.info.prompt.image_token)) {
      // The tokenizer would read it as one more image slot: refuse rather than misalign views.
      throw new VlaError(ErrorCodes.INPUT, `instruction contains the image token ${this.info.prompt.image_token}`);
    }
    const ids = this.tokenizer.encode(buildPrompt(this.info.prompt, instruction, views), { addBos: true });
    const queries = this.info.head === 'waypoints' ? this.info.numWaypoints : this.info.maxNewTokens;
    const n = ids.length - views + views * this.info.tokensPerView + queries;
    if (n > this.info.maxPositions) {
      throw new VlaError(ErrorCodes.INPUT, `the prompt with this instruction is ${n} tokens with ${views} views, over the model's ${this.info.maxPositions} positions; shorten the instruction`);
    }
  }

  private async run(input: InferInput): Promise<InferOutput> {
    const native = this.native;
    if (!native) throw new VlaError(ErrorCodes.DISPOSED, 'the engine was disposed');
    const t0 = performance.now();
    if (typeof input?.instruction !== 'string') throw new VlaError(ErrorCodes.INPUT, 'instruction must be a string');
    if (input.instruction.length > MAX_INSTRUCTION_CHARS) {
      throw new VlaError(ErrorCodes.INPUT, `instruction is ${input.instruction.length} characters, the limit is ${MAX_INSTRUCTION_CHARS}`);
    }
    if (input.instruction.includes(this.info.prompt.image_token)) {
      // The tokenizer would read it as one more image slot: refuse rather than misalign views.
      throw new VlaError(ErrorCodes.INPUT, `instruction contains the image token ${this.info.prompt.image_token}`);
    }
    const { names, images } = this.orderViews(input.views);

    const tDecode = performance.now();
    const views: NativeView[] = await Promise.all(images.map((img, i) => toNativeView(img, `camera '${names[i]}'`, this.nativeJpeg)));
    const decodeMs = performance.now() - tDecode;

    const tTok = performance.now();
    const text = buildPrompt(this.info.prompt, input.instruction, views.length);
    const inputIds = this.tokenizer.encode(text, { addBos: true });
    const tokenizeMs = performance.now() - tTok;

    let prune: PruneRequest | undefined = input.prune;
    let calibration: CalibrationUse | null = null;
    if (prune && prune.policy && prune.policy !== 'none') {
      const resolved = resolvePrune(prune, this.calibration.calibration, { layers: this.info.textLayers, share: this.budgetShare(prune, views.length, inputIds.length), reason: this.calibration.reason });
      prune = resolved.prune;
      calibration = resolved.use;
    } else if (prune) {
      const { explicit: _explicit, ...native } = prune;
      prune = native;
    }

    let r: NativeResult;
    try {
      r = await native.infer({
        inputIds,
        views,
        head: input.head,
        maxNewTokens: input.maxNewTokens,
        stopIds: this.stopIds,
        returnLogits: input.returnLogits,
        returnHidden: input.returnHidden,
        prune,
      });
    } catch (err) {
      throw VlaError.from(err);
    }
    const out: InferOutput = {
      head: r.head,
      waypoints: [],
      tokenIds: Array.from(r.tokens),
      stopped: r.stopped,
      cameras: names,
      timings: {
        decodeMs: decodeMs + (r.timings.decodeMs ?? 0),
        tokenizeMs,
        preprocessMs: r.timings.preprocessMs,
        visionMs: r.timings.visionMs,
        prefillMs: r.timings.prefillMs,
        headMs: r.timings.headMs,
        engineMs: r.timings.totalMs,
        totalMs: performance.now() - t0,
      },
      tokens: { prompt: r.nPromptTokens, visual: r.nVisualTokens, text: r.nTextTokens, generated: r.nGenerated },
      prune: r.prune,
      calibration,
      memory: { peakActivationBytes: r.peakActivationBytes, prefillHostReads: r.prefillHostReads },
    };
    const dt = this.info.waypointDtS;
    if (r.head === 'waypoints') {
      for (let i = 0; i < r.nWaypoints; i++) {
        const w = r.waypoints.subarray(i * r.waypointDim, (i + 1) * r.waypointDim);
        const wp: Waypoint = { tS: (i + 1) * dt, x: w[0] as number, y: w[1] as number };
        if (r.waypointDim > 2) wp.yaw = w[2] as number;
        out.waypoints.push(wp);
      }
    } else {
      out.text = this.tokenizer.decode(r.tokens, { skipSpecial: true });
      out.waypoints = parseWaypoints(out.text, dt);
    }
    // NaN or Inf weights, an absurd image_std, activations that overflow: never a plan.
    const bad = out.waypoints.findIndex((w) => !Number.isFinite(w.x) || !Number.isFinite(w.y) || (w.yaw !== undefined && !Number.isFinite(w.yaw)));
    if (bad >= 0) {
      const w = out.waypoints[bad] as Waypoint;
      throw new VlaError(ErrorCodes.OUTPUT, `the model's waypoint ${bad} is not finite (x ${w.x}, y ${w.y}): NaN/Inf weights or config values (image_mean/std) in ${this.info.dir}?`, { waypoint: bad });
    }
    if (r.logits) out.logits = r.logits;
    if (r.hidden) out.hidden = r.hidden;
    return out;
  }
}

/**
 * The tokenizer and config.json agree on the vocabulary: every id the tokenizer can produce
 * (except the image token, which the model replaces) and the eos/bos ids are rows of the
 * embedding. Otherwise every inference that meets such a token would fail: VLA_E_CONFIG at load.
 */
function checkVocabulary(dir: string, tokenizer: VlaTokenizer, info: NativeModelInfo): void {
  const vocab = info.vocabSize;
  if (info.eosId >= vocab) throw new VlaError(ErrorCodes.CONFIG, `${dir}: eos_token_id ${info.eosId} is outside the vocabulary (vocab_size ${vocab})`);
  if (info.bosId >= vocab) throw new VlaError(ErrorCodes.CONFIG, `${dir}: bos_token_id ${info.bosId} is outside the vocabulary (vocab_size ${vocab})`);
  if (tokenizer.vocabSize <= vocab) return;
  const over = tokenizer.idsFrom(vocab).filter((id) => id !== info.imageTokenId);
  if (over.length) {
    throw new VlaError(ErrorCodes.CONFIG, `${dir}: tokenizer.json has ${over.length} token id(s) from ${Math.min(...over)} up, outside config.json's vocab_size ${vocab} (e.g. '${tokenizer.idToToken(over[0] as number) ?? over[0]}'): tokenizer and model do not match`);
  }
}

/** Parses a budget given as `tokens:64` or `flops:1200` (GFLOP). */
export function parseBudget(spec: string): BudgetSpec {
  const m = /^(tokens|flops):([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$/.exec(spec.trim());
  const value = m ? Number(m[2]) : NaN;
  if (!m || !(value > 0)) throw new VlaError(ErrorCodes.ARGS, `budget must be tokens:<T> or flops:<GFLOP> with a positive number, got '${spec}'`);
  return { kind: m[1] as BudgetSpec['kind'], value };
}

/**
 * Reads waypoints a text-head model speaks, as "(x, y)" or "[x, y]" pairs (optionally a third
 * number, yaw), in order; each is dt apart.
 */
export function parseWaypoints(text: string, dtS: number): Waypoint[] {
  const num = '[-+]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][-+]?\\d+)?';
  const re = new RegExp(`[([]\\s*(${num})\\s*,\\s*(${num})\\s*(?:,\\s*(${num})\\s*)?[)\\]]`, 'g');
  const out: Waypoint[] = [];
  for (const m of text.matchAll(re)) {
    const wp: Waypoint = { tS: (out.length + 1) * dtS, x: Number(m[1]), y: Number(m[2]) };
    if (m[3] !== undefined) wp.yaw = Number(m[3]);
    out.push(wp);
  }
  return out;
}

interface PromptFile extends PromptConfig {
  image_token: string;
  stop_tokens: string[];
}

async function readPromptConfig(dir: string): Promise<PromptFile> {
  const file = path.join(dir, 'config.json');
  let cfg: { vla?: Partial<PromptFile> };
  try {
    cfg = JSON.parse((await readRegularFile(file, 16 << 20, { other: ErrorCodes.CONFIG, missing: ErrorCodes.CONFIG })).toString('utf8')) as { vla?: Partial<PromptFile> };
  } catch (err) {
    throw new VlaError(ErrorCodes.CONFIG, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  const v = cfg.vla ?? {};
  const pick = (key: keyof PromptConfig): string => {
    const val = v[key] ?? DEFAULT_PROMPT[key];
    if (typeof val !== 'string') throw new VlaError(ErrorCodes.CONFIG, `${file}: vla.${key} must be a string`);
    return val;
  };
  const stop = v.stop_tokens ?? [];
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string')) {
    throw new VlaError(ErrorCodes.CONFIG, `${file}: vla.stop_tokens must be an array of strings`);
  }
  return {
    system_prompt: pick('system_prompt'),
    prompt_template: pick('prompt_template'),
    image_prompt: pick('image_prompt'),
    image_token: typeof v.image_token === 'string' ? v.image_token : '<image>',
    stop_tokens: stop,
  };
}
