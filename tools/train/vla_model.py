"""Our VLA architecture as a trainable PyTorch module (docs/model-format.md), batched.

Parameter names are the tensor names of the model format (llava-hf's older spelling plus `vla.*`),
so `state_dict()` is what model.safetensors holds. The forward pass follows the engine exactly:
CLIP vision tower up to `vision_feature_layer`, class token dropped, 2-layer GELU projector, a
per-camera embedding, visual tokens spliced in at the image tokens, Llama decoder (RMSNorm, RoPE,
GQA, SwiGLU), action queries after the prompt, MLP head on their final-normed states.

Batching: prompts of different lengths are left-padded; padding keys are masked and positions
start at 0 on each sample's first real token, so every sample sees what the engine sees alone.
"""
import json
import math
import os
import shutil
import struct

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# the functional reference's reader (tools/reference/vla_ref.py): one safetensors reader in Python
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))
from vla_ref import read_safetensors  # noqa: E402


# ----------------------------------------------------------------------------- config
class VlaConfig:
    """The fields of config.json the forward pass needs (defaults as docs/model-format.md)."""

    def __init__(self, c):
        t, v, self.vla = c.get('text_config', {}), c.get('vision_config', {}), c['vla']
        self.raw = c
        self.d = t.get('hidden_size', 4096)
        self.m = t.get('intermediate_size', 11008)
        self.L = t.get('num_hidden_layers', 32)
        self.H = t.get('num_attention_heads', 32)
        self.Hkv = t.get('num_key_value_heads', self.H)
        self.hd = t.get('head_dim') or self.d // self.H
        self.rms_eps = t.get('rms_norm_eps', 1e-6)
        self.theta = float(t.get('rope_theta', 10000.0))
        self.vocab = t.get('vocab_size', 32000)
        self.vd = v.get('hidden_size', 1024)
        self.vm = v.get('intermediate_size', 4096)
        self.vL = v.get('num_hidden_layers', 24)
        self.vH = v.get('num_attention_heads', 16)
        self.S, self.P = v.get('image_size', 336), v.get('patch_size', 14)
        self.ln_eps = v.get('layer_norm_eps', 1e-5)
        self.vact = v.get('hidden_act', 'quick_gelu')
        self.image_token = c.get('image_token_index', c.get('image_token_id', 32000))
        self.feature_layer = c.get('vision_feature_layer', -2)
        self.strategy = c.get('vision_feature_select_strategy', 'default')
        self.cameras = self.vla['cameras']
        self.camera_embedding = bool(self.vla.get('camera_embedding'))
        self.nq = self.vla['num_waypoints']
        self.wd = self.vla['waypoint_dim']
        self.ah = self.vla['action_mlp_hidden']
        self.mean = self.vla.get('image_mean', [0.48145466, 0.4578275, 0.40821073])
        self.std = self.vla.get('image_std', [0.26862954, 0.26130258, 0.27577711])
        self.pad = self.vla.get('image_preprocess', 'pad') == 'pad'
        if self.vla.get('action_head') != 'waypoints':
            raise ValueError('only the waypoints head is trained here')

    @property
    def n_patches(self):
        return (self.S // self.P) ** 2

    @property
    def upto(self):
        """How many vision layers run: hidden_states[feature_layer] is the output of that many."""
        fl = self.feature_layer
        return fl if fl >= 0 else self.vL + 1 + fl


# ----------------------------------------------------------------------------- vision tower
def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class ClipAttention(nn.Module):
    def __init__(self, D, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(D, D) for _ in range(4))

    def forward(self, x):  # x [N, T, D]
        N, T, D = x.shape
        sh = lambda t: t.reshape(N, T, self.heads, D // self.heads).transpose(1, 2)
        q, k, v = sh(self.q_proj(x)), sh(self.k_proj(x)), sh(self.v_proj(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // self.heads), dim=-1) @ v
        return self.out_proj(a.transpose(1, 2).reshape(N, T, D))


class ClipMlp(nn.Module):
    def __init__(self, D, Dff, act):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(D, Dff), nn.Linear(Dff, D)
        self.act = quick_gelu if act == 'quick_gelu' else F.gelu

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ClipLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.vd, eps=cfg.ln_eps)
        self.self_attn = ClipAttention(cfg.vd, cfg.vH)
        self.layer_norm2 = nn.LayerNorm(cfg.vd, eps=cfg.ln_eps)
        self.mlp = ClipMlp(cfg.vd, cfg.vm, cfg.vact)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(cfg.vd))
        self.patch_embedding = nn.Conv2d(3, cfg.vd, cfg.P, stride=cfg.P, bias=False)
        self.position_embedding = nn.Embedding(cfg.n_patches + 1, cfg.vd)

    def forward(self, pixels):  # [N, 3, S, S] -> [N, Np + 1, vd]
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.reshape(1, 1, -1).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight[None]


class ClipEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList(ClipLayer(cfg) for _ in range(cfg.vL))


class ClipVisionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embeddings = ClipEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.vd, eps=cfg.ln_eps)
        self.encoder = ClipEncoder(cfg)
        # post_layernorm is never used with feature layer -2: not a parameter, so not exported

    def forward(self, pixels):
        x = self.pre_layrnorm(self.embeddings(pixels))
        for layer in self.encoder.layers[:self.cfg.upto]:
            x = layer(x)
        return x[:, 1:] if self.cfg.strategy == 'default' else x


class VisionTower(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.vision_model = ClipVisionModel(cfg)


class Projector(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(cfg.vd, cfg.d), nn.Linear(cfg.d, cfg.d)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x)))


# ----------------------------------------------------------------------------- language model
class RmsNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.q_proj = nn.Linear(cfg.d, cfg.H * cfg.hd, bias=False)
        self.k_proj = nn.Linear(cfg.d, cfg.Hkv * cfg.hd, bias=False)
        self.v_proj = nn.Linear(cfg.d, cfg.Hkv * cfg.hd, bias=False)
        self.o_proj = nn.Linear(cfg.H * cfg.hd, cfg.d, bias=False)

    def forward(self, x, cos, sin, mask):
        """x [B, T, d]; cos/sin [B, 1, T, hd]; mask [B, 1, 1, T, T] additive (0 or -inf)."""
        c = self.cfg
        B, T, _ = x.shape
        sh = lambda t, n: t.reshape(B, T, n, c.hd).transpose(1, 2)
        q, k, v = sh(self.q_proj(x), c.H), sh(self.k_proj(x), c.Hkv), sh(self.v_proj(x), c.Hkv)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        # query head h reads kv head h // g: the g query heads of a kv head are stacked along the
        # rows of one matrix product (no copies of K and V, unlike repeat_interleave)
        g = c.H // c.Hkv
        q = q.reshape(B, c.Hkv, g * T, c.hd)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(c.hd))                      # [B, Hkv, g*T, T]
        s = (s.reshape(B, c.Hkv, g, T, T) + mask).reshape(B, c.Hkv, g * T, T)
        a = (torch.softmax(s, dim=-1) @ v).reshape(B, c.H, T, c.hd)
        return self.o_proj(a.transpose(1, 2).reshape(B, T, c.H * c.hd))


class LlamaMlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d, cfg.m, bias=False)
        self.up_proj = nn.Linear(cfg.d, cfg.m, bias=False)
        self.down_proj = nn.Linear(cfg.m, cfg.d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RmsNorm(cfg.d, cfg.rms_eps)
        self.self_attn = LlamaAttention(cfg)
        self.post_attention_layernorm = RmsNorm(cfg.d, cfg.rms_eps)
        self.mlp = LlamaMlp(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.d)
        self.layers = nn.ModuleList(LlamaLayer(cfg) for _ in range(cfg.L))
        self.norm = RmsNorm(cfg.d, cfg.rms_eps)


class LanguageModel(nn.Module):
    """No lm_head: the waypoints head never reads logits, and the engine treats it as optional."""

    def __init__(self, cfg):
        super().__init__()
        self.model = LlamaModel(cfg)


class ActionHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(cfg.d, cfg.ah), nn.Linear(cfg.ah, cfg.wd)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class VlaExtras(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.camera_embedding:
            self.camera_embedding = nn.Parameter(torch.zeros(len(cfg.cameras), cfg.d))
        self.action_queries = nn.Parameter(torch.zeros(cfg.nq, cfg.d))
        self.action_head = ActionHead(cfg)


# ----------------------------------------------------------------------------- the model
class VlaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.vision_tower = VisionTower(cfg)
        self.multi_modal_projector = Projector(cfg)
        self.language_model = LanguageModel(cfg)
        self.vla = VlaExtras(cfg)
        mean = torch.tensor(cfg.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(cfg.std, dtype=torch.float32)[:, None, None]
        self.register_buffer('pix_mean', mean, persistent=False)
        self.register_buffer('pix_std', std, persistent=False)

    def init_weights(self, gen):
        """Initialisation for training: 1/sqrt(fan_in) projections, zero biases, unit norms."""
        c = self.cfg
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith('layernorm.weight') or name.endswith('layer_norm1.weight') or \
                        name.endswith('layer_norm2.weight') or name.endswith('pre_layrnorm.weight') or \
                        name.endswith('norm.weight'):
                    p.fill_(1.0)
                elif name.endswith('.bias'):
                    p.zero_()
                elif p.dim() >= 2 and 'embedding' not in name and 'embed_tokens' not in name and \
                        'action_queries' not in name:
                    fan_in = p[0].numel()
                    p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
                else:
                    p.normal_(0.0, 0.02, generator=gen)
            # residual branches start small so the stack trains stably from the first step
            if name.endswith(('o_proj.weight', 'down_proj.weight', 'out_proj.weight', 'mlp.fc2.weight')) \
                    and 'action_head' not in name:
                with torch.no_grad():
                    depth = c.L if 'language_model' in name else c.upto
                    p.mul_(1.0 / math.sqrt(2 * depth))

    def normalize(self, pixels_u8):
        """[N, S, S, 3] uint8 (already resized by the engine's preprocessing) -> [N, 3, S, S] f32."""
        x = pixels_u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return (x - self.pix_mean) / self.pix_std

    def visual_tokens(self, pixels_u8):
        """[B, V, S, S, 3] uint8 -> [B, V, Np, d]."""
        B, V = pixels_u8.shape[:2]
        feats = self.vision_tower.vision_model(self.normalize(pixels_u8.reshape(B * V, *pixels_u8.shape[2:])))
        tok = self.multi_modal_projector(feats).reshape(B, V, -1, self.cfg.d)
        if self.cfg.camera_embedding:
            tok = tok + self.vla.camera_embedding[:V][None, :, None, :]
        return tok

    def forward(self, pixels_u8, input_ids, debug=None):
        """pixels_u8 [B, V, S, S, 3]; input_ids: list of B lists, each with V image tokens.
        Returns waypoints [B, nq, wd]."""
        c = self.cfg
        B = len(input_ids)
        vis = self.visual_tokens(pixels_u8)
        emb = self.language_model.model.embed_tokens
        seqs = []
        for b, ids in enumerate(input_ids):
            ids_t = torch.tensor(ids, dtype=torch.long)
            img_pos = (ids_t == c.image_token).nonzero().flatten().tolist()
            if len(img_pos) != vis.shape[1]:
                raise ValueError(f'sample {b}: {len(img_pos)} image tokens for {vis.shape[1]} views')
            parts, last, te = [], 0, emb(ids_t)
            for v, p in enumerate(img_pos):
                parts += [te[last:p], vis[b, v]]
                last = p + 1
            parts += [te[last:], self.vla.action_queries]
            seqs.append(torch.cat(parts, dim=0))
        n = [s.shape[0] for s in seqs]
        T = max(n)
        pad = [T - k for k in n]
        x = torch.stack([F.pad(s, (0, 0, p, 0)) for s, p in zip(seqs, pad)])        # [B, T, d]
        pad_t = torch.tensor(pad)
        ar = torch.arange(T)
        pos = (ar[None, :] - pad_t[:, None]).clamp(min=0).to(torch.float32)           # [B, T]
        inv = 1.0 / (c.theta ** (torch.arange(0, c.hd, 2, dtype=torch.float32) / c.hd))
        ang = pos[..., None] * inv                                                     # [B, T, hd/2]
        ang = torch.cat([ang, ang], dim=-1)[:, None]                                   # [B, 1, T, hd]
        cos, sin = ang.cos(), ang.sin()
        real = ar[None, :] >= pad_t[:, None]                                           # [B, T]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        # a padding query attends to itself only: finite, and never read
        allowed = (causal[None] & real[:, None, :]) | torch.eye(T, dtype=torch.bool)[None]
        mask = torch.zeros(B, 1, 1, T, T).masked_fill_(~allowed[:, None, None], float('-inf'))
        for layer in self.language_model.model.layers:
            x = layer(x, cos, sin, mask)
        h = self.language_model.model.norm(x[:, -c.nq:])
        if debug is not None:
            debug['action_hidden'] = h
        return self.vla.action_head(h)


# ----------------------------------------------------------------------------- files
DTYPES = {'F32': '<f4', 'F16': '<f2'}


def write_safetensors(path, tensors, dtype='F16', metadata=None):
    """Writes name -> tensor in sorted name order, 8-byte aligned data, as safetensors does.
    (No Debian package ships the safetensors library; the format is small and the engine's
    strict reader and its fuzz tests check what we write.)"""
    names = sorted(tensors)
    np_dt = DTYPES[dtype]
    blobs, header, off = [], {}, 0
    for name in names:
        a = tensors[name].detach().to(torch.float32).cpu().numpy().astype(np_dt)
        if dtype == 'F16' and not np.all(np.isfinite(a)):
            raise ValueError(f'{name}: does not fit in fp16')
        b = a.tobytes()
        header[name] = {'dtype': dtype, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_model(model_dir):
    with open(os.path.join(model_dir, 'config.json')) as f:
        cfg = VlaConfig(json.load(f))
    model = VlaModel(cfg)
    w = read_safetensors(os.path.join(model_dir, 'model.safetensors'))
    missing, unexpected = model.load_state_dict(w, strict=False)
    unexpected = [u for u in unexpected if not u.endswith(('lm_head.weight', 'post_layernorm.weight', 'post_layernorm.bias'))]
    if missing or unexpected:
        raise ValueError(f'{model_dir}: missing {missing[:5]}, unexpected {unexpected[:5]}')
    return model


def save_model(model, out_dir, tokenizer_dir, dtype='F16', metadata=None, extra_files=None):
    """config.json + model.safetensors + tokenizer files; config.json last (a directory with one is whole)."""
    os.makedirs(out_dir, exist_ok=True)
    for fn in ('tokenizer.json', 'tokenizer_config.json'):
        src = os.path.join(tokenizer_dir, fn)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out_dir, fn))
    write_safetensors(os.path.join(out_dir, 'model.safetensors'), model.state_dict(), dtype, metadata)
    for fn, obj in (extra_files or {}).items():
        with open(os.path.join(out_dir, fn), 'w') as f:
            json.dump(obj, f, indent=1)
            f.write('\n')
    cfg = dict(model.cfg.raw)
    cfg['torch_dtype'] = {'F16': 'float16', 'F32': 'float32'}[dtype]
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
        f.write('\n')


# ----------------------------------------------------------------------------- preprocessing
def preprocess_image(img, S, mean, pad=True):
    """The engine's preprocessing (native/core/image.cpp follows PIL): letterbox to a square with
    the mean colour (paste offset floor((side - W) / 2)), bicubic resize to S x S. Returns uint8 [S, S, 3]."""
    from PIL import Image
    img = img.convert('RGB')
    W, H = img.size
    if pad:
        side = max(W, H)
        fill = tuple(int(m * 255) for m in mean)
        canvas = Image.new('RGB', (side, side), fill)
        canvas.paste(img, ((side - W) // 2, (side - H) // 2))
        img = canvas.resize((S, S), Image.BICUBIC)
    else:
        if W <= H:
            img = img.resize((S, S * H // W), Image.BICUBIC)
        else:
            img = img.resize((S * W // H, S), Image.BICUBIC)
        w2, h2 = img.size
        x0, y0 = (w2 - S) // 2, (h2 - S) // 2
        img = img.crop((x0, y0, x0 + S, y0 + S))
    return np.asarray(img, dtype=np.uint8)
