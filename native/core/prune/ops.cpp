#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "prune/ops.h"

// Built with -ffp-contract=off (CMakeLists.txt): the values that top-k and DPC-kNN compare must
// be bit-identical to the CUDA backend's, which rounds every multiply and add separately.

namespace vla {

float prune_prior_score(float prior, float coef, float score) { return prior + coef * score; }

const char* prune_policy_name(PrunePolicy p) {
    switch (p) {
    case PrunePolicy::none: return "none";
    case PrunePolicy::autoprune: return "autoprune";
    case PrunePolicy::fastv: return "fastv";
    case PrunePolicy::pdrop: return "pdrop";
    case PrunePolicy::sparsevlm_fixed: return "sparsevlm-fixed";
    case PrunePolicy::cls_prior: return "cls-prior";
    case PrunePolicy::random: return "random";
    }
    return "none";
}

bool prune_policy_parse(const std::string& s, PrunePolicy* out) {
    for (PrunePolicy p : {PrunePolicy::none, PrunePolicy::autoprune, PrunePolicy::fastv, PrunePolicy::pdrop,
                          PrunePolicy::sparsevlm_fixed, PrunePolicy::cls_prior, PrunePolicy::random})
        if (s == prune_policy_name(p)) {
            *out = p;
            return true;
        }
    return false;
}

double prune_mutual_information(const float* probs, int64_t ld, int64_t n_text, const std::vector<int64_t>& cols) {
    if (n_text <= 0 || cols.empty()) return 0;
    const double pt = 1.0 / double(n_text);
    double mi = 0;
    for (int64_t c : cols) {
        double pv = 0;
        for (int64_t t = 0; t < n_text; ++t) pv += probs[t * ld + c] * pt;
        for (int64_t t = 0; t < n_text; ++t) {
            const double ptv = probs[t * ld + c] * pt;
            const double ratio = std::max(ptv / (pt * pv + 1e-6), 1e-6);
            mi += ptv * std::log2(ratio);
        }
    }
    return mi;
}

std::vector<int64_t> prune_topk(const std::vector<float>& scores, int64_t k) {
    const int64_t n = int64_t(scores.size());
    k = std::max<int64_t>(0, std::min(k, n));
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    auto better = [&](int64_t a, int64_t b) { return scores[size_t(a)] > scores[size_t(b)] || (scores[size_t(a)] == scores[size_t(b)] && a < b); };
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
    idx.resize(size_t(k));
    std::sort(idx.begin(), idx.end());
    return idx;
}

std::vector<float> prune_dpc_knn_merge(const std::vector<float>& x, int64_t m, int64_t d, int64_t c) {
    c = std::max<int64_t>(1, std::min(c, m));
    std::vector<double> dist(static_cast<size_t>(m * m));
    const double inv_sqrt_d = 1.0 / std::sqrt(double(d));
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = i; j < m; ++j) {
            double s = 0;
            for (int64_t e = 0; e < d; ++e) {
                const double diff = double(x[size_t(i * d + e)]) - x[size_t(j * d + e)];
                s += diff * diff;
            }
            dist[size_t(i * m + j)] = dist[size_t(j * m + i)] = std::sqrt(s) * inv_sqrt_d;
        }
    // density: exp(-mean of squared distances to the c nearest, self included)
    std::vector<double> rho(static_cast<size_t>(m)), row(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < m; ++j) row[size_t(j)] = dist[size_t(i * m + j)];
        std::partial_sort(row.begin(), row.begin() + c, row.end());
        double s = 0;
        for (int64_t j = 0; j < c; ++j) s += row[size_t(j)] * row[size_t(j)];
        rho[size_t(i)] = std::exp(-s / double(c));
    }
    // delta: distance to the nearest denser point (ties in density: the lower index is denser)
    double dmax = 0;
    for (double v : dist) dmax = std::max(dmax, v);
    std::vector<double> score(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) {
        double delta = dmax;
        bool found = false;
        for (int64_t j = 0; j < m; ++j) {
            const bool denser = rho[size_t(j)] > rho[size_t(i)] || (rho[size_t(j)] == rho[size_t(i)] && j < i);
            if (denser && (!found || dist[size_t(i * m + j)] < delta)) {
                delta = dist[size_t(i * m + j)];
                found = true;
            }
        }
        score[size_t(i)] = delta * rho[size_t(i)];
    }
    std::vector<int64_t> centers(static_cast<size_t>(m));
    std::iota(centers.begin(), centers.end(), 0);
    std::stable_sort(centers.begin(), centers.end(), [&](int64_t a, int64_t b) { return score[size_t(a)] > score[size_t(b)]; });
    centers.resize(size_t(c));
    std::vector<double> acc(size_t(c * d), 0.0);
    std::vector<int64_t> count(size_t(c), 0);
    for (int64_t i = 0; i < m; ++i) {
        int64_t best = 0;
        for (int64_t ci = 0; ci < c; ++ci) {
            if (centers[size_t(ci)] == i) { best = ci; break; }
            if (dist[size_t(i * m + centers[size_t(ci)])] < dist[size_t(i * m + centers[size_t(best)])]) best = ci;
        }
        for (int64_t e = 0; e < d; ++e) acc[size_t(best * d + e)] += x[size_t(i * d + e)];
        ++count[size_t(best)];
    }
    std::vector<float> out(static_cast<size_t>(c * d));
    for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t e = 0; e < d; ++e) out[size_t(ci * d + e)] = float(acc[size_t(ci * d + e)] / (double(count[size_t(ci)]) + 1e-6));
    return out;
}

int prune_recycled_count(int64_t d) {
    if (d <= 0) return 0;
    const int64_t m = int64_t(0.3 * double(d)) + 1;
    return int(std::min(m / 10 + 1, m));
}

std::vector<uint8_t> prune_pad_mask(int width, int height, int grid) {
    const int side = std::max(width, height);
    const int border = (side + 23) / 24;
    // the image band inside the square, widened by border on each side
    int x0 = (side - width) / 2, y0 = (side - height) / 2;
    int x1 = x0 + width, y1 = y0 + height;
    x0 = std::max(0, x0 - border); y0 = std::max(0, y0 - border);
    x1 = std::min(side, x1 + border); y1 = std::min(side, y1 + border);
    std::vector<uint8_t> mask(static_cast<size_t>(grid * grid));
    for (int gy = 0; gy < grid; ++gy)
        for (int gx = 0; gx < grid; ++gx) {
            const int sx = int(int64_t(gx) * side / grid), sy = int(int64_t(gy) * side / grid);  // nearest
            mask[size_t(gy * grid + gx)] = (sx < x0 || sx >= x1 || sy < y0 || sy >= y1) ? 1 : 0;
        }
    return mask;
}

double prune_plan_flops(const std::vector<int>& kept, int entering, int n_other, double d, double m) {
    double f = 0;
    for (size_t l = 0; l < kept.size(); ++l) f += layer_flops(double(n_other + (l == 0 ? entering : kept[l - 1])), d, m);
    return f;
}

namespace {

// Counts for the drop-at-layers policies: keep[s] tokens after layer layers[s] (and later),
// with optional recycling on each drop.
std::vector<int> staged(int n_layers, int n_visual, const std::vector<int>& layers, const std::vector<int>& keep, bool recycle) {
    std::vector<int> kept(size_t(n_layers), n_visual);
    int cur = n_visual;
    size_t s = 0;
    for (int l = 0; l < n_layers; ++l) {
        if (s < layers.size() && layers[s] == l) {
            const int k = std::min(keep[s], cur);
            cur = k + (recycle ? prune_recycled_count(cur - k) : 0);
            ++s;
        }
        kept[size_t(l)] = cur;
    }
    return kept;
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

double average(const std::vector<int>& v) {
    double s = 0;
    for (int x : v) s += x;
    return v.empty() ? 0 : s / double(v.size());
}

}  // namespace

Status prune_plan(PrunePolicy policy, const Budget& budget, int L, int Nv, int n_other, double d, double m,
                  const PruneOptions& opts, PolicyPlan* out) {
    PolicyPlan plan;
    plan.kept.assign(size_t(L), Nv);
    if (policy == PrunePolicy::none || budget.kind == BudgetKind::none || Nv == 0) {
        *out = plan;
        return Status::OK();
    }
    if (!(budget.value > 0)) return {Code::input, "budget must be positive"};
    const double full_flops = prune_plan_flops(plan.kept, Nv, n_other, d, m);
    // Whether a plan meets the budget.
    auto meets = [&](const std::vector<int>& kept, int entering) {
        if (budget.kind == BudgetKind::tokens) return average(kept) <= budget.value + 1e-9;
        return prune_plan_flops(kept, entering, n_other, d, m) <= budget.value * 1e9;
    };
    // Largest x in [0, hi] (integers when `integer`) whose plan meets the budget, by bisection.
    auto solve = [&](double hi, bool integer, const auto& make, double* best) -> bool {
        double lo = 0;
        if (!make(lo)) return false;
        if (make(hi)) { *best = hi; return true; }
        for (int it = 0; it < 100 && hi - lo > (integer ? 1.0 : 1e-9); ++it) {
            double mid = (lo + hi) / 2;
            if (integer) mid = std::floor(mid);
            if (mid <= lo) break;
            (make(mid) ? lo : hi) = mid;
        }
        *best = lo;
        return true;
    };
    const std::string what = budget.kind == BudgetKind::tokens
                                 ? "tokens:" + std::to_string(budget.value)
                                 : "flops:" + std::to_string(budget.value) + " GFLOP (unpruned " + std::to_string(full_flops / 1e9) + ")";
    auto unmet = [&](const char* why) {
        return Status(Code::input, std::string("budget ") + what + " cannot be met by policy " + prune_policy_name(policy) + ": " + why);
    };
    double x = 0;
    switch (policy) {
    case PrunePolicy::cls_prior:
    case PrunePolicy::random: {
        auto make = [&](double t) { return meets(std::vector<int>(size_t(L), int(t)), int(t)); };
        if (!solve(Nv, true, make, &x)) return unmet("even no visual token is over it");
        plan.pre_llm = int(x);
        plan.kept.assign(size_t(L), int(x));
        break;
    }
    case PrunePolicy::fastv: {
        const int K = std::max(1, std::min(opts.fastv_layer, L - 1));
        auto counts = [&](double keep) { return staged(L, Nv, {K - 1}, {int(keep)}, false); };
        if (!solve(Nv, true, [&](double k) { return meets(counts(k), Nv); }, &x))
            return unmet("the layers before K alone are over it");
        plan.fastv_keep = int(x);
        plan.kept = counts(x);
        break;
    }
    case PrunePolicy::pdrop: {
        // Default stage boundaries L/4, L/2, 3L/4; when even lambda = 0 misses, start at layer 2.
        std::vector<std::vector<int>> choices = {scale_layers({7, 15, 23}, L), scale_layers({1, 11, 21}, L)};
        bool ok = false;
        for (auto& layers : choices) {
            auto counts = [&](double lam) {
                std::vector<int> keep;
                for (size_t s = 0; s < layers.size(); ++s) keep.push_back(int(std::floor(Nv * std::pow(lam, double(s + 1)))));
                return staged(L, Nv, layers, keep, false);
            };
            if (solve(1.0, false, [&](double lam) { return meets(counts(lam), Nv); }, &x)) {
                plan.pdrop_lambda = x;
                plan.pdrop_layers = layers;
                plan.kept = counts(x);
                ok = true;
                break;
            }
        }
        if (!ok) return unmet("the layers before the first stage are over it");
        break;
    }
    case PrunePolicy::sparsevlm_fixed: {
        // SparseVLM v1.0's schedules (of 576, after layers 2, 6, 15): [300, 200, 110] for 192,
        // [303, 110, 36] for 128, [66, 30, 17] for 64. The nearest one's shape, scaled so the
        // average meets this budget exactly.
        const std::vector<int> layers = scale_layers({1, 5, 14}, L);
        const double t576 = budget.kind == BudgetKind::tokens ? budget.value * 576.0 / Nv : 192.0;
        const double shapes[3][3] = {{66, 30, 17}, {303, 110, 36}, {300, 200, 110}};
        const double* base = shapes[t576 <= 96 ? 0 : t576 <= 160 ? 1 : 2];
        auto keep_for = [&](double f) {
            std::vector<int> k;
            for (size_t i = 0; i < layers.size(); ++i) k.push_back(std::min(Nv, int(std::floor(base[i] / 576.0 * Nv * f))));
            return k;
        };
        auto counts = [&](double f) { return staged(L, Nv, layers, keep_for(f), opts.recycle); };
        if (!solve(576.0 / base[2], false, [&](double f) { return meets(counts(f), Nv); }, &x))
            return unmet("the layers before the first drop are over it");
        plan.sparsevlm_factor = x;
        plan.sparsevlm_layers = layers;
        plan.sparsevlm_counts = keep_for(x);
        plan.kept = counts(x);
        break;
    }
    case PrunePolicy::autoprune:
    case PrunePolicy::none:
        break;  // autoprune: the engine solves after layer 1 (autoprune_schedule*)
    }
    *out = plan;
    return Status::OK();
}

}  // namespace vla
