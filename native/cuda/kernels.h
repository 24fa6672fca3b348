// Host-callable launchers of the CUDA backend's kernels (native/cuda/*.cu). Plain C++ so that
// backend-cuda.cpp compiles with the host compiler. Every launcher queues work on `s` and
// returns at once; pointers are device memory unless named host_*. Shapes follow backend.h:
// row-major [rows, cols], activations F32, weights F16/BF16 (vectors F32), indices I32.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend.h"

namespace vla::cuda {

// ---- GEMM: y[n, m] = x[n, k] w[m, k]^T (+ bias[m]); w of dtype wt (f32, f16, bf16).
// Tensor-core tiles (WMMA, F32 accumulation) for f16/bf16, a warp-per-output GEMV for n <= 8.
void gemm_xwt(const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m, const float* bias, float* y,
              cudaStream_t s);
// x (F32) -> dst (F16 or BF16), n elements: the activation side of a cuBLAS GEMM.
void convert_f32(const float* x, int64_t n, void* dst, DType dt, cudaStream_t s);
// Converts a host-uploaded weight of dtype `from` (already on the device) into `to`.
void convert_weight(const void* src, DType from, int64_t n, void* dst, DType to, cudaStream_t s);
// y[r, c] += bias[c] over n rows of m.
void add_bias(float* y, const float* bias, int64_t n, int64_t m, cudaStream_t s);
// Random N(mean, std) weights of dtype dt (Philox, counter-based: same seed, same weights).
void fill_random(void* dst, DType dt, int64_t n, uint64_t seed, float mean, float std, cudaStream_t s);

// ---- elementwise and normalisation
void layer_norm(const float* x, const float* w, const float* b, float eps, int64_t rows, int64_t d, float* y, cudaStream_t s);
void rms_norm(const float* x, const float* w, float eps, int64_t rows, int64_t d, float* y, cudaStream_t s);
void add(float* y, const float* x, int64_t n, cudaStream_t s);
// y[y_row0 + i] += table[t_row0 + (broadcast ? 0 : i)], i < n; table of dtype tt, d columns.
void add_rows(float* y, int64_t d, const void* table, DType tt, int64_t t_row0, int64_t n, bool broadcast, cudaStream_t s);
void unary(Unary op, float* y, int64_t n, cudaStream_t s);
void swiglu(const float* gate, const float* up, float* y, int64_t n, cudaStream_t s);
// In place on x [n, ld]; inv_freq [head_dim / 2] (host-computed in double, rounded to float).
void rope(float* x, int64_t n, int64_t ld, int n_heads, int head_dim, const int32_t* pos, const float* inv_freq,
          cudaStream_t s);
// out[i] = table[ids[i]] (dtype converted), d columns.
void get_rows(const void* table, DType tt, int64_t d, const int32_t* ids, int64_t n, float* out, cudaStream_t s);
// dst[i] = src[idx[i]] for 4-byte elements (F32 or I32), cols columns.
void gather_rows(const void* src, int64_t cols, const int32_t* idx, int64_t n, void* dst, cudaStream_t s);
// im2col of img [n_img * 3, S * S] into cols [n_img * g * g, 3 * P * P] (channel, y, x order).
void im2col(const float* img, int n_img, int S, int P, float* cols, cudaStream_t s);
// out rows [b * (np + 1) + 1 + p] = res rows [b * np + p]: each image's patches after its class row.
void scatter_patches(const float* res, int n_img, int64_t np, int64_t d, float* out, cudaStream_t s);

// ---- attention (FlashAttention-style tiling with online softmax, no n x n scores in memory;
// one block per KV head serves its whole query-head group). `partial` is scratch of
// attention_partial_floats() floats (may be null when that is 0).
struct AttnShape {
    int64_t n_q = 0, ldq = 0, ldk = 0, ldv = 0, ldo = 0;
    AttentionParams p;
    int64_t max_smem = 48 << 10;  // the device's opt-in shared memory per block
};
// Prefill (>= 32 query rows, head_dim 64 or 128, enough shared memory: ~111 KB at 128, so not
// on sm_86/sm_89 parts) runs on the tensor cores (F16 tiles, F32 accumulation) unless
// VLA_CUDA_ATTN=simt; everything else on the F32 SIMT kernel.
bool attention_uses_tensor_cores(const AttnShape& a);
int attention_splits(const AttnShape& a, int n_sm);
int64_t attention_partial_floats(const AttnShape& a, int splits);
void attention(const float* q, const float* k, const float* v, float* out, const AttnShape& a, int splits, float* partial,
               cudaStream_t s);
// probs[h * n_rows + r, j] for the query rows rows[r] (device), over ld_probs columns.
void attention_probs(const float* q, const float* k, const int32_t* rows, int64_t n_rows, float* probs, int64_t ld_probs,
                     const AttnShape& a, cudaStream_t s);

// ---- preprocessing: raw camera bytes -> planar normalised RGB [3, S, S]. Taps as image.h's
// image_resample_taps (flattened: lo[i], count[i], weights at off[i]).
struct ResizeGeometry {
    int W = 0, H = 0, step = 0, ch = 3;
    bool bgr = false;
    int canvas_w = 0, canvas_h = 0, img_x0 = 0, img_y0 = 0, out_w = 0, out_h = 0, S = 0, crop_x = 0, crop_y = 0;
    uint8_t fill[3] = {0, 0, 0};
    float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
};
struct DeviceTaps {
    const int32_t* lo = nullptr;
    const int32_t* count = nullptr;
    const int32_t* off = nullptr;
    const float* w = nullptr;
};
void preprocess(const uint8_t* raw, const ResizeGeometry& g, const DeviceTaps& tx, const DeviceTaps& ty, uint8_t* mid,
                float* out, cudaStream_t s);

// ---- pruning (see backend.h for the contracts; double accumulation as the CPU oracle)
void prune_scores(const float* probs, int64_t ld, int64_t n_rows, const int32_t* kind, int64_t n, float* scores, cudaStream_t s);
// partial: scratch of prune_mi_partial_doubles(n_heads, n) doubles.
int64_t prune_mi_partial_doubles(int n_heads, int64_t n);
void prune_mi(const float* probs, int64_t ld, int n_heads, int64_t nr, const int32_t* kind, int64_t n, double* partial,
              float* out_pair, cudaStream_t s);
void prune_prior_scores(float* scores, const float* prior, const int32_t* kind, int64_t n, const float* mi_pair, double alpha,
                        double divisor, cudaStream_t s);
void prune_topk(const float* scores, const int32_t* kind, const int32_t* exclude, int64_t n, int64_t k, int32_t* flags,
                cudaStream_t s);
void prune_index(const int32_t* flags, const int32_t* kind, bool keep_other, int64_t n, int32_t* idx, cudaStream_t s);
void prune_merged_meta(int32_t* kind, int32_t* view, int32_t* pos, int64_t a, int64_t c, int64_t n, bool reindex, cudaStream_t s);
void prune_count(const int32_t* kind, const int32_t* view, int64_t n, int n_views, int32_t* counts_row, cudaStream_t s);
// DPC-kNN: scratch of dpc_scratch_bytes(m, c) bytes.
int64_t dpc_scratch_bytes(int64_t m, int64_t c);
void dpc_knn_merge(const float* x, int64_t m, int64_t d, int64_t c, bool reference_ties, void* scratch, float* out,
                   cudaStream_t s);
void cls_prior(const float* probs, int64_t ld, int n_heads, int n_views, int64_t Tv, int64_t first, int64_t pv,
               const int32_t* masked, float* prior, cudaStream_t s);
void argmax(const float* x, int64_t n, int32_t* out, cudaStream_t s);

// Peak-bandwidth helper for benchmarks: y = x over n floats (read + write).
void copy_f32(const float* x, float* y, int64_t n, cudaStream_t s);

}  // namespace vla::cuda
