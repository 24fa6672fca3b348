// `npm run bench:cpu -- --peer`: the engine (bench-cpu --serve) against the PyTorch reference
// forward (tools/bench/peer_cpu.py) on the same model files, frames and prompt, in interleaved
// rounds (the order alternates each round), with the medians of per-round ratios: on a shared,
// noisy machine a ratio measured within one round is what survives the noise.
//   node scripts/bench-cpu.js --peer [--threads 2] [--rounds 5] [--mid-rounds 3] [--skip-mid]
// Prints one JSON object. Peer threads: torch.set_num_threads(N), OPENBLAS_NUM_THREADS=N and
// OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning against OpenBLAS's), and
// OPENBLAS_CORETYPE set to the kernel the engine's OpenBLAS runs, so both use the same kernel.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n === 0 ? null : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const r4 = (v) => (v === null || v === undefined ? null : Number(v.toPrecision(4)));

// A line-protocol worker: send a line, await one JSON line.
function worker(cmd, argv, env) {
  const p = spawn(cmd, argv, { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: p.stdout });
  const waiting = [];
  const lines = [];
  rl.on('line', (l) => (waiting.length ? waiting.shift()(l) : lines.push(l)));
  const next = () => new Promise((res) => (lines.length ? res(lines.shift()) : waiting.push(res)));
  p.on('exit', (code) => {
    for (const w of waiting.splice(0)) w(JSON.stringify({ error: 'VLA_E_INTERNAL', message: `${cmd} exited (${code})` }));
  });
  return {
    async ask(line) {
      p.stdin.write(line + '\n');
      const r = JSON.parse(await next());
      if (r.error) throw new Error(`${path.basename(cmd)}: ${r.error} ${r.message ?? ''}`);
      return r;
    },
    next: async () => JSON.parse(await next()),
    close: () => p.stdin.end(),
  };
}

// Deterministic frames (a road-like gradient and noise; content does not change the work).
function frames(S, n) {
  const b = Buffer.alloc(S * S * 3 * n);
  let s = 12345;
  for (let i = 0; i < b.length; ++i) {
    s = (s * 1103515245 + 12345) >>> 0;
    b[i] = ((i / 3) % S) * (200 / S) + (s >>> 27);
  }
  return b;
}

export async function benchPeer({ root, bin, args, opt, makeModel }) {
  const threads = Number(opt('--threads', '2')) || os.availableParallelism();
  const python = opt('--python', '/usr/bin/python3');
  const torchOk = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  if (!torchOk) throw new Error(`VLA_E_INPUT: ${python} cannot import torch (Debian: python3-torch)`);
  const midDir = path.join(root, 'build', 'models', 'bench-mid');
  if (!args.includes('--skip-mid')) {
    try {
      readFileSync(path.join(midDir, 'config.json'));
    } catch {
      await makeModel(midDir, { preset: 'mid' });
    }
  }
  const bundled = path.join(root, 'assets', 'models', 'drive');
  const out = { threads, machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg_start: os.loadavg().map(r4) } };

  // GEMM: the engine's products against the library's own call, per model shape.
  const gemm = (dir, views) => {
    const r = spawnSync(bin, ['--model', dir, '--views', String(views), '--threads', String(threads), '--gemm-only'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout);
  };
  const g0 = gemm(bundled, 3);
  out.gemm_provider = g0.gemm_provider;
  const core = /openblas \S+ (\S+)/.exec(g0.gemm_provider ?? '')?.[1];
  out.gemm = { bundled: g0.gemm };
  if (!args.includes('--skip-mid')) out.gemm.mid = gemm(midDir, 6).gemm;
  const within = (rows) => rows.filter((g) => g.n >= 4 && g.library_direct_gflops_per_s);
  const all = [...Object.values(out.gemm).flatMap(within)];
  out.gemm_worst_engine_vs_library = r4(Math.min(...all.map((g) => g.engine_vs_library)));

  const peerEnv = { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
  if (core) peerEnv.OPENBLAS_CORETYPE = core;
  out.peer_env = { OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_NUM_THREADS: String(threads), OPENBLAS_CORETYPE: peerEnv.OPENBLAS_CORETYPE ?? null, torch_threads: threads };

  const tmp = path.join(root, 'build', 'bench');
  mkdirSync(tmp, { recursive: true });
  const cases = [{ name: 'bundled', dir: bundled, views: [3], rounds: Number(opt('--rounds', '7')) }];
  if (!args.includes('--skip-mid')) cases.push({ name: 'mid', dir: midDir, views: [1, 6], rounds: Number(opt('--mid-rounds', '3')), prune: true });
  out.end_to_end = {};
  for (const c of cases) {
    const cfg = JSON.parse(readFileSync(path.join(c.dir, 'config.json'), 'utf8'));
    const S = cfg.vision_config.image_size;
    const framesPath = path.join(tmp, `frames-${S}.bin`);
    writeFileSync(framesPath, frames(S, Math.max(...c.views)));
    const eng = worker(bin, ['--model', c.dir, '--serve', framesPath, '--threads', String(threads)], process.env);
    const peer = worker(python, [path.join(root, 'tools', 'bench', 'peer_cpu.py'), '--model', c.dir, '--frames', framesPath, '--threads', String(threads)], peerEnv);
    const ready = await peer.next();
    out.peer = { torch: ready.torch, threads: ready.threads };
    for (const nv of c.views) {
      await eng.ask(`${nv} none 0`); // warm-up: first-touch of weights, lazy allocations
      await peer.ask(`${nv}`);
      const rounds = [];
      let wpDiff = 0;
      for (let i = 0; i < c.rounds; ++i) {
        let e, p;
        if (i % 2 === 0) {
          e = await eng.ask(`${nv} none 0`);
          p = await peer.ask(`${nv}`);
        } else {
          p = await peer.ask(`${nv}`);
          e = await eng.ask(`${nv} none 0`);
        }
        for (let j = 0; j < e.waypoints.length; ++j) wpDiff = Math.max(wpDiff, Math.abs(e.waypoints[j] - p.waypoints[j]));
        rounds.push({ e, p });
      }
      // the engine's vision stage includes its preprocessing; the peer's visual_tokens() too
      const ev = (e) => e.preprocess_ms + e.vision_ms, ep = (e) => e.prefill_ms + e.head_ms;
      out.end_to_end[`${c.name}-${nv}v`] = {
        views: nv,
        rounds: c.rounds,
        engine_ms: { vision: r4(median(rounds.map((r) => ev(r.e)))), prefill: r4(median(rounds.map((r) => ep(r.e)))), total: r4(median(rounds.map((r) => r.e.total_ms))) },
        peer_ms: { vision: r4(median(rounds.map((r) => r.p.vision_ms))), prefill: r4(median(rounds.map((r) => r.p.prefill_ms))), total: r4(median(rounds.map((r) => r.p.total_ms))) },
        // peer time / engine time per round, median: > 1 means the engine is faster
        speedup_vs_peer: {
          vision: r4(median(rounds.map((r) => r.p.vision_ms / ev(r.e)))),
          prefill: r4(median(rounds.map((r) => r.p.prefill_ms / ep(r.e)))),
          total: r4(median(rounds.map((r) => r.p.total_ms / r.e.total_ms))),
        },
        waypoints_max_abs_diff: r4(wpDiff),
      };
    }
    if (c.prune) {
      // AutoPrune at 64 tokens, 6 views, against unpruned: whole inference and prefill, interleaved.
      const nv = Math.max(...c.views);
      const rounds = [];
      for (let i = 0; i < c.rounds; ++i) {
        const a = i % 2 === 0 ? await eng.ask(`${nv} none 0`) : await eng.ask(`${nv} autoprune 64`);
        const b = i % 2 === 0 ? await eng.ask(`${nv} autoprune 64`) : await eng.ask(`${nv} none 0`);
        const [none, pruned] = i % 2 === 0 ? [a, b] : [b, a];
        rounds.push({ none, pruned });
      }
      out.prune = {
        model: c.name,
        views: nv,
        policy: 'autoprune',
        tokens: 64,
        whole_speedup: r4(median(rounds.map((r) => r.none.total_ms / r.pruned.total_ms))),
        prefill_speedup: r4(median(rounds.map((r) => (r.none.prefill_ms + r.none.head_ms) / (r.pruned.prefill_ms + r.pruned.head_ms)))),
        prefill_flops_ratio: r4(rounds[0].pruned.flops_unpruned / rounds[0].pruned.flops),
        pruned_ms: { vision: r4(median(rounds.map((r) => r.pruned.preprocess_ms + r.pruned.vision_ms))), prefill: r4(median(rounds.map((r) => r.pruned.prefill_ms))), total: r4(median(rounds.map((r) => r.pruned.total_ms))) },
      };
    }
    eng.close();
    peer.close();
  }
  out.machine.loadavg_end = os.loadavg().map(r4);
  const e2e = out.end_to_end;
  out.goals = {
    gemm_within_15pct_of_library: { value: out.gemm_worst_engine_vs_library, met: out.gemm_worst_engine_vs_library >= 0.85 },
    ...Object.fromEntries(Object.entries(e2e).map(([k, v]) => [`as_fast_as_peer_${k}`, { value: v.speedup_vs_peer.total, met: v.speedup_vs_peer.total >= 1 }])),
    ...(out.prune ? { autoprune_64_6v_whole_4x: { value: out.prune.whole_speedup, met: out.prune.whole_speedup >= 4 } } : {}),
  };
  return out;
}
