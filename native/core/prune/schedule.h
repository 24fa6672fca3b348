// AutoPrune's retention schedule and the prefill FLOPs accounting (docs/autoprune.md,
// "Schedule" and "Budget"). Pure host arithmetic, model-free: the autoprune policy (policies.cpp) solves its
// schedule with it once, after layer 1, from MI_1, in the prefill and in prune_schedule() alike.
#pragma once
#include <cstdint>
#include <vector>

#include "vla/prune.h"

namespace vla {

struct Schedule {
    double k = 0;                  // slope, max(k0 - gamma * MI_1, 0)
    double scale = 1;              // bisection result s
    int n1 = 0;                    // visual tokens after layer 0: min(floor(2.5 T), N_v)
    std::vector<double> keep_frac; // [L], index 0 unused (layer 0 keeps n1); s * p_l, unclipped
    std::vector<int> kept;         // [L] simulated visual count after each layer (merged tokens included)
    double avg_tokens = 0;         // mean of kept over the L layers
};

// Raw logistic fractions p_l = 0.75 / (1 + exp(k (l - (x0 + k)))) for l = 1..L-1 (p[0] = 0).
std::vector<double> autoprune_curve(int n_layers, double k, double x0);

// Visual count after each layer when layer l keeps min(ceil((n1 - 1) * min(1, q_l)), n1) by
// score and, with recycle, adds C = min((int(0.3 d) + 1) / 10 + 1, int(0.3 d) + 1) merged
// tokens for the d it pruned; kept[0] = n1.
std::vector<int> autoprune_simulate(const std::vector<double>& q, int n1, bool recycle = true);

// The schedule for budget T (average visual tokens per layer) and complexity MI_1: the
// reference's bisection of s in [0, 20] (200 steps, stop when the area is within 0.01 of L T).
// recycle: whether pruned tokens are merged (false: no room is kept for merged tokens).
Schedule autoprune_schedule(int n_layers, int n_visual, double budget_tokens, double mi1,
                            const AutoPruneParams& p = {}, bool recycle = true);

// The same curve for a FLOPs cap instead of a token area: the largest scale whose simulated
// prefill FLOPs (layer 0 over n_visual, layer l over n_other + kept[l - 1]) stay within
// cap_flops, with n1 fixed by layer 0. met is false when even scale 0 is over the cap.
Schedule autoprune_schedule_flops(int n_layers, int n_visual, int n1, double mi1, double cap_flops, int n_other,
                                  double d, double m, const AutoPruneParams& p, bool* met, bool recycle = true);

// For a FLOPs cap, the token budget T whose layer-0 keep N1 = min(floor(2.5 T), N_v) leaves
// the cap reachable for any complexity (the worst k over MI in [0, (k0 / gamma)]); -1 when
// no T does.
double autoprune_tokens_for_flops(int n_layers, int n_visual, double cap_flops, int n_other, double d, double m,
                                  const AutoPruneParams& p, bool recycle = true);

// Prefill FLOPs of one decoder layer over n tokens: 4 n d^2 + 2 n^2 d + 3 n d m (FastV/SparseVLM
// convention, the reference's reported numbers).
double layer_flops(double n, double d, double m);

// Prefill FLOPs of a plan: layer l processes n_other + (l == 0 ? entering : kept[l - 1]) tokens.
double prune_plan_flops(const std::vector<int>& kept, int entering, int n_other, double d, double m);

// Prefill FLOPs of the decoder when layer l processes prefix + visual_in[l] + text tokens.
double prefill_flops(const std::vector<int>& visual_in, int prefix, int text, double d, double m);

}  // namespace vla
