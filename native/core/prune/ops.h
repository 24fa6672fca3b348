// Host-side pieces of the pruning policies, separated from the engine so they are unit-tested
// on their own: MI, deterministic top-k, DPC-kNN merging, the CLS-prior pad mask, and each
// policy's simulated schedule (visual tokens after every layer) for budget solving.
#pragma once
#include <cstdint>
#include <vector>

#include "prune/schedule.h"
#include "vla/prune.h"

namespace vla {

// MI of one head (spec §2.2): X = probs[t, cols[v]] over n_text rows (row stride ld), base 2,
// eps 1e-6 inside the denominator and as the ratio's floor.
double prune_mutual_information(const float* probs, int64_t ld, int64_t n_text, const std::vector<int64_t>& cols);

// AutoPrune's first-stage score prior + coef * score, rounded as the CUDA backend rounds it.
float prune_prior_score(float prior, float coef, float score);

// Indices of the k largest scores, returned in ascending index order; ties go to the lower
// index so runs are reproducible.
std::vector<int64_t> prune_topk(const std::vector<float>& scores, int64_t k);

// DPC-kNN merging (spec §2.5) of x [m, d] into c tokens [c, d]; deterministic (no tie noise:
// ties broken by index).
std::vector<float> prune_dpc_knn_merge(const std::vector<float>& x, int64_t m, int64_t d, int64_t c);

// Recycled-token count for d pruned tokens: min(int(0.3 d) + 1) / 10 + 1, int(0.3 d) + 1), 0 if d == 0.
int prune_recycled_count(int64_t d);

// LLaVA-1.5's pad mask on a g x g patch grid (1 = padding): the image letterboxed into a square of
// side max(w, h), its band widened by floor((side + 23) / 24) px on each side, nearest-resized.
std::vector<uint8_t> prune_pad_mask(int width, int height, int grid);

// Visual tokens after each decoder layer [L] for a policy and its free parameter, as the
// engine will produce them (merged tokens included); n_visual enters layer 0. Used to meet
// budgets; autoprune's comes from autoprune_schedule().
struct PolicyPlan {
    std::vector<int> kept;     // [L]
    int pre_llm = -1;          // cls-prior / random: tokens kept before layer 0 (-1: none)
    int fastv_keep = 0;        // fastv
    double pdrop_lambda = 1;   // pdrop
    std::vector<int> pdrop_layers;   // layers after which pdrop drops
    double sparsevlm_factor = 1;     // sparsevlm-fixed
    std::vector<int> sparsevlm_layers, sparsevlm_counts;
};

// Solves the policy's parameter for the budget. Tokens: the largest setting whose average
// visual count is <= T (+ rounding); flops: the largest whose prefill FLOPs (§2.8, with
// n_other non-visual tokens) is <= the cap. Returns Code::input when no setting meets it.
Status prune_plan(PrunePolicy policy, const Budget& budget, int n_layers, int n_visual, int n_other, double d,
                  double m, const PruneOptions& opts, PolicyPlan* out);

// Prefill FLOPs of a plan: layer l processes n_other + (l == 0 ? entering : kept[l - 1]).
double prune_plan_flops(const std::vector<int>& kept, int entering, int n_other, double d, double m);

}  // namespace vla
