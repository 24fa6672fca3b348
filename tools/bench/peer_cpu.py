#!/usr/bin/python3
"""The PyTorch peer of `npm run bench:cpu -- --peer`: the reference forward (tools/reference/vla_ref.py,
fp32, the same model files) as a worker for interleaved rounds against bench-cpu --serve.

  /usr/bin/python3 tools/bench/peer_cpu.py --model DIR --frames FILE --threads N

FILE holds rgb8 views of image_size x image_size back to back. Each stdin line "VIEWS" runs one
forward on the first VIEWS frames with the prompt bench-cpu --serve builds (bos, 30 text ids, one
image token per view, 20 text ids) and prints one JSON line: vision_ms (pixels -> visual tokens),
prefill_ms (sequence -> waypoints), total_ms and the waypoints.

Threads (set by the caller before this process starts, so that the libraries read them at load):
torch.set_num_threads(N) for ATen's OpenMP ops, OPENBLAS_NUM_THREADS=N for the matrix products,
OMP_WAIT_POLICY=PASSIVE so that idle OpenMP threads sleep instead of spinning against OpenBLAS's
threads (with the default the two pools fight over the same cores).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))
from vla_ref import Model  # noqa: E402


def prompt(m, n_views):
    return [m.bos] + [3 + i for i in range(30)] + [m.image_token] * n_views + [40 + i for i in range(20)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', required=True)
    ap.add_argument('--frames', required=True)
    ap.add_argument('--threads', type=int, required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = Model(a.model)
    with open(a.frames, 'rb') as f:
        buf = f.read()
    size = m.S * m.S * 3
    frames = [buf[i * size:(i + 1) * size] for i in range(len(buf) // size)]
    print(json.dumps({'ready': True, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                      'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
                      'openblas_num_threads': os.environ.get('OPENBLAS_NUM_THREADS'),
                      'openblas_coretype': os.environ.get('OPENBLAS_CORETYPE')}), flush=True)
    for line in sys.stdin:
        nv = int(line.split()[0])
        views = [{'width': m.S, 'height': m.S, 'encoding': 'rgb8', 'data': frames[v]} for v in range(nv)]
        ids = prompt(m, nv)
        with torch.no_grad():
            t0 = time.perf_counter()
            vis = m.visual_tokens(views)
            t1 = time.perf_counter()
            seq = torch.cat([m.embed_sequence(ids, vis), m.W('vla.action_queries')], dim=0)
            hid = m.decoder(seq)
            act = hid[-m.vla['num_waypoints']:]
            W = m.W
            h = torch.nn.functional.gelu(torch.nn.functional.linear(act, W('vla.action_head.fc1.weight'), W('vla.action_head.fc1.bias')))
            wp = torch.nn.functional.linear(h, W('vla.action_head.fc2.weight'), W('vla.action_head.fc2.bias'))
            t2 = time.perf_counter()
        print(json.dumps({'vision_ms': (t1 - t0) * 1e3, 'prefill_ms': (t2 - t1) * 1e3, 'total_ms': (t2 - t0) * 1e3,
                          'waypoints': [float(x) for x in np.asarray(wp).reshape(-1)]}), flush=True)


if __name__ == '__main__':
    main()
