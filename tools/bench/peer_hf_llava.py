#!/usr/bin/python3
"""PyTorch / Hugging Face peer of native/bench/bench-cuda.cpp (docs/cuda-benchmark.md).

Builds transformers' LlavaForConditionalGeneration with the shapes of a config.json in this
repository's format (default: configs/bench/llava-1.5-7b-shapes.json, LLaVA-1.5-7B), in bf16 with
SDPA attention and random weights generated on the GPU (nothing is downloaded or read besides that
config), then times on the same GPU, for 1 and 6 views (several images in one prompt):

  vision   get_image_features(pixel_values) (CLIP tower + projector), all views in one batch
  prefill  the decoder over the whole prompt (text embeddings with the image features scattered
           in), use_cache=True, logits of the last position only where the version allows
  decode   greedy steps with past_key_values, ms per token
  e2e      one forward(input_ids, pixel_values) as a user of the library writes it (vision +
           merge + prefill), with the image-token layout this transformers version expects

with CUDA events, warm-up and median/p90 over iterations, and prints one JSON document.

  /usr/bin/python3 tools/bench/peer_hf_llava.py [--views 1,6] [--iters 10] [--warmup 3]
      [--decode-tokens 32] [--out FILE] [--config FILE] [--dry-run]
"""
import argparse
import inspect
import json
import math
import os
import platform
import random
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(REPO, 'configs', 'bench', 'llava-1.5-7b-shapes.json')

# Llama-tokenizer ids of the chat template's fixed words (random weights make them arbitrary,
# they only keep the prompt realistic); the same as bench-cuda's.
USER_IDS = [3148, 1001, 29901]                  # "USER:"
ASSISTANT_IDS = [319, 1799, 9047, 13566, 29901]  # "ASSISTANT:"
NEWLINE_ID = 13


# ----------------------------------------------------------------------------- output
class Failure(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def emit(doc, out_path):
    text = json.dumps(doc, indent=2)
    print(text)
    sys.stdout.flush()
    if out_path:
        with open(out_path, 'w') as f:
            f.write(text + '\n')


def rnd(v, sig=5):
    """v to `sig` significant digits; None when not finite."""
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    return float('%.*g' % (sig, v))


def summarize(xs):
    """median, p90 (nearest rank), min, max, as bench-cuda computes them."""
    xs = sorted(x for x in xs if x is not None and math.isfinite(x))
    if not xs:
        return {'median': None, 'p90': None, 'min': None, 'max': None}
    n = len(xs)
    med = xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])
    rank = max(1, int(math.ceil(0.9 * n)))
    return {'median': rnd(med), 'p90': rnd(xs[min(n, rank) - 1]), 'min': rnd(xs[0]), 'max': rnd(xs[-1])}


def progress(msg):
    print('peer_hf_llava: ' + msg, file=sys.stderr)
    sys.stderr.flush()


# ----------------------------------------------------------------------------- shapes
def load_shapes(path):
    """The fields bench-cuda's config parser reads, with the same defaults (vla/config.h)."""
    try:
        with open(path) as f:
            root = json.load(f)
    except (OSError, ValueError) as e:
        raise Failure('VLA_E_CONFIG', '%s: %s' % (path, e))
    t = root.get('text_config') or {}
    v = root.get('vision_config') or {}
    a = root.get('vla') or {}
    heads = t.get('num_attention_heads', 32)
    hidden = t.get('hidden_size', 4096)
    s = {
        'image_token': root.get('image_token_id', root.get('image_token_index', 32000)),
        'vision_feature_layer': root.get('vision_feature_layer', -2),
        'select_strategy': root.get('vision_feature_select_strategy', 'default'),
        'projector_act': root.get('projector_hidden_act', 'gelu'),
        'text': {
            'hidden': hidden, 'intermediate': t.get('intermediate_size', 11008),
            'layers': t.get('num_hidden_layers', 32), 'heads': heads,
            'kv_heads': t.get('num_key_value_heads', heads),
            'head_dim': t.get('head_dim', hidden // heads),
            'vocab': t.get('vocab_size', 32000), 'max_positions': t.get('max_position_embeddings', 4096),
            'rms_eps': t.get('rms_norm_eps', 1e-6), 'rope_theta': t.get('rope_theta', 10000.0),
            'bos': t.get('bos_token_id', 1), 'eos': t.get('eos_token_id', 2),
        },
        'vision': {
            'hidden': v.get('hidden_size', 1024), 'intermediate': v.get('intermediate_size', 4096),
            'layers': v.get('num_hidden_layers', 24), 'heads': v.get('num_attention_heads', 16),
            'image_size': v.get('image_size', 336), 'patch_size': v.get('patch_size', 14),
            'ln_eps': v.get('layer_norm_eps', 1e-5), 'act': v.get('hidden_act', 'quick_gelu'),
            'projection_dim': v.get('projection_dim', 768),
        },
        'cameras': len(a.get('cameras', ['image'])),
        'image_mean': a.get('image_mean', [0.48145466, 0.4578275, 0.40821073]),
        'image_std': a.get('image_std', [0.26862954, 0.26130258, 0.27577711]),
    }
    vs = s['vision']
    s['n_patches'] = (vs['image_size'] // vs['patch_size']) ** 2
    s['tokens_per_view'] = s['n_patches'] if s['select_strategy'] == 'default' else s['n_patches'] + 1
    n_states = vs['layers'] + 1
    fl = s['vision_feature_layer']
    s['vision_layers_needed'] = n_states + fl if fl < 0 else fl
    return s


# ----------------------------------------------------------------------------- arithmetic
# The same conventions as bench-cuda (2 FLOPs per multiply-add; docs/cuda-benchmark.md).
def layer_model_flops(t, n):
    d, m = t['hidden'], t['intermediate']
    qd, kvd = t['heads'] * t['head_dim'], t['kv_heads'] * t['head_dim']
    return 2.0 * n * (d * qd + 2.0 * d * kvd + qd * d) + 2.0 * n * 3.0 * d * m + 2.0 * n * (n + 1.0) * qd


def prefill_flops(t, n):
    return t['layers'] * layer_model_flops(t, n)


def vision_flops_per_image(s, layers_run):
    v, d = s['vision'], s['text']['hidden']
    Np = s['n_patches']
    T, D, Dff = Np + 1, v['hidden'], v['intermediate']
    f = 2.0 * Np * D * 3.0 * v['patch_size'] ** 2
    f += layers_run * (2.0 * T * (4.0 * D * D + 2.0 * D * Dff) + 4.0 * T * T * D)
    f += 2.0 * s['tokens_per_view'] * (D * d + d * d)
    return f


def decode_bytes(t, n_prompt, steps, wb=2.0, kvb=2.0, vocab=None):
    """Bytes `steps` greedy steps read: decoder weights, lm_head, an embedding row and, step j,
    every layer's KV cache of n_prompt + j + 1 rows."""
    d, m = t['hidden'], t['intermediate']
    qd, kvd = t['heads'] * t['head_dim'], t['kv_heads'] * t['head_dim']
    V = vocab or t['vocab']
    layers = t['layers'] * wb * (d * qd + 2.0 * d * kvd + qd * d + 3.0 * d * m + 2.0 * d)
    head = wb * (V * d + d)
    kv_rows = t['layers'] * (steps * n_prompt + steps * (steps + 1) / 2.0)
    return steps * (layers + head + wb * d) + kv_rows * 2.0 * kvd * kvb, layers, head


# ----------------------------------------------------------------------------- prompt
def prompt_ids(s, n_views, prefix, instruction, seed, image_tokens_per_view, vocab):
    """LLaVA-1.5's chat template, as bench-cuda builds it:
    [BOS system ... USER:] ([<image>] [\\n]) x views [instruction ... ASSISTANT:];
    `image_tokens_per_view` <image> ids per view (1: the pre-4.45 layout, N_patches: expanded)."""
    rng = random.Random(seed)
    llama = vocab >= 32000
    user, assistant = (USER_IDS, ASSISTANT_IDS) if llama else ([], [])
    img = s['image_token']

    def word():
        x = rng.randint(3, max(3, min(vocab, s['text']['vocab']) - 1))
        return 3 if x == img else x

    bos = s['text']['bos']
    ids = [bos if 0 <= bos < vocab else word()]
    while len(ids) < prefix - len(user):
        ids.append(word())
    ids += user[:max(0, prefix - len(ids))]
    for _ in range(n_views):
        ids += [img] * image_tokens_per_view
        ids.append(NEWLINE_ID if vocab > NEWLINE_ID else word())
    start = len(ids)
    while len(ids) - start < instruction - len(assistant):
        ids.append(word())
    ids += assistant[:max(0, instruction - (len(ids) - start))]
    return ids


# ----------------------------------------------------------------------------- transformers glue
def version_tuple(v):
    out = []
    for part in v.split('+')[0].split('.')[:3]:
        num = ''
        for ch in part:
            if not ch.isdigit():
                break
            num += ch
        out.append(int(num or 0))
    while len(out) < 3:
        out.append(0)
    return tuple(out)


def build_config(tr, s, vocab):
    t, v = s['text'], s['vision']
    text_kw = dict(hidden_size=t['hidden'], intermediate_size=t['intermediate'], num_hidden_layers=t['layers'],
                   num_attention_heads=t['heads'], num_key_value_heads=t['kv_heads'], head_dim=t['head_dim'],
                   max_position_embeddings=t['max_positions'], rms_norm_eps=t['rms_eps'], vocab_size=vocab,
                   bos_token_id=t['bos'], eos_token_id=t['eos'], tie_word_embeddings=False, hidden_act='silu',
                   attention_bias=False, mlp_bias=False)
    if float(t['rope_theta']) != 10000.0:  # the default everywhere; v5 moved it into rope_parameters
        text_kw['rope_theta'] = t['rope_theta']
    text_cfg = tr.LlamaConfig(**text_kw)
    vision_cfg = tr.CLIPVisionConfig(hidden_size=v['hidden'], intermediate_size=v['intermediate'],
                                     num_hidden_layers=v['layers'], num_attention_heads=v['heads'],
                                     image_size=v['image_size'], patch_size=v['patch_size'], hidden_act=v['act'],
                                     layer_norm_eps=v['ln_eps'], num_channels=3, projection_dim=v['projection_dim'])
    params = inspect.signature(tr.LlavaConfig.__init__).parameters
    kw = dict(vision_config=vision_cfg, text_config=text_cfg, projector_hidden_act=s['projector_act'],
              vision_feature_layer=s['vision_feature_layer'],
              vision_feature_select_strategy=s['select_strategy'])
    # The image token: `image_token_index` up to v4.x's signature, `image_token_id` as the attribute
    # newer code reads (attribute_map aliases them where both exist).
    if 'image_token_index' in params or 'image_token_id' not in params:
        kw['image_token_index'] = s['image_token']
    else:
        kw['image_token_id'] = s['image_token']
    for k, val in (('image_seq_length', s['tokens_per_view']), ('multimodal_projector_bias', True),
                   ('vocab_size', vocab), ('tie_word_embeddings', False)):
        if k in params:
            kw[k] = val
    cfg = tr.LlavaConfig(**kw)
    for name in ('image_token_index', 'image_token_id'):
        try:
            if getattr(cfg, name, None) != s['image_token']:
                setattr(cfg, name, s['image_token'])
        except (AttributeError, TypeError):
            pass
    return cfg


def image_token_of(cfg):
    for name in ('image_token_id', 'image_token_index'):
        x = getattr(cfg, name, None)
        if x is not None:
            return int(x)
    raise Failure('VLA_E_CONFIG', 'the LlavaConfig has neither image_token_id nor image_token_index')


def build_model(torch, tr, cfg, attn, dtype):
    """LlavaForConditionalGeneration from cfg, parameters created on the GPU in `dtype`."""
    cls = tr.LlavaForConditionalGeneration
    new_dtype_kw = version_tuple(tr.__version__) >= (4, 56, 0)  # `torch_dtype` became `dtype`
    dtype_keys = ['dtype', 'torch_dtype'] if new_dtype_kw else ['torch_dtype', 'dtype']
    errors = []
    model = None
    with torch.device('cuda'):
        for key in dtype_keys:
            for with_attn in (True, False):
                kw = {key: dtype}
                if with_attn:
                    kw['attn_implementation'] = attn
                else:
                    for c in (cfg, getattr(cfg, 'text_config', None), getattr(cfg, 'vision_config', None)):
                        if c is not None:
                            try:
                                c._attn_implementation = attn
                            except Exception:
                                pass
                try:
                    model = cls._from_config(cfg, **kw)
                    break
                except (TypeError, AttributeError) as e:  # a kwarg this version lacks (or no _from_config)
                    errors.append('%s: %s' % (sorted(kw), e))
            if model is not None:
                break
        if model is None:  # last resort: the plain constructor under a bf16 default dtype
            prev = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                model = cls(cfg)
            finally:
                torch.set_default_dtype(prev)
            errors.append('built with the plain constructor')
    model = model.to(device='cuda', dtype=dtype).eval()
    return model, errors


def init_weights(torch, model, std, seed):
    """Weights ~ N(0, std), norm weights 1, biases 0: what bench-cuda's synthetic engine holds."""
    gen = torch.Generator(device='cuda')
    gen.manual_seed(seed)
    done = set()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm) or 'Norm' in type(mod).__name__:
                for name, p in mod.named_parameters(recurse=False):
                    if name == 'weight':
                        p.fill_(1.0)
                    else:
                        p.zero_()
                    done.add(id(p))
        for name, p in model.named_parameters():
            if id(p) in done:
                continue
            if name.endswith('bias'):
                p.zero_()
            else:
                p.normal_(0.0, std, generator=gen)
            done.add(id(p))


def submodule(model, name):
    """model.<name> or model.model.<name> (the module layout changed in 4.52)."""
    for owner in (model, getattr(model, 'model', None)):
        if owner is None:
            continue
        try:
            m = getattr(owner, name)
        except AttributeError:
            continue
        if m is not None:
            return m
    raise Failure('VLA_E_INTERNAL', 'the model has no %s' % name)


def as_features(torch, out, n_views):
    """get_image_features' result as [n_views, tokens, d] across versions: a tensor (<= 4.5x),
    a list of per-image tensors, or a ModelOutput whose pooler_output holds them (v5)."""
    if not torch.is_tensor(out):
        pooled = getattr(out, 'pooler_output', None)
        if pooled is not None:
            out = pooled
        if isinstance(out, (list, tuple)):
            parts = [x for x in out if torch.is_tensor(x)]
            if not parts:
                raise Failure('VLA_E_INTERNAL', 'get_image_features returned no tensor')
            out = torch.stack(parts) if all(p.shape == parts[0].shape for p in parts) else torch.cat(parts)
    if not torch.is_tensor(out):
        raise Failure('VLA_E_INTERNAL', 'get_image_features returned %s' % type(out).__name__)
    return out.reshape(n_views, -1, out.shape[-1])


class Vision:
    """The vision path, resolved once: get_image_features where it exists, else the tower and
    projector by hand (hidden_states[feature layer], CLS dropped for "default")."""

    def __init__(self, torch, model, layer, strategy):
        self.torch, self.model, self.layer, self.strategy = torch, model, layer, strategy
        self.fn = getattr(model, 'get_image_features', None)
        if self.fn is None and getattr(model, 'model', None) is not None:
            self.fn = getattr(model.model, 'get_image_features', None)
        self.api = None
        self.fallback_reason = None

    def _library(self, pv):
        try:
            out = self.fn(pixel_values=pv, vision_feature_layer=self.layer, vision_feature_select_strategy=self.strategy)
        except TypeError:
            out = self.fn(pv, self.layer, self.strategy)
        feats = as_features(self.torch, out, pv.shape[0])
        if self.api is None:
            self.api = 'get_image_features -> ' + type(out).__name__
        return feats

    def __call__(self, pv):
        if self.fn is not None and self.api != 'manual':
            if self.api is not None:
                return self._library(pv)
            try:  # first call: fall back to the tower by hand if this version's API surprises us
                return self._library(pv)
            except Exception as e:  # noqa: BLE001
                self.fallback_reason = '%s: %s' % (type(e).__name__, str(e)[:300])
        self.api = 'manual'
        tower = submodule(self.model, 'vision_tower')
        proj = submodule(self.model, 'multi_modal_projector')
        hs = tower(pv, output_hidden_states=True).hidden_states[self.layer]
        if self.strategy == 'default':
            hs = hs[:, 1:]
        return proj(hs)


def forward_kwargs(model):
    """Only the last position's logits in the prefill, where the version has the switch."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    if 'logits_to_keep' in params:
        return {'logits_to_keep': 1}
    if 'num_logits_to_keep' in params:
        return {'num_logits_to_keep': 1}
    return {}


def expanded_layout(tr, model):
    """Whether input_ids carry N_patches <image> ids per image (the processor expands them since
    4.45; the model scatters features with masked_scatter) or one (the older merge)."""
    try:
        src = inspect.getsource(sys.modules[type(model).__module__])
        return 'masked_scatter' in src
    except (OSError, TypeError, KeyError):
        return version_tuple(tr.__version__) >= (4, 47, 0)


def event_timer(torch):
    def timed(fn):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        r = fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b), r
    return timed


# ----------------------------------------------------------------------------- peaks
def measure_peaks(torch, gemm_n, copy_mib):
    out = {}
    timed = event_timer(torch)
    try:
        a = torch.randn(gemm_n, gemm_n, device='cuda', dtype=torch.bfloat16)
        b = torch.randn(gemm_n, gemm_n, device='cuda', dtype=torch.bfloat16)
        for _ in range(10):
            torch.matmul(a, b)
        c = torch.empty_like(a)
        reps = 30

        def loop():
            for _ in range(reps):
                torch.matmul(a, b, out=c)

        ms, _ = timed(loop)
        ms /= reps
        out['gemm'] = {'method': 'torch.matmul bf16 [N, N] x [N, N]', 'size': gemm_n, 'ms': rnd(ms),
                       'tflops': rnd(2.0 * gemm_n ** 3 / (ms / 1e3) / 1e12)}
        del a, b, c
    except Exception as e:  # noqa: BLE001 - reported, the run goes on
        out['gemm'] = {'error': '%s: %s' % (type(e).__name__, e)}
    try:
        n = (copy_mib << 20) // 2
        x = torch.empty(n, device='cuda', dtype=torch.bfloat16).fill_(1.0)
        y = torch.empty_like(x)
        for _ in range(3):
            y.copy_(x)
        times = [timed(lambda: y.copy_(x))[0] for _ in range(10)]
        best = min(times)
        out['hbm'] = {'method': 'Tensor.copy_ device to device, bytes counted twice (read + write)',
                      'bytes': 2 * n, 'ms_per_copy': summarize(times),
                      'gbps': rnd(2.0 * 2 * n / (best / 1e3) / 1e9)}
        del x, y
    except Exception as e:  # noqa: BLE001
        out['hbm'] = {'error': '%s: %s' % (type(e).__name__, e)}
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return out


# ----------------------------------------------------------------------------- one view count
def run_views(ctx, n_views):
    torch, tr, model, s, args = ctx['torch'], ctx['tr'], ctx['model'], ctx['shapes'], ctx['args']
    timed = event_timer(torch)
    vocab, image_token, per_view = ctx['vocab'], ctx['image_token'], s['tokens_per_view']
    d = s['text']['hidden']
    res = {'views': n_views}
    gen = torch.Generator(device='cuda')
    gen.manual_seed(args.seed + n_views)
    S = s['vision']['image_size']
    pv = torch.randn(n_views, 3, S, S, device='cuda', dtype=torch.bfloat16, generator=gen)

    # Decoder sequence: image ids expanded to N_patches per view; those rows get the features.
    ids_full = prompt_ids(s, n_views, args.prefix_tokens, args.instruction_tokens, args.seed + n_views, per_view, vocab)
    ids_t = torch.tensor([ids_full], device='cuda', dtype=torch.long)
    is_img = ids_t[0] == image_token
    img_pos = torch.nonzero(is_img).flatten()
    ids_placeholder = ids_t.masked_fill(is_img.unsqueeze(0), 0)
    n = ids_t.shape[1]
    n_visual = int(img_pos.numel())
    res['tokens'] = {'prompt': n, 'visual': n_visual, 'text': n - n_visual, 'decode_tokens': args.decode_tokens}
    if n + args.decode_tokens > s['text']['max_positions']:
        raise Failure('VLA_E_INPUT', '%d prompt + %d new tokens exceed max_position_embeddings %d'
                      % (n, args.decode_tokens, s['text']['max_positions']))
    embed = model.get_input_embeddings()
    fkw = ctx['forward_kwargs']
    vision = ctx['vision']

    def prefill(feats):
        x = embed(ids_placeholder)
        x[0, img_pos] = feats.reshape(-1, d).to(x.dtype)
        return model(inputs_embeds=x, use_cache=True, **fkw)

    def decode(out, steps):
        past = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        for _ in range(steps):
            o = model(input_ids=tok, past_key_values=past, use_cache=True)
            past = o.past_key_values
            tok = o.logits[:, -1:].argmax(-1)
        return tok

    with torch.inference_mode():
        feats = vision(pv)
        if feats.shape[0] * feats.shape[1] != n_visual:
            raise Failure('VLA_E_INTERNAL', 'image features %s for %d image rows' % (tuple(feats.shape), n_visual))
        vis_ms, pf_ms, dec_ms = [], [], []
        for it in range(args.warmup + args.iters):
            tv, feats = timed(lambda: vision(pv))
            tp, out = timed(lambda: prefill(feats))
            td, _ = timed(lambda: decode(out, args.decode_tokens))
            del out
            if it >= args.warmup:
                vis_ms.append(tv)
                pf_ms.append(tp)
                dec_ms.append(td / args.decode_tokens)

        # e2e: forward(input_ids, pixel_values) in this version's image-token layout.
        e2e = {}
        if not args.no_e2e:
            layouts = [True, False] if ctx['expanded'] else [False, True]
            for expanded in layouts:
                ids = prompt_ids(s, n_views, args.prefix_tokens, args.instruction_tokens, args.seed + n_views,
                                 per_view if expanded else 1, vocab)
                ids_e = torch.tensor([ids], device='cuda', dtype=torch.long)
                fn = lambda: model(input_ids=ids_e, pixel_values=pv, use_cache=True, **fkw)  # noqa: E731
                try:
                    out = fn()
                    if out.past_key_values is not None and hasattr(out.past_key_values, 'get_seq_length'):
                        cached = int(out.past_key_values.get_seq_length())
                        if cached != n:
                            raise Failure('VLA_E_INTERNAL', 'cached %d rows, expected %d' % (cached, n))
                    del out
                    times = []
                    for it in range(args.warmup + args.iters):
                        t, o = timed(fn)
                        del o
                        if it >= args.warmup:
                            times.append(t)
                    e2e = {'image_token_layout': 'expanded (%d per image)' % per_view if expanded else 'one per image',
                           'ms': summarize(times)}
                    break
                except Exception as ex:  # noqa: BLE001 - try the other layout, then report
                    e2e.setdefault('errors', []).append('%s layout: %s: %s' % (
                        'expanded' if expanded else 'compact', type(ex).__name__, str(ex)[:300]))
                    torch.cuda.synchronize()
        res['e2e'] = e2e

    res['ms'] = {'vision': summarize(vis_ms), 'prefill': summarize(pf_ms), 'decode_per_token': summarize(dec_ms)}
    res['ms']['vision_plus_prefill_median'] = rnd(res['ms']['vision']['median'] + res['ms']['prefill']['median'])

    # Work and rates, bench-cuda's conventions (weights and KV cache bf16 here).
    t = s['text']
    pf_fl = prefill_flops(t, n)
    vis_fl = n_views * vision_flops_per_image(s, ctx['vision_layers_run'])
    dec_b, layer_b, head_b = decode_bytes(t, n, args.decode_tokens, vocab=vocab)
    med = lambda k: res['ms'][k]['median']  # noqa: E731
    peak_tf, peak_gb = ctx['peak_tflops'], ctx['peak_gbps']
    res['work'] = {'prefill_tflop': rnd(pf_fl / 1e12), 'vision_tflop': rnd(vis_fl / 1e12),
                   'decoder_weight_gb': rnd(layer_b / 1e9)}
    ach = {'prefill_tflops': rnd(pf_fl / (med('prefill') / 1e3) / 1e12),
           'vision_tflops': rnd(vis_fl / (med('vision') / 1e3) / 1e12),
           'decode_gbps': rnd(dec_b / (med('decode_per_token') * args.decode_tokens / 1e3) / 1e9)}
    if peak_tf:
        ach['prefill_frac_of_peak'] = rnd(ach['prefill_tflops'] / peak_tf, 4)
        ach['vision_frac_of_peak'] = rnd(ach['vision_tflops'] / peak_tf, 4)
    if peak_gb:
        ach['decode_frac_of_hbm'] = rnd(ach['decode_gbps'] / peak_gb, 4)
    res['achieved'] = ach
    if peak_tf and peak_gb:
        floor = max(pf_fl / (peak_tf * 1e12), layer_b / (peak_gb * 1e9)) * 1e3
        res['floor'] = {'prefill_ms': rnd(floor), 'prefill_vs_floor': rnd(med('prefill') / floor, 4),
                        'decode_weights_ms_per_token': rnd((layer_b + head_b) / (peak_gb * 1e9) * 1e3)}
    return res


def time_preprocess(s, n_views, args):
    """CLIPImageProcessor (resize the short side, centre crop; llava-hf's processor) on random
    frames of --width x --height, and the upload of the batch to the GPU, on the host clock."""
    import numpy as np
    import torch
    import transformers as tr
    S = s['vision']['image_size']
    proc = tr.CLIPImageProcessor(size={'shortest_edge': S}, crop_size={'height': S, 'width': S},
                                 do_center_crop=True, do_resize=True, do_rescale=True, do_normalize=True,
                                 image_mean=s['image_mean'], image_std=s['image_std'])
    rng = np.random.default_rng(args.seed)
    frames = [rng.integers(0, 256, size=(args.height, args.width, 3), dtype=np.uint8) for _ in range(n_views)]
    times = []
    for it in range(args.warmup + args.iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pv = proc(images=frames, return_tensors='pt')['pixel_values'].to('cuda', torch.bfloat16)
        torch.cuda.synchronize()
        if it >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
        del pv
    return {'processor': type(proc).__name__, 'ms': summarize(times)}


# ----------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', default=DEFAULT_CONFIG, help='config.json in this repository\'s format (shapes)')
    p.add_argument('--views', default='1,6', help='comma-separated view counts (images in one prompt)')
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--decode-tokens', type=int, default=32)
    p.add_argument('--prefix-tokens', type=int, default=35, help='BOS + system prompt + "USER:"')
    p.add_argument('--instruction-tokens', type=int, default=24, help='instruction + "ASSISTANT:"')
    p.add_argument('--vocab', type=int, default=0,
                   help='text vocab size; 0: the config\'s, raised to cover image_token_index and padded to 64 as '
                        'llava-hf does (32064 for LLaVA-1.5), since transformers embeds input_ids before it '
                        'replaces the image rows')
    p.add_argument('--std', type=float, default=0.02)
    p.add_argument('--seed', type=int, default=1234)
    p.add_argument('--attn', default='sdpa', help='attn_implementation')
    p.add_argument('--gemm-size', type=int, default=8192)
    p.add_argument('--copy-mib', type=int, default=2048)
    p.add_argument('--width', type=int, default=1600, help='frame width for --preprocess')
    p.add_argument('--height', type=int, default=900, help='frame height for --preprocess')
    p.add_argument('--no-peaks', action='store_true', help='skip the GEMM / copy peak measurements')
    p.add_argument('--no-e2e', action='store_true', help='skip forward(input_ids, pixel_values)')
    p.add_argument('--no-preprocess', action='store_true', help='skip timing CLIPImageProcessor')
    p.add_argument('--out', default='', help='also write the JSON here')
    p.add_argument('--dry-run', action='store_true', help='print the plan (shapes, tokens, work) without torch')
    a = p.parse_args(argv)
    try:
        a.views = [int(x) for x in a.views.split(',') if x]
    except ValueError:
        p.error('--views takes comma-separated integers')
    if not a.views or min(a.views) < 1 or a.iters < 1 or a.warmup < 0 or a.decode_tokens < 1:
        p.error('--views must be positive, --iters >= 1, --warmup >= 0, --decode-tokens >= 1')
    return a


def effective_vocab(s, requested):
    if requested:
        return requested
    v = max(s['text']['vocab'], s['image_token'] + 1)
    return v if v == s['text']['vocab'] else (v + 63) // 64 * 64


def dry_run(args, s):
    vocab = effective_vocab(s, args.vocab)
    plan = {'bench': 'peer-hf-llava', 'dry_run': True, 'config': args.config, 'vocab': vocab, 'runs': []}
    for nv in args.views:
        ids = prompt_ids(s, nv, args.prefix_tokens, args.instruction_tokens, args.seed + nv, s['tokens_per_view'], vocab)
        compact = prompt_ids(s, nv, args.prefix_tokens, args.instruction_tokens, args.seed + nv, 1, vocab)
        n = len(ids)
        dec_b, layer_b, head_b = decode_bytes(s['text'], n, args.decode_tokens, vocab=vocab)
        plan['runs'].append({
            'views': nv, 'prompt_tokens': n, 'image_tokens': ids.count(s['image_token']),
            'text_tokens': len(compact) - nv, 'compact_ids': len(compact),
            'prefill_tflop': rnd(prefill_flops(s['text'], n) / 1e12),
            'vision_tflop': rnd(nv * vision_flops_per_image(s, s['vision']['layers']) / 1e12),
            'decode_gb_total': rnd(dec_b / 1e9), 'decoder_weight_gb': rnd(layer_b / 1e9)})
    return plan


def main(argv):
    args = parse_args(argv)
    s = load_shapes(args.config)
    for nv in args.views:
        if nv > s['cameras']:
            raise Failure('VLA_E_INPUT', '--views %d: the config has %d cameras' % (nv, s['cameras']))
    if args.dry_run:
        return dry_run(args, s)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')  # nothing is downloaded, whatever the cache holds
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    try:
        import torch
        import transformers as tr
    except ImportError as e:
        raise Failure('VLA_E_BACKEND', 'PyTorch and transformers are needed: %s' % e)
    if not torch.cuda.is_available():
        raise Failure('VLA_E_BACKEND', 'torch.cuda.is_available() is false (torch %s, CUDA %s)'
                      % (torch.__version__, torch.version.cuda))
    if version_tuple(tr.__version__) < (4, 36, 0):
        raise Failure('VLA_E_BACKEND', 'transformers %s has no LLaVA (4.36 or newer is needed)' % tr.__version__)
    torch.manual_seed(args.seed)
    dev = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(dev)
    doc = {
        'bench': 'peer-hf-llava',
        'config': args.config,
        'versions': {'python': platform.python_version(), 'torch': torch.__version__,
                     'transformers': tr.__version__, 'cuda': torch.version.cuda,
                     'cudnn': torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None},
        'device': {'name': props.name, 'compute_capability': '%d.%d' % (props.major, props.minor),
                   'sm_count': props.multi_processor_count, 'memory_bytes': props.total_memory},
    }

    peaks = {} if args.no_peaks else measure_peaks(torch, args.gemm_size, args.copy_mib)
    doc['peaks'] = peaks or {'skipped': '--no-peaks'}
    peak_tf = (peaks.get('gemm') or {}).get('tflops')
    peak_gb = (peaks.get('hbm') or {}).get('gbps')

    vocab = effective_vocab(s, args.vocab)
    progress('building LlavaForConditionalGeneration (bf16, %s, random weights on the GPU)' % args.attn)
    t0 = time.perf_counter()
    cfg = build_config(tr, s, vocab)
    model, build_notes = build_model(torch, tr, cfg, args.attn, torch.bfloat16)
    init_weights(torch, model, args.std, args.seed)
    torch.cuda.synchronize()
    build_ms = (time.perf_counter() - t0) * 1e3
    image_token = image_token_of(model.config)
    tower = submodule(model, 'vision_tower')
    try:
        vision_layers_run = len(tower.vision_model.encoder.layers)
    except AttributeError:
        vision_layers_run = s['vision']['layers']

    def attn_of(c):
        return getattr(c, '_attn_implementation', None) if c is not None else None

    doc['model'] = {
        'class': type(model).__name__, 'dtype': str(next(model.parameters()).dtype),
        'n_params': sum(p.numel() for p in model.parameters()),
        'attn_implementation': {'model': attn_of(model.config), 'text': attn_of(getattr(model.config, 'text_config', None)),
                                'vision': attn_of(getattr(model.config, 'vision_config', None))},
        'vocab': vocab, 'image_token_id': image_token, 'vision_layers_run': vision_layers_run,
        'weights': {'kind': 'random on the GPU', 'std': args.std, 'seed': args.seed, 'norms': 1, 'biases': 0},
        'build_ms': rnd(build_ms), 'build_notes': build_notes,
    }
    ctx = {'torch': torch, 'tr': tr, 'model': model, 'shapes': s, 'args': args, 'vocab': vocab,
           'image_token': image_token, 'forward_kwargs': forward_kwargs(model),
           'vision': Vision(torch, model, s['vision_feature_layer'], s['select_strategy']),
           'expanded': expanded_layout(tr, model), 'vision_layers_run': vision_layers_run,
           'peak_tflops': peak_tf, 'peak_gbps': peak_gb}
    doc['settings'] = {'views': args.views, 'iters': args.iters, 'warmup': args.warmup,
                       'decode_tokens': args.decode_tokens, 'prefix_tokens': args.prefix_tokens,
                       'instruction_tokens': args.instruction_tokens,
                       'prefill_logits': ctx['forward_kwargs'] or 'all positions (no logits_to_keep here)',
                       'image_token_layout_expected': 'expanded' if ctx['expanded'] else 'one per image'}
    runs = []
    for nv in args.views:
        progress('%d view(s)' % nv)
        try:
            r = run_views(ctx, nv)
            if not args.no_preprocess:
                try:
                    r['preprocess'] = time_preprocess(s, nv, args)
                except Exception as e:  # noqa: BLE001 - optional
                    r['preprocess'] = {'error': '%s: %s' % (type(e).__name__, str(e)[:300])}
        except Failure as f:
            r = {'views': nv, 'error': f.code, 'message': str(f)}
        except Exception as e:  # noqa: BLE001 - one view count failing does not lose the others
            r = {'views': nv, 'error': type(e).__name__, 'message': str(e)[:500],
                 'traceback': traceback.format_exc().splitlines()[-6:]}
        runs.append(r)
        torch.cuda.empty_cache()
    doc['model']['vision_api'] = ctx['vision'].api
    if ctx['vision'].fallback_reason:
        doc['model']['vision_api_fallback_reason'] = ctx['vision'].fallback_reason
    doc['runs'] = runs
    doc['conventions'] = {
        'ms': 'CUDA events around each call; median and p90 (nearest rank) over --iters after --warmup',
        'vision': 'get_image_features on all views at once (CLIP runs all its layers; features from the feature layer)',
        'prefill': 'embedding lookup + scatter of the image features + forward(inputs_embeds, use_cache=True)',
        'decode_per_token': '--decode-tokens greedy steps (decoder pass + lm_head + argmax each) / --decode-tokens',
        'e2e': 'forward(input_ids, pixel_values, use_cache=True): vision + merge + prefill as one library call',
        'flops_bytes': 'as bench-cuda: 2 FLOPs per multiply-add, causal attention; decode bytes = weights + bf16 KV rows',
    }
    return doc


if __name__ == '__main__':
    out_path = ''
    for i, a in enumerate(sys.argv):
        if a == '--out' and i + 1 < len(sys.argv):
            out_path = sys.argv[i + 1]
        elif a.startswith('--out='):
            out_path = a.split('=', 1)[1]
    try:
        result = main(sys.argv[1:])
    except Failure as f:
        emit({'error': f.code, 'message': str(f)}, out_path)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - always one JSON document
        emit({'error': type(e).__name__, 'message': str(e)[:1000],
              'traceback': traceback.format_exc().splitlines()[-8:]}, out_path)
        sys.exit(1)
    emit(result, out_path)
