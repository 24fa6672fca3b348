#!/usr/bin/python3
"""Independent float64 (numpy) reference of the forward pass WITH visual-token pruning.

Written from docs/autoprune.md (the specification) and docs/model-format.md, not from native/:
the vision tower with the CLS prior and its pad mask, the decoder with per-layer pruning
(autoprune, fastv, pdrop, sparsevlm-fixed, cls-prior), token and FLOPs budgets, the schedule
and its bisection, the MI, DPC-kNN recycling with both density-tie rules, kept or re-indexed RoPE
positions, the waypoint and the text head (greedy decode over per-layer KV caches).
scripts/prune-reference.ts runs it beside the engine (docs/autoprune.md, "Checking the engine").

  /usr/bin/python3 tools/reference/prune_ref.py run --cases CASES.json --out RESULTS.json

CASES.json: {"models": {name: dir}, "cases": [{"id", "model", "input_ids", "views": [{"width",
"height", "encoding": "rgb8", "data_b64"}], "head", "max_new_tokens", "prune": {the engine's
prune options}}]}. Each result holds the kept visual tokens per layer (original indices
view * N_p + patch, -1 for a merged row), the counts, MI_0, MI_1, k, the scale and the outputs.

Where the specification leaves something open, the choice made here is marked "spec:" below:
- `random`: the draw's RNG is not specified, so the policy is not reproduced (refused here).
- Views must already be S pixels on their long side (only letterboxing, no resampling): the
  resampling filter's rounding is the preprocessing's business, not the pruning's.
"""
import argparse
import base64
import json
import math
import os
import sys
from fractions import Fraction

import numpy as np

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__ (the import below)
import safetensors_np  # noqa: E402  (beside this file: the tools' one reader)

EPS_MI = 1e-6


# ----------------------------------------------------------------------------- weights (numpy)
def load_weights(model_dir):
    return {k: v.astype(np.float64) for k, v in safetensors_np.load_weights(model_dir).items()}


# ----------------------------------------------------------------------------- math (float64)
def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


_erf = np.vectorize(math.erf)


def act(name, x):
    if name == 'quick_gelu':
        return x / (1 + np.exp(-1.702 * x))
    if name == 'gelu':
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if name in ('gelu_pytorch_tanh', 'gelu_new'):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == 'silu':
        return x / (1 + np.exp(-x))
    raise ValueError(name)


def softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def rope(x, pos, theta):
    """x [H, n, hd], pos [n] (integers, possibly with gaps): the rotate-half form."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.asarray(pos, np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    h = hd // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


def topk_rows(scores, k):
    """Indices (into scores) of the k largest, ties to the earlier row, returned in row order."""
    order = np.argsort(-np.asarray(scores), kind='stable')
    return np.sort(order[:k])


def round_half_up(x):
    return int(math.floor(x + 0.5))


# ----------------------------------------------------------------------------- model
class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, 'config.json')) as f:
            c = json.load(f)
        t, v = c.get('text_config', {}), c.get('vision_config', {})
        self.vla = c.get('vla') or {}
        self.d = t.get('hidden_size', 4096)
        self.m = t.get('intermediate_size', 11008)
        self.L = t.get('num_hidden_layers', 32)
        self.H = t.get('num_attention_heads', 32)
        self.Hkv = t.get('num_key_value_heads', self.H)
        self.hd = t.get('head_dim') or self.d // self.H
        self.rms_eps = t.get('rms_norm_eps', 1e-6)
        self.theta = float(t.get('rope_theta', 10000.0))
        self.eos = t.get('eos_token_id', 2)
        self.tied = t.get('tie_word_embeddings', c.get('tie_word_embeddings', False))
        self.vd = v.get('hidden_size', 1024)
        self.vL = v.get('num_hidden_layers', 24)
        self.vH = v.get('num_attention_heads', 16)
        self.S, self.P = v.get('image_size', 336), v.get('patch_size', 14)
        self.ln_eps = v.get('layer_norm_eps', 1e-5)
        self.vact = v.get('hidden_act', 'quick_gelu')
        self.pact = c.get('projector_hidden_act', 'gelu')
        self.image_token = c.get('image_token_index', c.get('image_token_id', 32000))
        self.feature_layer = c.get('vision_feature_layer', -2)
        self.strategy = c.get('vision_feature_select_strategy', 'default')
        self.head = self.vla.get('action_head', 'text')
        self.pad = self.vla.get('image_preprocess', 'pad') == 'pad'
        self.mean = self.vla.get('image_mean', [0.48145466, 0.4578275, 0.40821073])
        self.std = self.vla.get('image_std', [0.26862954, 0.26130258, 0.27577711])
        self.nq = self.vla.get('num_waypoints', 0) if self.head == 'waypoints' else 0
        self.w = load_weights(model_dir)
        self.grid = self.S // self.P
        self.Np = self.grid * self.grid if self.strategy == 'default' else self.grid * self.grid + 1

    def W(self, name, required=True):
        return safetensors_np.lookup(self.w, name, required)

    # --- preprocessing: letterbox only (spec: resampling is not reproduced, see the docstring)
    def preprocess(self, view):
        W, H, S = view['width'], view['height'], self.S
        if view['encoding'] != 'rgb8':
            raise ValueError('views must be rgb8')
        img = np.frombuffer(base64.b64decode(view['data_b64']), np.uint8).reshape(H, W, 3)
        if max(W, H) != S or (not self.pad and W != H):
            raise ValueError(f'view {W}x{H}: the reference takes frames whose long side is S = {S} (letterbox only)')
        canvas = np.empty((S, S, 3), np.uint8)
        # docs/model-format.md: the letterbox colour is the mean, as 8-bit (truncated)
        canvas[:] = [int(np.float32(m) * np.float32(255)) for m in self.mean]
        y0, x0 = (S - H) // 2, (S - W) // 2
        canvas[y0:y0 + H, x0:x0 + W] = img
        x = canvas.astype(np.float64).transpose(2, 0, 1) / 255.0
        return (x - np.array(self.mean)[:, None, None]) / np.array(self.std)[:, None, None]

    def pad_mask(self, W, H):
        """Patches of the letterbox padding ("Layer-0 selection": the square minus the image band
        widened by floor((S'+23)/24) px). spec: a patch is sampled at its top-left pixel."""
        side = max(W, H)
        border = (side + 23) // 24
        x0, y0 = (side - W) // 2, (side - H) // 2
        x1, y1 = min(side, x0 + W + border), min(side, y0 + H + border)
        x0, y0 = max(0, x0 - border), max(0, y0 - border)
        g = self.grid
        mask = np.zeros(g * g, bool)
        for gy in range(g):
            for gx in range(g):
                sx, sy = gx * side // g, gy * side // g
                mask[gy * g + gx] = sx < x0 or sx >= x1 or sy < y0 or sy >= y1
        return mask

    def vision(self, views, pad_mask):
        """-> visual tokens [V * Np, d] and the CLS prior [V * Np]."""
        p = lambda n: self.W('vision_tower.vision_model.' + n)
        S, P, g, vd = self.S, self.P, self.grid, self.vd
        toks, priors = [], []
        fl = self.feature_layer
        upto = fl if fl >= 0 else self.vL + 1 + fl
        hdim = vd // self.vH
        for vi, view in enumerate(views):
            px = self.preprocess(view)
            wpe = p('embeddings.patch_embedding.weight').reshape(vd, -1)          # [vd, 3 P P]
            patches = px.reshape(3, g, P, g, P).transpose(1, 3, 0, 2, 4).reshape(g * g, -1)
            x = patches @ wpe.T
            x = np.concatenate([p('embeddings.class_embedding').reshape(1, vd), x], 0)
            x = x + p('embeddings.position_embedding.weight')
            x = layer_norm(x, p('pre_layrnorm.weight'), p('pre_layrnorm.bias'), self.ln_eps)
            prior = np.zeros(g * g)
            for i in range(upto):
                q = lambda n: p(f'encoder.layers.{i}.{n}')
                h = layer_norm(x, q('layer_norm1.weight'), q('layer_norm1.bias'), self.ln_eps)
                proj = lambda n: linear(h, q(f'self_attn.{n}.weight'), q(f'self_attn.{n}.bias'))
                heads = lambda t: t.reshape(-1, self.vH, hdim).transpose(1, 0, 2)
                qq, kk, vv = heads(proj('q_proj')), heads(proj('k_proj')), heads(proj('v_proj'))
                a = softmax(qq @ kk.transpose(0, 2, 1) / math.sqrt(hdim))        # [H, T, T]
                if i == upto - 1:
                    # the CLS prior: the class row at the feature layer, mean over heads, patches only
                    prior = a[:, 0, 1:].mean(0)
                o = (a @ vv).transpose(1, 0, 2).reshape(-1, vd)
                x = x + linear(o, q('self_attn.out_proj.weight'), q('self_attn.out_proj.bias'))
                h = layer_norm(x, q('layer_norm2.weight'), q('layer_norm2.bias'), self.ln_eps)
                h = act(self.vact, linear(h, q('mlp.fc1.weight'), q('mlp.fc1.bias')))
                x = x + linear(h, q('mlp.fc2.weight'), q('mlp.fc2.bias'))
            if pad_mask and self.pad:
                prior = np.where(self.pad_mask(view['width'], view['height']), 0.0, prior)
            feats = x[1:] if self.strategy == 'default' else x
            if self.strategy != 'default':
                prior = np.concatenate([[0.0], prior])
            pp = lambda n: self.W('multi_modal_projector.' + n)
            t = linear(act(self.pact, linear(feats, pp('linear_1.weight'), pp('linear_1.bias'))),
                       pp('linear_2.weight'), pp('linear_2.bias'))
            if self.vla.get('camera_embedding'):
                t = t + self.W('vla.camera_embedding')[vi]
            toks.append(t)
            priors.append(prior)
        return np.concatenate(toks, 0), np.concatenate(priors, 0)

    # --- decoder
    def layer(self, i, x, pos, cache, prob_rows):
        """One decoder layer over the rows x [n, d] at RoPE positions pos, appending to cache
        (this layer's K, V). -> new x, attention probabilities [H, len(prob_rows), keys]."""
        p = lambda n: self.W(f'language_model.model.layers.{i}.{n}')
        n = x.shape[0]
        h = rms_norm(x, p('input_layernorm.weight'), self.rms_eps)
        heads = lambda t, k: t.reshape(n, k, self.hd).transpose(1, 0, 2)
        q = rope(heads(linear(h, p('self_attn.q_proj.weight')), self.H), pos, self.theta)
        k = rope(heads(linear(h, p('self_attn.k_proj.weight')), self.Hkv), pos, self.theta)
        v = heads(linear(h, p('self_attn.v_proj.weight')), self.Hkv)
        cache['k'] = k if cache.get('k') is None else np.concatenate([cache['k'], k], 1)
        cache['v'] = v if cache.get('v') is None else np.concatenate([cache['v'], v], 1)
        K, V = cache['k'], cache['v']
        g = self.H // self.Hkv
        K, V = np.repeat(K, g, 0), np.repeat(V, g, 0)
        nk = K.shape[1]
        s = q @ K.transpose(0, 2, 1) / math.sqrt(self.hd)                       # [H, n, nk]
        causal = np.arange(nk)[None, :] > (nk - n + np.arange(n))[:, None]
        s = np.where(causal[None], -np.inf, s)
        a = softmax(s)
        probs = a[:, prob_rows, :] if len(prob_rows) else None
        o = (a @ V).transpose(1, 0, 2).reshape(n, -1)
        x = x + linear(o, p('self_attn.o_proj.weight'))
        h = rms_norm(x, p('post_attention_layernorm.weight'), self.rms_eps)
        gg = act('silu', linear(h, p('mlp.gate_proj.weight'))) * linear(h, p('mlp.up_proj.weight'))
        return x + linear(gg, p('mlp.down_proj.weight')), probs


# ----------------------------------------------------------------------------- options and plans
DEFAULTS = {'x0': 14.9, 'k0': 0.4, 'gamma': 0.2, 'recycle': False, 'reindexPositions': False,
            'scoreRows': 'instruction', 'parity': False, 'padMask': True, 'fastvLayer': 2, 'pdropLayers': [], 'seed': 0}


class Refused(Exception):
    pass


def resolve(opts):
    """The options with defaults, parity resolved ("Parity with the reference")."""
    o = dict(DEFAULTS)
    o.update({k: v for k, v in opts.items() if v is not None})
    o.setdefault('policy', 'none')
    if o['parity']:
        o['reindexPositions'], o['recycle'], o['scoreRows'] = True, True, 'tail'
    return o


def recycled(pruned):
    """("Positions and recycling") M candidates and C cluster rows for D pruned rows."""
    if pruned <= 0:
        return 0, 0
    M = int(math.floor(0.3 * pruned)) + 1
    return M, min(M // 10 + 1, M)


def scale_layers(at32, L):
    """("Baselines") layer a of 32 -> round((a + 1) L / 32) - 1, kept strictly increasing.
    spec: a layer that would repeat moves one later; none past L - 1."""
    out, prev = [], -1
    for a in at32:
        l = max(prev + 1, round_half_up((a + 1) * L / 32) - 1)
        if l > L - 1:
            break
        out.append(l)
        prev = l
    return out


def simulate_stages(L, Nv, stages, recycle):
    """Visual count after each layer: stages {layer: keep}, each adds C merged rows if recycling."""
    kept, cur = [], Nv
    for l in range(L):
        if l in stages:
            k = min(stages[l], cur)
            cur = k + (recycled(cur - k)[1] if recycle else 0)
        kept.append(cur)
    return kept


class Budget:
    """("Budget") tokens:T, the average visual count over the layers, or flops:G, a cap of G GFLOP
    on the prefill: sum over layers of F(N_o + visual rows entering the layer)."""

    def __init__(self, b, L, Nv, No, d, m):
        self.kind, self.value = b['kind'], float(b['value'])
        self.L, self.Nv, self.No, self.d, self.m = L, Nv, No, d, m

    def layer_flops(self, n):
        return 4 * n * self.d ** 2 + 2 * n * n * self.d + 3 * n * self.d * self.m

    def flops(self, kept, entering):
        return sum(self.layer_flops(self.No + (entering if l == 0 else kept[l - 1])) for l in range(self.L))

    def meets(self, kept, entering):
        if self.kind == 'tokens':
            return sum(kept) / len(kept) <= self.value + 1e-9
        return self.flops(kept, entering) <= self.value * 1e9

    def allows_all(self):
        if self.kind == 'tokens':
            return self.value >= self.Nv
        return self.value * 1e9 >= self.flops([self.Nv] * self.L, self.Nv)


def largest_real(ok, hi):
    """sup { x in [0, hi] : ok(x) } by bisection, returned as a feasible x (None if ok(0) fails)."""
    if not ok(0.0):
        return None
    if ok(hi):
        return hi
    lo = 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid <= lo or mid >= hi:
            break
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def autoprune_curve(L, k, x0):
    return [0.0] + [0.75 / (1 + math.exp(k * (l - (x0 + k)))) for l in range(1, L)]


def autoprune_counts(q, n1, recycle):
    """("Budget") the frame as the prefill will run it: ceil, clip at 1, merged rows if recycling."""
    kept, cur = [n1], n1
    for l in range(1, len(q)):
        keep = min(int(math.ceil((n1 - 1) * min(1.0, q[l]))), cur)
        cur = keep + (recycled(cur - keep)[1] if recycle else 0)
        kept.append(cur)
    return kept


def autoprune_scale(L, n1, T, k, x0, recycle):
    """Bisection on [0, 20], 200 steps, stop within 0.01 of L T; the step nearest the target."""
    p = autoprune_curve(L, k, x0)
    target = L * T
    lo, hi, best, best_diff = 0.0, 20.0, None, math.inf
    for _ in range(200):
        mid = (lo + hi) / 2
        area = sum(autoprune_counts([mid * v for v in p], n1, recycle))
        diff = abs(area - target)
        if diff < best_diff:
            best, best_diff = mid, diff
            if diff < 0.01:
                break
        if area < target:
            lo = mid
        else:
            hi = mid
    return best, [best * v for v in p]


def autoprune_tokens_for_flops(B, L, Nv, o):
    """("Budget", FLOPs cap, step 1) the largest T whose token schedule fits the cap at each of
    nine slopes from k0 down to 0. spec: T from 0.4 (one token at layer 0) to N_v."""
    def fits(T):
        n1 = min(int(math.floor(2.5 * T)), Nv)
        for i in range(9):
            k = max(o['k0'] * (1 - i / 8), 0.0)
            _, q = autoprune_scale(L, n1, T, k, o['x0'], o['recycle'])
            if B.flops(autoprune_counts(q, n1, o['recycle']), Nv) > B.value * 1e9:
                return False
        return True
    lo, hi = 0.4, float(Nv)
    if fits(hi):
        return hi
    if not fits(lo):
        return None
    for _ in range(50):
        mid = (lo + hi) / 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def autoprune_scale_flops(B, L, Nv, n1, k, o):
    """("Budget", FLOPs cap, step 2) the largest s in [0, 20] whose prefill fits the cap."""
    p = autoprune_curve(L, k, o['x0'])
    ok = lambda s: B.flops(autoprune_counts([s * v for v in p], n1, o['recycle']), Nv) <= B.value * 1e9
    s = largest_real(ok, 20.0)
    s = 0.0 if s is None else s  # not even the smallest schedule: the frame runs over the cap
    return s, [s * v for v in p]


def plan(o, L, Nv, No, d, m):
    """-> dict: pre (pre-decoder count or None), steps {layer: (rows, keep or None, recycle, prior_mix)}."""
    pol = o['policy']
    b = o.get('budget')
    none = {'prunes': False, 'pre': None, 'steps': {}, 'reindex': False, 'target': Nv}
    if pol == 'none':
        return none
    if not b:
        raise Refused(f'policy {pol} needs a budget')
    # ("Baselines", PDrop) explicit stage layers: 1..8, strictly increasing, each in 0..L-2; checked
    # whatever the budget, before a budget that allows every token prunes nothing
    explicit = list(o['pdropLayers'] or [])
    if pol == 'pdrop' and explicit:
        if len(explicit) > 8 or any(not 0 <= l <= L - 2 for l in explicit) or \
                any(b2 <= a2 for a2, b2 in zip(explicit, explicit[1:])):
            raise Refused(f'spec: pdropLayers {explicit} not 1..8 increasing layers in 0..{L - 2}')
    B = Budget(b, L, Nv, No, d, m)
    if B.allows_all():
        return none  # "A budget that allows every token ... prunes nothing"
    if not B.value > 0:
        raise Refused('budget must be positive')
    meets = B.meets
    T = B.value
    reindex = o['reindexPositions']
    # ("Scoring rows") `last` is the last prompt row: the last row before the action queries
    rows = {'instruction': 'instruction', 'tail': 'tail', 'last': 'last_instruction'}[o['scoreRows']]
    if pol == 'autoprune':
        if B.kind == 'flops':
            T = autoprune_tokens_for_flops(B, L, Nv, o)
            if T is None:
                raise Refused('budget cannot be met by policy autoprune')
        n1 = min(int(math.floor(2.5 * T)), Nv)
        steps = {0: (rows, n1, False, 0.3)}
        for l in range(1, L):
            steps[l] = (rows, None, o['recycle'], 0.0)  # counts from the curve, after layer 1
        return {'prunes': True, 'pre': None, 'steps': steps, 'reindex': reindex, 'n1': n1, 'target': T,
                'budget': B}
    if pol == 'fastv':
        K = o['fastvLayer']
        if not 1 <= K <= L - 1:
            raise Refused(f'spec: fastvLayer {K} outside 1..L-1')
        best = None
        for x in range(Nv, -1, -1):
            if meets(simulate_stages(L, Nv, {K - 1: x}, False), Nv):
                best = x
                break
        if best is None:
            raise Refused('budget cannot be met by policy fastv')
        # ("Baselines") FastV never recycles; its positions follow reindexPositions, but parity
        # does not re-index them
        return {'prunes': True, 'pre': None, 'steps': {K - 1: ('last', best, False, 0.0)},
                'reindex': reindex and not o['parity'], 'target': T, 'parameter': best}
    if pol == 'pdrop':
        # the default stages, then (when even lambda = 0 misses) the earlier ones; explicit
        # stage layers alone, without a fallback
        tries = [explicit] if explicit else [scale_layers(at32, L) for at32 in ((7, 15, 23), (1, 11, 21))]
        for layers in tries:
            # exact rationals: a float product that rounds up to an integer would make the
            # feasible set of lambda non-monotone
            st = lambda lam: {l: math.floor(Nv * Fraction(lam) ** (i + 1)) for i, l in enumerate(layers)}
            lam = largest_real(lambda x: meets(simulate_stages(L, Nv, st(x), False), Nv), 1.0)
            if lam is not None:
                return {'prunes': True, 'pre': None, 'reindex': reindex, 'target': T, 'parameter': lam,
                        'steps': {l: ('last_instruction', k, False, 0.0) for l, k in st(lam).items()}}
        raise Refused('budget cannot be met by policy pdrop')
    if pol == 'sparsevlm-fixed':
        layers = scale_layers((1, 5, 14), L)
        t576 = T * 576.0 / Nv if B.kind == 'tokens' else 192.0
        # the schedule nearest the budget among SparseVLM's 64, 128, 192 of 576
        base = min(((64, (66, 30, 17)), (128, (303, 110, 36)), (192, (300, 200, 110))),
                   key=lambda e: abs(e[0] - t576))[1]
        st = lambda f: {l: min(Nv, math.floor(Fraction(base[i] * Nv, 576) * Fraction(f))) for i, l in enumerate(layers)}
        fac = largest_real(lambda f: meets(simulate_stages(L, Nv, st(f), o['recycle']), Nv), 576.0 / base[2])
        if fac is None:
            raise Refused('budget cannot be met by policy sparsevlm-fixed')
        return {'prunes': True, 'pre': None, 'reindex': reindex, 'target': T, 'parameter': fac,
                'steps': {l: (rows, k, o['recycle'], 0.0) for l, k in st(fac).items()}}
    if pol == 'cls-prior':
        x = next((x for x in range(Nv, -1, -1) if meets([x] * L, x)), None)
        if x is None:
            raise Refused('budget cannot be met by policy cls-prior')
        return {'prunes': True, 'pre': x, 'steps': {}, 'reindex': reindex, 'target': T, 'parameter': x}
    if pol == 'random':
        raise Refused('spec: the random policy\'s RNG is not specified')
    raise Refused(f'unknown policy {pol}')


# ----------------------------------------------------------------------------- MI and DPC-kNN
def mi_head(X):
    """("Mutual information") X [R, visual columns] of one head -> bits."""
    R = X.shape[0]
    pt = 1.0 / R
    ptv = X / R
    pv = X.mean(0)
    ratio = np.maximum(ptv / (pt * pv[None, :] + EPS_MI), EPS_MI)
    return float((ptv * np.log2(ratio)).sum())


def dpc_knn(xs, C, reference_ties):
    """("Positions and recycling") xs [M, d] in sequence order -> C merged rows, centre order."""
    M, d = xs.shape
    diff = xs[:, None, :] - xs[None, :, :]
    D = np.sqrt((diff * diff).sum(-1)) / math.sqrt(d)
    rho = np.array([math.exp(-np.mean(np.sort(D[i] ** 2)[:C])) for i in range(M)])
    dmax = D.max()
    delta = np.empty(M)
    for i in range(M):
        if reference_ties:
            denser = [j for j in range(M) if rho[j] > rho[i]]
        else:
            denser = [j for j in range(M) if rho[j] > rho[i] or (rho[j] == rho[i] and j < i)]
        delta[i] = min(D[i, j] for j in denser) if denser else dmax
    centres = np.argsort(-(delta * rho), kind='stable')[:C]
    assign = np.argmin(D[:, centres], axis=1)   # spec: a row equidistant from two centres joins the first
    for ci, c in enumerate(centres):
        assign[c] = ci
    out = np.zeros((C, d))
    for ci in range(C):
        mem = xs[assign == ci]
        out[ci] = mem.sum(0) / (len(mem) + 1e-6)
    return out


# ----------------------------------------------------------------------------- the pruned forward
def run_case(m, case):
    o = resolve(case.get('prune') or {})
    head = case.get('head') or m.head
    views = case['views']
    vis, prior = m.vision(views, o['padMask'])
    Np, V = m.Np, len(views)
    Nv = V * Np
    emb = m.W('language_model.model.embed_tokens.weight')
    # rows: kind 0 other, 1 visual, 2 merged; orig = visual index v * Np + p
    xs, orig, kind = [], [], []
    vi = 0
    ids = case['input_ids']
    last_img = max(i for i, t in enumerate(ids) if t == m.image_token)
    for i, t in enumerate(ids):
        if t == m.image_token:
            xs.append(vis[vi * Np:(vi + 1) * Np])
            orig += list(range(vi * Np, (vi + 1) * Np))
            kind += [1] * Np
            vi += 1
        else:
            xs.append(emb[t][None])
            orig.append(-1)
            kind.append(0)
    assert vi == V, 'one image token per view'
    nq = m.nq if head == 'waypoints' else 0
    if nq:
        xs.append(m.W('vla.action_queries'))
        orig += [-1] * nq
        kind += [0] * nq
    x = np.concatenate(xs, 0)
    orig, kind = np.array(orig), np.array(kind)
    n_full = x.shape[0]
    # the tail: every row after the last view; it stays the last N_t rows
    Nt = len(ids) - 1 - last_img + nq
    pos = np.arange(n_full)
    L = m.L
    pl = plan(o, L, Nv, n_full - Nv, m.d, m.m)
    reindex = pl['reindex']
    res = {'policy': o['policy'], 'nVisual': Nv, 'mi0': 0.0, 'mi1': 0.0, 'k': 0.0, 'scale': 0.0}

    def compact(x, orig, kind, pos, keep_rows, merged=None):
        """Keep the non-visual rows and keep_rows (indices of rows), merged rows before the tail."""
        sel = np.zeros(len(kind), bool)
        sel[kind == 0] = True
        sel[keep_rows] = True
        idx = np.nonzero(sel)[0]
        a = len(idx) - Nt
        head_i, tail_i = idx[:a], idx[a:]
        c = 0 if merged is None else merged.shape[0]
        parts_x = [x[head_i]] + ([merged] if c else []) + [x[tail_i]]
        nx = np.concatenate(parts_x, 0)
        norig = np.concatenate([orig[head_i], -np.ones(c, int), orig[tail_i]])
        nkind = np.concatenate([kind[head_i], 2 * np.ones(c, int), kind[tail_i]])
        if reindex:
            npos = np.arange(len(nx))
        else:
            # merged rows: the position just after the row before them
            before = pos[head_i[-1]] + 1 if a > 0 else 0
            npos = np.concatenate([pos[head_i], np.full(c, before), pos[tail_i]])
        return nx, norig, nkind, npos

    if pl['pre'] is not None:
        vrows = np.nonzero(kind == 1)[0]
        chosen = vrows[topk_rows(prior[orig[vrows]], pl['pre'])]
        x, orig, kind, pos = compact(x, orig, kind, pos, chosen)

    caches = [dict() for _ in range(L)]
    kept_idx, kept_n, merged_n, per_view = [], [], [], []
    steps = dict(pl['steps'])
    mi = {}
    for l in range(L):
        n = x.shape[0]
        tail = n - Nt
        step = steps.get(l)
        rows = []
        if step is not None and (kind > 0).any():
            r = step[0]
            if r == 'tail':
                rows = list(range(tail, n))
            elif r == 'instruction':
                rows = list(range(tail, n - nq)) or list(range(tail, n))
            elif r == 'last':
                rows = [n - 1]
            elif r == 'last_instruction':
                rows = [max(tail, n - 1 - nq)]
        x, probs = m.layer(l, x, pos, caches[l], rows)
        if rows:
            vrows = np.nonzero(kind > 0)[0]
            A = probs[:, :, vrows]                                   # [H, R, visual present]
            R = len(rows)
            score = A.mean(axis=(0, 1))
            if o['policy'] == 'autoprune' and l <= 1:
                mi[l] = sum(mi_head(A[h]) for h in range(m.H))
            if step[3] > 0:
                res['mi0'] = mi[0] / R
                score = prior[orig[vrows]] + step[3] * res['mi0'] * score
            if o['policy'] == 'autoprune' and l == 1:
                res['mi1'] = mi[1]
                k = max(o['k0'] - o['gamma'] * mi[1], 0.0)
                if pl['budget'].kind == 'flops':
                    s, q = autoprune_scale_flops(pl['budget'], L, Nv, pl['n1'], k, o)
                else:
                    s, q = autoprune_scale(L, pl['n1'], pl['target'], k, o['x0'], o['recycle'])
                res['k'], res['scale'] = k, s
                for ll in range(1, L):
                    st = steps[ll]
                    steps[ll] = (st[0], int(math.ceil((pl['n1'] - 1) * min(1.0, q[ll]))), st[2], st[3])
                step = steps[l]
            K = max(0, min(step[1], len(vrows)))
            if K < len(vrows):
                keep_local = topk_rows(score, K)
                merged = None
                if step[2]:
                    pruned_local = np.setdiff1d(np.arange(len(vrows)), keep_local)
                    M, C = recycled(len(pruned_local))
                    cand = pruned_local[topk_rows(score[pruned_local], M)]   # the M best, in row order
                    merged = dpc_knn(x[vrows[cand]], C, o['parity'])
                x, orig, kind, pos = compact(x, orig, kind, pos, vrows[keep_local], merged)
        vis_now = np.nonzero(kind > 0)[0]
        kept_idx.append([int(v) for v in orig[vis_now]])
        kept_n.append(len(vis_now))
        merged_n.append(int((kind == 2).sum()))
        per_view.append([int(((orig >= vv * Np) & (orig < (vv + 1) * Np)).sum()) for vv in range(V)])
    entering = Nv if pl['pre'] is None else pl['pre']
    acct = Budget({'kind': 'tokens', 'value': 0}, L, Nv, n_full - Nv, m.d, m.m)
    res.update({'kept': kept_n, 'merged': merged_n, 'keptPerView': per_view, 'keptIndex': kept_idx,
                'prunes': pl['prunes'], 'avgTokens': sum(kept_n) / L, 'flops': acct.flops(kept_n, entering)})
    fn = m.W('language_model.model.norm.weight')
    hid = rms_norm(x, fn, m.rms_eps)
    lm = m.W('language_model.lm_head.weight', required=False)
    if lm is None and m.tied:
        lm = emb
    if head == 'waypoints':
        act_h = hid[-nq:]
        h = act('gelu', linear(act_h, m.W('vla.action_head.fc1.weight'), m.W('vla.action_head.fc1.bias')))
        wp = linear(h, m.W('vla.action_head.fc2.weight'), m.W('vla.action_head.fc2.bias'))
        res['waypoints'] = [float(v) for v in wp.reshape(-1)]
        res['hidden'] = [float(v) for v in act_h.reshape(-1)]
        res['tokens'] = []
        return res
    # text head: greedy decode over the per-layer caches ("Positions and recycling")
    max_new = case.get('max_new_tokens') or m.vla.get('max_new_tokens', 64)
    logits = linear(hid[-1], lm)
    res['hidden'] = [float(v) for v in hid[-1]]
    res['logits'] = [float(v) for v in logits]
    tokens = []
    for step_i in range(max_new):
        tok = int(np.argmax(logits))
        if tok == m.eos or tok in (case.get('stop_ids') or []):
            break
        tokens.append(tok)
        if step_i == max_new - 1:
            break
        xt = emb[tok][None]
        for l in range(L):
            p_l = caches[l]['k'].shape[1] if reindex else n_full + step_i
            xt, _ = m.layer(l, xt, np.array([p_l]), caches[l], [])
        logits = linear(rms_norm(xt, fn, m.rms_eps)[-1], lm)
    res['tokens'] = tokens
    res['waypoints'] = []
    return res


# ----------------------------------------------------------------------------- commands
def cmd_run(args):
    with open(args.cases) as f:
        spec = json.load(f)
    models = {name: Model(d) for name, d in spec['models'].items()}
    out = []
    for case in spec['cases']:
        try:
            r = run_case(models[case['model']], case)
        except Refused as e:
            r = {'refused': str(e)}
        r['id'] = case['id']
        out.append(r)
    with open(args.out, 'w') as f:
        json.dump({'results': out}, f)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run', help='run the cases of a JSON file')
    r.add_argument('--cases', required=True)
    r.add_argument('--out', required=True)
    a = ap.parse_args()
    np.seterr(divide='ignore', invalid='ignore', over='ignore')
    cmd_run(a)
