// Fused attention, FlashAttention-style: key/value tiles stream through shared memory and each
// query row keeps a running max, sum and output (online softmax), so no n x n score matrix is
// ever stored. Grouped-query aware: a block serves one KV head and the whole group of query
// heads that read it, so every K/V tile is loaded once per group ("virtual rows" = query row x
// group head). For short query counts (decode) the keys are split across blocks and the
// partial results merged by a second kernel (flash-decoding), so a single row still fills the
// GPU.
#include <algorithm>
#include <cmath>

#include <mma.h>

#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "kernels.h"

namespace vla::cuda {

namespace {

constexpr int BR = 16;          // virtual rows per block
constexpr int BC = 32;          // keys per tile: one per lane
constexpr int kWarps = 4;       // 4 rows per warp
constexpr int kRowsPerWarp = BR / kWarps;

struct Dev {
    int64_t n_q, ldq, ldk, ldv, ldo, n_kv, kv_offset, qb, kb;
    int n_head, n_kv_head, group, hd;
    bool causal;
    float scale;
};

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

__device__ __forceinline__ void key_range(const Dev& a, int64_t i, int64_t* j0, int64_t* j1) {
    if (a.causal) {
        *j0 = 0;
        *j1 = imin(a.n_kv, a.kv_offset + i + 1);
    } else {
        *j0 = (i / a.qb) * a.kb;
        *j1 = *j0 + a.kb;
    }
}

template <int DPL>  // head-dim elements per lane: ceil(hd / 32)
__global__ void __launch_bounds__(kWarps * kWarp) k_attention(const float* __restrict__ q, const float* __restrict__ k,
                                                              const float* __restrict__ v, float* __restrict__ out, Dev a,
                                                              int splits, float* __restrict__ partial) {
    VLA_DYNAMIC_SMEM(float, smem);
    constexpr int HP = DPL * kWarp;  // padded head dim
    const int hd = a.hd;
    float* Qs = smem;                      // [BR][HP]
    float* Ks = Qs + BR * HP;              // [BC][hd + 1]: odd stride, lanes hit distinct banks
    float* Vs = Ks + BC * (hd + 1);        // [BC][HP]
    __shared__ int64_t s_lo, s_hi;
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const int hk = blockIdx.y;
    const int64_t n_vrows = a.n_q * a.group, vr0 = int64_t(blockIdx.x) * BR;

    // Q rows of this block, and the union of their key ranges.
    for (int t = threadIdx.x; t < BR * HP; t += blockDim.x) {
        const int r = t / HP, e = t % HP;
        const int64_t vr = vr0 + r;
        float val = 0.f;
        if (vr < n_vrows && e < hd) {
            const int64_t i = vr / a.group;
            const int h = hk * a.group + int(vr % a.group);
            val = q[i * a.ldq + int64_t(h) * hd + e];
        }
        Qs[t] = val;
    }
    if (threadIdx.x == 0) {
        int64_t lo = INT64_MAX, hi = 0;
        for (int r = 0; r < BR; ++r) {
            const int64_t vr = vr0 + r;
            if (vr >= n_vrows) break;
            int64_t j0, j1;
            key_range(a, vr / a.group, &j0, &j1);
            lo = imin(lo, j0);
            hi = imax(hi, j1);
        }
        if (lo > hi) lo = hi;
        // This split's share, in whole tiles.
        const int64_t span = hi - lo, chunk = ((span + splits - 1) / splits + BC - 1) / BC * BC;
        const int64_t s0 = lo + chunk * blockIdx.z;
        s_lo = imin(s0, hi);
        s_hi = imin(s0 + chunk, hi);
    }
    __syncthreads();
    const int64_t lo = s_lo, hi = s_hi;

    float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DPL];
    int rj0[kRowsPerWarp], rj1[kRowsPerWarp];  // key ranges: 32-bit (keys < 2^31), fewer registers
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        m[rr] = -INFINITY;
        l[rr] = 0.f;
#pragma unroll
        for (int t = 0; t < DPL; ++t) acc[rr][t] = 0.f;
        const int64_t vr = vr0 + warp * kRowsPerWarp + rr;
        int64_t j0 = 0, j1 = 0;  // empty: rows past the end
        if (vr < n_vrows) key_range(a, vr / a.group, &j0, &j1);
        rj0[rr] = int(j0);
        rj1[rr] = int(j1);
    }

    for (int64_t kt = lo; kt < hi; kt += BC) {
        for (int t = threadIdx.x; t < BC * HP; t += blockDim.x) {
            const int r = t / HP, e = t % HP;
            const int64_t j = kt + r;
            const bool ok = j < a.n_kv && e < hd;
            if (e < hd) Ks[r * (hd + 1) + e] = ok ? k[j * a.ldk + int64_t(hk) * hd + e] : 0.f;
            Vs[r * HP + e] = ok ? v[j * a.ldv + int64_t(hk) * hd + e] : 0.f;
        }
        __syncthreads();
        const int64_t j = kt + lane;
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            const float* qr = Qs + (warp * kRowsPerWarp + rr) * HP;
            const float* kr = Ks + lane * (hd + 1);
            float s = 0.f;
            for (int e = 0; e < hd; ++e) s += qr[e] * kr[e];
            s *= a.scale;
            const bool allowed = j >= rj0[rr] && j < rj1[rr] && j < hi;
            s = allowed ? s : -INFINITY;
            const float tmax = warp_max(s);
            if (tmax == -INFINITY) continue;  // uniform across the warp
            const float m_new = fmaxf(m[rr], tmax);
            const float p = allowed ? expf(s - m_new) : 0.f;
            const float corr = expf(m[rr] - m_new);  // 0 on the first tile (m = -inf)
            l[rr] = l[rr] * corr + warp_sum(p);
#pragma unroll
            for (int t = 0; t < DPL; ++t) acc[rr][t] *= corr;
            for (int jj = 0; jj < BC; ++jj) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
                for (int t = 0; t < DPL; ++t) acc[rr][t] += pj * Vs[jj * HP + lane + t * kWarp];
            }
            m[rr] = m_new;
        }
        __syncthreads();
    }

#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int64_t vr = vr0 + warp * kRowsPerWarp + rr;
        if (vr >= n_vrows) continue;
        const int64_t i = vr / a.group;
        const int h = hk * a.group + int(vr % a.group);
        if (splits == 1) {
            const float inv = l[rr] > 0.f ? 1.f / l[rr] : 0.f;
#pragma unroll
            for (int t = 0; t < DPL; ++t) {
                const int e = lane + t * kWarp;
                if (e < hd) out[i * a.ldo + int64_t(h) * hd + e] = acc[rr][t] * inv;
            }
        } else {
            // partial[(z * n_q * n_head + i * n_head + h) * (hd + 2)]: acc, then m and l
            float* pp = partial + ((int64_t(blockIdx.z) * a.n_q + i) * a.n_head + h) * (hd + 2);
#pragma unroll
            for (int t = 0; t < DPL; ++t) {
                const int e = lane + t * kWarp;
                if (e < hd) pp[e] = acc[rr][t];
            }
            if (lane == 0) {
                pp[hd] = m[rr];
                pp[hd + 1] = l[rr];
            }
        }
    }
}

// Merges the splits of each (row, head): one warp per pair.
__global__ void k_attention_combine(const float* __restrict__ partial, Dev a, int splits, float* __restrict__ out) {
    const int lane = threadIdx.x % kWarp;
    const int64_t pair = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
    if (pair >= a.n_q * a.n_head) return;
    const int64_t i = pair / a.n_head;
    const int h = int(pair % a.n_head), hd = a.hd;
    const int64_t stride = a.n_q * a.n_head * (hd + 2);
    const float* base = partial + pair * (hd + 2);
    float M = -INFINITY;
    for (int z = 0; z < splits; ++z) M = fmaxf(M, base[z * stride + hd]);
    float L = 0.f;
    for (int z = 0; z < splits; ++z) {
        const float mz = base[z * stride + hd];
        if (mz != -INFINITY) L += base[z * stride + hd + 1] * expf(mz - M);
    }
    const float inv = L > 0.f ? 1.f / L : 0.f;
    for (int e = lane; e < hd; e += kWarp) {
        float o = 0.f;
        for (int z = 0; z < splits; ++z) {
            const float mz = base[z * stride + hd];
            if (mz != -INFINITY) o += base[z * stride + e] * expf(mz - M);
        }
        out[i * a.ldo + int64_t(h) * hd + e] = o * inv;
    }
}

// Probabilities of selected query rows: one block per (head, row); a warp per key (lanes over
// the head dim, coalesced), then softmax over the row in place.
__global__ void k_attention_probs(const float* __restrict__ q, const float* __restrict__ k, const int32_t* __restrict__ rows,
                                  int64_t n_rows, float* __restrict__ probs, int64_t ld_probs, Dev a) {
    __shared__ float red[32];
    __shared__ double redd[32];
    const int64_t t = blockIdx.x;
    const int h = int(t / n_rows);
    const int64_t i = rows[t % n_rows];
    const int hk = h / a.group, hd = a.hd;
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, nw = blockDim.x / kWarp;
    int64_t j0, j1;
    key_range(a, i, &j0, &j1);
    float* row = probs + t * ld_probs;
    for (int64_t j = threadIdx.x; j < ld_probs; j += blockDim.x)
        if (j < j0 || j >= j1) row[j] = 0.f;
    const float* qi = q + i * a.ldq + int64_t(h) * hd;
    float mx = -INFINITY;
    for (int64_t j = j0 + warp; j < j1; j += nw) {
        const float* kj = k + j * a.ldk + int64_t(hk) * hd;
        float s = 0.f;
        for (int e = lane; e < hd; e += kWarp) s += qi[e] * kj[e];
        s = warp_sum(s) * a.scale;
        if (lane == 0) row[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, red);  // the barrier also publishes row[]
    double sum = 0;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const float e = expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    sum = block_sum(sum, redd);
    const float inv = float(1.0 / sum);
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) row[j] *= inv;
}


// ---- Tensor-core prefill attention (head_dim 64 or 128): FlashAttention-2's loop with WMMA.
// A block takes 64 (query row, head) pairs of one KV group; each of its 4 warps owns 16 rows end to end (scores,
// online softmax, output), so only the K/V tile loads need the whole block. Q, K, V and the
// probabilities are rounded to F16 as they enter shared memory (Q pre-scaled, so scores stay in
// range); scores and the running output accumulate in F32.
namespace tc {

constexpr int TBR = 64, TBC = 64, TW = 4, PAD = 8;

template <int D>
struct Smem {
    static constexpr int LQ = D + PAD, LS = TBC + 4, LP = TBC + PAD, LO = D + 4;
    static constexpr size_t q = size_t(TBR) * LQ * 2, k = size_t(TBC) * LQ * 2, v = size_t(TBC) * LQ * 2;
    static constexpr size_t sc = size_t(TBR) * LS * 4, p = size_t(TBR) * LP * 2, o = size_t(TBR) * LO * 4;
    static constexpr size_t stats = size_t(TBR) * 3 * 4;
    static constexpr size_t bytes = q + k + v + sc + p + o + stats;
};

template <int D>
__global__ void __launch_bounds__(TW * kWarp) k_attention_tc(const float* __restrict__ q, const float* __restrict__ k,
                                                             const float* __restrict__ v, float* __restrict__ out, Dev a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using namespace nvcuda;
    using S = Smem<D>;
    VLA_DYNAMIC_SMEM(uint8_t, raw);
    __half* Qs = reinterpret_cast<__half*>(raw);
    __half* Ks = reinterpret_cast<__half*>(raw + S::q);
    __half* Vs = reinterpret_cast<__half*>(raw + S::q + S::k);
    float* Ss = reinterpret_cast<float*>(raw + S::q + S::k + S::v);
    __half* Ps = reinterpret_cast<__half*>(raw + S::q + S::k + S::v + S::sc);
    float* Os = reinterpret_cast<float*>(raw + S::q + S::k + S::v + S::sc + S::p);
    float* Ms = reinterpret_cast<float*>(raw + S::q + S::k + S::v + S::sc + S::p + S::o);
    float* Ls = Ms + TBR;
    float* Cs = Ls + TBR;
    __shared__ int64_t s_hi;

    // Grouped-query aware: the block serves KV head hk, and its 64 rows are "virtual rows"
    // (query row i, head g of the group), so each K/V tile is loaded once for the whole group.
    const int hk = blockIdx.y;
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const int64_t vr0 = int64_t(blockIdx.x) * TBR, n_vr = a.n_q * a.group;
    auto row_i = [&](int r) { return (vr0 + r) / a.group; };
    auto row_h = [&](int r) { return hk * a.group + int((vr0 + r) % a.group); };

    for (int t = threadIdx.x; t < TBR * D; t += blockDim.x) {
        const int r = t / D, e = t % D;
        Qs[r * S::LQ + e] =
            __float2half_rn(vr0 + r < n_vr ? q[row_i(r) * a.ldq + int64_t(row_h(r)) * D + e] * a.scale : 0.f);
    }
    for (int t = threadIdx.x; t < TBR * S::LO; t += blockDim.x) Os[t] = 0.f;
    for (int t = threadIdx.x; t < TBR; t += blockDim.x) {
        Ms[t] = -INFINITY;
        Ls[t] = 0.f;
    }
    int64_t lo = INT64_MAX, hi = 0;
    if (threadIdx.x == 0) {
        for (int r = 0; r < TBR && vr0 + r < n_vr; ++r) {
            int64_t j0, j1;
            key_range(a, row_i(r), &j0, &j1);
            lo = imin(lo, j0);
            hi = imax(hi, j1);
        }
        s_hi = hi;
    }
    __syncthreads();
    hi = s_hi;
    // The first key any row needs (0 for causal; the batch block's start otherwise).
    int64_t j_first;
    {
        int64_t j0, j1;
        key_range(a, row_i(0), &j0, &j1);
        j_first = j0 / TBC * TBC;
    }

    // Rows of this warp, their key ranges.
    const int r0 = warp * 16;
    for (int64_t kt = j_first; kt < hi; kt += TBC) {
        for (int t = threadIdx.x; t < TBC * D; t += blockDim.x) {
            const int r = t / D, e = t % D;
            const int64_t j = kt + r;
            const bool ok = j < a.n_kv;
            Ks[r * S::LQ + e] = __float2half_rn(ok ? k[j * a.ldk + int64_t(hk) * D + e] : 0.f);
            Vs[r * S::LQ + e] = __float2half_rn(ok ? v[j * a.ldv + int64_t(hk) * D + e] : 0.f);
        }
        __syncthreads();
        // S = Q K^T for this warp's 16 rows x 64 keys.
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> sacc[TBC / 16];
#pragma unroll
            for (int c = 0; c < TBC / 16; ++c) wmma::fill_fragment(sacc[c], 0.f);
#pragma unroll
            for (int kk = 0; kk < D; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> af;
                wmma::load_matrix_sync(af, Qs + r0 * S::LQ + kk, S::LQ);
#pragma unroll
                for (int c = 0; c < TBC / 16; ++c) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> bf;
                    wmma::load_matrix_sync(bf, Ks + c * 16 * S::LQ + kk, S::LQ);
                    wmma::mma_sync(sacc[c], af, bf, sacc[c]);
                }
            }
#pragma unroll
            for (int c = 0; c < TBC / 16; ++c)
                wmma::store_matrix_sync(Ss + r0 * S::LS + c * 16, sacc[c], S::LS, wmma::mem_row_major);
        }
        __syncwarp();
        // Online softmax over the tile, row by row (two keys per lane).
        for (int rr = 0; rr < 16; ++rr) {
            const int r = r0 + rr;
            int64_t j0 = 0, j1 = 0;
            if (vr0 + r < n_vr) key_range(a, row_i(r), &j0, &j1);
            float sv[2];
            float tmax = -INFINITY;
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                const int c = lane + u * kWarp;
                const int64_t j = kt + c;
                sv[u] = (j >= j0 && j < j1) ? Ss[r * S::LS + c] : -INFINITY;
                tmax = fmaxf(tmax, sv[u]);
            }
            tmax = warp_max(tmax);
            const float m_old = Ms[r];
            const float m_new = fmaxf(m_old, tmax);
            float psum = 0.f;
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                const float p = m_new == -INFINITY ? 0.f : expf(sv[u] - m_new);
                Ps[r * S::LP + lane + u * kWarp] = __float2half_rn(p);
                psum += p;
            }
            psum = warp_sum(psum);
            const float corr = (m_new == -INFINITY) ? 1.f : expf(m_old - m_new);
            if (lane == 0) {
                Ms[r] = m_new;
                Ls[r] = Ls[r] * corr + psum;
                Cs[r] = corr;
            }
        }
        __syncwarp();
        // Rescale this warp's output rows, then O += P V on the tensor cores.
        for (int t = lane; t < 16 * D; t += kWarp) {
            const int r = r0 + t / D, e = t % D;
            Os[r * S::LO + e] *= Cs[r];
        }
        __syncwarp();
#pragma unroll
        for (int c = 0; c < D / 16; ++c) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> oacc;
            wmma::load_matrix_sync(oacc, Os + r0 * S::LO + c * 16, S::LO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < TBC; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, Ps + r0 * S::LP + kk, S::LP);
                wmma::load_matrix_sync(vf, Vs + kk * S::LQ + c * 16, S::LQ);
                wmma::mma_sync(oacc, pf, vf, oacc);
            }
            wmma::store_matrix_sync(Os + r0 * S::LO + c * 16, oacc, S::LO, wmma::mem_row_major);
        }
        __syncthreads();  // K/V tiles are overwritten next
    }
    for (int t = lane; t < 16 * D; t += kWarp) {
        const int r = r0 + t / D, e = t % D;
        if (vr0 + r >= n_vr) continue;
        const float l = Ls[r];
        out[row_i(r) * a.ldo + int64_t(row_h(r)) * D + e] = l > 0.f ? Os[r * S::LO + e] / l : 0.f;
    }
#else
    __trap();
#endif
}

template <int D>
bool launch(const float* q, const float* k, const float* v, float* out, const Dev& d, cudaStream_t s) {
    static const bool configured =
        cudaFuncSetAttribute(k_attention_tc<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Smem<D>::bytes)) == cudaSuccess;
    if (!configured) {
        cudaGetLastError();
        return false;  // the caller takes the SIMT kernel
    }
    const dim3 grid(unsigned((d.n_q * d.group + TBR - 1) / TBR), unsigned(d.n_kv_head));
    VLA_LAUNCH(k_attention_tc<D>, grid, TW * kWarp, Smem<D>::bytes, s, q, k, v, out, d);
    return true;
}

}  // namespace tc

Dev to_dev(const AttnShape& s) {
    const auto& p = s.p;
    Dev d;
    d.n_q = s.n_q;
    d.ldq = s.ldq;
    d.ldk = s.ldk;
    d.ldv = s.ldv;
    d.ldo = s.ldo;
    d.n_kv = p.n_kv;
    d.kv_offset = p.kv_offset;
    d.n_head = p.n_head;
    d.n_kv_head = p.n_kv_head;
    d.group = p.n_head / p.n_kv_head;
    d.hd = p.head_dim;
    d.causal = p.causal;
    d.scale = p.scale;
    const int nb = p.causal ? 1 : (p.n_batch > 0 ? p.n_batch : 1);
    d.qb = p.causal ? s.n_q : std::max<int64_t>(1, s.n_q / nb);
    d.kb = p.causal ? p.n_kv : p.n_kv / nb;
    return d;
}

size_t smem_bytes(int dpl, int hd) { return sizeof(float) * (size_t(BR) * dpl * kWarp + size_t(BC) * (hd + 1) + size_t(BC) * dpl * kWarp); }

template <int DPL>
void launch(const float* q, const float* k, const float* v, float* out, const Dev& d, int splits, float* partial, cudaStream_t s) {
    const size_t sm = smem_bytes(DPL, d.hd);
    static bool configured = false;  // opt in to > 48 KB of dynamic shared memory once
    if (!configured) {
        cudaFuncSetAttribute(k_attention<DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes(DPL, DPL * kWarp)));
        configured = true;
    }
    const int64_t n_vrows = d.n_q * d.group;
    const dim3 grid(unsigned((n_vrows + BR - 1) / BR), unsigned(d.n_kv_head), unsigned(splits));
    VLA_LAUNCH(k_attention<DPL>, grid, kWarps * kWarp, sm, s, q, k, v, out, d, splits, partial);
}

}  // namespace

int attention_splits(const AttnShape& a, int n_sm) {
    if (attention_uses_tensor_cores(a)) return 1;
    const Dev d = to_dev(a);
    const int64_t blocks = (d.n_q * d.group + BR - 1) / BR * d.n_kv_head;
    const int64_t keys = d.causal ? d.n_kv : d.kb;
    if (blocks >= 2 * int64_t(n_sm) || keys < 4 * BC) return 1;
    int64_t sp = (2 * int64_t(n_sm) + blocks - 1) / blocks;
    sp = std::min<int64_t>(sp, keys / (2 * BC));  // at least two tiles per split
    return int(std::max<int64_t>(1, std::min<int64_t>(sp, 64)));
}

int64_t attention_partial_floats(const AttnShape& a, int splits) {
    if (splits <= 1) return 0;
    return int64_t(splits) * a.n_q * a.p.n_head * (a.p.head_dim + 2);
}

bool attention_uses_tensor_cores(const AttnShape& a) {
    static const bool simt_only = [] {
        const char* e = std::getenv("VLA_CUDA_ATTN");
        return e && std::strcmp(e, "simt") == 0;
    }();
    if (simt_only || a.n_q < 32) return false;
    if (a.p.head_dim == 64) return int64_t(tc::Smem<64>::bytes) <= a.max_smem;
    if (a.p.head_dim == 128) return int64_t(tc::Smem<128>::bytes) <= a.max_smem;
    return false;
}

void attention(const float* q, const float* k, const float* v, float* out, const AttnShape& a, int splits, float* partial,
               cudaStream_t s) {
    if (a.n_q <= 0) return;
    const Dev d = to_dev(a);
    if (attention_uses_tensor_cores(a)) {
        if (d.hd == 64 ? tc::launch<64>(q, k, v, out, d, s) : tc::launch<128>(q, k, v, out, d, s)) return;
        splits = 1;  // no tensor-core launch here: SIMT, unsplit (the caller sized no partials)
    }
    const int dpl = (d.hd + kWarp - 1) / kWarp;
    if (dpl <= 1) launch<1>(q, k, v, out, d, splits, partial, s);
    else if (dpl <= 2) launch<2>(q, k, v, out, d, splits, partial, s);
    else if (dpl <= 4) launch<4>(q, k, v, out, d, splits, partial, s);
    else launch<8>(q, k, v, out, d, splits, partial, s);  // head_dim <= 256 (checked by the backend)
    if (splits > 1) {
        constexpr int warps = 8;
        const int64_t pairs = d.n_q * d.n_head;
        VLA_LAUNCH(k_attention_combine, unsigned((pairs + warps - 1) / warps), warps * kWarp, 0, s, partial, d, splits, out);
    }
}

void attention_probs(const float* q, const float* k, const int32_t* rows, int64_t n_rows, float* probs, int64_t ld_probs,
                     const AttnShape& a, cudaStream_t s) {
    if (n_rows <= 0) return;
    const Dev d = to_dev(a);
    VLA_LAUNCH(k_attention_probs, unsigned(int64_t(d.n_head) * n_rows), 256, 0, s, q, k, rows, n_rows, probs, ld_probs, d);
}

}  // namespace vla::cuda
