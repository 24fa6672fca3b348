/**
 * The raw contract of the native addon (native/binding/addon.cpp). Only engine.ts uses it.
 * Errors thrown or rejected by the addon carry `code` (VLA_E_*).
 */
import type { PrunePolicyName, ScoreRowsName } from './policies.js';

export type { PrunePolicyName, ScoreRowsName };

export type PixelEncoding = 'rgb8' | 'bgr8' | 'rgba8' | 'bgra8' | 'mono8';
export type HeadKind = 'waypoints' | 'text';

export interface NativeView {
  data: Uint8Array; // zero-copy: must stay unchanged until the promise settles
  width: number;
  height: number;
  step: number; // bytes per row
  /** 'jpeg': compressed bytes the addon decodes on its worker thread (features.jpeg); width, height, step 0. */
  encoding: PixelEncoding | 'jpeg';
  /** Names the view in decode errors (e.g. "camera 'front'"). */
  label?: string;
}

/** One entry of the addon's `policies`: the native registry of pruning policies. */
export interface NativePolicyInfo {
  name: PrunePolicyName;
  description: string;
}

/** tokens: average visual tokens per decoder layer (T); flops: a cap on prefill GFLOP. */
export interface BudgetSpec {
  kind: 'tokens' | 'flops';
  value: number;
}

export interface NativePruneOptions {
  policy?: PrunePolicyName;
  budget?: BudgetSpec;
  x0?: number;
  k0?: number;
  gamma?: number;
  /** DPC-kNN recycling of pruned tokens (autoprune, sparsevlm-fixed); default false. */
  recycle?: boolean;
  /** Re-index RoPE positions 0..n-1 after each compaction; default false (original positions). */
  reindexPositions?: boolean;
  /** Rows that score the visual tokens (autoprune, sparsevlm-fixed); default 'instruction'. */
  scoreRows?: ScoreRowsName;
  /** The reference's behaviour: re-indexing (not FastV), recycling, tail rows, its DPC-kNN tie rule; overrides the three above. */
  parity?: boolean;
  padMask?: boolean;
  fastvLayer?: number;
  /** PDrop's stage layers, 0-based (each stage prunes after its layer), 1..8 strictly increasing in 0..L-2; empty or absent: the default stages. */
  pdropLayers?: readonly number[];
  seed?: number;
}

export interface NativePruneStats {
  policy: PrunePolicyName;
  nVisual: number;
  /** Visual tokens after each decoder layer (merged included). */
  kept: number[];
  merged: number[];
  /** [layer][view]: original tokens of each view kept. */
  keptPerView: number[][];
  /** With returnKeptIndex: [layer] the visual rows after the layer as index view * N_p + patch (-1: merged), in sequence order. */
  keptIndex?: number[][];
  mi0: number;
  mi1: number;
  k: number;
  scale: number;
  targetTokens: number;
  avgTokens: number;
  flops: number;
  flopsUnpruned: number;
  budget?: BudgetSpec;
  budgetMet: boolean;
  /** The options the prefill ran with (parity resolved into recycle, reindexPositions, scoreRows). */
  options?: { x0: number; k0: number; gamma: number; recycle: boolean; reindexPositions: boolean; scoreRows: ScoreRowsName; parity: boolean; fastvLayer: number; pdropLayers: readonly number[] };
}

export interface NativeScheduleOptions {
  /** Default 'autoprune'. */
  policy?: PrunePolicyName;
  layers?: number;
  visualTokens?: number;
  budgetTokens?: number;
  budgetFlops?: number;
  mi?: number;
  x0?: number;
  k0?: number;
  gamma?: number;
  hidden?: number;
  ffn?: number;
  prefixTokens?: number;
  textTokens?: number;
  recycle?: boolean;
  parity?: boolean;
  fastvLayer?: number;
  pdropLayers?: readonly number[];
}

/** What the engine would do (the prefill's own planning): 'none' plans when the budget allows every token. */
export interface NativeSchedule {
  policy: PrunePolicyName;
  /** False when the budget allows every token: nothing is pruned. */
  prunes: boolean;
  /** The policy's solved free parameter (autoprune: scale; fastv: tokens kept; pdrop: lambda; sparsevlm-fixed: factor; cls-prior, random: tokens kept). */
  parameter: number;
  targetTokens: number;
  /** Visual tokens entering layer 0 (fewer after a pre-LLM selection). */
  entering: number;
  k: number;
  scale: number;
  n1: number;
  kept: number[];
  keepFrac: number[];
  avgTokens: number;
  flops: number;
  flopsUnpruned: number;
  relFlops: number;
  budgetMet: boolean;
}

export interface NativeRequest {
  inputIds: Int32Array; // one imageTokenId per view, camera order
  views: NativeView[];
  head?: HeadKind;
  maxNewTokens?: number;
  stopIds?: Int32Array;
  returnLogits?: boolean;
  returnHidden?: boolean;
  /** Report prune.keptIndex (one device-to-host read per layer: tests, the reference check). */
  returnKeptIndex?: boolean;
  prune?: NativePruneOptions;
}

export interface NativeTimings {
  /** JPEG decoding on the worker thread (0 without JPEG views). */
  decodeMs: number;
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  headMs: number;
  totalMs: number;
}

export interface NativeResult {
  head: HeadKind;
  waypoints: Float32Array; // [nWaypoints * waypointDim]
  nWaypoints: number;
  waypointDim: number;
  tokens: Int32Array;
  stopped: boolean;
  timings: NativeTimings;
  nPromptTokens: number;
  nVisualTokens: number;
  nTextTokens: number;
  nGenerated: number;
  /** The most activation memory the backend held during this inference. */
  peakActivationBytes: number;
  /** Device-to-host reads in the vision tower and prefill (syncs on the GPU): 2, 3 with autoprune. */
  prefillHostReads: number;
  logits?: Float32Array;
  hidden?: Float32Array;
  prune: NativePruneStats;
}

export interface NativeModelInfo {
  backend: string;
  /** What the CPU's matrix products run on: the BLAS loaded at run time (e.g. "openblas 0.3.21 SkylakeX"), or "builtin". */
  cpuGemm: string;
  nParams: number;
  weightBytes: number;
  imageTokenId: number;
  imageSize: number;
  patchSize: number;
  tokensPerView: number;
  visionLayers: number;
  textLayers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  vocabSize: number;
  bosId: number;
  eosId: number;
  maxPositions: number;
  head: HeadKind;
  numWaypoints: number;
  waypointDim: number;
  waypointDtS: number;
  maxNewTokens: number;
  hasVlaSection: boolean;
  cameras: string[];
}

export interface NativeEngine {
  infer(req: NativeRequest): Promise<NativeResult>;
  info(): NativeModelInfo;
  dispose(): void;
  readonly busy: boolean;
}

export interface NativeAddon {
  load(dir: string, options?: { backend?: string; threads?: number; device?: number; weightDtype?: string; poolMiB?: number; maxActivationMiB?: number }): Promise<NativeEngine>;
  /** A policy's schedule and FLOPs without a model, as the engine plans it (synchronous). */
  schedule(options: NativeScheduleOptions): NativeSchedule;
  /** The native registry of pruning policies, in order. */
  policies: NativePolicyInfo[];
  /** The engine's defaults of the prune options (PRUNE_OPTION_DEFAULTS names the same). */
  pruneDefaults: { x0: number; k0: number; gamma: number; recycle: boolean; reindexPositions: boolean; scoreRows: ScoreRowsName; parity: boolean; padMask: boolean; fastvLayer: number; pdropLayers: readonly number[] };
  backends: string[];
  /** Why the cuda backend cannot run here ('' when it can): not built in, no device, no driver. */
  cudaUnavailable: string;
  /** Inputs this build takes besides raw pixels. */
  features: { jpeg: boolean };
}
