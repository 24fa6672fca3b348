import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { bf16BitsToF32, f16BitsToF32 } from '../../src/model/safetensors-writer.js';
import { buildPrompt } from '../../src/model/prompt.js';
import { countParams, makeModel, MID_PRESET, presetConfig, TINY_PRESET, type MakeModelOptions, type ModelConfigJson } from '../../src/model/tiny.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

interface Entry {
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  data_offsets: [number, number];
}

function readSafetensors(file: string) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, Entry | Record<string, string>>;
  const tensors = new Map<string, Entry>();
  for (const [k, v] of Object.entries(header)) if (k !== '__metadata__') tensors.set(k, v as Entry);
  const values = (name: string): Float32Array => {
    const e = tensors.get(name);
    assert.ok(e, `tensor ${name}`);
    const raw = buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    const count = e.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      out[i] = e.dtype === 'F32' ? raw.readFloatLE(i * 4) : e.dtype === 'F16' ? f16BitsToF32(raw.readUInt16LE(i * 2)) : bf16BitsToF32(raw.readUInt16LE(i * 2));
    }
    return out;
  };
  return { buf, n, header, tensors, values };
}

/** The tensors docs/model-format.md lists, with their shapes (older llava-hf names), written from the document. */
function documentedTensors(c: ModelConfigJson): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const v = c.vision_config, t = c.text_config, vla = c.vla;
  const D = v.hidden_size, P = v.patch_size, Np = (v.image_size / P) ** 2, Dff = v.intermediate_size;
  const vp = 'vision_tower.vision_model.';
  m.set(`${vp}embeddings.class_embedding`, [D]);
  m.set(`${vp}embeddings.patch_embedding.weight`, [D, 3, P, P]);
  m.set(`${vp}embeddings.position_embedding.weight`, [Np + 1, D]);
  for (const s of ['weight', 'bias']) {
    m.set(`${vp}pre_layrnorm.${s}`, [D]);
    m.set(`${vp}post_layernorm.${s}`, [D]);
  }
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const l = `${vp}encoder.layers.${i}.`;
    for (const s of ['weight', 'bias']) {
      m.set(`${l}layer_norm1.${s}`, [D]);
      m.set(`${l}layer_norm2.${s}`, [D]);
    }
    for (const p of ['q', 'k', 'v', 'out']) {
      m.set(`${l}self_attn.${p}_proj.weight`, [D, D]);
      m.set(`${l}self_attn.${p}_proj.bias`, [D]);
    }
    m.set(`${l}mlp.fc1.weight`, [Dff, D]);
    m.set(`${l}mlp.fc1.bias`, [Dff]);
    m.set(`${l}mlp.fc2.weight`, [D, Dff]);
    m.set(`${l}mlp.fc2.bias`, [D]);
  }
  const d = t.hidden_size, hd = t.head_dim, kv = t.num_key_value_heads * hd, q = t.num_attention_heads * hd, mi = t.intermediate_size;
  m.set('multi_modal_projector.linear_1.weight', [d, D]);
  m.set('multi_modal_projector.linear_1.bias', [d]);
  m.set('multi_modal_projector.linear_2.weight', [d, d]);
  m.set('multi_modal_projector.linear_2.bias', [d]);
  const lp = 'language_model.model.';
  m.set(`${lp}embed_tokens.weight`, [t.vocab_size, d]);
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const l = `${lp}layers.${i}.`;
    m.set(`${l}input_layernorm.weight`, [d]);
    m.set(`${l}post_attention_layernorm.weight`, [d]);
    m.set(`${l}self_attn.q_proj.weight`, [q, d]);
    m.set(`${l}self_attn.k_proj.weight`, [kv, d]);
    m.set(`${l}self_attn.v_proj.weight`, [kv, d]);
    m.set(`${l}self_attn.o_proj.weight`, [d, q]);
    m.set(`${l}mlp.gate_proj.weight`, [mi, d]);
    m.set(`${l}mlp.up_proj.weight`, [mi, d]);
    m.set(`${l}mlp.down_proj.weight`, [d, mi]);
  }
  m.set(`${lp}norm.weight`, [d]);
  m.set('language_model.lm_head.weight', [t.vocab_size, d]);
  m.set('vla.camera_embedding', [vla.cameras.length, d]);
  m.set('vla.action_queries', [vla.num_waypoints, d]);
  m.set('vla.action_head.fc1.weight', [vla.action_mlp_hidden, d]);
  m.set('vla.action_head.fc1.bias', [vla.action_mlp_hidden]);
  m.set('vla.action_head.fc2.weight', [vla.waypoint_dim, vla.action_mlp_hidden]);
  m.set('vla.action_head.fc2.bias', [vla.waypoint_dim]);
  return m;
}

const EXPECTED_TINY_CONFIG = {
  architectures: ['LlavaForConditionalGeneration'],
  model_type: 'llava',
  image_token_index: 511,
  projector_hidden_act: 'gelu',
  vision_feature_layer: -2,
  vision_feature_select_strategy: 'default',
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  text_config: {
    model_type: 'llama',
    hidden_size: 64,
    intermediate_size: 160,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    hidden_act: 'silu',
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    vocab_size: 512,
    max_position_embeddings: 512,
    bos_token_id: 1,
    eos_token_id: 2,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
  },
  vision_config: {
    model_type: 'clip_vision_model',
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 3,
    num_attention_heads: 2,
    num_channels: 3,
    image_size: 28,
    patch_size: 7,
    layer_norm_eps: 1e-5,
    hidden_act: 'quick_gelu',
  },
  vla: {
    cameras: ['front', 'front_left', 'front_right'],
    camera_embedding: true,
    action_head: 'waypoints',
    num_waypoints: 6,
    waypoint_dim: 2,
    waypoint_dt_s: 0.5,
    action_mlp_hidden: 32,
    image_preprocess: 'pad',
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_std: [0.26862954, 0.26130258, 0.27577711],
    system_prompt: 'You are a driving assistant.',
    prompt_template: '{system} USER: {images}\n{instruction} ASSISTANT:',
    image_prompt: '<image>\n',
    max_new_tokens: 16,
    stop_tokens: ['</s>'],
  },
};

const FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

function std(a: Float32Array): { mean: number; std: number } {
  let s = 0, s2 = 0;
  for (const x of a) {
    s += x;
    s2 += x * x;
  }
  const mean = s / a.length;
  return { mean, std: Math.sqrt(Math.max(0, s2 / a.length - mean * mean)) };
}

describe('generated tiny model', () => {
  let tmp: string;
  const dirs: Record<string, string> = {};
  const make = async (name: string, opts: MakeModelOptions) => {
    dirs[name] = path.join(tmp, name);
    return makeModel(dirs[name] as string, opts);
  };
  const file = (name: string, f: string) => readFileSync(path.join(dirs[name] as string, f));

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-tiny-'));
    await make('a', {});
    await make('b', { preset: 'tiny', seed: 1 });
    await make('seed2', { seed: 2 });
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('writes the four files, byte-identical for the same options', () => {
    assert.deepEqual(readdirSync(dirs.a as string).sort(), FILES);
    for (const f of FILES) assert.deepEqual(file('a', f), file('b', f), f);
  });

  it('changes the weights, and only the weights, with the seed', () => {
    assert.notDeepEqual(file('a', 'model.safetensors'), file('seed2', 'model.safetensors'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) assert.deepEqual(file('a', f), file('seed2', f), f);
    const a = readSafetensors(path.join(dirs.a as string, 'model.safetensors'));
    const b = readSafetensors(path.join(dirs.seed2 as string, 'model.safetensors'));
    assert.deepEqual([...a.tensors.entries()], [...b.tensors.entries()], 'same header');
  });

  it('writes config.json as docs/model-format.md describes it', async () => {
    const cfg = JSON.parse(file('a', 'config.json').toString('utf8')) as ModelConfigJson;
    assert.deepEqual(cfg, EXPECTED_TINY_CONFIG);
    const tok = await loadTokenizer(dirs.a as string);
    assert.equal(cfg.image_token_index, tok.tokenId('<image>'));
    assert.equal(cfg.text_config.vocab_size, tok.vocabSize);
    assert.equal(cfg.text_config.bos_token_id, tok.bosId);
    assert.equal(cfg.text_config.eos_token_id, tok.eosId);
    for (const s of cfg.vla.stop_tokens) assert.notEqual(tok.tokenId(s), undefined);
    const t = cfg.text_config;
    assert.equal(t.num_attention_heads % t.num_key_value_heads, 0);
    assert.equal(cfg.vision_config.hidden_size % cfg.vision_config.num_attention_heads, 0);
    assert.equal(cfg.vision_config.image_size % cfg.vision_config.patch_size, 0);
    const ids = tok.encode(buildPrompt(cfg.vla, 'turn left at the next intersection', cfg.vla.cameras.length), { addBos: true });
    assert.equal(ids.filter((i) => i === cfg.image_token_index).length, 3);
    const visual = 3 * (cfg.vision_config.image_size / cfg.vision_config.patch_size) ** 2;
    assert.ok(ids.length - 3 + visual + cfg.vla.num_waypoints + cfg.vla.max_new_tokens <= t.max_position_embeddings);
  });

  it('holds every tensor of docs/model-format.md with its shape, lm_head untied', () => {
    const cfg = EXPECTED_TINY_CONFIG as ModelConfigJson;
    const st = readSafetensors(path.join(dirs.a as string, 'model.safetensors'));
    const want = documentedTensors(cfg);
    assert.deepEqual([...st.tensors.keys()].sort(), [...want.keys()].sort());
    for (const [name, shape] of want) {
      const e = st.tensors.get(name) as Entry;
      assert.deepEqual(e.shape, shape, name);
      assert.equal(e.dtype, 'F32', name);
    }
    assert.ok(st.n % 8 === 0);
    const ends = [...st.tensors.values()].map((e) => e.data_offsets[1]);
    assert.equal(st.buf.length, 8 + st.n + Math.max(...ends));
    const lm = st.values('language_model.lm_head.weight');
    const emb = st.values('language_model.model.embed_tokens.weight');
    assert.notDeepEqual(lm, emb, 'lm_head is not tied to embed_tokens');
  });

  it('counts its parameters', async () => {
    const cfg = EXPECTED_TINY_CONFIG as ModelConfigJson;
    const st = readSafetensors(path.join(dirs.a as string, 'model.safetensors'));
    let total = 0;
    for (const e of st.tensors.values()) total += e.shape.reduce((a, b) => a * b, 1);
    assert.equal(countParams(cfg), total);
    assert.equal(total, 235042);
    const made = await make('again', {});
    assert.equal(made.nParams, total);
    assert.equal(made.bytes, st.buf.length);
    assert.equal(made.imageTokenId, 511);
    assert.equal(made.vocabSize, 512);
  });

  it('initialises weights at the documented scales', () => {
    const st = readSafetensors(path.join(dirs.a as string, 'model.safetensors'));
    for (const name of st.tensors.keys()) {
      for (const x of st.values(name)) assert.ok(Number.isFinite(x), name);
    }
    const near = (got: number, want: number, tol: number, what: string) => assert.ok(Math.abs(got - want) <= tol, `${what}: ${got} vs ${want}`);
    const e = std(st.values('language_model.model.embed_tokens.weight'));
    near(e.std, 0.5, 0.02, 'embed_tokens std');
    near(e.mean, 0, 0.01, 'embed_tokens mean');
    const n = std(st.values('language_model.model.layers.0.input_layernorm.weight'));
    near(n.mean, 1, 0.03, 'RMSNorm weight mean');
    near(n.std, 0.05, 0.02, 'RMSNorm weight std');
    near(std(st.values('vla.action_queries')).std, 0.5, 0.05, 'action queries std');
    near(std(st.values('vla.camera_embedding')).std, 0.1, 0.02, 'camera embedding std');
    near(std(st.values('vision_tower.vision_model.embeddings.position_embedding.weight')).std, 0.02, 0.004, 'position std');
    near(std(st.values('language_model.model.layers.0.self_attn.q_proj.weight')).std, 1 / 8, 0.01, 'q_proj std 1/sqrt(d)');
    near(std(st.values('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias')).std, 0.02, 0.01, 'bias std');
    assert.notDeepEqual(st.values('language_model.model.layers.0.self_attn.q_proj.weight'), st.values('language_model.model.layers.1.self_attn.q_proj.weight'));
  });

  it('writes F16 and BF16 from the same fp32 values, and the text head with the same weights', async () => {
    await make('f16', { dtype: 'F16' });
    await make('bf16', { dtype: 'BF16' });
    await make('text', { head: 'text' });
    const ref = readSafetensors(path.join(dirs.a as string, 'model.safetensors'));
    for (const [name, rel] of [['f16', 2 ** -11], ['bf16', 2 ** -8]] as const) {
      const st = readSafetensors(path.join(dirs[name] as string, 'model.safetensors'));
      assert.ok([...st.tensors.values()].every((e) => e.dtype === name.toUpperCase()));
      assert.ok(st.buf.length < ref.buf.length * 0.55);
      for (const t of ['language_model.model.embed_tokens.weight', 'vla.action_head.fc2.weight', 'language_model.model.norm.weight']) {
        const a = ref.values(t), b = st.values(t);
        for (let i = 0; i < a.length; i++) assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= Math.abs(a[i] as number) * rel + 1e-7, `${name} ${t}[${i}]`);
      }
      const cfg = JSON.parse(file(name, 'config.json').toString('utf8')) as ModelConfigJson;
      assert.equal(cfg.torch_dtype, name === 'f16' ? 'float16' : 'bfloat16');
    }
    const textCfg = JSON.parse(file('text', 'config.json').toString('utf8')) as ModelConfigJson;
    assert.equal(textCfg.vla.action_head, 'text');
    assert.deepEqual({ ...textCfg, vla: { ...textCfg.vla, action_head: 'waypoints' } }, EXPECTED_TINY_CONFIG);
    assert.deepEqual(file('text', 'model.safetensors'), file('a', 'model.safetensors'));
  });

  it('takes other cameras, and rejects bad options with VLA_E_ARGS', async () => {
    const cams = ['front', 'front_left', 'front_right', 'back', 'back_left', 'back_right'];
    await make('six', { cameras: cams });
    const cfg = JSON.parse(file('six', 'config.json').toString('utf8')) as ModelConfigJson;
    assert.deepEqual(cfg.vla.cameras, cams);
    const st = readSafetensors(path.join(dirs.six as string, 'model.safetensors'));
    assert.deepEqual(st.tensors.get('vla.camera_embedding')?.shape, [6, 64]);
    const bad: MakeModelOptions[] = [
      { preset: 'huge' as 'tiny' },
      { seed: -1 },
      { seed: 1.5 },
      { dtype: 'F8' as 'F16' },
      { head: 'steer' as 'text' },
      { cameras: [] },
      { cameras: ['front', 'front'] },
    ];
    for (const o of bad) {
      await assert.rejects(makeModel(path.join(tmp, 'bad'), o), (err: unknown) => err instanceof VlaError && err.code === ErrorCodes.ARGS, JSON.stringify(o));
    }
  });

  it('describes the presets; mid is about 300M parameters', () => {
    const cfg = (p: typeof TINY_PRESET) => presetConfig(p, { dtype: p.dtype, head: 'waypoints', cameras: p.vla.cameras, imageTokenId: 511, vocabSize: 512 });
    assert.deepEqual(cfg(TINY_PRESET), EXPECTED_TINY_CONFIG);
    const mid = cfg(MID_PRESET);
    const n = countParams(mid);
    assert.ok(n > 250e6 && n < 320e6, `mid has ${n} parameters`);
    assert.equal(MID_PRESET.dtype, 'F16');
    assert.equal(mid.vla.cameras.length, 6);
    assert.equal(mid.vision_config.image_size / mid.vision_config.patch_size, 16);
    assert.equal(mid.text_config.num_attention_heads * mid.text_config.head_dim, mid.text_config.hidden_size);
    const tokens = 6 * 256 + 64 + mid.vla.num_waypoints + mid.vla.max_new_tokens;
    assert.ok(tokens <= mid.text_config.max_position_embeddings, 'six views, a prompt and generation fit the positions');
  });
});
