#!/usr/bin/python3
"""Checks of the training module (tools/train/vla_model.py), printing one JSON line:

- it matches the independent functional reference tools/reference/vla_ref.py on a random model
  written through save_model (so names, shapes and the exported file are right too);
- a left-padded batch gives what each sample gives alone (the padding mask and positions);
- the preprocessing reproduces the engine's letterbox geometry (pad rows are the mean colour).
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.dont_write_bytecode = True
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, '..', 'reference'))
from vla_model import VlaConfig, VlaModel, load_model, preprocess_image, save_model  # noqa: E402
import vla_ref  # noqa: E402


def config():
    return {
        'image_token_index': 40, 'vision_feature_layer': -1, 'vision_feature_select_strategy': 'default',
        'projector_hidden_act': 'gelu',
        'text_config': {'hidden_size': 32, 'intermediate_size': 48, 'num_hidden_layers': 2, 'num_attention_heads': 4,
                        'num_key_value_heads': 2, 'head_dim': 8, 'vocab_size': 48, 'rms_norm_eps': 1e-6, 'rope_theta': 10000.0},
        'vision_config': {'hidden_size': 16, 'intermediate_size': 32, 'num_hidden_layers': 2, 'num_attention_heads': 2,
                          'image_size': 16, 'patch_size': 4, 'layer_norm_eps': 1e-5, 'hidden_act': 'quick_gelu'},
        'vla': {'cameras': ['a', 'b'], 'camera_embedding': True, 'action_head': 'waypoints', 'num_waypoints': 3,
                'waypoint_dim': 2, 'waypoint_dt_s': 0.5, 'action_mlp_hidden': 8, 'image_preprocess': 'pad'},
    }


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = VlaConfig(config())
    m = VlaModel(cfg)
    m.init_weights(torch.Generator().manual_seed(3))
    with torch.no_grad():  # norms and biases away from their init values, so they are exercised
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    rng = np.random.default_rng(1)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        tok = os.path.join(d, 'tok')
        os.makedirs(tok)
        save_model(m, os.path.join(d, 'm'), tok, dtype='F32')
        ref = vla_ref.Model(os.path.join(d, 'm'))
        m2 = load_model(os.path.join(d, 'm'))
        m2.eval()
        worst_ref = worst_batch = 0.0
        samples = []
        for k in range(3):
            views = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
            ids = [1] + list(rng.integers(3, 39, 2 + k)) + [40, 7, 40, 7] + list(rng.integers(3, 39, 3 + 2 * k))
            ids = [int(i) for i in ids]
            samples.append((views, ids))
            with torch.no_grad():
                mine = m2(torch.from_numpy(views[None]), [ids])[0]
                r = ref.run(ids, [{'width': 16, 'height': 16, 'encoding': 'rgb8', 'data': v.tobytes()} for v in views], head='waypoints')
            worst_ref = max(worst_ref, float((mine - r['waypoints']).abs().max()))
        with torch.no_grad():
            batched = m2(torch.from_numpy(np.stack([s[0] for s in samples])), [s[1] for s in samples])
            for k, (views, ids) in enumerate(samples):
                alone = m2(torch.from_numpy(views[None]), [ids])[0]
                worst_batch = max(worst_batch, float((batched[k] - alone).abs().max()))
        out['vs_reference_max_abs'] = worst_ref
        out['batch_vs_alone_max_abs'] = worst_batch
    from PIL import Image
    img = Image.fromarray(np.full((20, 32, 3), 200, np.uint8))
    px = preprocess_image(img, 16, [0.5, 0.25, 0.75])
    out['pad_rows_mean_colour'] = bool(np.all(px[0] == [127, 63, 191]) and np.all(px[-1] == [127, 63, 191]))
    out['content_rows'] = bool(np.all(px[8] == 200))
    ok = out['vs_reference_max_abs'] < 1e-5 and out['batch_vs_alone_max_abs'] < 1e-5 and out['pad_rows_mean_colour'] and out['content_rows']
    out['ok'] = ok
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
