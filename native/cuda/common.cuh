// Shared device helpers of the CUDA kernels: weight loads of any dtype as float, launch sizes,
// block reductions in a fixed order (results do not depend on scheduling).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "safetensors.h"

// Launch and dynamic shared memory, spelled so that the CPU emulation (emu/) compiles the same
// source as C++: VLA_LAUNCH(kernel, grid, block, smem, stream, args...).
#ifndef VLA_CUDA_EMULATION
#define VLA_LAUNCH(k, g, b, sm, s, ...) k<<<(g), (b), (sm), (s)>>>(__VA_ARGS__)
#define VLA_DYNAMIC_SMEM(T, name) extern __shared__ __align__(128) T name[]
#endif

namespace vla::cuda {

constexpr int kWarp = 32;

inline unsigned grid_for(int64_t n, int block) {
    int64_t g = (n + block - 1) / block;
    if (g < 1) g = 1;
    if (g > 65535LL * 1024) g = 65535LL * 1024;  // grid-stride loops cover the rest
    return unsigned(g);
}

__device__ __forceinline__ float ld_f(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld_f(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float ld_f(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

// float -> T with round-to-nearest-even (the staging of activations and dtype conversion).
template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }

// Calls f with the typed pointer of a weight of dtype t (f32, f16, bf16).
template <typename F>
inline void with_weight(const void* w, DType t, F&& f) {
    switch (t) {
    case DType::f16: f(static_cast<const __half*>(w)); break;
    case DType::bf16: f(static_cast<const __nv_bfloat16*>(w)); break;
    default: f(static_cast<const float*>(w)); break;
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
template <typename T>
__device__ T block_sum(T v, T* shared /* >= 32 */) {
    const int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp, nw = (blockDim.x + kWarp - 1) / kWarp;
    v = warp_sum(v);
    __syncthreads();  // shared may be reused from a previous call
    if (lane == 0) shared[wid] = v;
    __syncthreads();
    T t = lane < nw ? shared[lane] : T(0);
    if (wid == 0) t = warp_sum(t);
    if (threadIdx.x == 0) shared[0] = t;
    __syncthreads();
    return shared[0];
}

__device__ __forceinline__ float block_max(float v, float* shared) {
    const int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp, nw = (blockDim.x + kWarp - 1) / kWarp;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[wid] = v;
    __syncthreads();
    float t = lane < nw ? shared[lane] : -INFINITY;
    if (wid == 0) t = warp_max(t);
    if (threadIdx.x == 0) shared[0] = t;
    __syncthreads();
    return shared[0];
}

}  // namespace vla::cuda
