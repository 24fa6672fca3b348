// Visual-token pruning inside the prefill: policies, budgets and what each inference reports.
// The selection logic works on host copies of the few attention rows it needs (text rows over
// the current keys); the compaction itself is a backend gather (Backend::gather_rows).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vla/status.h"

namespace vla {

enum class PrunePolicy { none, autoprune, fastv, pdrop, sparsevlm_fixed, cls_prior, random };
const char* prune_policy_name(PrunePolicy p);
bool prune_policy_parse(const std::string& s, PrunePolicy* out);

// AutoPrune's retention curve (spec §2.4).
struct AutoPruneParams {
    double x0 = 14.9;   // logistic centre before the +k shift
    double k0 = 0.4;    // base slope
    double gamma = 0.2; // MI sensitivity
};

enum class BudgetKind { none, tokens, flops };

struct Budget {
    BudgetKind kind = BudgetKind::none;
    double value = 0;  // tokens: average visual tokens per decoder layer (T); flops: prefill GFLOP cap
};

struct PruneOptions {
    PrunePolicy policy = PrunePolicy::none;
    Budget budget;
    AutoPruneParams autoprune;      // x0, k0, gamma
    bool recycle = true;            // DPC-kNN recycling of pruned tokens (autoprune, sparsevlm-fixed)
    bool reindex_positions = true;  // re-index RoPE positions after compaction (AutoPrune parity);
                                    // false keeps original positions (FastV's choice)
    bool pad_mask = true;           // zero the CLS prior on letterbox padding (LLaVA-1.5 "pad")
    int fastv_layer = 2;            // FastV's K
    uint64_t seed = 0;              // the random policy
};

struct PruneStats {
    PrunePolicy policy = PrunePolicy::none;
    int n_visual = 0;                         // visual tokens entering the decoder (all views)
    std::vector<int> kept;                    // [L] visual tokens after each layer (merged included)
    std::vector<std::vector<int>> kept_per_view;  // [L][n_views] original tokens of each view kept
    std::vector<int> merged;                  // [L] recycled (merged) tokens after each layer
    double mi0 = 0, mi1 = 0, k = 0, scale = 0;   // autoprune complexity signal and curve
    double target_tokens = 0;                 // the T the schedule was solved for
    double flops = 0, flops_unpruned = 0;     // prefill decoder FLOPs by the §2.8 formula
    double avg_tokens = 0;                    // mean of kept over layers
    Budget budget;
    bool budget_met = true;
};

}  // namespace vla
