#!/usr/bin/python3
"""Trains the bundled driving VLA on a generated dataset and exports it in the engine's format.

  node bin/autoprune-ros.js make-dataset --out build/dataset          # the synthetic drives
  /usr/bin/python3 tools/train/train.py --dataset build/dataset --out build/models/drive-train

Deterministic for a seed (data order, initialisation) on a given thread count; with the same
seed the loss curve is reproduced within floating-point noise (`--compare-curve` checks it).
PyTorch and Pillow come from Debian's packages (python3-torch, python3-pil), CPU is enough.
"""
import argparse
import hashlib
import io
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vla_model import VlaConfig, VlaModel, preprocess_image, save_model  # noqa: E402

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# The sizes that differ between the two trained models. `drive` is the small bundled model (a fast
# fixture: 6 decoder layers, 49 tokens per view). `deep` is built for the regime AutoPrune targets:
# 12 decoder layers, 64 tokens per view and a 2-layer vision tower, so the decoder dominates a
# frame's compute (about 5/6 of its FLOPs) and a per-layer schedule has depth to act on.
ARCHS = {
    'drive': {'layers': 6, 'image_size': 56, 'vision_layers': 3},
    'deep': {'layers': 12, 'image_size': 64, 'vision_layers': 2},
}


def drive_config(ds, arch='drive'):
    """config.json of a trained model (LlavaConfig layout + `vla`, as src/model/tiny.ts writes)."""
    a = ARCHS[arch]
    tok = json.load(open(os.path.join(ds['dir'], 'tokenizer.json')))
    vocab = len(tok['model']['vocab']) + sum(1 for t in tok.get('added_tokens', []) if t['content'] not in tok['model']['vocab'])
    p = ds['prompt']
    return {
        'architectures': ['LlavaForConditionalGeneration'],
        'model_type': 'llava',
        'image_token_index': ds['imageTokenId'],
        'projector_hidden_act': 'gelu',
        'vision_feature_layer': -1,            # every vision layer is used (no unused trained weights)
        'vision_feature_select_strategy': 'default',
        'tie_word_embeddings': False,
        'torch_dtype': 'float16',
        'text_config': {
            'model_type': 'llama', 'hidden_size': 96, 'intermediate_size': 192, 'num_hidden_layers': a['layers'],
            'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 24, 'hidden_act': 'silu',
            'rms_norm_eps': 1e-6, 'rope_theta': 10000.0, 'vocab_size': vocab, 'max_position_embeddings': 512,
            'bos_token_id': ds['bosTokenId'], 'eos_token_id': 2, 'tie_word_embeddings': False,
            'attention_bias': False, 'mlp_bias': False,
        },
        'vision_config': {
            'model_type': 'clip_vision_model', 'hidden_size': 96, 'intermediate_size': 384,
            'num_hidden_layers': a['vision_layers'], 'num_attention_heads': 4, 'num_channels': 3,
            'image_size': a['image_size'],
            'patch_size': 8, 'layer_norm_eps': 1e-5, 'hidden_act': 'quick_gelu',
        },
        'vla': {
            'cameras': ds['cameras'], 'camera_embedding': True, 'action_head': 'waypoints',
            'num_waypoints': ds['numWaypoints'], 'waypoint_dim': 2, 'waypoint_dt_s': ds['waypointDtS'],
            'action_mlp_hidden': 128, 'image_preprocess': 'pad', 'image_mean': CLIP_MEAN, 'image_std': CLIP_STD,
            'system_prompt': p['system_prompt'], 'prompt_template': p['prompt_template'],
            'image_prompt': p['image_prompt'], 'max_new_tokens': 16, 'stop_tokens': ['</s>'],
        },
    }


# ----------------------------------------------------------------------------- data
def load_dataset(ds_dir, S, cache_dir):
    """index.json + frames.bin -> samples, and the views preprocessed as the engine does, cached."""
    with open(os.path.join(ds_dir, 'index.json')) as f:
        ds = json.load(f)
    if ds.get('format') != 'autoprune-ros-dataset' or ds.get('version') != 1:
        raise SystemExit(f'{ds_dir}: not an autoprune-ros dataset (format/version)')
    ds['dir'] = ds_dir
    h = hashlib.sha256(open(os.path.join(ds_dir, 'index.json'), 'rb').read()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    cache = os.path.join(cache_dir, f'pixels-{S}-{h}.npy')
    samples = ds['samples']
    V = len(ds['cameras'])
    if os.path.exists(cache):
        pix = np.load(cache, mmap_mode='r')
    else:
        from PIL import Image
        t0 = time.time()
        pix = np.empty((len(samples), V, S, S, 3), np.uint8)
        with open(os.path.join(ds_dir, 'frames.bin'), 'rb') as f:
            blob = f.read()
        for i, s in enumerate(samples):
            if len(s['frames']) != V:
                raise SystemExit(f"{ds_dir}: sample {i} has {len(s['frames'])} views for {V} cameras")
            for v, (off, n) in enumerate(s['frames']):
                if off < 0 or n <= 0 or off + n > len(blob):
                    raise SystemExit(f'{ds_dir}/frames.bin: sample {i} camera {ds["cameras"][v]}: bytes {off}..{off + n} '
                                     f'lie outside the file ({len(blob)} bytes): truncated dataset')
                try:
                    img = Image.open(io.BytesIO(blob[off:off + n]))
                    img.load()
                except (OSError, SyntaxError) as e:  # PIL reports damaged JPEGs as either
                    raise SystemExit(f'{ds_dir}/frames.bin: sample {i} camera {ds["cameras"][v]} at offset {off}: '
                                     f'not a decodable image ({e})')
                pix[i, v] = preprocess_image(img, S, CLIP_MEAN, pad=True)
        np.save(cache + '.tmp.npy', pix)
        os.replace(cache + '.tmp.npy', cache)
        print(f'preprocessed {len(samples)} x {V} views to {S}x{S} in {time.time() - t0:.1f} s -> {cache}', flush=True)
    return ds, pix


def batch(ds, pix, idx):
    s = [ds['samples'][i] for i in idx]
    return (torch.from_numpy(np.ascontiguousarray(pix[idx])), [x['inputIds'] for x in s],
            torch.tensor([x['waypoints'] for x in s], dtype=torch.float32),
            torch.tensor([x['speedMps'] for x in s], dtype=torch.float32))


def cv_baseline(speed, nq, dt):
    """Constant velocity: straight ahead at the current speed."""
    t = torch.arange(1, nq + 1, dtype=torch.float32) * dt
    wp = torch.zeros(len(speed), nq, 2)
    wp[:, :, 0] = speed[:, None] * t[None]
    return wp


def metrics(pred, gt):
    d = (pred - gt).norm(dim=-1)                                     # [N, nq]
    nq = d.shape[1]
    return {'ade_m': float(d.mean()), 'fde_m': float(d[:, -1].mean()),
            'l2_1s_m': float(d[:, nq // 3 - 1].mean()), 'l2_2s_m': float(d[:, 2 * nq // 3 - 1].mean()),
            'l2_3s_m': float(d[:, -1].mean()), 'n': int(d.shape[0])}


def evaluate(model, ds, pix, split, bs=64):
    idx = [i for i, s in enumerate(ds['samples']) if s['split'] == split]
    if not idx:
        return None
    model.eval()
    preds, gts, speeds = [], [], []
    with torch.no_grad():
        for k in range(0, len(idx), bs):
            px, ids, wp, sp = batch(ds, pix, idx[k:k + bs])
            preds.append(model(px, ids))
            gts.append(wp)
            speeds.append(sp)
    model.train()
    pred, gt, sp = torch.cat(preds), torch.cat(gts), torch.cat(speeds)
    cv = cv_baseline(sp, gt.shape[1], ds['waypointDtS'])
    out = {'model': metrics(pred, gt), 'constant_velocity': metrics(cv, gt), 'by_kind': {}}
    kinds = [ds['samples'][i]['kind'] for i in idx]
    for kind in sorted(set(kinds)):
        m = torch.tensor([k == kind for k in kinds])
        out['by_kind'][kind] = {'model': metrics(pred[m], gt[m]), 'constant_velocity': metrics(cv[m], gt[m])}
    return out


# ----------------------------------------------------------------------------- training
def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    index = os.path.join(args.dataset, 'index.json')
    if not os.path.isfile(index):
        raise SystemExit(f'{args.dataset}: no index.json: not a complete dataset (write one with `autoprune-ros make-dataset --out {args.dataset}`)')
    try:
        with open(index) as f:
            head = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f'{index}: {e}')
    head['dir'] = args.dataset
    cfg_json = drive_config(head, args.arch)
    cfg = VlaConfig(cfg_json)
    del head
    ds, pix = load_dataset(args.dataset, cfg.S, args.cache or os.path.join(args.dataset, 'cache'))
    model = VlaModel(cfg)
    model.init_weights(torch.Generator().manual_seed(args.seed))
    n_params = sum(p.numel() for p in model.parameters())
    train_idx = np.array([i for i, s in enumerate(ds['samples']) if s['split'] == 'train'])
    print(f'{n_params} parameters; {len(train_idx)} training samples; {args.steps} steps of {args.batch}', flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and 'embedding' not in n and 'embed_tokens' not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and 'embedding' not in n and 'embed_tokens' not in n)]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': args.weight_decay},
                             {'params': no_decay, 'weight_decay': 0.0}], lr=args.lr, betas=(0.9, 0.98))
    warm = max(1, args.steps // 20)
    lr_at = lambda s: args.lr * min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    rng = np.random.default_rng(args.seed)
    order, pos = rng.permutation(train_idx), 0
    curve, evals, t0, run = [], [], time.time(), []
    last = min(args.steps, args.stop_after or args.steps)
    for step in range(last):
        if pos + args.batch > len(order):
            order, pos = rng.permutation(train_idx), 0
        idx = order[pos:pos + args.batch]
        pos += args.batch
        px, ids, wp, _ = batch(ds, pix, idx)
        for g in opt.param_groups:
            g['lr'] = lr_at(step)
        pred = model(px, ids)
        loss = F.smooth_l1_loss(pred, wp, beta=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run.append(float(loss))
        if (step + 1) % args.log_every == 0 or step + 1 == last:
            curve.append({'step': step + 1, 'loss': float(np.mean(run)), 'lr': lr_at(step), 'wall_s': round(time.time() - t0, 1)})
            run = []
            print(f"step {step + 1}/{args.steps} loss {curve[-1]['loss']:.4f} lr {curve[-1]['lr']:.2e} "
                  f"{(step + 1) * args.batch / (time.time() - t0):.1f} samples/s", flush=True)
        if args.eval_every and ((step + 1) % args.eval_every == 0 or step + 1 == last):
            ev = evaluate(model, ds, pix, 'val')
            if ev:
                evals.append({'step': step + 1, **ev['model']})
                print(f"  val ADE {ev['model']['ade_m']:.3f} m, L2@3s {ev['model']['l2_3s_m']:.3f} m "
                      f"(constant velocity {ev['constant_velocity']['l2_3s_m']:.3f} m)", flush=True)
    final = {split: evaluate(model, ds, pix, split) for split in ('val', 'test')}
    log = {
        'command': ' '.join(['/usr/bin/python3', 'tools/train/train.py'] + sys.argv[1:]),
        'arch': args.arch, 'seed': args.seed, 'steps': args.steps, 'batch': args.batch, 'lr': args.lr, 'weight_decay': args.weight_decay,
        'threads': args.threads, 'torch': torch.__version__, 'parameters': n_params,
        'wall_s': round(time.time() - t0, 1),
        'dataset': {'generator': ds.get('generator'), 'samples': {s: sum(1 for x in ds['samples'] if x['split'] == s) for s in ('train', 'val', 'test')}},
        'loss_curve': curve, 'val_curve': evals, 'final': final,
    }
    save_model(model, args.out, args.dataset, 'F16', {'format': 'pt', 'generator': 'tools/train/train.py', 'seed': args.seed},
               {'training.json': log})
    print(f"wrote {args.out} ({n_params} parameters, {log['wall_s']} s)", flush=True)
    if args.compare_curve:
        return compare_curves(args.compare_curve, curve, args.curve_tolerance)
    return 0


def compare_curves(ref_file, curve, tol):
    """Same seed, same data: the loss curve must match the reference within `tol` (relative)."""
    ref = {c['step']: c['loss'] for c in json.load(open(ref_file))['loss_curve']}
    worst = 0.0
    for c in curve:
        if c['step'] in ref:
            worst = max(worst, abs(c['loss'] - ref[c['step']]) / max(1e-6, abs(ref[c['step']])))
    ok = worst <= tol
    print(f"loss curve vs {ref_file}: worst relative difference {worst:.4f} ({'within' if ok else 'OUTSIDE'} {tol})")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--dataset', required=True, help='directory written by `autoprune-ros make-dataset`')
    ap.add_argument('--out', required=True, help='model directory to write')
    ap.add_argument('--cache', help='where preprocessed views are cached (default DATASET/cache)')
    ap.add_argument('--arch', choices=sorted(ARCHS), default='drive',
                    help='model size: drive (the small bundled model) or deep (12 decoder layers, 64 tokens per view)')
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--steps', type=int, default=1400)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1.5e-3)
    ap.add_argument('--weight-decay', type=float, default=0.02)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--log-every', type=int, default=50)
    ap.add_argument('--eval-every', type=int, default=250)
    ap.add_argument('--stop-after', type=int, help='stop after this many steps of the full schedule (a quick reproduction check of the curve\'s start)')
    ap.add_argument('--compare-curve', help="a training.json whose loss curve this run must reproduce")
    ap.add_argument('--curve-tolerance', type=float, default=0.02)
    sys.exit(train(ap.parse_args()))


if __name__ == '__main__':
    main()
