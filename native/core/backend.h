// The backend interface: memory and ops (internal: shared by the core and the backends, not
// part of the public API in native/include/vla/). The model core (native/core) runs the forward
// pass only through this interface, so a backend (cpu/ always, cuda/ when built) is a drop-in.
// Tensors are 2-D, row-major: [rows, cols]. Activations are always F32; weights keep the dtype
// the backend chose at upload (CPU: the file's own, zero-copy from the mmap; CUDA: F16 or BF16).
// Per-row vectors of the decoder sequence (positions, kinds, scores, flags) are [n, 1] columns,
// so rows() views and gather_rows() work on them as on activations.
//
// Synchronisation contract: ops are queued in order on the backend's stream and return at
// once; read()/read_i32() wait for the queued work and are the only device-to-host syncs. Host
// arrays passed to ops (rows, ids, idx) may be reused as soon as the call returns.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "safetensors.h"
#include "vla/status.h"
#include "vla/types.h"

namespace vla {

struct Tensor {
    void* data = nullptr;          // backend memory (host for cpu, device for cuda)
    DType dtype = DType::f32;
    int64_t rows = 0, cols = 0;
    std::shared_ptr<void> mem;     // owner; empty for views into weights or other tensors
    int64_t numel() const { return rows * cols; }
    bool empty() const { return data == nullptr; }
};

struct AttentionParams {
    int n_head = 0, n_kv_head = 0, head_dim = 0;  // GQA: query head h reads kv head h / (n_head / n_kv_head)
    int64_t n_kv = 0;           // keys/values used: the first n_kv rows of k and v
    int64_t kv_offset = 0;      // causal: query row i sits at key index kv_offset + i
    bool causal = true;
    int n_batch = 1;            // non-causal only: q and k/v split into n_batch equal blocks attending within
    float scale = 0.f;          // usually 1/sqrt(head_dim)
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const = 0;

    // F32 activation tensor [rows, cols], uninitialised.
    virtual Status alloc(int64_t rows, int64_t cols, Tensor* out) = 0;
    // A weight for the ops below; `src` stays valid for the backend's lifetime.
    virtual Status upload_weight(const TensorView& src, int64_t rows, int64_t cols, Tensor* out) = 0;
    // Whether upload_weight kept pointers into `src` (CPU: zero-copy) rather than copies (CUDA).
    // When it did not, the engine frees the file's bytes once every weight is uploaded.
    virtual bool borrows_weights() const { return true; }
    // A weight [rows, cols] of random values ~ N(0, std) + mean, generated where it lives
    // (benchmarks with the shapes of models too large to ship).
    virtual Status random_weight(int64_t rows, int64_t cols, uint64_t seed, float mean, float std, Tensor* out) = 0;
    // Host <-> tensor copies of F32 values, `n` floats starting at float index `offset`.
    virtual void write(Tensor& dst, const float* src, int64_t n, int64_t offset = 0) = 0;
    virtual void read(const Tensor& src, float* dst, int64_t n, int64_t offset = 0) = 0;
    // I32 tensor [rows, cols], uninitialised: indices, positions, flags and counters.
    virtual Status alloc_i32(int64_t rows, int64_t cols, Tensor* out) = 0;
    virtual void write_i32(Tensor& dst, const int32_t* src, int64_t n, int64_t offset = 0) = 0;
    virtual void read_i32(const Tensor& src, int32_t* dst, int64_t n, int64_t offset = 0) = 0;
    // A view of rows [row0, row0 + n) of t (no copy).
    Tensor rows(const Tensor& t, int64_t row0, int64_t n) const;

    // y[n, m] = x[n, k] * w[m, k]^T (+ bias[m]); w of any weight dtype.
    virtual void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;
    // y = (x - mean) / sqrt(var + eps) * w + b, per row. y may alias x.
    virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) = 0;
    // y = x / sqrt(mean(x^2) + eps) * w, per row. y may alias x.
    virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& y) = 0;
    // y += x (same shape).
    virtual void add(Tensor& y, const Tensor& x) = 0;
    // y[y_row0 + i] += table[t_row0 + (broadcast ? 0 : i)] for i < n; table of any dtype.
    virtual void add_rows(Tensor& y, int64_t y_row0, const Tensor& table, int64_t t_row0, int64_t n,
                          bool broadcast) = 0;
    virtual void unary(Unary op, Tensor& y) = 0;  // in place
    // y = silu(gate) * up; y may alias gate.
    virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& y) = 0;
    // Rotary embedding, Llama's rotate-half layout, on x [n, n_heads * head_dim] in place;
    // positions: I32 [n, 1] (backend memory: pruning moves them on the device).
    virtual void rope(Tensor& x, int n_heads, int head_dim, const Tensor& positions, float theta) = 0;
    // out[n_q, n_head * head_dim] = softmax(q k^T * scale + mask) v.
    virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                           const AttentionParams& p) = 0;
    // Attention probabilities of selected query rows, the small op pruning needs beside the
    // fused attention: probs[h * n_rows + r, j] = softmax_j(q[rows[r]] . k[j] * scale + mask) for
    // every query head h over the first p.n_kv keys (0 where masked). rows on the host.
    virtual void attention_probs(const Tensor& q, const Tensor& k, const int32_t* rows, int64_t n_rows, Tensor& probs,
                                 const AttentionParams& p) = 0;
    // out[out_row0 + i] = table[ids[i]] (dtype converted to F32); ids on the host, checked by caller.
    virtual void get_rows(const Tensor& table, const int32_t* ids, int64_t n, Tensor& out, int64_t out_row0) = 0;
    // dst[dst_row0 + i] = src[src_row0 + i], i < n (F32, same cols).
    virtual void copy_rows(const Tensor& src, int64_t src_row0, int64_t n, Tensor& dst, int64_t dst_row0) = 0;
    // dst[i] = src[idx[i]], i < n; idx on the host. src and dst F32 or I32 (same dtype and cols).
    virtual void gather_rows(const Tensor& src, const int32_t* idx, int64_t n, Tensor& dst) = 0;
    // The same with idx an I32 [>= n, 1] tensor: the compaction op of visual-token pruning,
    // whose indices are computed on the device.
    virtual void gather_rows_idx(const Tensor& src, const Tensor& idx, int64_t n, Tensor& dst) = 0;
    // Patch embedding of `n_img` images img[n_img * 3, S * S] (planar RGB) with w [D, 3 * P * P]
    // into out rows [img * (1 + Np) + 1 + p] (row 0 of each image is left for the class token).
    virtual void patch_embed(const Tensor& img, int n_img, int S, int P, const Tensor& w, Tensor& out) = 0;
    // Preprocess one frame into rows [3 * slot, 3 * slot + 3) of out [.., size * size].
    virtual Status preprocess(const ImageInput& in, const PreprocessParams& p, Tensor& out, int slot) = 0;
    // ---- Visual-token pruning on the backend (no host round trip per layer). `kind` is the
    // decoder sequence's row kind, I32 [n, 1]: 0 other (text, queries), 1 visual, 2 merged; the
    // candidates of every selection are the rows with kind != 0.
    //
    // scores[j] = mean over the n_rows rows r of probs[r, j] (double accumulation) where
    // kind[j] != 0, else 0; probs [n_rows, >= n], scores F32 [n, 1].
    virtual void prune_scores(const Tensor& probs, int64_t n_rows, const Tensor& kind, int64_t n, Tensor& scores) = 0;
    // Sum over heads h of the MI (docs/autoprune.md, "Mutual information") of probs rows [h * nr, (h + 1) * nr) over the
    // candidate columns j < n, in double; stored as a float pair (hi, lo = mi - hi) at
    // out[0, 2 * slot], so the host recovers the double. out F32 [1, >= 2 * slot + 2].
    virtual void prune_mi(const Tensor& probs, int n_heads, int64_t nr, const Tensor& kind, int64_t n, Tensor& out,
                          int64_t slot) = 0;
    // AutoPrune's first stage: scores[j] = prior[j] + float(alpha * (mi / divisor)) * scores[j]
    // on candidates (mi: the pair at mi[0, 2 * slot]), F32 arithmetic as the reference.
    virtual void prune_prior_scores(Tensor& scores, const Tensor& prior, const Tensor& kind, int64_t n, const Tensor& mi,
                                    int64_t slot, double alpha, double divisor) = 0;
    // flags[j] = 1 for the k candidates (excluding rows where exclude[j] != 0) with the highest
    // scores, ties to the lower j; 0 elsewhere. flags I32 [n, 1]. k <= candidates (caller).
    virtual void prune_topk(const Tensor& scores, const Tensor& kind, const Tensor* exclude, int64_t n, int64_t k,
                            Tensor& flags) = 0;
    // idx[0..) = ascending j < n with flags[j] != 0 or (keep_other and kind[j] == 0); the
    // caller knows the count. idx I32 [>= count, 1].
    virtual void prune_index(const Tensor& flags, const Tensor& kind, bool keep_other, int64_t n, Tensor& idx) = 0;
    // After a compaction that put c merged rows at [a, a + c) of an n-row sequence: kind = 2,
    // view = -1 and pos = (a > 0 ? pos[a - 1] + 1 : 0) there; then, when reindex, pos[i] = i.
    virtual void prune_merged_meta(Tensor& kind, Tensor& view, Tensor& pos, int64_t a, int64_t c, int64_t n,
                                   bool reindex) = 0;
    // counts[row, v] = visual rows of view v (v < n_views), counts[row, n_views] = visual +
    // merged rows, counts[row, n_views + 1] = merged rows. counts I32 [.., n_views + 2].
    virtual void prune_count(const Tensor& kind, const Tensor& view, int64_t n, int n_views, Tensor& counts,
                             int64_t row) = 0;
    // DPC-kNN merging of x [m, d] into out [c, d], density ties by the reference's rule or ours
    // (docs/autoprune.md, "Positions and recycling"); the CPU's prune_dpc_knn_merge.
    virtual Status dpc_knn_merge(const Tensor& x, int64_t c, Tensor& out, bool reference_ties) = 0;
    // The CLS-attention prior (FasterVLM-style) from the class rows' probabilities
    // probs [n_heads * n_views, n_views * Tv] (row h * n_views + v; Tv tower tokens per view):
    // prior[v * pv + i] = masked[v * pv + i] ? 0 : mean_h probs[h * n_views + v, v * Tv + first + i], i < pv;
    // prior F32 [>= n_views * pv, 1], masked I32 [n_views * pv, 1].
    virtual void cls_prior(const Tensor& probs, int n_heads, int n_views, int64_t Tv, int64_t first, int64_t pv,
                           const Tensor& masked, Tensor& prior) = 0;
    // out[0, 0] = index of the largest of x's n values (ties: the lowest); out I32.
    virtual void argmax(const Tensor& x, int64_t n, Tensor& out) = 0;

    // Waits for queued work (no-op on cpu).
    virtual void synchronize() {}
    // The first error an op could not return (device fault, scratch allocation), cleared by
    // the call; the engine checks it after each stage. OK on cpu.
    virtual Status take_error() { return Status::OK(); }
    // Device-to-host reads so far (read/read_i32 calls): each is a sync on a device backend.
    int64_t host_reads() const { return host_reads_; }
    // Bytes of activation memory currently allocated through alloc() / alloc_i32().
    virtual int64_t allocated_bytes() const = 0;
    // The most allocated_bytes() reached since the last reset_peak().
    int64_t peak_bytes() const { return peak_.load(); }
    void reset_peak() { peak_.store(allocated_bytes()); }

protected:
    void note_allocated(int64_t now) {
        int64_t p = peak_.load();
        while (now > p && !peak_.compare_exchange_weak(p, now)) {
        }
    }
    int64_t host_reads_ = 0;
    std::atomic<int64_t> peak_{0};
};

enum class WeightDType { auto_, f16, bf16 };

struct BackendOptions {
    int n_threads = 0;  // cpu: 0 = all hardware threads
    int device = 0;     // cuda: device ordinal
    // cuda: the weights' dtype on the device. auto: F16/BF16 files keep theirs; F32 becomes F16,
    // or BF16 when a tensor's magnitude exceeds F16's range.
    // cpu: auto gives F16/BF16 weight matrices an F32 copy on first use when a BLAS does the
    // products (native/cpu/blas.h; up to half the free memory); f16/bf16 keep the file's weights
    // mmapped in place (less memory).
    WeightDType weight_dtype = WeightDType::auto_;
    // cuda: bytes of the activation pool reserved at load (0: grow on demand, kept for reuse).
    int64_t pool_bytes = 0;
    // Activation memory this backend may hold at once (0: no limit): beyond it alloc() fails
    // with Code::oom, as a full device would (Jetson's memory is shared with the rest of the car).
    int64_t max_activation_bytes = 0;
    // cpu: matrix products and attention through the BLAS where one loads (native/cpu/blas.h);
    // false keeps the builtin kernels (the reference the BLAS path is tested against).
    bool cpu_blas = true;
};

// "cpu" always; "cuda" where built and a device is present. Code::backend otherwise.
// (backend_list() and backend_cuda_unavailable_reason() are public: vla/engine.h.)
Status backend_create(const std::string& name, const BackendOptions& opts, std::unique_ptr<Backend>* out);

// What the CPU's matrix products run on: the BLAS loaded at run time, or "builtin"
// (defined in native/cpu/blas.cpp; declared here so the engine can report it).
std::string gemm_provider();

}  // namespace vla
