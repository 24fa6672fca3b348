"""One safetensors reader for the Python tools, numpy only (the pruning reference runs without
PyTorch): vla_ref.py wraps it in torch tensors, prune_ref.py widens it to float64."""
import json
import os
import struct

import numpy as np


def read_safetensors(path):
    """name -> float32 array of a .safetensors file (F16 and BF16 widened exactly)."""
    with open(path, 'rb') as f:
        buf = f.read()
    (n,) = struct.unpack('<Q', buf[:8])
    header = json.loads(buf[8:8 + n].decode('utf-8'))
    out = {}
    for name, meta in header.items():
        if name == '__metadata__':
            continue
        s, e = meta['data_offsets']
        raw = buf[8 + n + s:8 + n + e]
        dt = meta['dtype']
        if dt == 'F32':
            a = np.frombuffer(raw, '<f4')
        elif dt == 'F16':
            a = np.frombuffer(raw, '<f2').astype(np.float32)
        elif dt == 'BF16':
            a = (np.frombuffer(raw, '<u2').astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f'{name}: unsupported dtype {dt}')
        out[name] = a.reshape(meta['shape'])
    return out


def load_weights(model_dir, read=read_safetensors):
    """Every tensor of a model directory (one file, or the shards an index names), via `read`."""
    single = os.path.join(model_dir, 'model.safetensors')
    if os.path.exists(single):
        return read(single)
    with open(os.path.join(model_dir, 'model.safetensors.index.json')) as f:
        files = sorted(set(json.load(f)['weight_map'].values()))
    w = {}
    for fn in files:
        w.update(read(os.path.join(model_dir, fn)))
    return w


# older (transformers < 4.52) -> newer spelling; the newer one is tried first
ALIASES = [('vision_tower.vision_model.', 'model.vision_tower.vision_model.'),
           ('multi_modal_projector.', 'model.multi_modal_projector.'),
           ('language_model.model.', 'model.language_model.'),
           ('language_model.lm_head.weight', 'lm_head.weight')]


def lookup(weights, name, required=True):
    """weights[name] under either spelling of ALIASES (the newer one first); KeyError, or None
    when not required, where neither is there."""
    for old, new in ALIASES:
        if name.startswith(old):
            alt = new + name[len(old):]
            if alt in weights:
                return weights[alt]
    if name in weights:
        return weights[name]
    if required:
        raise KeyError(name)
    return None
