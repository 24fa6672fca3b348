#include "gemm.h"

#include <algorithm>
#include <vector>

#include "blas.h"
#include "convert.h"

namespace vla {

namespace {

// 8 floats as one vector (AVX on x86 with -march, NEON pairs on arm64); plain C++ otherwise.
typedef float v8 __attribute__((vector_size(32)));

inline v8 load8(const float* p) {
    v8 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

inline float hsum(v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

constexpr int64_t KC = 256;  // k-panel: x rows (4 x 1 KB) and the w panel (MC x 1 KB) stay in L1/L2
constexpr int64_t MC = 32;   // w rows per task

// acc[i][j] += x[i][0:kc] . w[j][0:kc] for a 4x4 tile; kc is a multiple of 8.
inline void tile4x4(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t kc, float out[4][4]) {
    v8 a00 = {}, a01 = {}, a02 = {}, a03 = {}, a10 = {}, a11 = {}, a12 = {}, a13 = {};
    v8 a20 = {}, a21 = {}, a22 = {}, a23 = {}, a30 = {}, a31 = {}, a32 = {}, a33 = {};
    for (int64_t p = 0; p < kc; p += 8) {
        const v8 w0 = load8(w + p), w1 = load8(w + ldw + p), w2 = load8(w + 2 * ldw + p), w3 = load8(w + 3 * ldw + p);
        v8 xv = load8(x + p);
        a00 += xv * w0; a01 += xv * w1; a02 += xv * w2; a03 += xv * w3;
        xv = load8(x + ldx + p);
        a10 += xv * w0; a11 += xv * w1; a12 += xv * w2; a13 += xv * w3;
        xv = load8(x + 2 * ldx + p);
        a20 += xv * w0; a21 += xv * w1; a22 += xv * w2; a23 += xv * w3;
        xv = load8(x + 3 * ldx + p);
        a30 += xv * w0; a31 += xv * w1; a32 += xv * w2; a33 += xv * w3;
    }
    out[0][0] += hsum(a00); out[0][1] += hsum(a01); out[0][2] += hsum(a02); out[0][3] += hsum(a03);
    out[1][0] += hsum(a10); out[1][1] += hsum(a11); out[1][2] += hsum(a12); out[1][3] += hsum(a13);
    out[2][0] += hsum(a20); out[2][1] += hsum(a21); out[2][2] += hsum(a22); out[2][3] += hsum(a23);
    out[3][0] += hsum(a30); out[3][1] += hsum(a31); out[3][2] += hsum(a32); out[3][3] += hsum(a33);
}

// One row of x against 4 rows of w (decode-sized products).
inline void tile1x4(const float* x, const float* w, int64_t ldw, int64_t kc, float out[4]) {
    v8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t p = 0; p < kc; p += 8) {
        const v8 xv = load8(x + p);
        a0 += xv * load8(w + p);
        a1 += xv * load8(w + ldw + p);
        a2 += xv * load8(w + 2 * ldw + p);
        a3 += xv * load8(w + 3 * ldw + p);
    }
    out[0] += hsum(a0); out[1] += hsum(a1); out[2] += hsum(a2); out[3] += hsum(a3);
}

inline float dot_tail(const float* x, const float* w, int64_t kc) {
    float s = 0.f;
    for (int64_t p = 0; p < kc; ++p) s += x[p] * w[p];
    return s;
}

}  // namespace

void gemm_xwt_builtin(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m,
                      const float* bias, float* y) {
    const int64_t m_tasks = (m + MC - 1) / MC;
    // Each task owns MC output columns for all rows: the w panel is converted once per k-panel
    // and reused across every row of x.
    // Products below ~0.5 MFLOP run on the calling thread: waking workers costs more.
    const int64_t grain = 2 * n * k * m < (int64_t(1) << 19) ? m_tasks : 1;
    pool.parallel_for(m_tasks, grain, [&](int64_t t0, int64_t t1) {
        std::vector<float> panel(static_cast<size_t>(MC * KC));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t j0 = t * MC, mc = std::min(MC, m - j0);
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < mc; ++j) y[i * m + j0 + j] = bias ? bias[j0 + j] : 0.f;
            for (int64_t p0 = 0; p0 < k; p0 += KC) {
                const int64_t kc = std::min(KC, k - p0);
                const int64_t kv = kc & ~int64_t(7);  // vectorised part
                const float* wp;
                int64_t ldw;
                if (wt == DType::f32) {
                    wp = static_cast<const float*>(w) + j0 * k + p0;
                    ldw = k;
                } else {
                    for (int64_t j = 0; j < mc; ++j) convert_to_f32(w, wt, (j0 + j) * k + p0, kc, &panel[j * KC]);
                    wp = panel.data();
                    ldw = KC;
                }
                int64_t i = 0;
                for (; i + 4 <= n; i += 4) {
                    const float* xp = x + i * k + p0;
                    int64_t j = 0;
                    for (; j + 4 <= mc; j += 4) {
                        float acc[4][4] = {};
                        if (kv) tile4x4(xp, k, wp + j * ldw, ldw, kv, acc);
                        for (int r = 0; r < 4; ++r)
                            for (int c = 0; c < 4; ++c) {
                                float tail = kv < kc ? dot_tail(xp + r * k + kv, wp + (j + c) * ldw + kv, kc - kv) : 0.f;
                                y[(i + r) * m + j0 + j + c] += acc[r][c] + tail;
                            }
                    }
                    for (; j < mc; ++j)
                        for (int r = 0; r < 4; ++r) y[(i + r) * m + j0 + j] += dot_tail(xp + r * k, wp + j * ldw, kc);
                }
                for (; i < n; ++i) {
                    const float* xp = x + i * k + p0;
                    int64_t j = 0;
                    for (; j + 4 <= mc; j += 4) {
                        float acc[4] = {};
                        if (kv) tile1x4(xp, wp + j * ldw, ldw, kv, acc);
                        for (int c = 0; c < 4; ++c) {
                            float tail = kv < kc ? dot_tail(xp + kv, wp + (j + c) * ldw + kv, kc - kv) : 0.f;
                            y[i * m + j0 + j + c] += acc[c] + tail;
                        }
                    }
                    for (; j < mc; ++j) y[i * m + j0 + j] += dot_tail(xp, wp + j * ldw, kc);
                }
            }
        }
    });
}

void gemm_xwt(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m,
              const float* bias, float* y) {
    const Blas* b = blas();
    // BLAS for F32 weights (the CPU backend converts half ones at load unless asked to keep them
    // in place); dimensions past int's range stay on the builtin kernel (LP64 cblas).
    constexpr int64_t kIntMax = 2147483647;
    // A row or a few (decoding) stay on the builtin kernel too: OpenBLAS's sgemm is 3x slower
    // than it there (8 against 26 GFLOP/s at 1 x 96 x 192 on 2 threads).
    if (!b || wt != DType::f32 || n < 4 || m <= 0 || k <= 0 || n * k > kIntMax || m * k > kIntMax || n * m > kIntMax) {
        gemm_xwt_builtin(pool, x, n, k, w, wt, m, bias, y);
        return;
    }
    const float* wf = static_cast<const float*>(w);
    // Blocks of the larger output dimension, each one single-threaded sgemm on a pool thread.
    // The blocks depend on the shape only, never on the thread count: every output element is
    // summed by the same kernel call whatever `threads` is, so results do not change with it.
    // Up to 32 blocks of at least 32 rows/columns balance a shared machine's late threads;
    // products below ~0.5 MFLOP run as one call on the calling thread.
    const bool small = 2 * n * k * m < (int64_t(1) << 19);
    const bool split_m = m >= n;
    const int64_t dim = split_m ? m : n;
    int64_t block = small ? dim : std::max<int64_t>(32, ((dim + 31) / 32 + 15) / 16 * 16);
    block = std::min(dim, block);
    const int64_t tasks = (dim + block - 1) / block;
    pool.parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t i0 = split_m ? 0 : t * block, j0 = split_m ? t * block : 0;
            const int64_t nb = split_m ? n : std::min(block, n - i0), mb = split_m ? std::min(block, m - j0) : m;
            if (bias)
                for (int64_t i = i0; i < i0 + nb; ++i) std::copy(bias + j0, bias + j0 + mb, y + i * m + j0);
            b->sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, int(nb), int(mb), int(k), 1.f, x + i0 * k, int(k),
                     wf + j0 * k, int(k), bias ? 1.f : 0.f, y + i0 * m + j0, int(m));
        }
    });
}

void gemm_xwt_naive(const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m, const float* bias,
                    float* y) {
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t j = 0; j < m; ++j) {
        convert_to_f32(w, wt, j * k, k, row.data());
        for (int64_t i = 0; i < n; ++i) {
            float s = bias ? bias[j] : 0.f;
            for (int64_t p = 0; p < k; ++p) s += x[i * k + p] * row[p];
            y[i * m + j] = s;
        }
    }
}

}  // namespace vla
