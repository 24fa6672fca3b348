// CPU matrix products. y[n, m] = x[n, k] * w[m, k]^T (+ bias[m]).
#pragma once
#include <cstdint>

#include "safetensors.h"
#include "threadpool.h"

namespace vla {

// Blocked, multithreaded; w may be F32, F16 or BF16 (converted block by block into L1-sized
// panels), fp32 accumulation. Rows of x and y are contiguous with strides k and m.
void gemm_xwt(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m,
              const float* bias, float* y);

// The plain single-threaded triple loop, for tests and as the benchmark's baseline.
void gemm_xwt_naive(const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m, const float* bias,
                    float* y);

}  // namespace vla
