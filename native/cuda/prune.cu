// Visual-token pruning on the GPU: scores, mutual information, top-k, compaction indices,
// DPC-kNN recycling, the CLS prior and argmax. Sequences are at most a few thousand rows, so
// selections are done by exact ranking (each candidate counts who beats it, ties to the lower
// index): deterministic, no sort, the same answer as the CPU's partial_sort. Accumulations are
// in double and in the CPU's order wherever the order decides a discrete choice, and with the
// multiplies and adds rounded separately (no FMA contraction, as prune.cpp is compiled), so the
// values that top-k and DPC-kNN compare are bit-identical to the CPU's.
#include <cmath>

#include "common.cuh"
#include "kernels.h"

namespace vla::cuda {

namespace {

constexpr int kBlock = 256;

#define VLA_GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void k_scores(const float* __restrict__ probs, int64_t ld, int64_t n_rows, const int32_t* __restrict__ kind, int64_t n,
                         float* __restrict__ scores) {
    VLA_GRID_STRIDE(j, n) {
        if (kind[j] == 0) {
            scores[j] = 0.f;
            continue;
        }
        double s = 0;
        for (int64_t r = 0; r < n_rows; ++r) s += probs[r * ld + j];
        scores[j] = float(s / double(n_rows));
    }
}

// partial[h * n + j]: head h's MI terms of column j (docs/autoprune.md, "Mutual information": base 2, eps 1e-6).
__global__ void k_mi_terms(const float* __restrict__ probs, int64_t ld, int n_heads, int64_t nr, const int32_t* __restrict__ kind,
                           int64_t n, double* __restrict__ partial) {
    const double pt = 1.0 / double(nr);
    VLA_GRID_STRIDE(t, int64_t(n_heads) * n) {
        const int64_t h = t / n, j = t % n;
        if (kind[j] == 0) {
            partial[t] = 0;
            continue;
        }
        const float* p = probs + h * nr * ld + j;
        double pv = 0;
        for (int64_t r = 0; r < nr; ++r) pv = __dadd_rn(pv, __dmul_rn(p[r * ld], pt));
        double mi = 0;
        for (int64_t r = 0; r < nr; ++r) {
            const double ptv = __dmul_rn(p[r * ld], pt);
            const double ratio = fmax(ptv / (pt * pv + 1e-6), 1e-6);
            mi = __dadd_rn(mi, __dmul_rn(ptv, log2(ratio)));
        }
        partial[t] = mi;
    }
}

// One block: the fixed-order sum of the terms, stored as a (hi, lo) float pair.
__global__ void k_mi_sum(const double* __restrict__ partial, int64_t count, float* __restrict__ out_pair) {
    __shared__ double sh[32];
    double s = 0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        const float hi = float(s);
        out_pair[0] = hi;
        out_pair[1] = float(s - double(hi));
    }
}

__global__ void k_prior_scores(float* scores, const float* __restrict__ prior, const int32_t* __restrict__ kind, int64_t n,
                               const float* __restrict__ mi_pair, double alpha, double divisor) {
    const double m = double(mi_pair[0]) + double(mi_pair[1]);
    const float coef = float(alpha * (m / divisor));
    VLA_GRID_STRIDE(j, n) {
        if (kind[j] != 0) scores[j] = __fadd_rn(prior[j], __fmul_rn(coef, scores[j]));
    }
}

__device__ __forceinline__ bool is_cand(const int32_t* kind, const int32_t* exclude, int64_t j) {
    return kind[j] != 0 && !(exclude && exclude[j] != 0);
}

// flags[j] = rank of candidate j < k; ranks by (score desc, index asc), tiles of the sequence in
// shared memory.
__global__ void k_topk(const float* __restrict__ scores, const int32_t* __restrict__ kind, const int32_t* __restrict__ exclude,
                       int64_t n, int64_t k, int32_t* __restrict__ flags) {
    __shared__ float ts[kBlock];
    __shared__ int8_t tc[kBlock];
    const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    const bool mine = j < n && is_cand(kind, exclude, j);
    const float sj = j < n ? scores[j] : 0.f;
    int64_t rank = 0;
    for (int64_t t0 = 0; t0 < n; t0 += kBlock) {
        const int64_t i = t0 + threadIdx.x;
        ts[threadIdx.x] = i < n ? scores[i] : 0.f;
        tc[threadIdx.x] = i < n && is_cand(kind, exclude, i) ? 1 : 0;
        __syncthreads();
        if (mine) {
            const int lim = int(n - t0 < kBlock ? n - t0 : kBlock);
            for (int u = 0; u < lim; ++u) {
                const int64_t iu = t0 + u;
                rank += tc[u] && (ts[u] > sj || (ts[u] == sj && iu < j));
            }
        }
        __syncthreads();
    }
    if (j < n) flags[j] = mine && rank < k ? 1 : 0;
}

__device__ __forceinline__ bool is_sel(const int32_t* flags, const int32_t* kind, bool keep_other, int64_t j) {
    return flags[j] != 0 || (keep_other && kind[j] == 0);
}

__global__ void k_index(const int32_t* __restrict__ flags, const int32_t* __restrict__ kind, bool keep_other, int64_t n,
                        int32_t* __restrict__ idx) {
    __shared__ int8_t ts[kBlock];
    const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    const bool mine = j < n && is_sel(flags, kind, keep_other, j);
    int64_t before = 0;
    for (int64_t t0 = 0; t0 < n && t0 <= int64_t(blockIdx.x) * blockDim.x + blockDim.x; t0 += kBlock) {
        const int64_t i = t0 + threadIdx.x;
        ts[threadIdx.x] = i < n && is_sel(flags, kind, keep_other, i) ? 1 : 0;
        __syncthreads();
        if (mine)
            for (int u = 0; u < kBlock && t0 + u < j; ++u) before += ts[u];
        __syncthreads();
    }
    if (mine) idx[before] = int32_t(j);
}

__global__ void k_merged_meta(int32_t* kind, int32_t* view, int32_t* pos, int64_t a, int64_t c, int64_t n, bool reindex) {
    const int32_t after = (!reindex && a > 0) ? pos[a - 1] + 1 : 0;  // read only when row a - 1 is not rewritten below
    VLA_GRID_STRIDE(j, n) {
        if (j >= a && j < a + c) {
            kind[j] = 2;
            view[j] = -1;
        }
        if (reindex) pos[j] = int32_t(j);
        else if (j >= a && j < a + c) pos[j] = after;
    }
}

__global__ void k_count(const int32_t* __restrict__ kind, const int32_t* __restrict__ view, int64_t n, int n_views,
                        int32_t* __restrict__ row) {
    VLA_DYNAMIC_SMEM(int, cnt);
    for (int i = threadIdx.x; i < n_views + 2; i += blockDim.x) cnt[i] = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const int32_t k = kind[j];
        if (k == 1 && view[j] >= 0 && view[j] < n_views) atomicAdd(&cnt[view[j]], 1);
        if (k != 0) atomicAdd(&cnt[n_views], 1);
        if (k == 2) atomicAdd(&cnt[n_views + 1], 1);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n_views + 2; i += blockDim.x) row[i] = cnt[i];
}

// ---- DPC-kNN (docs/autoprune.md, "Positions and recycling"), the CPU's prune_dpc_knn_merge step by step.
struct DpcScratch {
    double *dist, *rho, *score, *dmax;
    int32_t *centers, *assign, *order, *start;
};

DpcScratch dpc_layout(void* base, int64_t m, int64_t c) {
    auto align = [](size_t b) { return (b + 255) / 256 * 256; };
    uint8_t* p = static_cast<uint8_t*>(base);
    DpcScratch s;
    s.dist = reinterpret_cast<double*>(p);
    p += align(sizeof(double) * size_t(m * m));
    s.rho = reinterpret_cast<double*>(p);
    p += align(sizeof(double) * size_t(m));
    s.score = reinterpret_cast<double*>(p);
    p += align(sizeof(double) * size_t(m));
    s.dmax = reinterpret_cast<double*>(p);
    p += align(sizeof(double));
    s.centers = reinterpret_cast<int32_t*>(p);
    p += align(sizeof(int32_t) * size_t(c));
    s.assign = reinterpret_cast<int32_t*>(p);
    p += align(sizeof(int32_t) * size_t(m));
    s.order = reinterpret_cast<int32_t*>(p);
    p += align(sizeof(int32_t) * size_t(m));
    s.start = reinterpret_cast<int32_t*>(p);
    return s;
}

constexpr int DT = 16, DE = 32;  // distance tiles: 16 x 16 pairs, 32 features at a time

// dist[i, j] = ||x_i - x_j|| / sqrt(d), features summed in order (as the CPU).
__global__ void k_dpc_dist(const float* __restrict__ x, int64_t m, int64_t d, double* __restrict__ dist) {
    __shared__ float xi[DT][DE + 1], xj[DT][DE + 1];
    const int64_t i = int64_t(blockIdx.y) * DT + threadIdx.y, j = int64_t(blockIdx.x) * DT + threadIdx.x;
    double s = 0;
    for (int64_t e0 = 0; e0 < d; e0 += DE) {
        const int tid = threadIdx.y * DT + threadIdx.x;
        for (int t = tid; t < DT * DE; t += DT * DT) {
            const int r = t / DE, e = t % DE;
            const int64_t ri = int64_t(blockIdx.y) * DT + r, rj = int64_t(blockIdx.x) * DT + r;
            xi[r][e] = ri < m && e0 + e < d ? x[ri * d + e0 + e] : 0.f;
            xj[r][e] = rj < m && e0 + e < d ? x[rj * d + e0 + e] : 0.f;
        }
        __syncthreads();
        const int lim = int(d - e0 < DE ? d - e0 : DE);
        for (int e = 0; e < lim; ++e) {
            const double diff = double(xi[threadIdx.y][e]) - double(xj[threadIdx.x][e]);
            s = __dadd_rn(s, __dmul_rn(diff, diff));
        }
        __syncthreads();
    }
    if (i < m && j < m) dist[i * m + j] = sqrt(s) * (1.0 / sqrt(double(d)));
}

// rho[i] = exp(-mean of the c smallest squared distances of row i (self included)): the c
// smallest by exact rank (ties by index), summed in ascending order as the CPU's partial_sort.
__global__ void k_dpc_rho(const double* __restrict__ dist, int64_t m, int64_t c, int32_t* __restrict__ order_scratch,
                          double* __restrict__ rho) {
    const int64_t i = blockIdx.x;
    const double* row = dist + i * m;
    int32_t* slot = order_scratch + i * c;  // [m, c] when it fits, see dpc_scratch_bytes
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
        const double dj = row[j];
        int64_t rank = 0;
        for (int64_t u = 0; u < m; ++u) rank += row[u] < dj || (row[u] == dj && u < j);
        if (rank < c) slot[rank] = int32_t(j);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0;
        for (int64_t r = 0; r < c; ++r) {
            const double v = row[slot[r]];
            s = __dadd_rn(s, __dmul_rn(v, v));
        }
        rho[i] = exp(-s / double(c));
    }
}

__global__ void k_dpc_dmax(const double* __restrict__ dist, int64_t mm, double* __restrict__ dmax) {
    __shared__ double sh[32];
    double v = 0;
    for (int64_t t = threadIdx.x; t < mm; t += blockDim.x) v = fmax(v, dist[t]);
    // block max in double
    for (int o = kWarp / 2; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x % kWarp == 0) sh[threadIdx.x / kWarp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        double r = 0;
        for (int w = 0; w < int(blockDim.x / kWarp); ++w) r = fmax(r, sh[w]);
        *dmax = r;
    }
}

__global__ void k_dpc_score(const double* __restrict__ dist, const double* __restrict__ rho, const double* __restrict__ dmax,
                            int64_t m, bool reference_ties, double* __restrict__ score) {
    VLA_GRID_STRIDE(i, m) {
        double delta = *dmax;
        bool found = false;
        for (int64_t j = 0; j < m; ++j) {
            const bool denser = rho[j] > rho[i] || (!reference_ties && rho[j] == rho[i] && j < i);
            if (denser && (!found || dist[i * m + j] < delta)) {
                delta = dist[i * m + j];
                found = true;
            }
        }
        score[i] = delta * rho[i];
    }
}

// centers[rank] = i for the c best scores (descending, ties by index: std::stable_sort).
__global__ void k_dpc_centers(const double* __restrict__ score, int64_t m, int64_t c, int32_t* __restrict__ centers) {
    VLA_GRID_STRIDE(i, m) {
        int64_t rank = 0;
        for (int64_t j = 0; j < m; ++j) rank += score[j] > score[i] || (score[j] == score[i] && j < i);
        if (rank < c) centers[rank] = int32_t(i);
    }
}

__global__ void k_dpc_assign(const double* __restrict__ dist, const int32_t* __restrict__ centers, int64_t m, int64_t c,
                             int32_t* __restrict__ assign) {
    VLA_GRID_STRIDE(i, m) {
        int64_t best = 0;
        for (int64_t ci = 0; ci < c; ++ci) {
            if (centers[ci] == i) {
                best = ci;
                break;
            }
            if (dist[i * m + centers[ci]] < dist[i * m + centers[best]]) best = ci;
        }
        assign[i] = int32_t(best);
    }
}

// Members of each cluster in ascending index order: order[start[ci] ..start[ci + 1]).
__global__ void k_dpc_order(const int32_t* __restrict__ assign, int64_t m, int64_t c, int32_t* __restrict__ order,
                            int32_t* __restrict__ start) {
    VLA_GRID_STRIDE(i, m + c + 1) {
        if (i < m) {
            int64_t pos = 0;
            for (int64_t j = 0; j < m; ++j) pos += assign[j] < assign[i] || (assign[j] == assign[i] && j < i);
            order[pos] = int32_t(i);
        } else {
            const int64_t ci = i - m;
            int64_t s = 0;
            for (int64_t j = 0; j < m; ++j) s += assign[j] < ci;
            start[ci] = int32_t(s);
        }
    }
}

__global__ void k_dpc_merge(const float* __restrict__ x, int64_t d, int64_t c, const int32_t* __restrict__ order,
                            const int32_t* __restrict__ start, float* __restrict__ out) {
    VLA_GRID_STRIDE(t, c * d) {
        const int64_t ci = t / d, e = t % d;
        double acc = 0;
        for (int32_t u = start[ci]; u < start[ci + 1]; ++u) acc += x[int64_t(order[u]) * d + e];
        out[t] = float(acc / (double(start[ci + 1] - start[ci]) + 1e-6));
    }
}

__global__ void k_cls_prior(const float* __restrict__ probs, int64_t ld, int n_heads, int n_views, int64_t Tv, int64_t first,
                            int64_t pv, const int32_t* __restrict__ masked, float* __restrict__ prior) {
    VLA_GRID_STRIDE(t, int64_t(n_views) * pv) {
        const int64_t v = t / pv, i = t % pv;
        const int64_t key = v * Tv + first + i;
        double sum = 0;
        for (int h = 0; h < n_heads; ++h) sum += probs[(int64_t(h) * n_views + v) * ld + key];
        prior[t] = masked[t] ? 0.f : float(sum / n_heads);
    }
}

__global__ void k_argmax(const float* __restrict__ x, int64_t n, int32_t* __restrict__ out) {
    __shared__ float sv[1024];
    __shared__ int64_t si[1024];
    float best = -INFINITY;
    int64_t bi = n;  // none yet
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        if (bi == n || x[i] > best) {
            best = x[i];
            bi = i;
        }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int o = int(blockDim.x) / 2; o > 0; o >>= 1) {
        if (int(threadIdx.x) < o) {
            const float v2 = sv[threadIdx.x + o];
            const int64_t i2 = si[threadIdx.x + o];
            const bool take = i2 < n && (si[threadIdx.x] == n || v2 > sv[threadIdx.x] || (v2 == sv[threadIdx.x] && i2 < si[threadIdx.x]));
            if (take) {
                sv[threadIdx.x] = v2;
                si[threadIdx.x] = i2;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = int32_t(si[0] == n ? 0 : si[0]);
}

}  // namespace

void prune_scores(const float* probs, int64_t ld, int64_t n_rows, const int32_t* kind, int64_t n, float* scores, cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_scores, grid_for(n, kBlock), kBlock, 0, s, probs, ld, n_rows, kind, n, scores);
}

int64_t prune_mi_partial_doubles(int n_heads, int64_t n) { return int64_t(n_heads) * n; }

void prune_mi(const float* probs, int64_t ld, int n_heads, int64_t nr, const int32_t* kind, int64_t n, double* partial,
              float* out_pair, cudaStream_t s) {
    const int64_t count = int64_t(n_heads) * n;
    if (count > 0 && nr > 0) VLA_LAUNCH(k_mi_terms, grid_for(count, kBlock), kBlock, 0, s, probs, ld, n_heads, nr, kind, n, partial);
    VLA_LAUNCH(k_mi_sum, 1, 1024, 0, s, partial, nr > 0 ? count : 0, out_pair);
}

void prune_prior_scores(float* scores, const float* prior, const int32_t* kind, int64_t n, const float* mi_pair, double alpha,
                        double divisor, cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_prior_scores, grid_for(n, kBlock), kBlock, 0, s, scores, prior, kind, n, mi_pair, alpha, divisor);
}

void prune_topk(const float* scores, const int32_t* kind, const int32_t* exclude, int64_t n, int64_t k, int32_t* flags,
                cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_topk, unsigned((n + kBlock - 1) / kBlock), kBlock, 0, s, scores, kind, exclude, n, k, flags);
}

void prune_index(const int32_t* flags, const int32_t* kind, bool keep_other, int64_t n, int32_t* idx, cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_index, unsigned((n + kBlock - 1) / kBlock), kBlock, 0, s, flags, kind, keep_other, n, idx);
}

void prune_merged_meta(int32_t* kind, int32_t* view, int32_t* pos, int64_t a, int64_t c, int64_t n, bool reindex, cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_merged_meta, grid_for(n, kBlock), kBlock, 0, s, kind, view, pos, a, c, n, reindex);
}

void prune_count(const int32_t* kind, const int32_t* view, int64_t n, int n_views, int32_t* counts_row, cudaStream_t s) {
    VLA_LAUNCH(k_count, 1, 1024, sizeof(int) * size_t(n_views + 2), s, kind, view, n, n_views, counts_row);
}

int64_t dpc_scratch_bytes(int64_t m, int64_t c) {
    auto align = [](int64_t b) { return (b + 255) / 256 * 256; };
    // dist, rho, score, dmax, centers, assign, order, start, then the per-row rank slots of k_dpc_rho
    return align(8 * m * m) + 2 * align(8 * m) + align(8) + align(4 * c) + 2 * align(4 * m) + align(4 * (c + 1)) + align(4 * m * c);
}

void dpc_knn_merge(const float* x, int64_t m, int64_t d, int64_t c, bool reference_ties, void* scratch, float* out,
                   cudaStream_t s) {
    if (m <= 0 || c <= 0) return;
    DpcScratch sc = dpc_layout(scratch, m, c);
    auto align = [](int64_t b) { return (b + 255) / 256 * 256; };
    int32_t* slots = reinterpret_cast<int32_t*>(reinterpret_cast<uint8_t*>(sc.start) + align(4 * (c + 1)));
    const dim3 tiles(unsigned((m + DT - 1) / DT), unsigned((m + DT - 1) / DT)), tb(DT, DT);
    VLA_LAUNCH(k_dpc_dist, tiles, tb, 0, s, x, m, d, sc.dist);
    VLA_LAUNCH(k_dpc_rho, unsigned(m), kBlock, 0, s, sc.dist, m, c, slots, sc.rho);
    VLA_LAUNCH(k_dpc_dmax, 1, 1024, 0, s, sc.dist, m * m, sc.dmax);
    VLA_LAUNCH(k_dpc_score, grid_for(m, kBlock), kBlock, 0, s, sc.dist, sc.rho, sc.dmax, m, reference_ties, sc.score);
    VLA_LAUNCH(k_dpc_centers, grid_for(m, kBlock), kBlock, 0, s, sc.score, m, c, sc.centers);
    VLA_LAUNCH(k_dpc_assign, grid_for(m, kBlock), kBlock, 0, s, sc.dist, sc.centers, m, c, sc.assign);
    VLA_LAUNCH(k_dpc_order, grid_for(m + c + 1, kBlock), kBlock, 0, s, sc.assign, m, c, sc.order, sc.start);
    VLA_LAUNCH(k_dpc_merge, grid_for(c * d, kBlock), kBlock, 0, s, x, d, c, sc.order, sc.start, out);
}

void cls_prior(const float* probs, int64_t ld, int n_heads, int n_views, int64_t Tv, int64_t first, int64_t pv,
               const int32_t* masked, float* prior, cudaStream_t s) {
    const int64_t n = int64_t(n_views) * pv;
    if (n > 0) VLA_LAUNCH(k_cls_prior, grid_for(n, kBlock), kBlock, 0, s, probs, ld, n_heads, n_views, Tv, first, pv, masked, prior);
}

void argmax(const float* x, int64_t n, int32_t* out, cudaStream_t s) { VLA_LAUNCH(k_argmax, 1, 1024, 0, s, x, n, out); }

}  // namespace vla::cuda
