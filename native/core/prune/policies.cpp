// The pruning policies (policy.h), one class each, their registry, and the planning shared by
// the prefill and prune_schedule(). Built with -ffp-contract=off, as every file of
// native/core/prune: the budgets' comparisons round identically on every machine.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "prune/ops.h"
#include "prune/policy.h"
#include "prune/schedule.h"

namespace vla {

namespace {

double average(const std::vector<int>& v) {
    double s = 0;
    for (int x : v) s += x;
    return v.empty() ? 0 : s / double(v.size());
}

// Visual count after each layer when the steps run on `entering` visual tokens: a step keeps
// min(keep, present) and adds the recycled rows of what it pruned.
std::vector<int> simulate(const std::vector<PruneStep>& steps, int entering) {
    std::vector<int> kept(steps.size(), entering);
    int cur = entering;
    for (size_t l = 0; l < steps.size(); ++l) {
        const PruneStep& st = steps[l];
        if (st.rows != PruneRows::none) {
            const int k = std::min(st.keep, cur);
            cur = k + (st.recycle ? prune_recycled_count(cur - k) : 0);
        }
        kept[l] = cur;
    }
    return kept;
}

// Steps that prune at `layers` to keep[i] rows, scored by `rows`.
std::vector<PruneStep> staged(int n_layers, const std::vector<int>& layers, const std::vector<int>& keep,
                              PruneRows rows, bool recycle) {
    std::vector<PruneStep> steps(static_cast<size_t>(n_layers));
    for (size_t i = 0; i < layers.size(); ++i) {
        PruneStep& st = steps[size_t(layers[i])];
        st.rows = rows;
        st.keep = keep[i];
        st.recycle = recycle;
    }
    return steps;
}

// Layer indices given for a 32-layer model, moved proportionally to L, strictly increasing and
// within 0..L-1 (for shallow models such as the tiny test model).
std::vector<int> scale_layers(const std::vector<int>& at32, int L) {
    std::vector<int> out;
    int prev = -1;
    for (int a : at32) {
        int l = int(std::lround(double(a + 1) * L / 32.0)) - 1;
        l = std::min(L - 1, std::max(prev + 1, l));
        if (l <= prev) break;
        out.push_back(l);
        prev = l;
    }
    return out;
}

// Budget solving: the largest setting of a policy's free parameter whose counts meet the budget.
struct Solver {
    const PruneOptions& o;
    const PruneShape& s;

    // Tokens: the average visual count <= T; flops: the prefill FLOPs <= the cap.
    bool meets(const std::vector<int>& kept, int entering) const {
        if (o.budget.kind == BudgetKind::tokens) return average(kept) <= o.budget.value + 1e-9;
        return prune_plan_flops(kept, entering, s.n_other, s.hidden, s.ffn) <= o.budget.value * 1e9;
    }

    // Largest x in [0, hi] (integers when `integer`) for which ok(x), by bisection; false when
    // not even x = 0 is.
    template <class Ok>
    bool largest(double hi, bool integer, const Ok& ok, double* best) const {
        double lo = 0;
        if (!ok(lo)) return false;
        if (ok(hi)) {
            *best = hi;
            return true;
        }
        for (int it = 0; it < 100 && hi - lo > (integer ? 1.0 : 1e-9); ++it) {
            double mid = (lo + hi) / 2;
            if (integer) mid = std::floor(mid);
            if (mid <= lo) break;
            (ok(mid) ? lo : hi) = mid;
        }
        *best = lo;
        return true;
    }

    Status unmet(const char* policy, const std::string& why) const {
        const double full =
            prune_plan_flops(std::vector<int>(size_t(s.n_layers), s.n_visual), s.n_visual, s.n_other, s.hidden, s.ffn);
        const std::string what =
            o.budget.kind == BudgetKind::tokens
                ? "tokens:" + std::to_string(o.budget.value)
                : "flops:" + std::to_string(o.budget.value) + " GFLOP (unpruned " + std::to_string(full / 1e9) + ")";
        return {Code::input, "budget " + what + " cannot be met by policy " + policy + ": " + why};
    }
};

class NonePolicy final : public PrunePolicyI {
public:
    PrunePolicy id() const override { return PrunePolicy::none; }
    const char* name() const override { return "none"; }
    const char* description() const override { return "no pruning: every visual token reaches every layer"; }
    Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* p) const override {
        *p = {};
        p->entering = s.n_visual;
        p->steps.assign(size_t(s.n_layers), {});
        p->reindex = o.reindex_positions;
        p->reference_ties = o.parity;
        p->kept.assign(size_t(s.n_layers), s.n_visual);
        p->target_tokens = s.n_visual;
        return Status::OK();
    }
};

// AutoPrune (docs/autoprune.md, "Mutual information", "Schedule", "Budget"): layer 0 keeps
// N1 = floor(2.5 T) by CLS prior + 0.3 MI_0 x attention of the scoring rows; from layer 1 the
// logistic curve, shaped by MI_1, keeps ceil((N1 - 1) q_l) and, with recycling, merges the best of
// the rest. For a FLOPs cap, T is the token budget that keeps the cap reachable for any
// complexity, and the curve's scale the largest within the cap.
class AutoPrunePolicy final : public PrunePolicyI {
public:
    PrunePolicy id() const override { return PrunePolicy::autoprune; }
    const char* name() const override { return "autoprune"; }
    const char* description() const override {
        return "AutoPrune: CLS prior and attention at layer 0, then a logistic retention curve shaped by the "
               "sample's complexity (MI at layer 1)";
    }
    bool needs_prior() const override { return true; }

    Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* p) const override {
        const int L = s.n_layers, Nv = s.n_visual;
        double T = o.budget.value;
        if (o.budget.kind == BudgetKind::flops) {
            T = autoprune_tokens_for_flops(L, Nv, o.budget.value * 1e9, s.n_other, s.hidden, s.ffn, o.autoprune,
                                           o.recycle);
            if (T < 0)
                return {Code::input, "budget flops:" + std::to_string(o.budget.value) +
                                         " GFLOP cannot be met by policy autoprune: layer 0 over all " +
                                         std::to_string(Nv) + " visual tokens plus the smallest schedule is over it"};
        }
        const int n1 = std::min(int(std::floor(2.5 * T)), Nv);
        p->target_tokens = T;
        p->n1 = n1;
        for (int l = 0; l < L; ++l) {
            PruneStep& st = p->steps[size_t(l)];
            st.rows = prune_rows_of(o.score_rows);
            st.measure_mi = l <= 1;  // MI_0 weighs the prior; MI_1 shapes the curve
            st.keep = n1;            // layers >= 1: until learn() has the curve
            st.recycle = l > 0 && o.recycle;
        }
        p->steps[0].prior_mix = 0.3;  // stage B, no merging
        p->learn_layer = L > 1 ? 1 : -1;
        p->kept.assign(size_t(L), n1);
        return Status::OK();
    }

    void learn(const PruneOptions& o, const PruneShape& s, double mi1, PrunePlan* p) const override {
        const int L = s.n_layers, Nv = s.n_visual, n1 = p->n1;
        Schedule sched;
        if (o.budget.kind == BudgetKind::flops) {
            bool met = true;
            sched = autoprune_schedule_flops(L, Nv, n1, mi1, o.budget.value * 1e9, s.n_other, s.hidden, s.ffn,
                                             o.autoprune, &met, o.recycle);
        } else {
            sched = autoprune_schedule(L, Nv, p->target_tokens, mi1, o.autoprune, o.recycle);
        }
        p->k = sched.k;
        p->scale = p->parameter = sched.scale;
        p->keep_frac = sched.keep_frac;
        p->kept = sched.kept;
        // Clipped at 1 as the budget's simulation counts (autoprune_simulate): unclipped, a layer
        // with s p_l > 1 would keep all N1 where the FLOPs bisection planned N1 - 1, and a cap
        // could be exceeded.
        for (int l = 1; l < L; ++l)
            p->steps[size_t(l)].keep = int(std::ceil((n1 - 1) * std::min(1.0, sched.keep_frac[size_t(l)])));
    }
};

// FastV: after layer K - 1, keep the visual tokens the sequence's last row attends to most. In
// FastV that row is the last prompt token; in an action model whose prompt ends with action
// queries it is the last action query (docs/autoprune.md, "Baselines"). Positions as the options
// say; under parity the original ones, as FastV keeps them.
class FastVPolicy final : public PrunePolicyI {
public:
    PrunePolicy id() const override { return PrunePolicy::fastv; }
    const char* name() const override { return "fastv"; }
    const char* description() const override {
        return "FastV: after layer K-1, the visual tokens the sequence's last row (the last action query) attends to "
               "most";
    }
    Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* p) const override {
        const int L = s.n_layers, Nv = s.n_visual;
        const int K = std::max(1, std::min(o.fastv_layer, L - 1));
        auto steps = [&](double keep) { return staged(L, {K - 1}, {int(keep)}, PruneRows::last, false); };
        const Solver sv{o, s};
        double x = 0;
        auto ok = [&](double k) { return sv.meets(simulate(steps(k), Nv), Nv); };
        if (!sv.largest(Nv, true, ok, &x)) return sv.unmet(name(), "the layers before K alone are over it");
        p->steps = steps(x);
        p->kept = simulate(p->steps, Nv);
        p->parameter = x;
        p->reindex = o.parity ? false : o.reindex_positions;
        return Status::OK();
    }
};

// Explicit PDrop stage layers: 1..kPDropMaxStages, strictly increasing, each in 0..L-2 (a stage
// after the last layer would prune nothing a layer sees). Checked, not clamped to the depth as
// fastv_layer is: a calibrated set runs as calibrated or fails.
Status pdrop_layers_check(const std::vector<int>& layers, int L) {
    std::string list;
    for (int l : layers) list += (list.empty() ? "" : ",") + std::to_string(l);
    const std::string what = "pdrop_layers [" + list + "] for a " + std::to_string(L) + "-layer model: ";
    if (int(layers.size()) > kPDropMaxStages)
        return {Code::input, what + "at most " + std::to_string(kPDropMaxStages) + " stages"};
    for (size_t i = 0; i < layers.size(); ++i) {
        if (layers[i] < 0 || layers[i] > L - 2)
            return {Code::input, what + "each stage layer must be in 0.." + std::to_string(L - 2) +
                                     " (0-based, pruning after that layer; checked, not clamped to the depth)"};
        if (i > 0 && layers[i] <= layers[i - 1])
            return {Code::input, what + "the stage layers must be strictly increasing"};
    }
    return Status::OK();
}

// PDrop: stages dropping to N_v lambda^s (s = 1, 2, ...), scored by the last instruction row.
// The stage layers are the options' pdrop_layers, else three at L/4, L/2, 3L/4.
class PDropPolicy final : public PrunePolicyI {
public:
    PrunePolicy id() const override { return PrunePolicy::pdrop; }
    const char* name() const override { return "pdrop"; }
    const char* description() const override {
        return "PDrop: stages (three by default) keeping N_v * lambda^s, scored by the last instruction token";
    }
    Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* p) const override {
        const int L = s.n_layers, Nv = s.n_visual;
        const Solver sv{o, s};
        std::vector<std::vector<int>> tries;
        if (o.pdrop_layers.empty()) {
            // Default stage boundaries L/4, L/2, 3L/4; when even lambda = 0 misses, start at layer 2.
            tries = {scale_layers({7, 15, 23}, L), scale_layers({1, 11, 21}, L)};
        } else {
            tries = {o.pdrop_layers};  // exactly these (prune_plan checked them): no fallback
        }
        for (const std::vector<int>& layers : tries) {
            auto steps = [&](double lam) {
                std::vector<int> keep;
                for (size_t i = 0; i < layers.size(); ++i)
                    keep.push_back(int(std::floor(Nv * std::pow(lam, double(i + 1)))));
                return staged(L, layers, keep, PruneRows::last_instruction, false);
            };
            auto ok = [&](double lam) { return sv.meets(simulate(steps(lam), Nv), Nv); };
            double x = 0;
            if (sv.largest(1.0, false, ok, &x)) {
                p->steps = steps(x);
                p->kept = simulate(p->steps, Nv);
                p->parameter = x;
                return Status::OK();
            }
        }
        return sv.unmet(name(), "the layers before the first stage are over it");
    }
};

// SparseVLM v1.0's fixed schedules (of 576, after layers 2, 6, 15): [300, 200, 110] for 192,
// [303, 110, 36] for 128, [66, 30, 17] for 64. The nearest one's shape, scaled so the average
// meets this budget exactly; scored by the options' rows, recycling as they say.
class SparseVlmFixedPolicy final : public PrunePolicyI {
public:
    PrunePolicy id() const override { return PrunePolicy::sparsevlm_fixed; }
    const char* name() const override { return "sparsevlm-fixed"; }
    const char* description() const override {
        return "SparseVLM's fixed three-stage schedule (after layers 2, 6, 15 of 32), scaled to the budget";
    }
    Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* p) const override {
        const int L = s.n_layers, Nv = s.n_visual;
        const std::vector<int> layers = scale_layers({1, 5, 14}, L);
        const double t576 = o.budget.kind == BudgetKind::tokens ? o.budget.value * 576.0 / Nv : 192.0;
        const double shapes[3][3] = {{66, 30, 17}, {303, 110, 36}, {300, 200, 110}};
        const double* base = shapes[t576 <= 96 ? 0 : t576 <= 160 ? 1 : 2];
        auto steps = [&](double f) {
            std::vector<int> keep;
            for (size_t i = 0; i < layers.size(); ++i)
                keep.push_back(std::min(Nv, int(std::floor(base[i] / 576.0 * Nv * f))));
            return staged(L, layers, keep, prune_rows_of(o.score_rows), o.recycle);
        };
        const Solver sv{o, s};
        double x = 0;
        auto ok = [&](double f) { return sv.meets(simulate(steps(f), Nv), Nv); };
        if (!sv.largest(576.0 / base[2], false, ok, &x))
            return sv.unmet(name(), "the layers before the first drop are over it");
        p->steps = steps(x);
        p->kept = simulate(p->steps, Nv);
        p->parameter = x;
        return Status::OK();
    }
};

// Pre-LLM selections: T tokens enter layer 0 and stay. Shared by cls-prior and random.
Status plan_pre_select(const PruneOptions& o, const PruneShape& s, const char* name, PrunePlan* p) {
    const int L = s.n_layers, Nv = s.n_visual;
    const Solver sv{o, s};
    double x = 0;
    auto ok = [&](double t) { return sv.meets(std::vector<int>(size_t(L), int(t)), int(t)); };
    if (!sv.largest(Nv, true, ok, &x)) return sv.unmet(name, "even no visual token is over it");
    p->pre_select = p->entering = int(x);
    p->kept.assign(size_t(L), int(x));
    p->parameter = x;
    return Status::OK();
}

// FasterVLM/VisionZip-style: the tokens with the highest CLS attention, before the decoder.
class ClsPriorPolicy final : public PrunePolicyI {
public:
    PrunePolicy id() const override { return PrunePolicy::cls_prior; }
    const char* name() const override { return "cls-prior"; }
    const char* description() const override {
        return "the visual tokens with the highest CLS attention in the vision tower, chosen before the decoder";
    }
    bool needs_prior() const override { return true; }
    Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* p) const override {
        return plan_pre_select(o, s, name(), p);
    }
};

// A uniform random subset before the decoder (a floor for the others), seeded.
class RandomPolicy final : public PrunePolicyI {
public:
    PrunePolicy id() const override { return PrunePolicy::random; }
    const char* name() const override { return "random"; }
    const char* description() const override {
        return "a seeded uniform random subset of the visual tokens, before the decoder";
    }
    Status plan(const PruneOptions& o, const PruneShape& s, PrunePlan* p) const override {
        VLA_RETURN_IF_ERROR(plan_pre_select(o, s, name(), p));
        std::vector<int64_t> all(size_t(s.n_visual));
        std::iota(all.begin(), all.end(), 0);
        std::mt19937_64 rng(o.seed);
        std::shuffle(all.begin(), all.end(), rng);
        all.resize(size_t(p->pre_select));
        p->pre_chosen = std::move(all);
        return Status::OK();
    }
};

// The registry: every policy once, in enum order.
const std::vector<const PrunePolicyI*>& registry() {
    static const NonePolicy none;
    static const AutoPrunePolicy autoprune;
    static const FastVPolicy fastv;
    static const PDropPolicy pdrop;
    static const SparseVlmFixedPolicy sparsevlm_fixed;
    static const ClsPriorPolicy cls_prior;
    static const RandomPolicy random;
    static const std::vector<const PrunePolicyI*> all{&none,      &autoprune, &fastv, &pdrop, &sparsevlm_fixed,
                                                      &cls_prior, &random};
    return all;
}

}  // namespace

const PrunePolicyI& prune_policy(PrunePolicy p) {
    for (const PrunePolicyI* q : registry())
        if (q->id() == p) return *q;
    return *registry()[0];
}

const std::vector<PrunePolicyInfo>& prune_policy_list() {
    static const std::vector<PrunePolicyInfo> list = [] {
        std::vector<PrunePolicyInfo> v;
        for (const PrunePolicyI* q : registry()) v.push_back({q->id(), q->name(), q->description()});
        return v;
    }();
    return list;
}

const char* prune_policy_name(PrunePolicy p) { return prune_policy(p).name(); }

bool prune_policy_parse(const std::string& s, PrunePolicy* out) {
    for (const PrunePolicyInfo& i : prune_policy_list())
        if (s == i.name) {
            *out = i.id;
            return true;
        }
    return false;
}

const char* score_rows_name(ScoreRows r) {
    switch (r) {
    case ScoreRows::instruction: return "instruction";
    case ScoreRows::tail: return "tail";
    case ScoreRows::last: return "last";
    }
    return "instruction";
}

bool score_rows_parse(const std::string& s, ScoreRows* out) {
    for (ScoreRows r : {ScoreRows::instruction, ScoreRows::tail, ScoreRows::last})
        if (s == score_rows_name(r)) {
            *out = r;
            return true;
        }
    return false;
}

PruneRows prune_rows_of(ScoreRows r) {
    switch (r) {
    case ScoreRows::instruction: return PruneRows::instruction;
    case ScoreRows::tail: return PruneRows::tail;
    case ScoreRows::last: return PruneRows::last_instruction;
    }
    return PruneRows::instruction;
}

PruneOptions prune_resolve(const PruneOptions& o) {
    PruneOptions r = o;
    if (o.parity) {
        r.reindex_positions = o.policy != PrunePolicy::fastv;
        r.recycle = true;
        r.score_rows = ScoreRows::tail;
    }
    return r;
}

Status prune_plan(const PruneOptions& options, const PruneShape& s, PrunePlan* plan) {
    const PruneOptions o = prune_resolve(options);
    if (s.n_layers < 1 || s.n_visual < 0 || s.n_other < 0 || !(s.hidden > 0) || !(s.ffn > 0))
        return {Code::input, "pruning shape out of range: layers " + std::to_string(s.n_layers) + ", visual tokens " +
                                 std::to_string(s.n_visual) + ", other tokens " + std::to_string(s.n_other)};
    if (o.policy != PrunePolicy::none && o.budget.kind == BudgetKind::none)
        return {Code::input,
                std::string("policy ") + prune_policy_name(o.policy) + " needs a budget (tokens:T or flops:GFLOP)"};
    // Before the no-pruning shortcut: bad stage layers fail whatever the budget.
    if (o.policy == PrunePolicy::pdrop && !o.pdrop_layers.empty())
        VLA_RETURN_IF_ERROR(pdrop_layers_check(o.pdrop_layers, s.n_layers));
    const PrunePolicyI& none = prune_policy(PrunePolicy::none);
    VLA_RETURN_IF_ERROR(none.plan(o, s, plan));
    // No pruning when the budget allows everything: the result is then bit-identical to none.
    const double full = prune_plan_flops(plan->kept, s.n_visual, s.n_other, s.hidden, s.ffn);
    if (o.policy == PrunePolicy::none || s.n_visual == 0 ||
        (o.budget.kind == BudgetKind::tokens && o.budget.value >= s.n_visual) ||
        (o.budget.kind == BudgetKind::flops && o.budget.value * 1e9 >= full))
        return Status::OK();
    if (!(o.budget.value > 0)) return {Code::input, "budget must be positive"};
    plan->prunes = true;
    plan->target_tokens = o.budget.value;
    return prune_policy(o.policy).plan(o, s, plan);
}

PruneAccount prune_account(const Budget& b, const PruneShape& s, const std::vector<int>& kept, int entering) {
    PruneAccount a;
    a.flops_unpruned =
        prune_plan_flops(std::vector<int>(size_t(s.n_layers), s.n_visual), s.n_visual, s.n_other, s.hidden, s.ffn);
    a.flops = prune_plan_flops(kept, entering, s.n_other, s.hidden, s.ffn);
    double sum = 0;
    for (int v : kept) sum += v;
    a.avg_tokens = kept.empty() ? 0 : sum / double(kept.size());
    if (b.kind == BudgetKind::tokens)
        a.budget_met = a.avg_tokens <= b.value + 0.5;
    else if (b.kind == BudgetKind::flops)
        a.budget_met = a.flops <= b.value * 1e9;
    return a;
}

Status prune_schedule(const PruneOptions& options, const PruneShape& shape, double mi, PruneSchedule* out) {
    const PruneOptions opts = prune_resolve(options);
    PrunePlan plan;
    VLA_RETURN_IF_ERROR(prune_plan(opts, shape, &plan));
    if (plan.learn_layer >= 0) prune_policy(opts.policy).learn(opts, shape, mi, &plan);
    PruneSchedule r;
    r.policy = opts.policy;
    r.prunes = plan.prunes;
    r.entering = plan.entering;
    r.kept = plan.kept;
    r.parameter = plan.parameter;
    r.target_tokens = plan.target_tokens;
    r.k = plan.k;
    r.scale = plan.scale;
    r.n1 = plan.n1;
    r.keep_frac = plan.keep_frac;
    const PruneAccount a = prune_account(opts.budget, shape, plan.kept, plan.entering);
    r.avg_tokens = a.avg_tokens;
    r.flops = a.flops;
    r.flops_unpruned = a.flops_unpruned;
    r.budget_met = a.budget_met;
    *out = std::move(r);
    return Status::OK();
}

}  // namespace vla
