/**
 * When a plan reaches the controller: the inference latency of each frame, from one of three
 * models.
 *
 * - `measured`: the inference's wall time on this machine (not reproducible from run to run);
 * - `fixed:MS`: a constant;
 * - `device:orin` / `device:h100`: a roofline on a target computer. Each frame's work (vision
 *   tower FLOPs and weight bytes, prefill FLOPs after pruning and decoder weight bytes) is turned
 *   into time as max(FLOPs / (peak x compute efficiency), bytes / (bandwidth x memory
 *   efficiency)) per stage, plus a fixed per-frame overhead. `@llava-1.5-7b` after the profile
 *   (`device:orin@llava-1.5-7b`) times the frame as if the model were LLaVA-1.5-7B with 576 visual
 *   tokens per view, kept in the same per-layer fractions as the frame's own pruning: what the
 *   policy and budget would cost a 7B model on that computer.
 *
 * docs/closed-loop.md lists the figures and where they come from.
 */
import path from 'node:path';

import type { InferOutput, StageTimingsMs } from '../engine/engine.js';
import { ErrorCodes, VlaError } from '../util/errors.js';
import { readRegularFileSync } from '../util/fsafe.js';

export type DeviceName = 'orin' | 'h100';
export type ReferenceModel = 'self' | 'llava-1.5-7b';

export type LatencySpec = { kind: 'measured' } | { kind: 'fixed'; ms: number } | { kind: 'device'; device: DeviceName; as: ReferenceModel };

export interface DeviceProfile {
  name: DeviceName;
  label: string;
  /** Dense FP16/BF16 tensor throughput, FLOP/s. */
  peakFlops: number;
  /** DRAM bandwidth, bytes/s. */
  memBytesPerS: number;
  /** Share of the peaks a prefill reaches in practice. */
  computeEfficiency: number;
  memoryEfficiency: number;
  /** Per frame, outside the two stages: image decode, tokenization, launches (our assumption), ms. */
  overheadMs: number;
}

/**
 * Jetson AGX Orin 64GB: 170 sparse INT8 TOPS on the GPU (NVIDIA's Orin technical brief) is 85 dense
 * INT8 and 42.5 dense FP16 tensor TFLOP/s; 204.8 GB/s LPDDR5. Efficiencies from measurements on
 * the device: a Llama-3-8B prefill at about 23 TFLOP/s (54%), an int4 decode at about 170 GB/s (83%).
 * H100 SXM: 989 dense BF16 TFLOP/s and 3.35 TB/s HBM3 (NVIDIA's H100 datasheet); about 790 TFLOP/s
 * measured in dense GEMMs (80%); 80% of the bandwidth assumed.
 */
export const DEVICE_PROFILES: Readonly<Record<DeviceName, Readonly<DeviceProfile>>> = Object.freeze({
  orin: Object.freeze({ name: 'orin', label: 'Jetson AGX Orin 64GB (FP16)', peakFlops: 42.5e12, memBytesPerS: 204.8e9, computeEfficiency: 0.54, memoryEfficiency: 0.83, overheadMs: 2.0 }),
  h100: Object.freeze({ name: 'h100', label: 'H100 SXM (BF16)', peakFlops: 989e12, memBytesPerS: 3.35e12, computeEfficiency: 0.8, memoryEfficiency: 0.8, overheadMs: 0.5 }),
});

/** The arithmetic of a LLaVA-style model that the roofline needs. */
export interface ModelArith {
  name: string;
  vision: { layers: number; hidden: number; ffn: number; patchSize: number; imageSize: number; params: number };
  text: { layers: number; hidden: number; ffn: number; params: number };
  /** Projector parameters (two linear layers). */
  projectorParams: number;
  /** Visual tokens per view entering the decoder. */
  tokensPerView: number;
  /** Bytes per weight on the device (FP16). */
  bytesPerWeight: number;
}

/** LLaVA-1.5-7B: CLIP ViT-L/14-336 (303.5M parameters) and Vicuna-7B (6.476B non-embedding parameters). */
export const LLAVA_15_7B: Readonly<ModelArith> = Object.freeze({
  name: 'llava-1.5-7b',
  vision: { layers: 24, hidden: 1024, ffn: 4096, patchSize: 14, imageSize: 336, params: 303.5e6 },
  text: { layers: 32, hidden: 4096, ffn: 11008, params: 6.476e9 },
  projectorParams: 1024 * 4096 + 4096 * 4096,
  tokensPerView: 576,
  bytesPerWeight: 2,
});

interface HfConfig {
  text_config?: { hidden_size?: number; intermediate_size?: number; num_hidden_layers?: number; num_attention_heads?: number; num_key_value_heads?: number; head_dim?: number };
  vision_config?: { hidden_size?: number; intermediate_size?: number; num_hidden_layers?: number; patch_size?: number; image_size?: number };
}

/** The arithmetic of a model directory's config.json (a coded VLA_E_CONFIG error when it lacks a size). */
export function modelArithFromDir(dir: string): ModelArith {
  const file = path.join(dir, 'config.json');
  let cfg: HfConfig;
  try {
    cfg = JSON.parse(readRegularFileSync(file, 16 << 20, { missing: ErrorCodes.CONFIG, other: ErrorCodes.CONFIG }).toString('utf8')) as HfConfig;
  } catch (err) {
    if (err instanceof VlaError) throw err;
    throw new VlaError(ErrorCodes.CONFIG, `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  const t = cfg.text_config ?? {}, v = cfg.vision_config ?? {};
  const need = (x: number | undefined, key: string) => {
    if (typeof x !== 'number' || !(x > 0)) throw new VlaError(ErrorCodes.CONFIG, `${file}: ${key} is missing or not positive`, { file });
    return x;
  };
  const d = need(t.hidden_size, 'text_config.hidden_size'), m = need(t.intermediate_size, 'text_config.intermediate_size'), L = need(t.num_hidden_layers, 'text_config.num_hidden_layers');
  const heads = t.num_attention_heads ?? 1, kv = t.num_key_value_heads ?? heads, hd = t.head_dim ?? d / heads;
  const dv = need(v.hidden_size, 'vision_config.hidden_size'), mv = need(v.intermediate_size, 'vision_config.intermediate_size'), Lv = need(v.num_hidden_layers, 'vision_config.num_hidden_layers');
  const patch = need(v.patch_size, 'vision_config.patch_size'), img = need(v.image_size, 'vision_config.image_size');
  const P = Math.floor(img / patch) ** 2;
  return {
    name: path.basename(path.resolve(dir)),
    vision: { layers: Lv, hidden: dv, ffn: mv, patchSize: patch, imageSize: img, params: Lv * (4 * dv * dv + 2 * dv * mv) + 3 * patch * patch * dv + (P + 1) * dv },
    text: { layers: L, hidden: d, ffn: m, params: L * (d * heads * hd * 2 + 2 * d * kv * hd + 3 * d * m) },
    projectorParams: dv * d + d * d,
    tokensPerView: P,
    bytesPerWeight: 2,
  };
}

/** One frame's work: FLOPs (2 per multiply-accumulate) and weight bytes read, per stage. */
export interface FrameWork {
  visionFlops: number;
  visionBytes: number;
  prefillFlops: number;
  prefillBytes: number;
}

/** Vision tower and projector FLOPs for `views` images (patch embedding, blocks, projector). */
function visionFlops(a: ModelArith, views: number): number {
  const v = a.vision;
  const T = a.tokensPerView + 1;
  const perLayer = 4 * T * v.hidden * v.hidden + 2 * T * T * v.hidden + 2 * T * v.hidden * v.ffn;
  const macs = a.tokensPerView * 3 * v.patchSize * v.patchSize * v.hidden + v.layers * perLayer + a.tokensPerView * a.projectorParams;
  return 2 * views * macs;
}

/** The layer cost (docs/autoprune.md, "Budget") F(n) = 4nd^2 + 2n^2d + 3ndm (multiply-accumulates). */
const layerMacs = (n: number, d: number, m: number) => 4 * n * d * d + 2 * n * n * d + 3 * n * d * m;

/**
 * The frame's work from its inference output. The prefill's per-layer visual counts come from
 * the pruning statistics (layer l takes the tokens layer l-1 kept); the other tokens (prompt
 * text, action queries) from the unpruned FLOPs the engine reports. With `as`, the same
 * fractions of visual tokens per layer (layers mapped by relative depth) on a reference model.
 */
export function frameWork(self: ModelArith, out: InferOutput, as?: ModelArith): FrameWork {
  const p = out.prune;
  const views = Math.max(1, out.cameras.length);
  const Ls = self.text.layers;
  const Nv = p.nVisual > 0 ? p.nVisual : self.tokensPerView * views;
  // n_other from the unpruned count: flopsUnpruned = L * F(n_other + Nv)
  const d = self.text.hidden, m = self.text.ffn;
  const perLayer = p.flopsUnpruned > 0 ? p.flopsUnpruned / Ls : 0;
  const nFull = perLayer > 0 ? (-(4 * d * d + 3 * d * m) + Math.sqrt((4 * d * d + 3 * d * m) ** 2 + 8 * d * perLayer)) / (4 * d) : Nv + out.tokens.text;
  const nOther = Math.max(0, Math.round(nFull) - Nv);
  const fractionIn = (l: number) => (l === 0 || p.kept.length < l ? 1 : (p.kept[l - 1] as number) / Nv);
  const model = as ?? self;
  const NvM = as ? as.tokensPerView * views : Nv;
  const L = model.text.layers;
  let macs = 0;
  for (let j = 0; j < L; j++) {
    const ls = as ? Math.min(Ls - 1, Math.floor((j * Ls) / L)) : j;
    macs += layerMacs(nOther + Math.round(NvM * fractionIn(ls)), model.text.hidden, model.text.ffn);
  }
  return {
    visionFlops: visionFlops(model, views),
    visionBytes: (model.vision.params + model.projectorParams) * model.bytesPerWeight,
    prefillFlops: 2 * macs,
    prefillBytes: model.text.params * model.bytesPerWeight,
  };
}

export interface DeviceTime {
  visionMs: number;
  prefillMs: number;
  overheadMs: number;
  totalMs: number;
}

/** Roofline time of a frame's work on a device. */
export function deviceTime(dev: DeviceProfile, w: FrameWork): DeviceTime {
  const stage = (flops: number, bytes: number) => 1e3 * Math.max(flops / (dev.peakFlops * dev.computeEfficiency), bytes / (dev.memBytesPerS * dev.memoryEfficiency));
  const visionMs = w.visionFlops > 0 ? stage(w.visionFlops, w.visionBytes) : 0;
  const prefillMs = w.prefillFlops > 0 ? stage(w.prefillFlops, w.prefillBytes) : 0;
  return { visionMs, prefillMs, overheadMs: dev.overheadMs, totalMs: dev.overheadMs + visionMs + prefillMs };
}

/** Parses `measured`, `fixed:MS`, `device:orin`, `device:h100`, optionally `@llava-1.5-7b` after a device. */
export function parseLatency(spec: string): LatencySpec {
  const s = String(spec ?? '').trim();
  if (s === 'measured') return { kind: 'measured' };
  const fixed = /^fixed:(\d+(?:\.\d+)?)$/.exec(s);
  if (fixed) {
    const ms = Number(fixed[1]);
    if (!(ms >= 0 && ms <= 60_000)) throw new VlaError(ErrorCodes.SIM_CONFIG, `--latency fixed:MS takes 0..60000 ms, got ${fixed[1]}`);
    return { kind: 'fixed', ms };
  }
  const dev = /^device:([a-z0-9]+)(?:@([a-z0-9.-]+))?$/.exec(s);
  if (dev) {
    const device = dev[1] as DeviceName;
    if (!(device in DEVICE_PROFILES)) throw new VlaError(ErrorCodes.SIM_CONFIG, `--latency: unknown device '${dev[1]}' (${Object.keys(DEVICE_PROFILES).join(', ')})`);
    const as = (dev[2] ?? 'self') as ReferenceModel;
    if (as !== 'self' && as !== 'llava-1.5-7b') throw new VlaError(ErrorCodes.SIM_CONFIG, `--latency: unknown reference model '${dev[2]}' (self, llava-1.5-7b)`);
    return { kind: 'device', device, as };
  }
  throw new VlaError(ErrorCodes.SIM_CONFIG, `--latency takes measured, fixed:MS, device:orin or device:h100 (optionally @llava-1.5-7b), got '${s}'`);
}

export function latencyLabel(l: LatencySpec): string {
  if (l.kind === 'measured') return 'measured';
  if (l.kind === 'fixed') return `fixed:${l.ms}`;
  return `device:${l.device}${l.as === 'self' ? '' : `@${l.as}`}`;
}

/** Whether runs with this model repeat exactly (measured time does not). */
export const latencyIsDeterministic = (l: LatencySpec): boolean => l.kind !== 'measured';

/** The modelled latency of one inference and its stage times (which replace the measured ones). */
export interface ModelledLatency {
  totalMs: number;
  timings: StageTimingsMs;
}

export class LatencyModel {
  constructor(
    readonly spec: LatencySpec,
    /** The running model's arithmetic; null for planners without a model (they cost only the overhead). */
    private readonly self: ModelArith | null,
  ) {}

  latency(out: InferOutput): ModelledLatency {
    const t = out.timings;
    if (this.spec.kind === 'measured') return { totalMs: t.totalMs, timings: t };
    const zero: StageTimingsMs = { decodeMs: 0, tokenizeMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, headMs: 0, engineMs: 0, totalMs: 0 };
    if (this.spec.kind === 'fixed') {
      const ms = this.spec.ms;
      return { totalMs: ms, timings: { ...zero, engineMs: ms, totalMs: ms } };
    }
    const dev = DEVICE_PROFILES[this.spec.device];
    const w = this.self ? frameWork(this.self, out, this.spec.as === 'llava-1.5-7b' ? LLAVA_15_7B : undefined) : { visionFlops: 0, visionBytes: 0, prefillFlops: 0, prefillBytes: 0 };
    const d = deviceTime(dev, w);
    return { totalMs: d.totalMs, timings: { ...zero, preprocessMs: d.overheadMs, visionMs: d.visionMs, prefillMs: d.prefillMs, engineMs: d.visionMs + d.prefillMs, totalMs: d.totalMs } };
  }
}
