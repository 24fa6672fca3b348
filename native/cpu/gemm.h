// CPU matrix products. y[n, m] = x[n, k] * w[m, k]^T (+ bias[m]).
#pragma once
#include <cstdint>

#include "safetensors.h"
#include "threadpool.h"

namespace vla {

// Multithreaded on the pool; w may be F32, F16 or BF16, fp32 accumulation. Rows of x and y are
// contiguous with strides k and m. F32 weights go through the BLAS where one loads (blas.h),
// everything else through gemm_xwt_builtin.
void gemm_xwt(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m,
              const float* bias, float* y);

// The engine's own kernel: blocked, 4x4 register tiles, half weights converted block by block
// into L1-sized panels (so mmapped F16/BF16 weights need no F32 copy). The fallback without a
// BLAS and the reference the BLAS path is tested against.
void gemm_xwt_builtin(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m,
              const float* bias, float* y);

// The plain single-threaded triple loop, for tests and as the benchmark's baseline.
void gemm_xwt_naive(const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m, const float* bias,
                    float* y);

}  // namespace vla
