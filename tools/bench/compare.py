#!/usr/bin/env python3
"""The end-to-end goal of the CUDA benchmark: bench-cuda against the PyTorch peer, same GPU.

    compare.py BENCH_CUDA.json PEER_HF.json [--decode-tokens N] [--out FILE]

For each view count both ran (policy none in bench-cuda), end to end is vision + prefill +
N x decode per token, from the medians of each report; the goal is engine >= 2x faster than
transformers' LLaVA (sdpa, bf16). Also prints the autoprune T=64 case against the peer's
unpruned run, which is what a user switching to this engine with pruning sees. Prints JSON.
"""
import argparse
import json
import sys


def median(ms, key):
    v = ms.get(key)
    if isinstance(v, dict):
        return v.get('median')
    return v


def e2e_ms(ms, n_tokens):
    parts = [median(ms, 'vision'), median(ms, 'prefill'), median(ms, 'decode_per_token')]
    if any(p is None for p in parts):
        return None
    return parts[0] + parts[1] + n_tokens * parts[2]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('bench')
    ap.add_argument('peer')
    ap.add_argument('--decode-tokens', type=int, default=32, help='tokens generated in the end-to-end figure')
    ap.add_argument('--out')
    a = ap.parse_args(argv)
    try:
        bench = json.load(open(a.bench))
        peer = json.load(open(a.peer))
    except (OSError, ValueError) as e:
        print(json.dumps({'error': 'VLA_E_IO', 'message': str(e)}))
        return 1
    if 'error' in bench or 'error' in peer:
        print(json.dumps({'error': 'VLA_E_INPUT', 'message': 'a report is an error report',
                          'bench': bench.get('error'), 'peer': peer.get('error')}))
        return 1
    rows = []
    for run in peer.get('runs', []):
        views = run.get('views')
        peer_ms = e2e_ms(run.get('ms', {}), a.decode_tokens)
        for case in bench.get('cases', []):
            if case.get('views') != views or 'ms' not in case:
                continue
            budget = case.get('budget') or {}
            if case.get('policy') == 'none' or (case.get('policy') == 'autoprune' and budget.get('T_arg') == 64):
                eng_ms = e2e_ms(case['ms'], a.decode_tokens)
                if eng_ms is None or peer_ms is None:
                    continue
                rows.append({'views': views, 'engine_case': case.get('name'), 'engine_ms': round(eng_ms, 3),
                             'peer_ms': round(peer_ms, 3), 'speedup': round(peer_ms / eng_ms, 3)})
    goal = [r for r in rows if r['engine_case'] and 'none' in str(r['engine_case'])]
    doc = {
        'decode_tokens': a.decode_tokens,
        'definition': 'vision + prefill + decode_tokens x decode_per_token, medians of each report',
        'rows': rows,
        'goal': {'name': 'end_to_end_vs_pytorch_peer', 'goal': 'engine (policy none) >= 2x faster than the peer at every view count',
                 'measured': [r['speedup'] for r in goal], 'met': bool(goal) and all(r['speedup'] >= 2 for r in goal)},
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if a.out:
        with open(a.out, 'w') as f:
            f.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
