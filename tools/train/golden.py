#!/usr/bin/python3
"""Golden outputs of the bundled driving model from the training module (PyTorch, fp32), for the
engine parity test (test/addon/drive-model.test.ts).

  /usr/bin/python3 tools/train/golden.py --model assets/models/drive --dataset build/dataset \
      --out test/fixtures/golden/drive-golden.json

Inputs are held-out (test split) samples of the dataset: their prompt token ids, and their views
already preprocessed to the model's S x S (so the engine's resize is the identity and the
comparison is of the networks alone). `--check FILE` instead recomputes the outputs for the
inputs stored in FILE and prints the largest difference (used by the live parity test).
"""
import argparse
import base64
import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vla_model import load_model  # noqa: E402



def regen_command(a):
    """The command that rewrites this golden file (recorded in it, printed by the test when stale)."""
    name = os.path.basename(os.path.normpath(a.model))
    return (f'/usr/bin/python3 tools/train/golden.py --model assets/models/{name} --dataset build/dataset '
            f'--out test/fixtures/golden/{name}-golden.json')


def run(model, views_u8, ids):
    dbg = {}
    with torch.no_grad():
        wp = model(torch.from_numpy(np.array(views_u8[None])), [ids], debug=dbg)
    return wp[0], dbg['action_hidden'][0]


def fmt(t):
    a = np.asarray(t, dtype=np.float32).reshape(-1)
    assert np.all(np.isfinite(a)), 'non-finite output'
    return [float('%.9g' % v) for v in a]


def decode_views(c, S):
    return np.stack([np.frombuffer(base64.b64decode(v['data_b64']), np.uint8).reshape(S, S, 3) for v in c['views']])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', required=True)
    ap.add_argument('--dataset', help='dataset directory (test split samples are the inputs)')
    ap.add_argument('--out', help='golden JSON to write')
    ap.add_argument('--cases', type=int, default=7)  # one per instruction kind
    ap.add_argument('--check', help='golden JSON whose inputs to recompute; prints max abs differences as JSON')
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(a.model)
    model.eval()
    S = model.cfg.S
    if a.check:
        g = json.load(open(a.check))
        worst = {'waypoints': 0.0, 'hidden': 0.0}
        for c in g['cases']:
            wp, hid = run(model, decode_views(c, S), c['input_ids'])
            worst['waypoints'] = max(worst['waypoints'], float(np.max(np.abs(np.array(fmt(wp)) - np.array(c['waypoints'])))))
            worst['hidden'] = max(worst['hidden'], float(np.max(np.abs(np.array(fmt(hid)) - np.array(c['hidden'])))))
        print(json.dumps({'cases': len(g['cases']), 'max_abs_diff': worst}))
        return 0
    if not (a.dataset and a.out):
        ap.error('--dataset and --out are needed to write goldens')
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train import CLIP_MEAN, load_dataset  # noqa: E402
    ds, pix = load_dataset(a.dataset, S, os.path.join(a.dataset, 'cache'))
    test = [i for i, s in enumerate(ds['samples']) if s['split'] == 'test']
    rng = np.random.default_rng(20261201)
    # one sample per instruction kind first, so every behaviour is covered
    by_kind = {}
    for i in test:
        by_kind.setdefault(ds['samples'][i]['kind'], []).append(i)
    picks = [int(rng.choice(v)) for _, v in sorted(by_kind.items())][:a.cases]
    cases = []
    for i in picks:
        s = ds['samples'][i]
        views = np.ascontiguousarray(pix[i])
        wp, hid = run(model, views, s['inputIds'])
        cases.append({'name': f"test-{s['episodeSeed']}-{s['kind']}", 'kind': s['kind'], 'instruction': s['modelInstruction'],
                      'input_ids': s['inputIds'],
                      'views': [{'width': S, 'height': S, 'encoding': 'rgb8', 'data_b64': base64.b64encode(v.tobytes()).decode('ascii')} for v in views],
                      'waypoints': fmt(wp), 'hidden': fmt(hid), 'ground_truth': s['waypoints']})
    st = os.path.join(a.model, 'model.safetensors')
    out = {'generator': {'command': regen_command(a), 'reference': 'tools/train/vla_model.py',
                         'model': os.path.normpath(a.model),
                         'safetensors_sha256': hashlib.sha256(open(st, 'rb').read()).hexdigest()},
           'cases': cases}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')
    for c in cases:
        print(f"{c['name']}: last waypoint {c['waypoints'][-2:]} (ground truth {c['ground_truth'][-1]})")
    print(f'wrote {a.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
