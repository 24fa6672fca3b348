// Visual-token pruning inside the prefill: the policies, budgets, what each inference reports,
// and a policy's schedule for a budget without a model (the planning the prefill itself does).
// Selection and compaction run on the backend as ops; the decisions (how many rows each layer
// keeps) are fixed by the policy's plan before the prefill, AutoPrune's after its layer 1.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vla/status.h"

namespace vla {

enum class PrunePolicy { none, autoprune, fastv, pdrop, sparsevlm_fixed, cls_prior, random };

// The one list of policies, in enum order. The addon exports it (`policies`); the TypeScript
// side checks its own list of names against it.
struct PrunePolicyInfo {
    PrunePolicy id;
    const char* name;         // as requests and reports spell it, e.g. "sparsevlm-fixed"
    const char* description;  // one line, for CLIs and docs
};
const std::vector<PrunePolicyInfo>& prune_policy_list();
const char* prune_policy_name(PrunePolicy p);
bool prune_policy_parse(const std::string& s, PrunePolicy* out);

// AutoPrune's retention curve (docs/autoprune.md, "Schedule").
struct AutoPruneParams {
    double x0 = 14.9;    // logistic centre before the +k shift
    double k0 = 0.4;     // base slope
    double gamma = 0.2;  // MI sensitivity
};

enum class BudgetKind { none, tokens, flops };

struct Budget {
    BudgetKind kind = BudgetKind::none;
    double value = 0;  // tokens: average visual tokens per decoder layer (T); flops: prefill GFLOP cap
};

// The query rows whose attention scores the visual tokens (and gives AutoPrune's MI), for the
// policies that score with the text after the images (autoprune, sparsevlm-fixed). FastV always
// scores with the sequence's last row, PDrop with the last prompt row (docs/autoprune.md,
// "Baselines").
enum class ScoreRows {
    instruction,  // the rows after the last image minus the action queries (default)
    tail,         // every row after the last image, action queries included (the reference's rule)
    last,         // the last prompt row: the last row before the action queries
};
const char* score_rows_name(ScoreRows r);  // "instruction", "tail", "last"
bool score_rows_parse(const std::string& s, ScoreRows* out);

// The most stage layers PruneOptions::pdrop_layers may name.
constexpr int kPDropMaxStages = 8;

struct PruneOptions {
    PrunePolicy policy = PrunePolicy::none;
    Budget budget;
    AutoPruneParams autoprune;       // x0, k0, gamma
    // Defaults keep what the model learned (docs/autoprune.md, "Positions and recycling"): the
    // survivors keep their original RoPE positions, and pruned tokens are dropped, not merged.
    bool recycle = false;            // DPC-kNN recycling of pruned tokens (autoprune, sparsevlm-fixed)
    bool reindex_positions = false;  // re-index RoPE positions 0..n-1 after every compaction
    ScoreRows score_rows = ScoreRows::instruction;
    // The reference's behaviour in one switch (docs/autoprune.md, "Parity with the reference"):
    // overrides the three options above with re-indexed positions (every policy but FastV, which
    // keeps the original ones as FastV does), recycling, tail rows, and the reference's DPC-kNN
    // density-tie rule (tied tokens both count as peaks) instead of ours (the earlier is denser).
    bool parity = false;
    bool pad_mask = true;            // zero the CLS prior on letterbox padding (LLaVA-1.5 "pad")
    int fastv_layer = 2;             // FastV's K
    // PDrop's stage layers, 0-based, each stage pruning after its layer: empty for the default
    // (L/4, L/2, 3L/4 of 32 scaled to L, then earlier ones when even lambda = 0 misses the
    // budget); otherwise exactly these, 1..8 of them, strictly increasing, each in 0..L-2
    // (checked against the model's depth, not clamped; Code::input otherwise).
    std::vector<int> pdrop_layers;
    uint64_t seed = 0;               // the random policy
};



// The options a request runs with: o itself, or with parity the reference's behaviour applied.
PruneOptions prune_resolve(const PruneOptions& o);

struct PruneStats {
    PrunePolicy policy = PrunePolicy::none;
    PruneOptions options;                         // what the prefill ran with (parity resolved)
    int n_visual = 0;                             // visual tokens entering the decoder (all views)
    std::vector<int> kept;                        // [L] visual tokens after each layer (merged included)
    std::vector<std::vector<int>> kept_per_view;  // [L][n_views] original tokens of each view kept
    std::vector<int> merged;                      // [L] recycled (merged) tokens after each layer
    std::vector<std::vector<int>> kept_index;     // when requested: [L] the visual rows after each layer,
                                                  // as index view * K + patch (-1: merged), in order
    double mi0 = 0, mi1 = 0, k = 0, scale = 0;    // autoprune complexity signal and curve
    double target_tokens = 0;                     // the T the schedule was solved for
    double flops = 0, flops_unpruned = 0;         // prefill decoder FLOPs (docs/autoprune.md, "Budget")
    double avg_tokens = 0;                        // mean of kept over layers
    Budget budget;
    bool budget_met = true;
};

// The prefill a schedule is planned for: shapes only, no model.
struct PruneShape {
    int n_layers = 32;     // L: decoder layers
    int n_visual = 576;    // N_v: visual tokens entering the decoder (all views)
    int n_other = 75;      // tokens never pruned: prefix, instruction, action queries
    double hidden = 4096;  // d, for the FLOPs formula (docs/autoprune.md, "Budget")
    double ffn = 11008;    // m
};

// A policy's schedule for a budget, as the engine runs it: for AutoPrune, at complexity `mi`.
struct PruneSchedule {
    PrunePolicy policy = PrunePolicy::none;
    bool prunes = false;                   // false: the budget allows every token, nothing is pruned
    int entering = 0;                      // visual tokens entering layer 0 (fewer after a pre-LLM selection)
    std::vector<int> kept;                 // [L] visual tokens after each layer (merged included)
    double parameter = 0;                  // the policy's solved free parameter: autoprune the scale s, fastv the
                                           // count kept, pdrop lambda, sparsevlm-fixed the factor, cls-prior and
                                           // random the tokens kept (0 when nothing is pruned)
    double target_tokens = 0;              // as PruneStats reports it
    double k = 0, scale = 0;               // autoprune: slope and scale of the curve
    int n1 = 0;                            // autoprune: visual tokens after layer 0
    std::vector<double> keep_frac;         // autoprune: [L] s * p_l, unclipped (index 0 unused)
    double avg_tokens = 0;                 // mean of kept over layers
    double flops = 0, flops_unpruned = 0;  // prefill decoder FLOPs (docs/autoprune.md, "Budget")
    bool budget_met = true;                // as the engine judges it
};

// Solves the policy's free parameter for opts.budget and predicts its visual counts, with the
// same policy objects and accounting as the prefill. mi: the complexity MI_1 that AutoPrune
// learns after layer 1 in the prefill (other policies ignore it). Code::input for a policy
// without a budget, a shape out of range, or a budget the policy cannot meet.
Status prune_schedule(const PruneOptions& opts, const PruneShape& shape, double mi, PruneSchedule* out);

}  // namespace vla
