// Pruning policies behind one interface, as llama.cpp's samplers (llama_sampler_i): the prefill
// loop (engine-prefill.cpp) and prune_schedule() reach a policy only through PrunePolicyI and
// the PrunePlan it fills, and neither knows a policy by name. A policy is stateless; what one
// inference needs (its counts, AutoPrune's curve once learned) lives in the plan.
//
// A plan, per inference: an optional pre-LLM selection, then for every decoder layer l one
// step run after the layer's forward pass: score the visual rows with the attention of some
// query rows (or do nothing), keep the best `keep`, and optionally merge the best of the pruned
// into a few recycled rows. AutoPrune fills its counts only after layer 1, when it has measured
// the complexity (MI_1): the plan names that layer (learn_layer) and the loop then calls learn().
#pragma once
#include <cstdint>
#include <vector>

#include "vla/prune.h"
#include "vla/status.h"

namespace vla {

// Which query rows score the visual rows at a layer (the mean of their attention over heads).
enum class PruneRows {
    none,              // no pruning step at this layer
    tail,              // every row after the last image: instruction and action queries
    instruction,       // the rows after the last image minus the action queries (all of the
                       // tail when that leaves none)
    last,              // the sequence's last row (the last action query where there are some)
    last_instruction,  // the last row before the action queries
};

// The step rows of a ScoreRows option.
PruneRows prune_rows_of(ScoreRows r);

// One layer's pruning step, after its forward pass.
struct PruneStep {
    PruneRows rows = PruneRows::none;
    bool measure_mi = false;  // X into slot l
    double prior_mix = 0;     // > 0: scores = CLS prior + prior_mix * MI_l / rows * attention
    int keep = 0;             // visual rows kept, at most those present (all present: no compaction)
    bool recycle = false;     // the best prune_recycle_candidates() of the pruned merge into
                              // prune_recycled_count() rows (DPC-kNN)
};

struct PrunePlan {
    bool prunes = false;              // false: every token is kept (the none plan)
    int entering = 0;                 // visual tokens entering layer 0
    int pre_select = -1;              // visual tokens kept before layer 0 (-1: no selection)
    std::vector<int64_t> pre_chosen;  // which: indices into the N_v visual tokens; empty: the
                                      // pre_select best by CLS prior
    std::vector<PruneStep> steps;     // [L]
    int learn_layer = -1;             // after this layer's step measured MI the loop calls learn()
    bool reindex = false;             // RoPE positions re-indexed after compaction and in decode
    bool reference_ties = false;      // DPC-kNN: the reference's density-tie rule (parity)
    std::vector<int> kept;            // [L] predicted visual count after each layer (merged included)
    // What the reports show (PruneStats, PruneSchedule).
    double target_tokens = 0, parameter = 0;
    double k = 0, scale = 0;  // AutoPrune's curve, once learned
    int n1 = 0;
    std::vector<double> keep_frac;
};

class PrunePolicyI {
public:
    virtual ~PrunePolicyI() = default;
    virtual PrunePolicy id() const = 0;           // required: the registry's key
    virtual const char* name() const = 0;         // required: as requests spell it ("sparsevlm-fixed")
    virtual const char* description() const = 0;  // required: one line for CLIs and docs
    // Required. Solves the free parameter for o.budget and fills the plan: steps, predicted counts,
    // pre-selection. Called by prune_plan() only with a budget that prunes (> 0, below what
    // every token costs) and n_visual > 0; Code::input when the budget cannot be met.
    virtual Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* plan) const = 0;
    // Optional: the MI measured at plan->learn_layer, to finish the plan (AutoPrune's curve).
    virtual void learn(const PruneOptions& o, const PruneShape& s, double mi, PrunePlan* plan) const {}
    // Optional: whether the vision tower must compute the CLS-attention prior.
    virtual bool needs_prior() const { return false; }
};

// The policy object of p (one static instance each).
const PrunePolicyI& prune_policy(PrunePolicy p);

// The plan for a request: the none plan when no policy or a budget that allows every visual
// token (then bit-identical to no pruning), else the policy's. Code::input: a policy without a
// budget, a budget <= 0, or one the policy cannot meet.
Status prune_plan(const PruneOptions& o, const PruneShape& s, PrunePlan* plan);

// The accounting both the engine and prune_schedule() report: average visual tokens, prefill
// FLOPs of the counts and whether the budget is met (tokens: within rounding, avg <= T + 0.5).
struct PruneAccount {
    double avg_tokens = 0, flops = 0, flops_unpruned = 0;
    bool budget_met = true;
};
PruneAccount prune_account(const Budget& b, const PruneShape& s, const std::vector<int>& kept, int entering);

}  // namespace vla
