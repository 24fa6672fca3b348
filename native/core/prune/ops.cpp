#include <algorithm>
#include <cmath>
#include <numeric>

#include "prune/ops.h"

// Built with -ffp-contract=off, as every file of native/core/prune (see ops.h).

namespace vla {

float prune_prior_score(float prior, float coef, float score) { return prior + coef * score; }

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

std::vector<float> prune_dpc_knn_merge(const std::vector<float>& x, int64_t m, int64_t d, int64_t c,
                                       bool reference_ties) {
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
    // delta: distance to the nearest denser point (ties in density: the lower index is denser,
    // or with reference_ties not denser)
    double dmax = 0;
    for (double v : dist) dmax = std::max(dmax, v);
    std::vector<double> score(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) {
        double delta = dmax;
        bool found = false;
        for (int64_t j = 0; j < m; ++j) {
            const bool denser =
                rho[size_t(j)] > rho[size_t(i)] || (!reference_ties && rho[size_t(j)] == rho[size_t(i)] && j < i);
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

int64_t prune_recycle_candidates(int64_t d) { return d <= 0 ? 0 : int64_t(0.3 * double(d)) + 1; }

int prune_recycled_count(int64_t d) {
    const int64_t m = prune_recycle_candidates(d);
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

}  // namespace vla
