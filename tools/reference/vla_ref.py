#!/usr/bin/python3
"""Independent PyTorch (fp32) reference of the VLA forward pass described in docs/model-format.md.

Written from the format document and the Hugging Face definitions (CLIPVisionModel,
LlavaMultiModalProjector, LlamaModel); it deliberately shares no code with native/.

  /usr/bin/python3 tools/reference/vla_ref.py golden --model build/test-models/tiny \
      --out test/fixtures/golden/tiny-golden.json   # tiny-text/-f16/-bf16: tiny's sibling dirs
  /usr/bin/python3 tools/reference/vla_ref.py selftest
"""
import argparse
import base64
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__ (the import below)
import safetensors_np  # noqa: E402  (beside this file)
from safetensors_np import ALIASES  # noqa: E402,F401  (vla_ref_selftest imports it from here)

REGEN_CMD = ('/usr/bin/python3 tools/reference/vla_ref.py golden --model build/test-models/tiny '
             '--out test/fixtures/golden/tiny-golden.json')


# ----------------------------------------------------------------------------- weights
def read_safetensors(path):
    return {k: torch.from_numpy(v.copy()) for k, v in safetensors_np.read_safetensors(path).items()}


def load_weights(model_dir):
    return safetensors_np.load_weights(model_dir, read_safetensors)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- math
def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def act_fn(name):
    return {'quick_gelu': lambda x: x * torch.sigmoid(1.702 * x),
            'gelu': F.gelu,  # erf
            'gelu_pytorch_tanh': lambda x: F.gelu(x, approximate='tanh'),
            'gelu_new': lambda x: F.gelu(x, approximate='tanh'),
            'silu': F.silu}[name]


def rope_cos_sin(positions, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    ang = positions.to(torch.float32)[:, None] * inv_freq[None, :]        # [T, hd/2]
    emb = torch.cat([ang, ang], dim=-1)                                   # [T, hd]
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):  # x [H, T, hd]
    return x * cos + rotate_half(x) * sin


def attention(q, k, v, causal):
    """q [H,T,hd], k/v [Hkv,T,hd]; query head h reads kv head h // (H/Hkv)."""
    group = q.shape[0] // k.shape[0]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        t = q.shape[-2]
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float('-inf'))
    return torch.matmul(torch.softmax(s, dim=-1), v)


# ----------------------------------------------------------------------------- model
class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, 'config.json')) as f:
            c = json.load(f)
        t, v, self.vla = c.get('text_config', {}), c.get('vision_config', {}), c.get('vla')
        self.d = t.get('hidden_size', 4096)
        self.m = t.get('intermediate_size', 11008)
        self.L = t.get('num_hidden_layers', 32)
        self.H = t.get('num_attention_heads', 32)
        self.Hkv = t.get('num_key_value_heads', self.H)
        self.hd = t.get('head_dim') or self.d // self.H
        self.rms_eps = t.get('rms_norm_eps', 1e-6)
        self.theta = float(t.get('rope_theta', 10000.0))
        self.vocab = t.get('vocab_size', 32000)
        self.bos, self.eos = t.get('bos_token_id', 1), t.get('eos_token_id', 2)
        self.tied = t.get('tie_word_embeddings', c.get('tie_word_embeddings', False))
        self.vd = v.get('hidden_size', 1024)
        self.vL = v.get('num_hidden_layers', 24)
        self.vH = v.get('num_attention_heads', 16)
        self.S, self.P = v.get('image_size', 336), v.get('patch_size', 14)
        self.ln_eps = v.get('layer_norm_eps', 1e-5)
        self.vact = act_fn(v.get('hidden_act', 'quick_gelu'))
        self.pact = act_fn(c.get('projector_hidden_act', 'gelu'))
        self.image_token = c.get('image_token_index', c.get('image_token_id', 32000))
        self.feature_layer = c.get('vision_feature_layer', -2)
        self.strategy = c.get('vision_feature_select_strategy', 'default')
        vla = self.vla or {}
        self.head = vla.get('action_head', 'text')
        self.mean = vla.get('image_mean', [0.48145466, 0.4578275, 0.40821073])
        self.std = vla.get('image_std', [0.26862954, 0.26130258, 0.27577711])
        self.w = load_weights(model_dir)
        self.newline = newline_id(model_dir)

    def W(self, name, required=True):
        return safetensors_np.lookup(self.w, name, required)

    # --- vision tower + projector
    def preprocess(self, view):
        assert view['encoding'] == 'rgb8' and view['width'] == self.S and view['height'] == self.S
        a = np.frombuffer(view['data'], np.uint8).reshape(self.S, self.S, 3).astype(np.float32)
        x = torch.from_numpy(a).permute(2, 0, 1) / 255.0
        return (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]

    def vision(self, pixels, debug=None):
        """pixels [V,3,S,S] -> selected features [V, N, vd]; each view attends only to itself."""
        p = lambda n: self.W('vision_tower.vision_model.' + n)
        V = pixels.shape[0]
        x = F.conv2d(pixels, p('embeddings.patch_embedding.weight'), stride=self.P)
        x = x.flatten(2).transpose(1, 2)                                      # [V, Np, vd]
        cls = p('embeddings.class_embedding').reshape(1, 1, -1).expand(V, 1, self.vd)
        x = torch.cat([cls, x], dim=1) + p('embeddings.position_embedding.weight')[None]
        x = layer_norm(x, p('pre_layrnorm.weight'), p('pre_layrnorm.bias'), self.ln_eps)
        hs = [x]
        fl = self.feature_layer
        upto = fl if fl >= 0 else self.vL + 1 + fl                           # index into hs
        hdim = self.vd // self.vH
        for i in range(upto):
            q = lambda n: p(f'encoder.layers.{i}.{n}')
            h = layer_norm(x, q('layer_norm1.weight'), q('layer_norm1.bias'), self.ln_eps)
            proj = lambda n: F.linear(h, q(f'self_attn.{n}.weight'), q(f'self_attn.{n}.bias'))
            heads = lambda t: t.reshape(V, -1, self.vH, hdim).transpose(1, 2)  # [V, H, T, hd]
            a = attention(heads(proj('q_proj')), heads(proj('k_proj')), heads(proj('v_proj')), causal=False)
            a = a.transpose(1, 2).reshape(V, -1, self.vd)
            x = x + F.linear(a, q('self_attn.out_proj.weight'), q('self_attn.out_proj.bias'))
            h = layer_norm(x, q('layer_norm2.weight'), q('layer_norm2.bias'), self.ln_eps)
            h = self.vact(F.linear(h, q('mlp.fc1.weight'), q('mlp.fc1.bias')))
            x = x + F.linear(h, q('mlp.fc2.weight'), q('mlp.fc2.bias'))
            hs.append(x)
        feats = hs[upto]
        if debug is not None:
            debug['vision_hidden_states'] = hs
        return feats[:, 1:] if self.strategy == 'default' else feats

    def project(self, feats):
        p = lambda n: self.W('multi_modal_projector.' + n)
        h = self.pact(F.linear(feats, p('linear_1.weight'), p('linear_1.bias')))
        return F.linear(h, p('linear_2.weight'), p('linear_2.bias'))

    def visual_tokens(self, views, debug=None):
        pixels = torch.stack([self.preprocess(v) for v in views])
        tok = self.project(self.vision(pixels, debug))                       # [V, Np, d]
        if self.vla and self.vla.get('camera_embedding'):
            tok = tok + self.W('vla.camera_embedding')[:len(views), None, :]
        if debug is not None:
            debug['pixels'], debug['visual_tokens'] = pixels, tok
        return tok

    # --- sequence + decoder
    def embed_sequence(self, input_ids, vis):
        emb = self.W('language_model.model.embed_tokens.weight')
        assert sum(1 for t in input_ids if t == self.image_token) == vis.shape[0], 'one image token per view'
        rows, v = [], 0
        for t in input_ids:
            if t == self.image_token:
                rows.append(vis[v])
                v += 1
            else:
                rows.append(emb[t][None])
        return torch.cat(rows, dim=0)

    def decoder(self, x, debug=None):
        """x [T, d] embeddings -> final-normed hidden states [T, d]."""
        p = lambda n: self.W('language_model.model.' + n)
        T = x.shape[0]
        cos, sin = rope_cos_sin(torch.arange(T), self.hd, self.theta)
        for i in range(self.L):
            q = lambda n: p(f'layers.{i}.{n}')
            h = rms_norm(x, q('input_layernorm.weight'), self.rms_eps)
            heads = lambda t, n: t.reshape(T, n, self.hd).transpose(0, 1)    # [n, T, hd]
            qq = apply_rope(heads(F.linear(h, q('self_attn.q_proj.weight')), self.H), cos, sin)
            kk = apply_rope(heads(F.linear(h, q('self_attn.k_proj.weight')), self.Hkv), cos, sin)
            vv = heads(F.linear(h, q('self_attn.v_proj.weight')), self.Hkv)
            a = attention(qq, kk, vv, causal=True).transpose(0, 1).reshape(T, self.H * self.hd)
            x = x + F.linear(a, q('self_attn.o_proj.weight'))
            h = rms_norm(x, q('post_attention_layernorm.weight'), self.rms_eps)
            g = F.silu(F.linear(h, q('mlp.gate_proj.weight'))) * F.linear(h, q('mlp.up_proj.weight'))
            x = x + F.linear(g, q('mlp.down_proj.weight'))
            if debug is not None:
                debug.setdefault('decoder_layers', []).append(x)
        return rms_norm(x, p('norm.weight'), self.rms_eps)

    def lm_head(self):
        w = self.W('language_model.lm_head.weight', required=False)
        if w is None and self.tied:
            w = self.W('language_model.model.embed_tokens.weight')
        return w

    def run(self, input_ids, views, head=None, max_new_tokens=None, stop_ids=(), debug=None):
        head = head or self.head
        vis = self.visual_tokens(views, debug)
        seq = self.embed_sequence(input_ids, vis)
        lm = self.lm_head()
        out = {'head': head}
        if head == 'waypoints':
            nq = self.vla['num_waypoints']
            seq = torch.cat([seq, self.W('vla.action_queries')], dim=0)
            hid = self.decoder(seq, debug)
            act = hid[-nq:]
            h = F.gelu(F.linear(act, self.W('vla.action_head.fc1.weight'), self.W('vla.action_head.fc1.bias')))
            out['waypoints'] = F.linear(h, self.W('vla.action_head.fc2.weight'), self.W('vla.action_head.fc2.bias'))
            out['hidden'] = act
            out['logits'] = None if lm is None else F.linear(hid[-1], lm)
            out['tokens'] = []
            return out
        assert lm is not None, 'text head needs lm_head.weight (or tied embeddings)'
        if max_new_tokens is None:
            max_new_tokens = (self.vla or {}).get('max_new_tokens', 64)
        stops = {self.eos, *stop_ids}
        emb = self.W('language_model.model.embed_tokens.weight')
        tokens = []
        for step in range(max_new_tokens):      # re-run the full prefill each step (no KV cache)
            hid = self.decoder(seq, debug if step == 0 else None)
            logits = F.linear(hid[-1], lm)
            if step == 0:
                out['logits'], out['hidden'] = logits, hid[-1]
            tok = int(np.argmax(logits.numpy()))  # first maximum = lowest id on ties
            if tok in stops:
                break
            tokens.append(tok)
            seq = torch.cat([seq, emb[tok][None]], dim=0)
        if 'logits' not in out:
            out['logits'], out['hidden'] = None, None
        out['tokens'] = tokens
        return out


# ----------------------------------------------------------------------------- goldens
def structured_frame(rng, S):
    """A horizon, a road trapezoid and noise, as rgb8 [S, S, 3]."""
    y, x = np.mgrid[0:S, 0:S]
    sky = y < S // 2
    road = ~sky & (np.abs(x - S / 2) < (y - S / 2) * 1.2)
    base = np.where(sky[..., None], [120, 170, 230], np.where(road[..., None], [70, 70, 75], [60, 120, 50]))
    base = base + rng.integers(-40, 41, size=3)[None, None, :]
    return np.clip(base + rng.integers(-25, 26, size=(S, S, 3)), 0, 255).astype(np.uint8)


def newline_id(model_dir):
    try:
        with open(os.path.join(model_dir, 'tokenizer.json')) as f:
            vocab = json.load(f)['model']['vocab']
        return next(vocab[k] for k in ('<0x0A>', '\n', '\u010a') if k in vocab)
    except (OSError, KeyError, StopIteration, TypeError):
        return None


def prompt_ids(rng, m, n_views):
    def ids(k):
        out = []
        while len(out) < k:
            t = int(rng.integers(3, m.vocab))
            if t not in (m.image_token, m.bos, m.eos):
                out.append(t)
        return out
    newline = m.newline if m.newline is not None else ids(1)[0]
    seq = [m.bos] + ids(5)
    for _ in range(n_views):
        seq += [m.image_token, newline]
    return seq + ids(8)


def fmt(t):
    if t is None:
        return None
    a = np.asarray(t, dtype=np.float32).reshape(-1)
    assert np.all(np.isfinite(a)), 'non-finite output'
    return [float('%.9g' % v) for v in a]


def make_case(m, name, model_name, head, n_views, rng, max_new_tokens=None):
    views = [{'width': m.S, 'height': m.S, 'encoding': 'rgb8', 'data': structured_frame(rng, m.S).tobytes()}
             for _ in range(n_views)]
    ids = prompt_ids(rng, m, n_views)
    with torch.no_grad():
        r = m.run(ids, views, head=head, max_new_tokens=max_new_tokens)
    return {'name': name, 'model': model_name, 'head': head, 'input_ids': ids,
            'views': [{'width': v['width'], 'height': v['height'], 'encoding': 'rgb8',
                       'data_b64': base64.b64encode(v['data']).decode('ascii')} for v in views],
            'max_new_tokens': max_new_tokens, 'waypoints': fmt(r.get('waypoints')),
            'hidden': fmt(r['hidden']), 'logits': fmt(r['logits']), 'tokens': r['tokens']}


def cmd_golden(args):
    torch.set_num_threads(1)  # reproducible reductions
    tiny = os.path.normpath(args.model)
    dirs = {'tiny': tiny}  # the other test models are tiny's siblings
    for name in ('tiny-text', 'tiny-f16', 'tiny-bf16'):
        dirs[name] = os.path.normpath(getattr(args, name.replace('-', '_') + '_model') or
                                      os.path.join(os.path.dirname(tiny), name))
    models = {name: Model(d) for name, d in dirs.items()}
    rng = np.random.default_rng(20240611)
    cases = [make_case(models['tiny'], 'tiny-3-views-waypoints', 'tiny', 'waypoints', 3, rng),
             make_case(models['tiny'], 'tiny-1-view-waypoints', 'tiny', 'waypoints', 1, rng),
             make_case(models['tiny-text'], 'tiny-text-3-views-text', 'tiny-text', 'text', 3, rng, max_new_tokens=5),
             make_case(models['tiny-text'], 'tiny-text-1-view-text', 'tiny-text', 'text', 1, rng, max_new_tokens=5),
             make_case(models['tiny-f16'], 'tiny-f16-3-views-waypoints', 'tiny-f16', 'waypoints', 3, rng),
             make_case(models['tiny-bf16'], 'tiny-bf16-3-views-waypoints', 'tiny-bf16', 'waypoints', 3, rng)]
    gen = {'command': REGEN_CMD, 'reference': 'tools/reference/vla_ref.py', 'models': {}}
    for name, d in dirs.items():
        gen['models'][name] = {'model_dir_name': os.path.basename(d),
                               'safetensors_sha256': sha256(os.path.join(d, 'model.safetensors'))}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump({'generator': gen, 'cases': cases}, f, separators=(',', ':'))
        f.write('\n')
    for c in cases:
        print(f"{c['name']}: {len(c['input_ids'])} ids, tokens={c['tokens']}, "
              f"waypoints={c['waypoints'] and c['waypoints'][:4]}")
    print(f'wrote {args.out}')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    g = sub.add_parser('golden', help='write the golden JSON')
    g.add_argument('--model', required=True, help='the waypoints model dir (build/test-models/tiny)')
    for n in ('tiny-text', 'tiny-f16', 'tiny-bf16'):
        g.add_argument(f'--{n}-model', help=f'default: the sibling {n} of --model')
    g.add_argument('--out', required=True)
    sub.add_parser('selftest', help='identity checks on a random throwaway model')
    a = ap.parse_args()
    if a.cmd == 'selftest':
        sys.dont_write_bytecode = True  # keep tools/reference free of __pycache__
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import vla_ref_selftest
        sys.exit(vla_ref_selftest.main(sys.modules[__name__]))
    with torch.no_grad():
        cmd_golden(a)
