// Normalisation, elementwise ops, RoPE, row movement, patch im2col, dtype conversion and random
// weights. Reductions accumulate in double as the CPU oracle does (norm rows are short: the cost
// is hidden behind the memory traffic).
#include <cmath>
#include <type_traits>

#include "common.cuh"
#include "kernels.h"

namespace vla::cuda {

namespace {

constexpr int kBlock = 256;

__global__ void k_layer_norm(const float* x, const float* __restrict__ w, const float* __restrict__ b,
                             float eps, int64_t d, float* y) {
    __shared__ double sh[32];
    const float* xi = x + int64_t(blockIdx.x) * d;
    float* yi = y + int64_t(blockIdx.x) * d;
    double s = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += xi[i];
    const double mean = block_sum(s, sh) / double(d);
    double v = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        const double t = xi[i] - mean;
        v += t * t;
    }
    const double var = block_sum(v, sh) / double(d);
    const float inv = float(1.0 / sqrt(var + double(eps))), m = float(mean);
    // y may alias x: every read of this row happened before the reductions' barriers.
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yi[i] = (xi[i] - m) * inv * w[i] + b[i];
}

__global__ void k_rms_norm(const float* x, const float* __restrict__ w, float eps, int64_t d, float* y) {
    __shared__ double sh[32];
    const float* xi = x + int64_t(blockIdx.x) * d;
    float* yi = y + int64_t(blockIdx.x) * d;
    double s = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += double(xi[i]) * xi[i];
    const double ss = block_sum(s, sh);
    const float inv = float(1.0 / sqrt(ss / double(d) + double(eps)));
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yi[i] = xi[i] * inv * w[i];
}

__global__ void k_add(float* y, const float* __restrict__ x, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) y[i] += x[i];
}

template <typename T>
__global__ void k_add_rows(float* y, int64_t d, const T* __restrict__ table, int64_t t_row0, int64_t n, bool broadcast) {
    const int64_t total = n * d;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / d, c = i % d;
        y[i] += ld_f(table, (t_row0 + (broadcast ? 0 : r)) * d + c);
    }
}

__global__ void k_unary(Unary op, float* p, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float v = p[i];
        switch (op) {
        case Unary::gelu: p[i] = 0.5f * v * (1.f + erff(v * 0.70710678118654752f)); break;
        case Unary::quick_gelu: p[i] = v / (1.f + expf(-1.702f * v)); break;
        case Unary::silu: p[i] = v / (1.f + expf(-v)); break;
        }
    }
}

__global__ void k_swiglu(const float* g, const float* __restrict__ u, float* y, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float gv = g[i];
        y[i] = gv / (1.f + expf(-gv)) * u[i];
    }
}

// One thread per (row, head, pair): rotate-half layout, angles in float as HF.
__global__ void k_rope(float* x, int64_t n, int64_t ld, int n_heads, int head_dim, const int32_t* __restrict__ pos,
                       const float* __restrict__ inv_freq) {
    const int half = head_dim / 2;
    const int64_t total = n * n_heads * half;
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
        const int i = int(t % half);
        const int h = int((t / half) % n_heads);
        const int64_t r = t / (int64_t(half) * n_heads);
        const float ang = inv_freq[i] * float(pos[r]);
        float sn, cs;
        sincosf(ang, &sn, &cs);
        float* v = x + r * ld + int64_t(h) * head_dim;
        const float a = v[i], b = v[i + half];
        v[i] = a * cs - b * sn;
        v[i + half] = b * cs + a * sn;
    }
}

template <typename T>
__global__ void k_get_rows(const T* __restrict__ table, int64_t d, const int32_t* __restrict__ ids, int64_t n, float* out) {
    const int64_t total = n * d;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / d, c = i % d;
        out[i] = ld_f(table, int64_t(ids[r]) * d + c);
    }
}

__global__ void k_gather_rows(const uint32_t* __restrict__ src, int64_t cols, const int32_t* __restrict__ idx, int64_t n,
                              uint32_t* __restrict__ dst) {
    const int64_t total = n * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        dst[i] = src[int64_t(idx[r]) * cols + c];
    }
}

__global__ void k_im2col(const float* __restrict__ img, int n_img, int S, int P, float* cols) {
    const int g = S / P, np = g * g, kk = 3 * P * P;
    const int64_t total = int64_t(n_img) * np * kk;
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
        const int e = int(t % kk);
        const int64_t row = t / kk;
        const int b = int(row / np), p = int(row % np);
        const int py = p / g, px = p % g;
        const int c = e / (P * P), y = (e / P) % P, xx = e % P;
        cols[t] = img[(int64_t(b) * 3 + c) * S * S + int64_t(py * P + y) * S + px * P + xx];
    }
}

__global__ void k_scatter_patches(const float* __restrict__ res, int n_img, int64_t np, int64_t d, float* out) {
    const int64_t total = int64_t(n_img) * np * d;
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
        const int64_t c = t % d, row = t / d;
        const int64_t b = row / np, p = row % np;
        out[(b * (np + 1) + 1 + p) * d + c] = res[t];
    }
}

template <typename S, typename D>
__global__ void k_convert(const S* __restrict__ src, int64_t n, D* __restrict__ dst) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = from_f<D>(ld_f(src, i));
}

// A launch of k_convert<S, D> through a pointer (its two template arguments would not pass
// through the launch macro).
template <typename S>
void convert_any(const S* src, int64_t n, void* dst, DType to, cudaStream_t s) {
    if (to == DType::bf16) {
        auto kern = k_convert<S, __nv_bfloat16>;
        VLA_LAUNCH(kern, grid_for(n, kBlock), kBlock, 0, s, src, n, static_cast<__nv_bfloat16*>(dst));
    } else if (to == DType::f16) {
        auto kern = k_convert<S, __half>;
        VLA_LAUNCH(kern, grid_for(n, kBlock), kBlock, 0, s, src, n, static_cast<__half*>(dst));
    } else {
        auto kern = k_convert<S, float>;
        VLA_LAUNCH(kern, grid_for(n, kBlock), kBlock, 0, s, src, n, static_cast<float*>(dst));
    }
}

__global__ void k_add_bias(float* y, const float* __restrict__ bias, int64_t n, int64_t m) {
    const int64_t total = n * m;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
        y[i] += bias[i % m];
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Counter-based normal samples (Box-Muller on two 32-bit uniforms of one hash).
template <typename T>
__global__ void k_fill_random(T* dst, int64_t n, uint64_t seed, float mean, float std) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const uint64_t h = splitmix64(seed ^ splitmix64(uint64_t(i)));
        const float u1 = (float((h >> 40) & 0xFFFFFF) + 1.f) * (1.f / 16777217.f);
        const float u2 = float((h >> 8) & 0xFFFFFF) * (1.f / 16777216.f);
        const float z = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
        dst[i] = from_f<T>(mean + std * z);
    }
}

__global__ void k_copy(const float4* __restrict__ x, float4* __restrict__ y, int64_t n4) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) y[i] = x[i];
}

}  // namespace

void layer_norm(const float* x, const float* w, const float* b, float eps, int64_t rows, int64_t d, float* y, cudaStream_t s) {
    if (rows > 0) VLA_LAUNCH(k_layer_norm, unsigned(rows), kBlock, 0, s, x, w, b, eps, d, y);
}

void rms_norm(const float* x, const float* w, float eps, int64_t rows, int64_t d, float* y, cudaStream_t s) {
    if (rows > 0) VLA_LAUNCH(k_rms_norm, unsigned(rows), kBlock, 0, s, x, w, eps, d, y);
}

void add(float* y, const float* x, int64_t n, cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_add, grid_for(n, kBlock), kBlock, 0, s, y, x, n);
}

void add_rows(float* y, int64_t d, const void* table, DType tt, int64_t t_row0, int64_t n, bool broadcast, cudaStream_t s) {
    if (n <= 0) return;
    with_weight(table, tt, [&](auto* t) { using T = std::remove_const_t<std::remove_pointer_t<decltype(t)>>; VLA_LAUNCH(k_add_rows<T>, grid_for(n * d, kBlock), kBlock, 0, s, y, d, t, t_row0, n, broadcast); });
}

void unary(Unary op, float* y, int64_t n, cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_unary, grid_for(n, kBlock), kBlock, 0, s, op, y, n);
}

void swiglu(const float* gate, const float* up, float* y, int64_t n, cudaStream_t s) {
    if (n > 0) VLA_LAUNCH(k_swiglu, grid_for(n, kBlock), kBlock, 0, s, gate, up, y, n);
}

void rope(float* x, int64_t n, int64_t ld, int n_heads, int head_dim, const int32_t* pos, const float* inv_freq, cudaStream_t s) {
    const int64_t total = n * n_heads * (head_dim / 2);
    if (total > 0) VLA_LAUNCH(k_rope, grid_for(total, kBlock), kBlock, 0, s, x, n, ld, n_heads, head_dim, pos, inv_freq);
}

void get_rows(const void* table, DType tt, int64_t d, const int32_t* ids, int64_t n, float* out, cudaStream_t s) {
    if (n <= 0) return;
    with_weight(table, tt, [&](auto* t) { using T = std::remove_const_t<std::remove_pointer_t<decltype(t)>>; VLA_LAUNCH(k_get_rows<T>, grid_for(n * d, kBlock), kBlock, 0, s, t, d, ids, n, out); });
}

void gather_rows(const void* src, int64_t cols, const int32_t* idx, int64_t n, void* dst, cudaStream_t s) {
    if (n > 0)
        VLA_LAUNCH(k_gather_rows, grid_for(n * cols, kBlock), kBlock, 0, s, static_cast<const uint32_t*>(src), cols, idx, n,
                                                                     static_cast<uint32_t*>(dst));
}

void im2col(const float* img, int n_img, int S, int P, float* cols, cudaStream_t s) {
    const int64_t total = int64_t(n_img) * (S / P) * (S / P) * 3 * P * P;
    if (total > 0) VLA_LAUNCH(k_im2col, grid_for(total, kBlock), kBlock, 0, s, img, n_img, S, P, cols);
}

void scatter_patches(const float* res, int n_img, int64_t np, int64_t d, float* out, cudaStream_t s) {
    const int64_t total = int64_t(n_img) * np * d;
    if (total > 0) VLA_LAUNCH(k_scatter_patches, grid_for(total, kBlock), kBlock, 0, s, res, n_img, np, d, out);
}

void convert_f32(const float* x, int64_t n, void* dst, DType dt, cudaStream_t s) {
    if (n <= 0) return;
    convert_any(x, n, dst, dt, s);
}

void convert_weight(const void* src, DType from, int64_t n, void* dst, DType to, cudaStream_t s) {
    if (n <= 0) return;
    with_weight(src, from, [&](auto* sp) { convert_any(sp, n, dst, to, s); });
}

void add_bias(float* y, const float* bias, int64_t n, int64_t m, cudaStream_t s) {
    if (n * m > 0) VLA_LAUNCH(k_add_bias, grid_for(n * m, kBlock), kBlock, 0, s, y, bias, n, m);
}

void fill_random(void* dst, DType dt, int64_t n, uint64_t seed, float mean, float std, cudaStream_t s) {
    if (n <= 0) return;
    if (dt == DType::bf16) VLA_LAUNCH(k_fill_random<__nv_bfloat16>, grid_for(n, kBlock), kBlock, 0, s, static_cast<__nv_bfloat16*>(dst), n, seed, mean, std);
    else if (dt == DType::f16) VLA_LAUNCH(k_fill_random<__half>, grid_for(n, kBlock), kBlock, 0, s, static_cast<__half*>(dst), n, seed, mean, std);
    else VLA_LAUNCH(k_fill_random<float>, grid_for(n, kBlock), kBlock, 0, s, static_cast<float*>(dst), n, seed, mean, std);
}

void copy_f32(const float* x, float* y, int64_t n, cudaStream_t s) {
    // n a multiple of 4 and 16-byte aligned pointers (the benchmark's buffers)
    if (n >= 4) VLA_LAUNCH(k_copy, grid_for(n / 4, kBlock), kBlock, 0, s, reinterpret_cast<const float4*>(x), reinterpret_cast<float4*>(y), n / 4);
}

}  // namespace vla::cuda
