// Pruning: the host-side pieces on hand-derived cases, then every policy end to end on the
// tiny model with its budget, and the identity of an unconstraining budget.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "prune/ops.h"
#include "prune/policy.h"
#include "prune/schedule.h"
#include "test-models.h"
#include "vla/engine.h"

using namespace vla;
using vla_test::Frames;
using vla_test::frames;
using vla_test::model_dir;
namespace fs = std::filesystem;

TEST_CASE("mutual information: hand-derived values") {
    // Two text rows, two visual columns of a wider row (ld 3). Independent rows give MI near 0
    // (eps shifts it slightly); a perfectly aligned pattern gives about 1 bit of p(t,v) mass.
    const float same[] = {0.5f, 0.25f, 0.25f, 0.5f, 0.25f, 0.25f};
    const double mi0 = prune_mutual_information(same, 3, 2, {1, 2});
    // p(t,v) = 0.125, p(t) p(v) = 0.125: ratio 0.125 / (0.125 + 1e-6)
    CHECK(mi0 == doctest::Approx(4 * 0.125 * std::log2(0.125 / (0.125 + 1e-6))).epsilon(1e-9));
    const float diag[] = {0.f, 0.5f, 0.f, 0.f, 0.f, 0.5f};
    // p(t,v) = 0.25 on the diagonal, p(v) = 0.25, p(t) = 0.5: ratio 0.25 / (0.125 + 1e-6) ~ 2
    CHECK(prune_mutual_information(diag, 3, 2, {1, 2}) == doctest::Approx(2 * 0.25 * std::log2(0.25 / (0.125 + 1e-6))));
    CHECK(prune_mutual_information(diag, 3, 0, {1}) == 0.0);
}

TEST_CASE("top-k keeps the best, in index order, ties to the lower index") {
    CHECK(prune_topk({0.1f, 0.9f, 0.5f, 0.9f, 0.2f}, 2) == std::vector<int64_t>{1, 3});
    CHECK(prune_topk({1, 1, 1, 1}, 2) == std::vector<int64_t>{0, 1});
    CHECK(prune_topk({3, 1, 2}, 5) == std::vector<int64_t>{0, 1, 2});
    CHECK(prune_topk({3, 1, 2}, 0).empty());
}

TEST_CASE("recycled count and DPC-kNN merge") {
    CHECK(prune_recycled_count(0) == 0);
    CHECK(prune_recycled_count(1) == 1);     // M = 1
    CHECK(prune_recycled_count(33) == 2);    // M = int(9.9) + 1 = 10 -> min(10 / 10 + 1, 10)
    CHECK(prune_recycled_count(416) == 13);  // M = 125 -> 13
    // Two tight clusters far apart merge into their means.
    std::vector<float> x = {0, 0, 0.1f, 0, 0, 0.1f, 10, 10, 10.1f, 10, 10, 10.1f};
    auto merged = prune_dpc_knn_merge(x, 6, 2, 2);
    REQUIRE(merged.size() == 4);
    std::vector<std::pair<float, float>> c = {{merged[0], merged[1]}, {merged[2], merged[3]}};
    std::sort(c.begin(), c.end());
    CHECK(c[0].first == doctest::Approx(0.0333333).epsilon(1e-3));
    CHECK(c[1].first == doctest::Approx(10.0333333).epsilon(1e-3));
    CHECK(prune_dpc_knn_merge(x, 6, 2, 1).size() == 2);
}

TEST_CASE("DPC-kNN density ties: ours makes one peak per tied pair, the reference's rule both") {
    // Two pairs: every token's density is the same (its 2 nearest are itself and its partner).
    const std::vector<float> x = {0, 0, 1, 0, 100, 0, 101, 0};
    // Ours: token 0 is the densest; 1 points at 0, 2 at 1 (far), 3 at 2: centres 0 and 2, the pairs' means.
    auto ours = prune_dpc_knn_merge(x, 4, 2, 2);
    REQUIRE(ours.size() == 4);
    CHECK(ours[0] == doctest::Approx(0.5).epsilon(1e-5));
    CHECK(ours[2] == doctest::Approx(100.5).epsilon(1e-5));
    // The reference's: no token is strictly denser, all are peaks with the same score, the first
    // two become centres; 2 and 3 join 1, the nearer.
    auto ref = prune_dpc_knn_merge(x, 4, 2, 2, true);
    REQUIRE(ref.size() == 4);
    CHECK(ref[0] == doctest::Approx(0.0).epsilon(1e-5));
    CHECK(ref[2] == doctest::Approx((1.0 + 100 + 101) / 3).epsilon(1e-5));
}

TEST_CASE("pad mask: square images are unmasked; letterbox bands are masked") {
    for (uint8_t m : prune_pad_mask(336, 336, 24)) CHECK(m == 0);
    // 1600 x 900: side 1600, band rows 350..1250 widened by 67 -> 283..1317: grid rows 0..4 and
    // 20..23 (of 24, 66.7 px each) are padding.
    auto mask = prune_pad_mask(1600, 900, 24);
    for (int gy = 0; gy < 24; ++gy) {
        const bool pad = gy * 1600 / 24 < 283 || gy * 1600 / 24 >= 1317;
        for (int gx = 0; gx < 24; ++gx) CHECK(mask[size_t(gy * 24 + gx)] == (pad ? 1 : 0));
    }
}

TEST_CASE("policy plans meet their budgets: tokens and FLOPs, LLaVA-1.5-7B shapes") {
    const PruneShape shape{32, 576, 75, 4096, 11008};
    PruneOptions o;
    for (PrunePolicy p : {PrunePolicy::fastv, PrunePolicy::pdrop, PrunePolicy::sparsevlm_fixed, PrunePolicy::cls_prior, PrunePolicy::random}) {
        for (double T : {64.0, 128.0, 192.0}) {
            PrunePlan plan;
            o.policy = p;
            o.budget = {BudgetKind::tokens, T};
            Status st = prune_plan(o, shape, &plan);
            INFO(prune_policy_name(p) << " T=" << T);
            REQUIRE(st.ok());
            double avg = 0;
            for (int v : plan.kept) avg += v / 32.0;
            CHECK(avg <= T + 0.5);
            CHECK(avg >= T - 16);  // and uses most of it
        }
    }
    PrunePlan plan;
    o.policy = PrunePolicy::fastv;
    o.budget = {BudgetKind::tokens, 64};
    REQUIRE(prune_plan(o, shape, &plan).ok());
    CHECK(plan.parameter == (32 * 64 - 576) / 31);  // layer 0 keeps all, then K
    // FLOPs caps: random caps between the minimum and the unpruned cost are never exceeded.
    std::mt19937 g(5);
    const double full = prune_plan_flops(std::vector<int>(32, 576), 576, 75, 4096, 11008);
    for (int i = 0; i < 40; ++i) {
        const double cap = full * std::uniform_real_distribution<double>(0.25, 0.99)(g);
        for (PrunePolicy p : {PrunePolicy::fastv, PrunePolicy::pdrop, PrunePolicy::sparsevlm_fixed, PrunePolicy::cls_prior}) {
            o.policy = p;
            o.budget = {BudgetKind::flops, cap / 1e9};
            Status st = prune_plan(o, shape, &plan);
            if (!st.ok()) { CHECK(st.code() == Code::input); continue; }
            CHECK(prune_plan_flops(plan.kept, plan.entering, 75, 4096, 11008) <= cap);
        }
        // AutoPrune: N1 from the cap, then the scale at layer 1 for any MI stays within it.
        const double T = autoprune_tokens_for_flops(32, 576, cap, 75, 4096, 11008, {});
        const int n1 = std::min(int(2.5 * T), 576);
        for (double mi : {0.0, 0.7, 1.3, 2.5}) {
            bool met = false;
            Schedule s = autoprune_schedule_flops(32, 576, n1, mi, cap, 75, 4096, 11008, {}, &met);
            if (!met) continue;
            CHECK(prune_plan_flops(s.kept, 576, 75, 4096, 11008) <= cap);
        }
    }
    o.policy = PrunePolicy::fastv;
    o.budget = {BudgetKind::flops, 1.0};
    CHECK(prune_plan(o, shape, &plan).code() == Code::input);
}

TEST_CASE("one list of policies: every policy once, in enum order, names parse back") {
    const auto& list = prune_policy_list();
    REQUIRE(list.size() == 7);
    for (size_t i = 0; i < list.size(); ++i) {
        INFO(list[i].name);
        CHECK(list[i].id == PrunePolicy(i));
        CHECK(prune_policy(list[i].id).id() == list[i].id);
        CHECK(std::string(prune_policy_name(list[i].id)) == list[i].name);
        CHECK(std::string(list[i].description).size() > 10);
        PrunePolicy back = PrunePolicy::none;
        CHECK(prune_policy_parse(list[i].name, &back));
        CHECK(back == list[i].id);
    }
    PrunePolicy p = PrunePolicy::fastv;
    CHECK_FALSE(prune_policy_parse("FastV", &p));
    CHECK(p == PrunePolicy::fastv);
}

TEST_CASE("prune_schedule: a budget that allows every token keeps every token; bad requests are coded") {
    const PruneShape shape{32, 576, 75, 4096, 11008};
    for (const PrunePolicyInfo& info : prune_policy_list()) {
        for (Budget b : {Budget{BudgetKind::tokens, 576}, Budget{BudgetKind::tokens, 1000}, Budget{BudgetKind::flops, 1e6}}) {
            PruneOptions o;
            o.policy = info.id;
            o.budget = b;
            PruneSchedule s;
            INFO(info.name << " budget " << b.value);
            REQUIRE(prune_schedule(o, shape, 0.0, &s).ok());
            CHECK_FALSE(s.prunes);
            CHECK(s.kept == std::vector<int>(32, 576));
            CHECK(s.avg_tokens == 576);
            CHECK(s.flops == s.flops_unpruned);
            CHECK(s.budget_met);
        }
    }
    PruneOptions o;
    o.policy = PrunePolicy::pdrop;  // no budget
    PruneSchedule s;
    CHECK(prune_schedule(o, shape, 0, &s).code() == Code::input);
    o.budget = {BudgetKind::tokens, 64};
    CHECK(prune_schedule(o, PruneShape{0, 576, 75, 4096, 11008}, 0, &s).code() == Code::input);
    CHECK(prune_schedule(o, PruneShape{32, 576, 75, 0, 11008}, 0, &s).code() == Code::input);
    o.budget = {BudgetKind::tokens, -1};
    CHECK(prune_schedule(o, shape, 0, &s).code() == Code::input);
    // AutoPrune at T = 64 and MI 0 under parity (recycling): the reference's worked schedule
    // (docs/autoprune.md, "Budget"); by default (no recycling) the schedule without merged tokens.
    o.policy = PrunePolicy::autoprune;
    o.budget = {BudgetKind::tokens, 64};
    o.parity = true;
    REQUIRE(prune_schedule(o, shape, 0.0, &s).ok());
    CHECK(s.prunes);
    CHECK(s.n1 == 160);
    CHECK(s.kept == autoprune_schedule(32, 576, 64, 0.0).kept);
    CHECK(s.kept == std::vector<int>{160, 126, 125, 125, 125, 124, 123, 122, 119, 117, 113, 107, 100, 90, 79, 67,
                                     55,  43,  33,  25,  18,  13,  9,   7,   5,   4,   3,   3,   2,   2,   2,  2});
    CHECK(s.parameter == s.scale);
    CHECK(s.avg_tokens == doctest::Approx(64.0));
    o.parity = false;
    REQUIRE(prune_schedule(o, shape, 0.0, &s).ok());
    CHECK(s.kept == autoprune_schedule(32, 576, 64, 0.0, {}, false).kept);
    CHECK(std::fabs(s.avg_tokens - 64.0) <= 0.5);
}

TEST_CASE("PDrop's stage layers: the default, explicit sets exactly as given, bad sets coded") {
    const PruneShape shape{32, 576, 75, 4096, 11008};
    PruneOptions o;
    o.policy = PrunePolicy::pdrop;
    o.budget = {BudgetKind::tokens, 192};  // within reach of the default stages (no fallback)
    PruneSchedule def, same, early;
    REQUIRE(prune_schedule(o, shape, 0, &def).ok());
    // The drops of a schedule: the layers whose count is below the layer before's.
    auto drops = [](const std::vector<int>& kept) {
        std::vector<int> at;
        for (size_t l = 1; l < kept.size(); ++l)
            if (kept[l] < kept[l - 1]) at.push_back(int(l));
        if (!kept.empty() && kept[0] < 576) at.insert(at.begin(), 0);
        return at;
    };
    CHECK(drops(def.kept) == std::vector<int>{7, 15, 23});
    o.pdrop_layers = {7, 15, 23};  // the default, given explicitly: the same schedule
    REQUIRE(prune_schedule(o, shape, 0, &same).ok());
    CHECK(same.kept == def.kept);
    CHECK(same.parameter == def.parameter);
    o.pdrop_layers = {2, 6};  // two earlier stages: another lambda for the same budget
    REQUIRE(prune_schedule(o, shape, 0, &early).ok());
    CHECK(drops(early.kept) == std::vector<int>{2, 6});
    CHECK(early.kept[2] == int(std::floor(576 * early.parameter)));
    CHECK(early.kept[6] == int(std::floor(576 * early.parameter * early.parameter)));
    CHECK(early.avg_tokens <= 192.5);
    CHECK(early.avg_tokens >= 170);
    CHECK(early.parameter != def.parameter);
    o.pdrop_layers = {0, 1, 2, 3, 4, 5, 6, 30};  // 8 stages, the last at L - 2
    REQUIRE(prune_schedule(o, shape, 0, &early).ok());
    CHECK(early.budget_met);
    // No fallback to earlier stages: stages this late cannot meet tokens:64, whatever lambda.
    o.budget = {BudgetKind::tokens, 64};
    o.pdrop_layers = {27, 28, 29};
    Status st = prune_schedule(o, shape, 0, &early);
    CHECK(st.code() == Code::input);
    CHECK(st.message().find("cannot be met by policy pdrop") != std::string::npos);
    o.pdrop_layers = {};  // the default stages meet it through the fallback
    CHECK(prune_schedule(o, shape, 0, &early).ok());
    // Bad sets: out of range, not increasing, too many; also when the budget prunes nothing.
    for (Budget b : {Budget{BudgetKind::tokens, 64}, Budget{BudgetKind::tokens, 1000}}) {
        o.budget = b;
        for (const std::vector<int>& bad : std::vector<std::vector<int>>{
                 {31}, {-1}, {3, 40}, {5, 5}, {10, 3}, {0, 1, 2, 3, 4, 5, 6, 7, 8}}) {
            o.pdrop_layers = bad;
            st = prune_schedule(o, shape, 0, &early);
            INFO("budget " << b.value << " layers " << bad.size() << " first " << bad[0]);
            CHECK(st.code() == Code::input);
            CHECK(st.message().find("pdrop_layers [") != std::string::npos);
        }
    }
    o.pdrop_layers = {31};
    st = prune_schedule(o, shape, 0, &early);
    CHECK(st.message().find("in 0..30") != std::string::npos);
    CHECK(st.message().find("not clamped") != std::string::npos);
    o.pdrop_layers = {10, 3};
    CHECK(prune_schedule(o, shape, 0, &early).message().find("strictly increasing") != std::string::npos);
    // Other policies ignore the option.
    o.policy = PrunePolicy::fastv;
    o.budget = {BudgetKind::tokens, 64};
    CHECK(prune_schedule(o, shape, 0, &early).ok());
}

namespace {

InferRequest request(const Engine& e, const Frames& f) { return vla_test::prune_request(e, f); }

}  // namespace

TEST_CASE("every policy runs end to end on the tiny model, 1, 3 and 6 views, both heads, within its budget") {
    for (const char* model : {"tiny", "tiny-text", "tiny-6cam", "tiny-6cam-text"}) {
        std::unique_ptr<Engine> e;
        REQUIRE(Engine::load(model_dir(model), {}, &e).ok());
        const int L = e->info().config.text.n_layers;
        const int cams = int(e->info().config.vla.cameras.size());
        for (int nv : {1, cams}) {
            auto f = frames(nv, 11);
            InferRequest base = request(*e, f);
            InferResult ref;
            REQUIRE(e->infer(base, &ref).ok());
            for (PrunePolicy p : {PrunePolicy::autoprune, PrunePolicy::fastv, PrunePolicy::pdrop, PrunePolicy::sparsevlm_fixed,
                                  PrunePolicy::cls_prior, PrunePolicy::random}) {
                const int nvis = nv * 16;
                InferRequest r = base;
                r.prune.policy = p;
                r.prune.budget = {BudgetKind::tokens, nvis / 3.0};
                InferResult out;
                Status st = e->infer(r, &out);
                INFO(model << " views=" << nv << " policy=" << prune_policy_name(p));
                REQUIRE_MESSAGE(st.ok(), st.to_string());
                CHECK(out.prune.policy == p);
                CHECK(out.prune.n_visual == nvis);
                REQUIRE(out.prune.kept.size() == size_t(L));
                CHECK(out.prune.kept_per_view[0].size() == size_t(nv));
                CHECK(out.prune.budget_met);
                CHECK(out.prune.flops < out.prune.flops_unpruned);
                CHECK(out.prune.avg_tokens <= nvis / 3.0 + 0.5);
                // Selection and compaction stay on the backend: the prefill reads back only the
                // per-layer counts and MI at its end, plus AutoPrune's MI_1 for its schedule.
                CHECK(ref.prefill_host_reads == 2);
                CHECK(out.prefill_host_reads == ref.prefill_host_reads + (p == PrunePolicy::autoprune ? 1 : 0));
                for (int l = 0; l < L; ++l) {
                    int per_view = 0;
                    for (int k : out.prune.kept_per_view[size_t(l)]) per_view += k;
                    CHECK(per_view + out.prune.merged[size_t(l)] == out.prune.kept[size_t(l)]);
                }
                if (out.head == ActionHead::waypoints) {
                    for (float v : out.waypoints) CHECK(std::isfinite(v));
                } else {
                    CHECK(out.tokens.size() <= 4);
                }
                // Deterministic: the same request gives the same result.
                InferResult again;
                REQUIRE(e->infer(r, &again).ok());
                CHECK(again.waypoints == out.waypoints);
                CHECK(again.tokens == out.tokens);
                CHECK(again.prune.kept == out.prune.kept);
            }
        }
    }
}

TEST_CASE("prune_schedule predicts what the engine does: counts, FLOPs, verdict, for every policy and budget kind") {
    for (const char* model : {"tiny", "tiny-6cam-text"}) {
        std::unique_ptr<Engine> e;
        REQUIRE(Engine::load(model_dir(model), {}, &e).ok());
        const auto& tc = e->info().config.text;
        const int cams = int(e->info().config.vla.cameras.size());
        auto f = frames(cams, 14);
        InferRequest base = request(*e, f);
        InferResult ref;
        REQUIRE(e->infer(base, &ref).ok());
        const int nvis = int(ref.n_visual_tokens);
        for (const PrunePolicyInfo& info : prune_policy_list()) {
            for (Budget b : {Budget{BudgetKind::tokens, nvis / 3.0}, Budget{BudgetKind::tokens, nvis / 2.0},
                             Budget{BudgetKind::flops, 0.7 * ref.prune.flops_unpruned / 1e9}}) {
                InferRequest r = base;
                r.prune.policy = info.id;
                r.prune.budget = b;
                const PruneShape shape{tc.n_layers, nvis, int(ref.n_prompt_tokens) - nvis, double(tc.hidden), double(tc.intermediate)};
                InferResult out;
                const Status st = e->infer(r, &out);
                PruneSchedule s;
                const Status ss = prune_schedule(r.prune, shape, out.prune.mi1, &s);
                INFO(model << " " << info.name << " budget " << int(b.kind) << ":" << b.value);
                REQUIRE(st.code() == ss.code());
                if (!st.ok()) continue;
                CHECK(s.kept == out.prune.kept);
                CHECK(s.flops == out.prune.flops);
                CHECK(s.flops_unpruned == out.prune.flops_unpruned);
                CHECK(s.avg_tokens == out.prune.avg_tokens);
                CHECK(s.budget_met == out.prune.budget_met);
                CHECK(s.target_tokens == out.prune.target_tokens);
                CHECK(s.k == out.prune.k);
                CHECK(s.scale == out.prune.scale);
            }
        }
    }
}

TEST_CASE("a budget that allows every token is bit-identical to no pruning") {
    std::unique_ptr<Engine> e;
    REQUIRE(Engine::load(model_dir("tiny-text"), {}, &e).ok());
    auto f = frames(3, 12);
    InferRequest base = request(*e, f);
    base.head = int(ActionHead::waypoints);
    base.return_logits = true;
    InferResult ref;
    REQUIRE(e->infer(base, &ref).ok());
    for (PrunePolicy p : {PrunePolicy::autoprune, PrunePolicy::fastv, PrunePolicy::pdrop, PrunePolicy::sparsevlm_fixed,
                          PrunePolicy::cls_prior, PrunePolicy::random}) {
        for (Budget b : {Budget{BudgetKind::tokens, 48}, Budget{BudgetKind::tokens, 1000}, Budget{BudgetKind::flops, 1e9}}) {
            InferRequest r = base;
            r.prune.policy = p;
            r.prune.budget = b;
            InferResult out;
            REQUIRE(e->infer(r, &out).ok());
            CHECK(out.waypoints == ref.waypoints);
            CHECK(out.logits == ref.logits);
            CHECK(out.prune.kept == std::vector<int>(size_t(e->info().config.text.n_layers), 48));
        }
    }
    // A policy without a budget is a request error; an unreachable FLOPs cap too.
    InferRequest r = base;
    r.prune.policy = PrunePolicy::fastv;
    InferResult out;
    CHECK(e->infer(r, &out).code() == Code::input);
    r.prune.budget = {BudgetKind::flops, 1e-6};
    CHECK(e->infer(r, &out).code() == Code::input);
}

TEST_CASE("autoprune reports MI, slope and a schedule that follows the spec's accounting") {
    std::unique_ptr<Engine> e;
    REQUIRE(Engine::load(model_dir("tiny"), {}, &e).ok());
    auto f = frames(3, 13);
    InferRequest r = request(*e, f);
    r.prune.policy = PrunePolicy::autoprune;
    r.prune.budget = {BudgetKind::tokens, 8};
    r.prune.recycle = true;
    InferResult out;
    REQUIRE(e->infer(r, &out).ok());
    const auto& s = out.prune;
    CHECK(s.options.recycle);
    CHECK(s.kept[0] == 20);  // N1 = floor(2.5 T)
    CHECK(s.mi0 >= 0);
    CHECK(s.k == doctest::Approx(std::max(0.4 - 0.2 * s.mi1, 0.0)));
    Schedule expect = autoprune_schedule(int(s.kept.size()), 48, 8, s.mi1);
    CHECK(s.kept == expect.kept);  // the engine's counts are the simulated ones
    // Recycling off: no merged tokens, and the schedule is solved without room for them, so the
    // kept tokens use the same budget (layers 0 and 1 do not merge: the same MI_1).
    r.prune.recycle = false;
    InferResult plain;
    REQUIRE(e->infer(r, &plain).ok());
    CHECK(plain.prune.merged == std::vector<int>(s.kept.size(), 0));
    CHECK(plain.prune.mi1 == s.mi1);
    CHECK(plain.prune.kept == autoprune_schedule(int(s.kept.size()), 48, 8, s.mi1, {}, false).kept);
    CHECK(plain.prune.avg_tokens == doctest::Approx(s.avg_tokens).epsilon(0.5 / 8));
    CHECK(plain.prune.budget_met);
}

TEST_CASE("defaults keep positions and drop pruned tokens; every option reaches the prefill; parity is the reference") {
    std::unique_ptr<Engine> e;
    REQUIRE(Engine::load(model_dir("tiny"), {}, &e).ok());
    auto f = frames(3, 17);
    InferRequest r = request(*e, f);
    const int L = e->info().config.text.n_layers;
    auto run = [&](const InferRequest& q) {
        InferResult out;
        const Status st = e->infer(q, &out);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        return out;
    };
    for (PrunePolicy p : {PrunePolicy::autoprune, PrunePolicy::sparsevlm_fixed, PrunePolicy::pdrop, PrunePolicy::fastv}) {
        INFO(prune_policy_name(p));
        r.prune = {};
        r.prune.policy = p;
        r.prune.budget = {BudgetKind::tokens, p == PrunePolicy::fastv ? 30.0 : 12.0};
        const InferResult def = run(r);
        CHECK_FALSE(def.prune.options.recycle);
        CHECK_FALSE(def.prune.options.reindex_positions);
        CHECK(def.prune.options.score_rows == ScoreRows::instruction);
        CHECK(def.prune.merged == std::vector<int>(size_t(L), 0));
        // Re-indexing moves every survivor's position: other waypoints.
        InferRequest q = r;
        q.prune.reindex_positions = true;
        const InferResult re = run(q);
        CHECK(re.prune.options.reindex_positions);
        CHECK(re.prune.kept == def.prune.kept);
        CHECK(re.waypoints != def.waypoints);
        // Parity: the reference's options, resolved in what the prefill reports.
        q = r;
        q.prune.parity = true;
        const InferResult par = run(q);
        CHECK(par.prune.options.parity);
        CHECK(par.prune.options.recycle);
        CHECK(par.prune.options.reindex_positions == (p != PrunePolicy::fastv));
        CHECK(par.prune.options.score_rows == ScoreRows::tail);
        // ... the same counts as setting the three by hand (only the DPC-kNN tie rule differs).
        q = r;
        q.prune.recycle = true;
        q.prune.reindex_positions = p != PrunePolicy::fastv;
        q.prune.score_rows = ScoreRows::tail;
        const InferResult hand = run(q);
        CHECK(hand.prune.kept == par.prune.kept);
        CHECK(hand.prune.merged == par.prune.merged);
        CHECK(hand.prune.mi1 == par.prune.mi1);
        if (p == PrunePolicy::autoprune || p == PrunePolicy::sparsevlm_fixed) {
            int merged = 0;
            for (int m : par.prune.merged) merged += m;
            CHECK(merged > 0);
        }
    }
    // Scoring rows: the MI comes from other rows (autoprune), fastv's layer moves its drop, the
    // curve's parameters reach the slope.
    r.prune = {};
    r.prune.policy = PrunePolicy::autoprune;
    r.prune.budget = {BudgetKind::tokens, 12};
    const InferResult ins = run(r);
    r.prune.score_rows = ScoreRows::tail;
    const InferResult tail = run(r);
    r.prune.score_rows = ScoreRows::last;
    const InferResult last = run(r);
    CHECK(tail.prune.options.score_rows == ScoreRows::tail);
    CHECK(last.prune.options.score_rows == ScoreRows::last);
    CHECK(ins.prune.mi1 != tail.prune.mi1);
    CHECK(last.prune.mi1 != tail.prune.mi1);
    CHECK(last.prune.mi1 != ins.prune.mi1);
    r.prune.score_rows = ScoreRows::instruction;
    r.prune.autoprune = {1.0, 2.0, 0.1};
    const InferResult curve = run(r);
    CHECK(curve.prune.options.autoprune.x0 == 1.0);
    CHECK(curve.prune.k == doctest::Approx(std::max(2.0 - 0.1 * curve.prune.mi1, 0.0)));
    r.prune = {};
    r.prune.policy = PrunePolicy::fastv;
    r.prune.budget = {BudgetKind::tokens, 40};
    r.prune.fastv_layer = 1;
    const InferResult k1 = run(r);
    CHECK(k1.prune.options.fastv_layer == 1);
    CHECK(k1.prune.kept[0] < 48);  // K = 1: the drop after layer 0
    r.prune.fastv_layer = 2;
    CHECK(run(r).prune.kept[0] == 48);
    // PDrop's stage layers move its drops, and the stats report them.
    r.prune = {};
    r.prune.policy = PrunePolicy::pdrop;
    r.prune.budget = {BudgetKind::tokens, 40};
    r.prune.pdrop_layers = {0, 1};  // L = 3: stages after layers 0 and 1
    const InferResult p01 = run(r);
    CHECK(p01.prune.options.pdrop_layers == std::vector<int>{0, 1});
    CHECK(p01.prune.kept[0] < 48);
    CHECK(p01.prune.kept[1] < p01.prune.kept[0]);
    r.prune.pdrop_layers = {1};
    const InferResult p1 = run(r);
    CHECK(p1.prune.kept[0] == 48);
    CHECK(p1.prune.kept[1] < 48);
    InferResult bad;
    for (const std::vector<int>& layers : std::vector<std::vector<int>>{{1, 1}, {2}}) {
        r.prune.pdrop_layers = layers;
        CHECK(e->infer(r, &bad).code() == Code::input);
    }
}

TEST_CASE("AutoPrune without recycling plans for the tokens it keeps: no room left for merged tokens") {
    // LLaVA-1.5 shapes: the average meets T as closely with recycling off as on.
    for (double T : {64.0, 128.0, 192.0})
        for (double mi : {0.0, 1.0}) {
            const Schedule on = autoprune_schedule(32, 576, T, mi), off = autoprune_schedule(32, 576, T, mi, {}, false);
            INFO("T=" << T << " MI=" << mi);
            CHECK(std::fabs(on.avg_tokens - T) <= 0.5);
            CHECK(std::fabs(off.avg_tokens - T) <= 0.5);
            CHECK(off.scale >= on.scale);  // a larger curve: the kept tokens take the merged ones' room
        }
    // The sample drive's shapes (6 layers, 147 visual tokens) at tokens:49: the engine's plan
    // with recycling off spends the budget (it kept 47.8 on average when planned with recycling).
    PruneOptions o;
    o.policy = PrunePolicy::autoprune;
    o.budget = {BudgetKind::tokens, 49};
    o.recycle = false;
    PruneSchedule s;
    REQUIRE(prune_schedule(o, PruneShape{6, 147, 30, 96, 192}, 0.5, &s).ok());
    CHECK(s.avg_tokens == doctest::Approx(49.0));
    CHECK(s.budget_met);
}

TEST_CASE("FLOPs caps are never exceeded end to end, across caps, complexities and prompt lengths") {
    std::unique_ptr<Engine> e;
    REQUIRE(Engine::load(model_dir("tiny-6cam"), {}, &e).ok());
    std::mt19937 g(21);
    int ran = 0;
    for (int i = 0; i < 24; ++i) {
        const int nv = 1 + int(g() % 6);
        auto f = frames(nv, uint32_t(100 + i));
        InferRequest r = request(*e, f);
        const int extra = int(g() % 40);  // prompt length varies
        for (int j = 0; j < extra; ++j) r.input_ids.push_back(40 + int(g() % 100));
        InferResult base;
        REQUIRE(e->infer(r, &base).ok());
        const double full = base.prune.flops_unpruned;
        const PrunePolicy pols[] = {PrunePolicy::autoprune, PrunePolicy::fastv, PrunePolicy::pdrop, PrunePolicy::sparsevlm_fixed,
                                    PrunePolicy::cls_prior, PrunePolicy::random};
        r.prune.policy = pols[i % 6];
        r.prune.budget = {BudgetKind::flops, full * std::uniform_real_distribution<double>(0.55, 0.98)(g) / 1e9};
        InferResult out;
        Status st = e->infer(r, &out);
        INFO("policy " << std::string(prune_policy_name(r.prune.policy)) << " views " << nv << " cap " << r.prune.budget.value);
        if (!st.ok()) {  // a cap below what the policy can reach is refused, never overrun
            CHECK(st.code() == Code::input);
            continue;
        }
        ++ran;
        CHECK(out.prune.flops <= r.prune.budget.value * 1e9);
        CHECK(out.prune.budget_met);
    }
    CHECK(ran >= 12);
}
