#include "prune/schedule.h"

#include "prune/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace vla {

std::vector<double> autoprune_curve(int n_layers, double k, double x0) {
    std::vector<double> p(size_t(std::max(n_layers, 1)), 0.0);
    for (int l = 1; l < n_layers; ++l) p[size_t(l)] = 0.75 / (1.0 + std::exp(k * (l - (x0 + k))));
    return p;
}

std::vector<int> autoprune_simulate(const std::vector<double>& q, int n1, bool recycle) {
    std::vector<int> kept(q.size(), 0);
    if (q.empty()) return kept;
    const int base = n1 - 1;
    int cur = n1;
    kept[0] = n1;
    for (size_t l = 1; l < q.size(); ++l) {
        const int keep = std::min(int(std::ceil(base * std::min(1.0, q[l]))), n1);
        cur = keep + (recycle ? prune_recycled_count(cur - keep) : 0);
        kept[l] = cur;
    }
    return kept;
}

Schedule autoprune_schedule(int n_layers, int n_visual, double budget_tokens, double mi1, const AutoPruneParams& p,
                            bool recycle) {
    Schedule s;
    s.n1 = std::min(int(std::floor(2.5 * budget_tokens)), n_visual);
    s.k = std::max(p.k0 - p.gamma * mi1, 0.0);
    const std::vector<double> curve = autoprune_curve(n_layers, s.k, p.x0);
    const double target = double(n_layers) * budget_tokens;
    auto total = [&](double scale) {
        std::vector<double> q(curve.size());
        for (size_t i = 0; i < q.size(); ++i) q[i] = scale * curve[i];
        long long t = 0;
        for (int v : autoprune_simulate(q, s.n1, recycle)) t += v;
        return double(t);
    };
    double lo = 0, hi = 20, best = 1, best_diff = std::numeric_limits<double>::infinity();
    for (int it = 0; it < 200; ++it) {
        const double mid = (lo + hi) / 2, tot = total(mid), diff = std::fabs(tot - target);
        if (diff < best_diff) {
            best_diff = diff;
            best = mid;
            if (best_diff < 0.01) break;
        }
        if (tot < target) lo = mid;
        else hi = mid;
    }
    s.scale = best;
    s.keep_frac.resize(curve.size());
    for (size_t i = 0; i < curve.size(); ++i) s.keep_frac[i] = best * curve[i];
    s.kept = autoprune_simulate(s.keep_frac, s.n1, recycle);
    double sum = 0;
    for (int v : s.kept) sum += v;
    s.avg_tokens = s.kept.empty() ? 0 : sum / double(s.kept.size());
    return s;
}

Schedule autoprune_schedule_flops(int n_layers, int n_visual, int n1, double mi1, double cap_flops, int n_other,
                                  double d, double m, const AutoPruneParams& p, bool* met, bool recycle) {
    Schedule s;
    s.n1 = n1;
    s.k = std::max(p.k0 - p.gamma * mi1, 0.0);
    const std::vector<double> curve = autoprune_curve(n_layers, s.k, p.x0);
    auto flops = [&](double scale) {
        std::vector<double> q(curve.size());
        for (size_t i = 0; i < q.size(); ++i) q[i] = scale * curve[i];
        return prune_plan_flops(autoprune_simulate(q, n1, recycle), n_visual, n_other, d, m);
    };
    double lo = 0, hi = 20;
    *met = flops(lo) <= cap_flops;
    if (flops(hi) <= cap_flops) lo = hi;
    else
        for (int it = 0; it < 200 && hi - lo > 1e-9; ++it) {
            const double mid = (lo + hi) / 2;
            (flops(mid) <= cap_flops ? lo : hi) = mid;
        }
    s.scale = lo;
    s.keep_frac.resize(curve.size());
    for (size_t i = 0; i < curve.size(); ++i) s.keep_frac[i] = lo * curve[i];
    s.kept = autoprune_simulate(s.keep_frac, n1, recycle);
    double sum = 0;
    for (int v : s.kept) sum += v;
    s.avg_tokens = s.kept.empty() ? 0 : sum / double(s.kept.size());
    return s;
}

double autoprune_tokens_for_flops(int n_layers, int n_visual, double cap_flops, int n_other, double d, double m,
                                  const AutoPruneParams& p, bool recycle) {
    const double mi_max = p.gamma > 0 ? p.k0 / p.gamma : 0;
    auto fits = [&](double T) {
        for (int i = 0; i <= 8; ++i) {
            const Schedule s = autoprune_schedule(n_layers, n_visual, T, mi_max * i / 8, p, recycle);
            if (prune_plan_flops(s.kept, n_visual, n_other, d, m) > cap_flops) return false;
        }
        return true;
    };
    double lo = 0.4, hi = n_visual;  // T = 0.4 keeps one token at layer 0
    if (fits(hi)) return hi;
    if (!fits(lo)) return -1;  // the cap is below layer 0 over every token plus the least the rest can take
    for (int it = 0; it < 60 && hi - lo > 1e-3; ++it) {
        const double mid = (lo + hi) / 2;
        (fits(mid) ? lo : hi) = mid;
    }
    return lo;
}

double layer_flops(double n, double d, double m) { return 4 * n * d * d + 2 * n * n * d + 3 * n * d * m; }

double prune_plan_flops(const std::vector<int>& kept, int entering, int n_other, double d, double m) {
    double f = 0;
    for (size_t l = 0; l < kept.size(); ++l) f += layer_flops(double(n_other + (l == 0 ? entering : kept[l - 1])), d, m);
    return f;
}

double prefill_flops(const std::vector<int>& visual_in, int prefix, int text, double d, double m) {
    double f = 0;
    for (int v : visual_in) f += layer_flops(double(prefix + v + text), d, m);
    return f;
}

}  // namespace vla
