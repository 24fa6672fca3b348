import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCodes, VlaError } from '../util/errors.js';
import { componentLogger } from '../util/logger.js';
import { DRIVING_PROMPT } from './prompt.js';
import { writeSafetensors, type SafetensorsDtype, type TensorToWrite } from './safetensors-writer.js';
import { writeTokenizer } from './tokenizer-builder.js';

/**
 * Deterministic generated LLaVA-style VLA models (random weights) in the layout of
 * docs/model-format.md: same options, byte-identical files.
 */

const log = componentLogger('make-model');

export type PresetName = 'tiny' | 'mid';
export type HeadKind = 'waypoints' | 'text';

export interface VisionConfigJson {
  model_type: 'clip_vision_model';
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  layer_norm_eps: number;
  hidden_act: 'quick_gelu' | 'gelu';
}

export interface TextConfigJson {
  model_type: 'llama';
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  hidden_act: 'silu';
  rms_norm_eps: number;
  rope_theta: number;
  vocab_size: number;
  max_position_embeddings: number;
  bos_token_id: number;
  eos_token_id: number;
  tie_word_embeddings: boolean;
  attention_bias: boolean;
  mlp_bias: boolean;
}

export interface VlaSectionJson {
  cameras: string[];
  camera_embedding: boolean;
  action_head: HeadKind;
  num_waypoints: number;
  waypoint_dim: 2 | 3;
  waypoint_dt_s: number;
  action_mlp_hidden: number;
  image_preprocess: 'pad' | 'crop';
  image_mean: number[];
  image_std: number[];
  system_prompt: string;
  prompt_template: string;
  image_prompt: string;
  max_new_tokens: number;
  stop_tokens: string[];
}

/** config.json as the generator writes it (LlavaConfig + `vla`). */
export interface ModelConfigJson {
  architectures: ['LlavaForConditionalGeneration'];
  model_type: 'llava';
  image_token_index: number;
  projector_hidden_act: 'gelu';
  vision_feature_layer: number;
  vision_feature_select_strategy: 'default' | 'full';
  tie_word_embeddings: boolean;
  torch_dtype: 'float32' | 'float16' | 'bfloat16';
  text_config: TextConfigJson;
  vision_config: VisionConfigJson;
  vla: VlaSectionJson;
}

export interface ModelPreset {
  name: PresetName;
  description: string;
  dtype: SafetensorsDtype;
  /** Tokenizer vocabulary (= text_config.vocab_size). */
  vocabSize: number;
  vision: Pick<VisionConfigJson, 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads' | 'image_size' | 'patch_size' | 'layer_norm_eps' | 'hidden_act'>;
  text: Pick<TextConfigJson, 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads' | 'num_key_value_heads' | 'head_dim' | 'rope_theta' | 'rms_norm_eps' | 'max_position_embeddings'>;
  vla: Pick<VlaSectionJson, 'cameras' | 'num_waypoints' | 'waypoint_dim' | 'waypoint_dt_s' | 'action_mlp_hidden' | 'max_new_tokens' | 'image_preprocess'>;
}

export const TINY_PRESET: Readonly<ModelPreset> = Object.freeze({
  name: 'tiny',
  description: 'runs in milliseconds on a CPU; for tests and the demo',
  dtype: 'F32',
  vocabSize: 512,
  vision: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 2, image_size: 28, patch_size: 7, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu' },
  text: { hidden_size: 64, intermediate_size: 160, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 512 },
  vla: { cameras: ['front', 'front_left', 'front_right'], num_waypoints: 6, waypoint_dim: 2, waypoint_dt_s: 0.5, action_mlp_hidden: 32, max_new_tokens: 16, image_preprocess: 'pad' },
} satisfies ModelPreset);

export const MID_PRESET: Readonly<ModelPreset> = Object.freeze({
  name: 'mid',
  description: 'about 280M parameters (CLIP ViT-B/14 at 224 px + a 16-layer 1024-wide Llama, 6 cameras); for benchmarks',
  dtype: 'F16',
  vocabSize: 512,
  vision: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 14, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu' },
  text: { hidden_size: 1024, intermediate_size: 2816, num_hidden_layers: 16, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 64, rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 2048 },
  vla: { cameras: ['front', 'front_left', 'front_right', 'back', 'back_left', 'back_right'], num_waypoints: 8, waypoint_dim: 3, waypoint_dt_s: 0.5, action_mlp_hidden: 256, max_new_tokens: 64, image_preprocess: 'pad' },
} satisfies ModelPreset);

const PRESETS: Record<PresetName, Readonly<ModelPreset>> = { tiny: TINY_PRESET, mid: MID_PRESET };

const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
const TORCH_DTYPE = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;

export interface MakeModelOptions {
  preset?: PresetName;
  /** PRNG seed (uint32, default 1). */
  seed?: number;
  /** Weight dtype (default: the preset's, F32 for tiny, F16 for mid). */
  dtype?: SafetensorsDtype;
  /** config.json's vla.action_head (default waypoints); the weights are the same for both. */
  head?: HeadKind;
  /** Camera names (default: the preset's). */
  cameras?: string[];
}

export interface MadeModel {
  dir: string;
  config: ModelConfigJson;
  nParams: number;
  /** Bytes of model.safetensors. */
  bytes: number;
  vocabSize: number;
  imageTokenId: number;
}

/** config.json for a preset; `imageTokenId` and `vocabSize` come from the generated tokenizer. */
export function presetConfig(preset: Readonly<ModelPreset>, opts: { dtype: SafetensorsDtype; head: HeadKind; cameras: string[]; imageTokenId: number; vocabSize: number }): ModelConfigJson {
  const v = preset.vision;
  const t = preset.text;
  return {
    architectures: ['LlavaForConditionalGeneration'],
    model_type: 'llava',
    image_token_index: opts.imageTokenId,
    projector_hidden_act: 'gelu',
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
    tie_word_embeddings: false,
    torch_dtype: TORCH_DTYPE[opts.dtype],
    text_config: {
      model_type: 'llama',
      hidden_size: t.hidden_size,
      intermediate_size: t.intermediate_size,
      num_hidden_layers: t.num_hidden_layers,
      num_attention_heads: t.num_attention_heads,
      num_key_value_heads: t.num_key_value_heads,
      head_dim: t.head_dim,
      hidden_act: 'silu',
      rms_norm_eps: t.rms_norm_eps,
      rope_theta: t.rope_theta,
      vocab_size: opts.vocabSize,
      max_position_embeddings: t.max_position_embeddings,
      bos_token_id: 1,
      eos_token_id: 2,
      tie_word_embeddings: false,
      attention_bias: false,
      mlp_bias: false,
    },
    vision_config: {
      model_type: 'clip_vision_model',
      hidden_size: v.hidden_size,
      intermediate_size: v.intermediate_size,
      num_hidden_layers: v.num_hidden_layers,
      num_attention_heads: v.num_attention_heads,
      num_channels: 3,
      image_size: v.image_size,
      patch_size: v.patch_size,
      layer_norm_eps: v.layer_norm_eps,
      hidden_act: v.hidden_act,
    },
    vla: {
      cameras: [...opts.cameras],
      camera_embedding: true,
      action_head: opts.head,
      num_waypoints: preset.vla.num_waypoints,
      waypoint_dim: preset.vla.waypoint_dim,
      waypoint_dt_s: preset.vla.waypoint_dt_s,
      action_mlp_hidden: preset.vla.action_mlp_hidden,
      image_preprocess: preset.vla.image_preprocess,
      image_mean: [...CLIP_MEAN],
      image_std: [...CLIP_STD],
      system_prompt: DRIVING_PROMPT.system_prompt,
      prompt_template: DRIVING_PROMPT.prompt_template,
      image_prompt: DRIVING_PROMPT.image_prompt,
      max_new_tokens: preset.vla.max_new_tokens,
      stop_tokens: ['</s>'],
    },
  };
}

export interface TensorSpec {
  name: string;
  shape: number[];
  /** Normal init: mean + std * N(0, 1). */
  mean: number;
  std: number;
}

/** Action-head fc2 gain: with GELU'd unit-variance inputs it puts waypoints at a few metres. */
const WAYPOINT_GAIN = 4;

/**
 * Every tensor of the model (llava-hf's older names), with its initialisation. Projections use
 * 1/sqrt(fan_in) so activations stay O(1) through the layers and attention is not uniform;
 * norms are 1 + N(0, 0.05), biases N(0, 0.02).
 */
export function tensorSpecs(config: ModelConfigJson): TensorSpec[] {
  const v = config.vision_config;
  const t = config.text_config;
  const vla = config.vla;
  const out: TensorSpec[] = [];
  const add = (name: string, shape: number[], std: number, mean = 0) => out.push({ name, shape, mean, std });
  const linear = (name: string, outF: number, inF: number, bias: boolean, std = 1 / Math.sqrt(inF)) => {
    add(`${name}.weight`, [outF, inF], std);
    if (bias) add(`${name}.bias`, [outF], 0.02);
  };
  const layerNorm = (name: string, n: number) => {
    add(`${name}.weight`, [n], 0.05, 1);
    add(`${name}.bias`, [n], 0.02);
  };

  const D = v.hidden_size;
  const P = v.patch_size;
  const nPatches = (v.image_size / P) ** 2;
  const vp = 'vision_tower.vision_model.';
  add(`${vp}embeddings.class_embedding`, [D], 0.02);
  add(`${vp}embeddings.patch_embedding.weight`, [D, 3, P, P], 1 / Math.sqrt(3 * P * P));
  add(`${vp}embeddings.position_embedding.weight`, [nPatches + 1, D], 0.02);
  layerNorm(`${vp}pre_layrnorm`, D);
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const l = `${vp}encoder.layers.${i}.`;
    layerNorm(`${l}layer_norm1`, D);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${l}self_attn.${p}`, D, D, true);
    layerNorm(`${l}layer_norm2`, D);
    linear(`${l}mlp.fc1`, v.intermediate_size, D, true);
    linear(`${l}mlp.fc2`, D, v.intermediate_size, true);
  }
  layerNorm(`${vp}post_layernorm`, D);

  const d = t.hidden_size;
  linear('multi_modal_projector.linear_1', d, D, true);
  linear('multi_modal_projector.linear_2', d, d, true);

  const lp = 'language_model.model.';
  const q = t.num_attention_heads * t.head_dim;
  const kv = t.num_key_value_heads * t.head_dim;
  add(`${lp}embed_tokens.weight`, [t.vocab_size, d], 0.5);
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const l = `${lp}layers.${i}.`;
    add(`${l}input_layernorm.weight`, [d], 0.05, 1);
    linear(`${l}self_attn.q_proj`, q, d, false);
    linear(`${l}self_attn.k_proj`, kv, d, false);
    linear(`${l}self_attn.v_proj`, kv, d, false);
    linear(`${l}self_attn.o_proj`, d, q, false);
    add(`${l}post_attention_layernorm.weight`, [d], 0.05, 1);
    linear(`${l}mlp.gate_proj`, t.intermediate_size, d, false);
    linear(`${l}mlp.up_proj`, t.intermediate_size, d, false);
    linear(`${l}mlp.down_proj`, d, t.intermediate_size, false);
  }
  add(`${lp}norm.weight`, [d], 0.05, 1);
  linear('language_model.lm_head', t.vocab_size, d, false);

  if (vla.camera_embedding) add('vla.camera_embedding', [vla.cameras.length, d], 0.1);
  add('vla.action_queries', [vla.num_waypoints, d], 0.5);
  linear('vla.action_head.fc1', vla.action_mlp_hidden, d, true);
  linear('vla.action_head.fc2', vla.waypoint_dim, vla.action_mlp_hidden, true, WAYPOINT_GAIN / Math.sqrt(vla.action_mlp_hidden));
  return out;
}

/** Parameters of a generated model's config (every tensor written, lm_head and vla.* included). */
export function countParams(config: ModelConfigJson): number {
  return tensorSpecs(config).reduce((sum, s) => sum + s.shape.reduce((a, b) => a * b, 1), 0);
}

// ---------------------------------------------------------------------------- PRNG

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

function splitmix32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
}

/**
 * Fills `out` with mean + std * N(0, 1): xoshiro128** uniforms through Box-Muller. Each tensor
 * is seeded from (seed, name), so its values do not depend on which other tensors exist.
 */
export function fillNormal(out: Float32Array, seed: number, name: string, mean: number, std: number): Float32Array {
  const sm = splitmix32((fnv1a(name) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0);
  let s0 = sm(), s1 = sm(), s2 = sm(), s3 = sm();
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  const next = (): number => {
    const r = Math.imul(((Math.imul(s1, 5) << 7) | (Math.imul(s1, 5) >>> 25)), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    return r;
  };
  const n = out.length;
  const TWO_PI = 2 * Math.PI;
  for (let i = 0; i < n; i += 2) {
    const u1 = (next() + 1) / 4294967296; // (0, 1]: log stays finite
    const u2 = next() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    const th = TWO_PI * u2;
    out[i] = mean + r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = mean + r * Math.sin(th);
  }
  return out;
}

// ---------------------------------------------------------------------------- writer

function resolveOptions(opts: MakeModelOptions) {
  const presetName = opts.preset ?? 'tiny';
  const preset = PRESETS[presetName];
  if (!preset) throw new VlaError(ErrorCodes.ARGS, `unknown model preset '${String(presetName)}' (tiny, mid)`);
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new VlaError(ErrorCodes.ARGS, `seed must be an integer in 0..2^32-1, got ${seed}`);
  const dtype = opts.dtype ?? preset.dtype;
  if (!(dtype in TORCH_DTYPE)) throw new VlaError(ErrorCodes.ARGS, `unknown dtype '${String(dtype)}' (F32, F16, BF16)`);
  const head = opts.head ?? 'waypoints';
  if (head !== 'waypoints' && head !== 'text') throw new VlaError(ErrorCodes.ARGS, `unknown head '${String(head)}' (waypoints, text)`);
  const cameras = opts.cameras ?? preset.vla.cameras;
  if (!Array.isArray(cameras) || cameras.length === 0 || !cameras.every((c) => typeof c === 'string' && c.length > 0) || new Set(cameras).size !== cameras.length) {
    throw new VlaError(ErrorCodes.ARGS, `cameras must be distinct non-empty names, got ${JSON.stringify(cameras)}`);
  }
  return { preset, seed, dtype, head, cameras: [...cameras] };
}

/**
 * Writes config.json, model.safetensors, tokenizer.json and tokenizer_config.json into outDir.
 * Weights are generated tensor by tensor while streaming to disk; config.json is written last,
 * so a directory with a config.json holds a complete model.
 */
export async function makeModel(outDir: string, opts: MakeModelOptions = {}): Promise<MadeModel> {
  const t0 = performance.now();
  const { preset, seed, dtype, head, cameras } = resolveOptions(opts);
  try {
    await mkdir(outDir, { recursive: true });
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${outDir}: ${(err as Error).message}`, { dir: outDir }, { cause: err });
  }
  const tok = await writeTokenizer(outDir, { vocabSize: preset.vocabSize, modelMaxLength: preset.text.max_position_embeddings });
  const config = presetConfig(preset, { dtype, head, cameras, imageTokenId: tok.imageTokenId, vocabSize: tok.vocabSize });
  const specs = tensorSpecs(config);
  const tensors: TensorToWrite[] = specs.map((s) => ({
    name: s.name,
    dtype,
    shape: s.shape,
    data: () => fillNormal(new Float32Array(s.shape.reduce((a, b) => a * b, 1)), seed, s.name, s.mean, s.std),
  }));
  const weights = path.join(outDir, 'model.safetensors');
  await writeSafetensors(weights, tensors, { format: 'pt', generator: 'autoprune-ros makeModel', preset: preset.name, seed: String(seed) });
  try {
    await writeFile(path.join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  } catch (err) {
    throw new VlaError(ErrorCodes.IO, `${outDir}: ${(err as Error).message}`, { dir: outDir }, { cause: err });
  }
  const bytes = (await stat(weights)).size;
  const nParams = countParams(config);
  log.debug({ dir: outDir, preset: preset.name, dtype, seed, nParams, bytes, ms: Math.round(performance.now() - t0) }, 'model written');
  return { dir: outDir, config, nParams, bytes, vocabSize: tok.vocabSize, imageTokenId: tok.imageTokenId };
}
