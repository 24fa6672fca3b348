#include "vla/schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace vla {

std::vector<double> autoprune_curve(int n_layers, double k, double x0) {
    std::vector<double> p(size_t(std::max(n_layers, 1)), 0.0);
    for (int l = 1; l < n_layers; ++l) p[size_t(l)] = 0.75 / (1.0 + std::exp(k * (l - (x0 + k))));
    return p;
}

namespace {
int recycled(int d) {
    if (d == 0) return 0;
    const int m = int(0.3 * d) + 1;  // trunc toward zero as the reference's int()
    return std::min(m / 10 + 1, m);
}
}  // namespace

std::vector<int> autoprune_simulate(const std::vector<double>& q, int n1) {
    std::vector<int> kept(q.size(), 0);
    if (q.empty()) return kept;
    const int base = n1 - 1;
    int cur = n1;
    kept[0] = n1;
    for (size_t l = 1; l < q.size(); ++l) {
        const int keep = std::min(int(std::ceil(base * std::min(1.0, q[l]))), n1);
        cur = keep + recycled(cur - keep);
        kept[l] = cur;
    }
    return kept;
}

Schedule autoprune_schedule(int n_layers, int n_visual, double budget_tokens, double mi1, const AutoPruneParams& p) {
    Schedule s;
    s.n1 = std::min(int(std::floor(2.5 * budget_tokens)), n_visual);
    s.k = std::max(p.k0 - p.gamma * mi1, 0.0);
    const std::vector<double> curve = autoprune_curve(n_layers, s.k, p.x0);
    const double target = double(n_layers) * budget_tokens;
    auto total = [&](double scale) {
        std::vector<double> q(curve.size());
        for (size_t i = 0; i < q.size(); ++i) q[i] = scale * curve[i];
        long long t = 0;
        for (int v : autoprune_simulate(q, s.n1)) t += v;
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
    s.kept = autoprune_simulate(s.keep_frac, s.n1);
    double sum = 0;
    for (int v : s.kept) sum += v;
    s.avg_tokens = s.kept.empty() ? 0 : sum / double(s.kept.size());
    return s;
}

double layer_flops(double n, double d, double m) { return 4 * n * d * d + 2 * n * n * d + 3 * n * d * m; }

double prefill_flops(const std::vector<int>& visual_in, int prefix, int text, double d, double m) {
    double f = 0;
    for (int v : visual_in) f += layer_flops(double(prefix + v + text), d, m);
    return f;
}

}  // namespace vla
