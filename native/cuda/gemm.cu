// Matrix products without cuBLAS: y[n, m] = x[n, k] w[m, k]^T (+ bias).
//  - n <= 8 (decode, action queries): one warp per output column, 16-byte weight loads; memory
//    bound, so the point is to stream w once at full bandwidth.
//  - f16/bf16 weights, n > 8: 64 x 64 block tiles of tensor-core WMMA (16 x 16 x 16, F32
//    accumulation); x is rounded to the weight dtype as it is staged into shared memory (what
//    cuBLAS would see after the same conversion). Any shape: edges are zero-padded in shared
//    memory, never read out of bounds.
//  - f32 weights (only 1-row vectors normally): a plain SIMT loop.
// When cuBLAS is linked, the backend sends large products there instead (backend-cuda.cpp).
#include <mma.h>

#include <type_traits>

#include "common.cuh"
#include "kernels.h"

namespace vla::cuda {

namespace {

constexpr int BM = 64, BN = 64, BK = 32, LDS = BK + 8, LDC = BN + 4, kThreads = 128;

template <typename T>
__global__ void __launch_bounds__(kThreads) k_gemm_wmma(const float* __restrict__ x, int64_t n, int64_t k, const T* __restrict__ w,
                                                        int64_t m, const float* __restrict__ bias, float* __restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using namespace nvcuda;
    __shared__ __align__(32) T As[BM * LDS];
    __shared__ __align__(32) T Bs[BN * LDS];
    __shared__ __align__(32) float Cs[BM * LDC];
    const int64_t row0 = int64_t(blockIdx.y) * BM, col0 = int64_t(blockIdx.x) * BN;
    const int warp = threadIdx.x / kWarp, wr = warp / 2, wc = warp % 2;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
    for (int64_t k0 = 0; k0 < k; k0 += BK) {
        for (int i = threadIdx.x; i < BM * BK; i += kThreads) {
            const int r = i / BK, c = i % BK;
            const int64_t gr = row0 + r, gc = k0 + c;
            As[r * LDS + c] = from_f<T>(gr < n && gc < k ? x[gr * k + gc] : 0.f);
        }
        for (int i = threadIdx.x; i < BN * BK; i += kThreads) {
            const int r = i / BK, c = i % BK;
            const int64_t gr = col0 + r, gc = k0 + c;
            Bs[r * LDS + c] = gr < m && gc < k ? w[gr * k + gc] : from_f<T>(0.f);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[2];
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (wr * 32 + i * 16) * LDS + kk, LDS);
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Bs + (wc * 32 + j * 16) * LDS + kk, LDS);
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(Cs + (wr * 32 + i * 16) * LDC + wc * 32 + j * 16, acc[i][j], LDC, wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < BM * BN; i += kThreads) {
        const int r = i / BN, c = i % BN;
        const int64_t gr = row0 + r, gc = col0 + c;
        if (gr < n && gc < m) y[gr * m + gc] = Cs[r * LDC + c] + (bias ? bias[gc] : 0.f);
    }
#else
    __trap();  // tensor-core tiles need sm_80+; the build's architectures are 87 and 90 by default
#endif
}

constexpr int kMaxRows = 8;

// One warp per output column j over all n (<= 8) rows of x.
template <typename T>
__global__ void k_gemv(const float* __restrict__ x, int64_t n, int64_t k, const T* __restrict__ w, int64_t m,
                       const float* __restrict__ bias, float* __restrict__ y) {
    const int lane = threadIdx.x % kWarp;
    const int64_t j = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
    if (j >= m) return;
    float acc[kMaxRows];
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) acc[r] = 0.f;
    const T* wj = w + j * k;
    constexpr int V = sizeof(T) == 2 ? 8 : 4;  // elements per 16-byte load
    const bool vec = k % V == 0 && (reinterpret_cast<uintptr_t>(w) % 16) == 0 && (reinterpret_cast<uintptr_t>(x) % 16) == 0;
    if (vec) {
        for (int64_t e = int64_t(lane) * V; e < k; e += int64_t(kWarp) * V) {
            union {
                uint4 u;
                T t[V];
            } raw;  // one 16-byte load, read as V weights
            raw.u = *reinterpret_cast<const uint4*>(wj + e);
            float wf[V];
#pragma unroll
            for (int t = 0; t < V; ++t) wf[t] = ld_f(raw.t, t);
#pragma unroll
            for (int r = 0; r < kMaxRows; ++r) {
                if (r >= n) break;
                const float* xr = x + r * k + e;
#pragma unroll
                for (int t = 0; t < V; t += 4) {
                    const float4 xv = *reinterpret_cast<const float4*>(xr + t);
                    acc[r] += wf[t] * xv.x + wf[t + 1] * xv.y + wf[t + 2] * xv.z + wf[t + 3] * xv.w;
                }
            }
        }
    } else {
        for (int64_t e = lane; e < k; e += kWarp) {
            const float wf = ld_f(wj, e);
#pragma unroll
            for (int r = 0; r < kMaxRows; ++r) {
                if (r >= n) break;
                acc[r] += wf * x[r * k + e];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) {
        if (r >= n) break;
        const float v = warp_sum(acc[r]);
        if (lane == 0) y[r * m + j] = v + (bias ? bias[j] : 0.f);
    }
}

template <typename T>
__global__ void k_gemm_simt(const float* __restrict__ x, int64_t n, int64_t k, const T* __restrict__ w, int64_t m,
                            const float* __restrict__ bias, float* __restrict__ y) {
    const int64_t total = n * m;
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = t / m, j = t % m;
        float s = 0.f;
        for (int64_t e = 0; e < k; ++e) s += x[r * k + e] * ld_f(w, j * k + e);
        y[t] = s + (bias ? bias[j] : 0.f);
    }
}

}  // namespace

void gemm_xwt(const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m, const float* bias, float* y,
              cudaStream_t s) {
    if (n <= 0 || m <= 0) return;
    if (n <= kMaxRows) {
        constexpr int warps = 8;
        const unsigned grid = unsigned((m + warps - 1) / warps);
        with_weight(w, wt, [&](auto* wp) { using T = std::remove_const_t<std::remove_pointer_t<decltype(wp)>>; VLA_LAUNCH(k_gemv<T>, grid, warps * kWarp, 0, s, x, n, k, wp, m, bias, y); });
        return;
    }
    const dim3 grid(unsigned((m + BN - 1) / BN), unsigned((n + BM - 1) / BM));
    if (wt == DType::f16) {
        VLA_LAUNCH(k_gemm_wmma<__half>, grid, kThreads, 0, s, x, n, k, static_cast<const __half*>(w), m, bias, y);
    } else if (wt == DType::bf16) {
        VLA_LAUNCH(k_gemm_wmma<__nv_bfloat16>, grid, kThreads, 0, s, x, n, k, static_cast<const __nv_bfloat16*>(w), m, bias, y);
    } else {
        VLA_LAUNCH(k_gemm_simt<float>, grid_for(n * m, 256), 256, 0, s, x, n, k, static_cast<const float*>(w), m, bias, y);
    }
}

}  // namespace vla::cuda
