"""Self-checks of vla_ref.py on a random throwaway model (run: vla_ref.py selftest).

Each check compares the reference against an identity or against a second, differently
written implementation (torch.nn modules, Meta-style complex RoPE on un-permuted weights)."""
import json
import math
import os
import struct
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

CFG = {
    'image_token_index': 99, 'projector_hidden_act': 'gelu', 'vision_feature_layer': -2,
    'vision_feature_select_strategy': 'default',
    'text_config': {'hidden_size': 32, 'intermediate_size': 48, 'num_hidden_layers': 2,
                    'num_attention_heads': 4, 'num_key_value_heads': 2, 'rms_norm_eps': 1e-6,
                    'rope_theta': 10000.0, 'vocab_size': 100, 'bos_token_id': 1, 'eos_token_id': 2},
    'vision_config': {'hidden_size': 24, 'intermediate_size': 40, 'num_hidden_layers': 3,
                      'num_attention_heads': 4, 'image_size': 16, 'patch_size': 4,
                      'layer_norm_eps': 1e-5, 'hidden_act': 'quick_gelu'},
    'vla': {'cameras': ['front', 'left', 'right'], 'camera_embedding': True, 'action_head': 'waypoints',
            'num_waypoints': 3, 'waypoint_dim': 2, 'action_mlp_hidden': 16, 'max_new_tokens': 4},
}


def random_weights(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=0.2: torch.randn(*s, generator=g) * scale
    t, v, vla = cfg['text_config'], cfg['vision_config'], cfg['vla']
    d, m, H, Hkv = t['hidden_size'], t['intermediate_size'], t['num_attention_heads'], t['num_key_value_heads']
    hd = t.get('head_dim', d // H)
    D, Dff, P = v['hidden_size'], v['intermediate_size'], v['patch_size']
    Np = (v['image_size'] // P) ** 2
    vp, lp = 'vision_tower.vision_model.', 'language_model.model.'
    w = {vp + 'embeddings.class_embedding': r(D), vp + 'embeddings.patch_embedding.weight': r(D, 3, P, P),
         vp + 'embeddings.position_embedding.weight': r(Np + 1, D),
         vp + 'pre_layrnorm.weight': 1 + r(D), vp + 'pre_layrnorm.bias': r(D)}
    for i in range(v['num_hidden_layers']):
        p = f'{vp}encoder.layers.{i}.'
        for n in ('layer_norm1', 'layer_norm2'):
            w[p + n + '.weight'], w[p + n + '.bias'] = 1 + r(D), r(D)
        for n in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
            w[p + f'self_attn.{n}.weight'], w[p + f'self_attn.{n}.bias'] = r(D, D), r(D)
        w[p + 'mlp.fc1.weight'], w[p + 'mlp.fc1.bias'] = r(Dff, D), r(Dff)
        w[p + 'mlp.fc2.weight'], w[p + 'mlp.fc2.bias'] = r(D, Dff), r(D)
    w['multi_modal_projector.linear_1.weight'], w['multi_modal_projector.linear_1.bias'] = r(d, D), r(d)
    w['multi_modal_projector.linear_2.weight'], w['multi_modal_projector.linear_2.bias'] = r(d, d), r(d)
    w[lp + 'embed_tokens.weight'] = r(t['vocab_size'], d, scale=1.0)
    for i in range(t['num_hidden_layers']):
        p = f'{lp}layers.{i}.'
        w[p + 'input_layernorm.weight'], w[p + 'post_attention_layernorm.weight'] = 1 + r(d), 1 + r(d)
        w[p + 'self_attn.q_proj.weight'] = r(H * hd, d)
        w[p + 'self_attn.k_proj.weight'], w[p + 'self_attn.v_proj.weight'] = r(Hkv * hd, d), r(Hkv * hd, d)
        w[p + 'self_attn.o_proj.weight'] = r(d, H * hd)
        w[p + 'mlp.gate_proj.weight'], w[p + 'mlp.up_proj.weight'] = r(m, d), r(m, d)
        w[p + 'mlp.down_proj.weight'] = r(d, m)
    w[lp + 'norm.weight'] = 1 + r(d)
    w['language_model.lm_head.weight'] = r(t['vocab_size'], d)
    w['vla.camera_embedding'] = r(len(vla['cameras']), d)
    w['vla.action_queries'] = r(vla['num_waypoints'], d, scale=1.0)
    w['vla.action_head.fc1.weight'], w['vla.action_head.fc1.bias'] = r(vla['action_mlp_hidden'], d), r(vla['action_mlp_hidden'])
    w['vla.action_head.fc2.weight'], w['vla.action_head.fc2.bias'] = r(vla['waypoint_dim'], vla['action_mlp_hidden']), r(vla['waypoint_dim'])
    return w


def write_safetensors(path, tensors, dtype_of=lambda name: 'F32'):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        dt = dtype_of(name)
        if dt == 'F32':
            b = t.to(torch.float32).numpy().astype('<f4').tobytes()
        elif dt == 'F16':
            b = t.to(torch.float16).numpy().astype('<f2').tobytes()
        else:  # BF16, rounded by torch
            b = t.to(torch.bfloat16).view(torch.int16).numpy().astype('<i2').tobytes()
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def write_model(dirname, cfg, w, newer_names=False, dtype_of=lambda n: 'F32'):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, 'config.json'), 'w') as f:
        json.dump(cfg, f)
    if newer_names:
        from vla_ref import ALIASES
        def rename(n):
            for old, new in ALIASES:
                if n.startswith(old):
                    return new + n[len(old):]
            return n
        w = {rename(n): t for n, t in w.items()}
    write_safetensors(os.path.join(dirname, 'model.safetensors'), w, dtype_of)
    return dirname


# ---- second implementations ------------------------------------------------------------
def clip_layer_nn(m, x, i):
    """One CLIP encoder layer built from torch.nn modules (x [V, T, D])."""
    p = lambda n: m.W(f'vision_tower.vision_model.encoder.layers.{i}.{n}')
    mha = torch.nn.MultiheadAttention(m.vd, m.vH, batch_first=True)
    mha.in_proj_weight.copy_(torch.cat([p(f'self_attn.{n}_proj.weight') for n in 'qkv']))
    mha.in_proj_bias.copy_(torch.cat([p(f'self_attn.{n}_proj.bias') for n in 'qkv']))
    mha.out_proj.weight.copy_(p('self_attn.out_proj.weight'))
    mha.out_proj.bias.copy_(p('self_attn.out_proj.bias'))
    ln = lambda n: torch.nn.functional.layer_norm(x, (m.vd,), p(n + '.weight'), p(n + '.bias'), m.ln_eps)
    h = ln('layer_norm1')
    x = x + mha(h, h, h, need_weights=False)[0]
    h = ln('layer_norm2')
    h = F.linear(h, p('mlp.fc1.weight'), p('mlp.fc1.bias'))
    return x + F.linear(h * torch.sigmoid(1.702 * h), p('mlp.fc2.weight'), p('mlp.fc2.bias'))


def llama_meta_style(m, x):
    """Decoder as Meta's original code: complex RoPE on interleaved pairs, weights un-permuted
    from the HF layout (HF's conversion permutes q/k rows), explicit per-head loop and GQA."""
    T, hd, H, Hkv = x.shape[0], m.hd, m.H, m.Hkv
    unpermute = lambda w, n: w.reshape(n, 2, hd // 2, -1).transpose(1, 2).reshape(n * hd, -1)
    freqs = 1.0 / (m.theta ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd))
    cis = torch.polar(torch.ones(T, hd // 2), torch.outer(torch.arange(T).float(), freqs))
    rope = lambda t: torch.view_as_real(torch.view_as_complex(t.reshape(T, -1, hd // 2, 2)) * cis[:, None]).reshape(T, -1, hd)
    rms = lambda t, w: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + m.rms_eps) * w
    p = lambda n: m.W('language_model.model.' + n)
    for i in range(m.L):
        q = lambda n: p(f'layers.{i}.{n}')
        h = rms(x, q('input_layernorm.weight'))
        xq = rope(h @ unpermute(q('self_attn.q_proj.weight'), H).T)
        xk = rope(h @ unpermute(q('self_attn.k_proj.weight'), Hkv).T)
        xv = (h @ q('self_attn.v_proj.weight').T).reshape(T, Hkv, hd)
        outs = []
        for head in range(H):
            kvh = head // (H // Hkv)
            s = xq[:, head] @ xk[:, kvh].T / math.sqrt(hd) + torch.full((T, T), float('-inf')).triu(1)
            outs.append(torch.softmax(s, -1) @ xv[:, kvh])
        x = x + torch.cat(outs, -1) @ q('self_attn.o_proj.weight').T
        h = rms(x, q('post_attention_layernorm.weight'))
        x = x + (F.silu(h @ q('mlp.gate_proj.weight').T) * (h @ q('mlp.up_proj.weight').T)) @ q('mlp.down_proj.weight').T
    return rms(x, p('norm.weight'))


def main(ref):
    torch.manual_seed(0)
    fails = []

    def check(name, ok, detail=''):
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
        if not ok:
            fails.append(name)

    def close(name, a, b, tol=1e-5):
        err = float((a - b).abs().max())
        check(name, err <= tol, f'(max abs err {err:.2e})')

    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        w = random_weights(CFG)
        m = ref.Model(write_model(os.path.join(tmp, 'a'), CFG, w))
        rng = np.random.default_rng(0)
        S = m.S
        views = [{'width': S, 'height': S, 'encoding': 'rgb8', 'data': ref.structured_frame(rng, S).tobytes()} for _ in range(3)]
        ids = [1, 5, 6, 99, 13, 99, 13, 99, 13, 40, 41, 42]

        # RoPE
        x = torch.randn(4, 7, m.hd)
        cos, sin = ref.rope_cos_sin(torch.arange(20), m.hd, m.theta)
        close('rope at position 0 is the identity', ref.apply_rope(x[:, :1], cos[:1], sin[:1]), x[:, :1], 0)
        qv, kv = torch.randn(m.hd), torch.randn(m.hd)
        dot = lambda a, b: float((ref.apply_rope(qv, cos[a], sin[a]) * ref.apply_rope(kv, cos[b], sin[b])).sum())
        check('rope scores depend only on the offset', abs(dot(3, 1) - dot(15, 13)) < 1e-4)
        close('rope keeps the norm', ref.apply_rope(x, cos[:7], sin[:7]).norm(dim=-1), x.norm(dim=-1), 1e-5)

        # attention
        q, k, v = torch.randn(4, 6, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
        a = ref.attention(q, k, v, causal=True)
        close('causal attention row 0 equals v0 (GQA: head h reads kv head h//2)', a[:, 0], v.repeat_interleave(2, 0)[:, 0], 1e-6)
        close('GQA equals MHA on repeated kv heads', a, ref.attention(q, k.repeat_interleave(2, 0), v.repeat_interleave(2, 0), True), 0)
        k4, v4 = torch.randn(4, 6, 8), torch.randn(4, 6, 8)
        sdpa = torch.softmax(q @ k4.transpose(1, 2) / math.sqrt(8) + torch.full((6, 6), float('-inf')).triu(1), -1) @ v4
        close('n_kv = n_heads is standard causal MHA', ref.attention(q, k4, v4, True), sdpa, 1e-6)
        close('rms_norm', ref.rms_norm(x, 2.0, 1e-6), 2 * x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6), 1e-6)

        # vision tower vs torch.nn modules, per-view independence
        dbg = {}
        feats = m.vision(torch.stack([m.preprocess(v) for v in views]), dbg)
        hs = dbg['vision_hidden_states']
        check('vision feature layer -2 = output of the second-to-last layer', len(hs) == m.vL and feats.shape == (3, (S // m.P) ** 2, m.vd))
        for i in range(len(hs) - 1):
            close(f'CLIP layer {i} equals nn.MultiheadAttention layer', hs[i + 1], clip_layer_nn(m, hs[i], i), 1e-5)
        close('views attend only within themselves', m.vision(m.preprocess(views[1])[None])[0], feats[1], 1e-5)
        px = m.preprocess(views[0])
        raw = torch.from_numpy(np.frombuffer(views[0]['data'], np.uint8).reshape(S, S, 3).astype(np.float32))
        close('pixel normalisation', px[1, 2, 3], (raw[2, 3, 1] / 255 - m.mean[1]) / m.std[1], 1e-6)
        patches = px.reshape(3, S // m.P, m.P, S // m.P, m.P).permute(1, 3, 0, 2, 4).reshape(-1, 3 * m.P * m.P)
        emb = patches @ m.W('vision_tower.vision_model.embeddings.patch_embedding.weight').reshape(m.vd, -1).T
        close('patch embedding is row-major conv', F.conv2d(px[None], m.W('vision_tower.vision_model.embeddings.patch_embedding.weight'), stride=m.P)[0].flatten(1).T, emb, 1e-5)

        # decoder vs Meta-style implementation, sequence layout
        seq = m.embed_sequence(ids, m.visual_tokens(views))
        close('decoder equals Meta-style complex RoPE + per-head loop', m.decoder(seq), llama_meta_style(m, seq), 2e-5)
        Np = (S // m.P) ** 2
        check('sequence length', seq.shape[0] == len(ids) - 3 + 3 * Np)
        close('view 2 tokens sit after the 2nd newline with camera embedding', seq[3 + 2 * (Np + 1)], m.visual_tokens(views)[2, 0], 0)

        # GQA model equals the same model with kv heads duplicated
        cfg2 = json.loads(json.dumps(CFG))
        cfg2['text_config']['num_key_value_heads'] = 4
        w2 = dict(w)
        for n in list(w2):
            if n.endswith(('k_proj.weight', 'v_proj.weight')) and n.startswith('language_model'):
                w2[n] = w[n].reshape(2, m.hd, -1).repeat_interleave(2, 0).reshape(4 * m.hd, -1)
        m2 = ref.Model(write_model(os.path.join(tmp, 'b'), cfg2, w2))
        r1, r2 = m.run(ids, views), m2.run(ids, views)
        close('GQA model equals MHA model with duplicated kv weights', r1['waypoints'], r2['waypoints'], 1e-5)
        check('waypoints shape', tuple(r1['waypoints'].shape) == (3, 2) and r1['hidden'].shape == (3, m.d))

        # newer tensor names + F16/BF16 storage
        m3 = ref.Model(write_model(os.path.join(tmp, 'c'), CFG, w, newer_names=True))
        close('newer tensor names load the same model', m3.run(ids, views)['waypoints'], r1['waypoints'], 0)
        dt = lambda n: 'BF16' if 'mlp' in n else 'F16' if 'attn' in n else 'F32'
        m4 = ref.Model(write_model(os.path.join(tmp, 'd'), CFG, w, dtype_of=dt))
        for n, t in w.items():
            want = t.to(torch.bfloat16).float() if dt(n) == 'BF16' else t.half().float() if dt(n) == 'F16' else t
            if not torch.equal(m4.W(n), want):
                check(f'dtype decode {n}', False)
                break
        else:
            check('F16/BF16 tensors decode bit-exactly', True)

        # text head: greedy decode by full re-runs
        r = m.run(ids, views, head='text', max_new_tokens=4)
        check('first token is the argmax of the first logits', not r['tokens'] or r['tokens'][0] == int(r['logits'].argmax()))
        seq2 = m.embed_sequence(ids, m.visual_tokens(views))
        close('text hidden is the final-normed last prompt row', r['hidden'], m.decoder(seq2)[-1], 0)
        check('greedy decode length', len(r['tokens']) <= 4, str(r['tokens']))
    print('selftest:', 'FAILED ' + ', '.join(fails) if fails else 'all passed')
    return 1 if fails else 0
