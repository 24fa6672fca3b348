// The CUDA backend: the Backend interface on one NVIDIA GPU.
//  - one non-blocking stream; every op is queued on it and returns at once. Only read() and
//    read_i32() wait (they are the device-to-host syncs the engine counts).
//  - activations come from CUDA's stream-ordered memory pool (cudaMallocAsync), kept reserved
//    between inferences (release threshold: never) and optionally pre-sized at load; freeing a
//    tensor is stream-ordered too, so a buffer is reused only after the work that reads it.
//  - host data goes through pinned staging blocks, each guarded by an event, so writes are
//    asynchronous and the caller's arrays are free as soon as a call returns.
//  - weights: matrices as F16 or BF16 (converted on the GPU at load when the file holds another
//    dtype), 1-row tensors (norms, biases, class embedding) as F32: exact and negligible in size.
//  - cuBLAS (when built with it) for products with more than 8 rows, else the WMMA kernels.
//  - errors an op cannot return (a failed launch, a scratch allocation, a device fault found at
//    the next sync) are kept and handed to the engine by take_error().
#include <cuda_runtime.h>
#ifdef VLA_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels.h"
#include "backend.h"
#include "image.h"

namespace vla {

namespace {

std::string cuda_msg(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

// State shared by the backend and every tensor it handed out, so a tensor freed after the
// backend still frees into a live stream.
struct DeviceState {
    int device = 0;
    cudaStream_t stream = nullptr;
    bool pools = false;  // stream-ordered allocator available
    std::atomic<int64_t> allocated{0};
    ~DeviceState() {
        if (stream) {
            cudaStreamSynchronize(stream);
            cudaStreamDestroy(stream);
        }
    }
};

// Pinned host memory for host<->device copies: 1 MiB blocks (or one the size of a larger
// copy), each filled front to back by successive copies and reusable once the event recorded
// after its last copy has completed.
class Staging {
public:
    explicit Staging(std::shared_ptr<DeviceState> st) : st_(std::move(st)) {}
    ~Staging() {
        for (auto& b : blocks_) {
            cudaEventSynchronize(b.ev);
            cudaEventDestroy(b.ev);
            cudaFreeHost(b.p);
        }
    }
    // bytes of pinned memory not read by any copy still queued; nullptr on failure (`err` says why).
    void* acquire(size_t bytes, size_t* index, cudaError_t* err) {
        bytes = (bytes + 63) / 64 * 64;
        if (cur_ < blocks_.size() && blocks_[cur_].used + bytes <= blocks_[cur_].cap) return take(cur_, bytes, index);
        for (size_t i = 0; i < blocks_.size(); ++i) {
            if (blocks_[i].cap < bytes || !idle(blocks_[i])) continue;
            blocks_[i].used = 0;
            cur_ = i;
            return take(i, bytes, index);
        }
        Block b;
        b.cap = std::max<size_t>(bytes, size_t(1) << 20);
        if ((*err = cudaHostAlloc(&b.p, b.cap, cudaHostAllocDefault)) != cudaSuccess) return nullptr;
        if ((*err = cudaEventCreateWithFlags(&b.ev, cudaEventDisableTiming)) != cudaSuccess) {
            cudaFreeHost(b.p);
            return nullptr;
        }
        blocks_.push_back(b);
        cur_ = blocks_.size() - 1;
        return take(cur_, bytes, index);
    }
    void mark(size_t index) { cudaEventRecord(blocks_[index].ev, st_->stream); }

private:
    struct Block {
        void* p = nullptr;
        size_t cap = 0, used = 0;
        cudaEvent_t ev = nullptr;
    };
    void* take(size_t i, size_t bytes, size_t* index) {
        void* p = static_cast<uint8_t*>(blocks_[i].p) + blocks_[i].used;
        blocks_[i].used += bytes;
        *index = i;
        return p;
    }
    static bool idle(const Block& b) {
        const cudaError_t e = cudaEventQuery(b.ev);
        if (e == cudaErrorNotReady) cudaGetLastError();  // "not yet" is recorded as the last error: not ours
        return e == cudaSuccess;  // a device error: the block stays busy, and the next sync reports it
    }
    std::shared_ptr<DeviceState> st_;
    std::vector<Block> blocks_;
    size_t cur_ = 0;
};

class CudaBackend final : public Backend {
public:
    CudaBackend(std::shared_ptr<DeviceState> st, const BackendOptions& o, int n_sm, int64_t max_smem)
        : st_(std::move(st)), staging_(st_), opts_(o), n_sm_(n_sm), max_smem_(max_smem) {}
    ~CudaBackend() override {
        bind();
        cudaStreamSynchronize(st_->stream);
#ifdef VLA_HAVE_CUBLAS
        if (cublas_) cublasDestroy(cublas_);
#endif
    }

    Status init() {
#ifdef VLA_HAVE_CUBLAS
        if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) return {Code::backend, "cuda: cublasCreate failed"};
        cublasSetStream(cublas_, st_->stream);
#endif
        if (opts_.pool_bytes > 0 && st_->pools) {
            // Reserve the pool now: allocate once and give it back; the pool keeps it.
            void* p = nullptr;
            cudaError_t e = cudaMallocAsync(&p, size_t(opts_.pool_bytes), st_->stream);
            if (e != cudaSuccess) {
                cudaGetLastError();
                return oom(opts_.pool_bytes, "reserving the activation pool");
            }
            cudaFreeAsync(p, st_->stream);
            cudaStreamSynchronize(st_->stream);
        }
        return Status::OK();
    }

    const char* name() const override { return "cuda"; }
    bool borrows_weights() const override { return false; }  // upload_weight copies to the device

    // ---- memory
    Status alloc(int64_t rows, int64_t cols, Tensor* out) override { return alloc_typed(rows, cols, DType::f32, out); }
    Status alloc_i32(int64_t rows, int64_t cols, Tensor* out) override { return alloc_typed(rows, cols, DType::i32, out); }

    Status upload_weight(const TensorView& src, int64_t rows, int64_t cols, Tensor* out) override {
        bind();
        const int64_t n = rows * cols;
        const DType to = rows == 1 ? DType::f32 : matrix_dtype(src);
        Tensor t;
        VLA_RETURN_IF_ERROR(alloc_weight(rows, cols, to, &t));
        if (src.dtype == to) {
            VLA_RETURN_IF_ERROR(cuda_status(cudaMemcpyAsync(t.data, src.data, src.nbytes, cudaMemcpyHostToDevice, st_->stream),
                                            "uploading " + src.name));
        } else {
            void* tmp = nullptr;
            cudaError_t e = cudaMalloc(&tmp, src.nbytes);
            if (e != cudaSuccess) {
                cudaGetLastError();
                return oom(int64_t(src.nbytes), "converting " + src.name);
            }
            e = cudaMemcpyAsync(tmp, src.data, src.nbytes, cudaMemcpyHostToDevice, st_->stream);
            if (e == cudaSuccess) cuda::convert_weight(tmp, src.dtype, n, t.data, to, st_->stream);
            cudaStreamSynchronize(st_->stream);
            cudaFree(tmp);
            VLA_RETURN_IF_ERROR(cuda_status(e == cudaSuccess ? cudaGetLastError() : e, "converting " + src.name));
        }
        *out = t;
        return Status::OK();
    }

    Status random_weight(int64_t rows, int64_t cols, uint64_t seed, float mean, float std, Tensor* out) override {
        bind();
        const DType to = rows == 1 ? DType::f32 : (opts_.weight_dtype == WeightDType::bf16 ? DType::bf16 : DType::f16);
        Tensor t;
        VLA_RETURN_IF_ERROR(alloc_weight(rows, cols, to, &t));
        cuda::fill_random(t.data, to, rows * cols, seed, mean, std, st_->stream);
        VLA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "random weights"));
        *out = t;
        return Status::OK();
    }

    void write(Tensor& dst, const float* src, int64_t n, int64_t offset) override {
        bind();
        h2d(static_cast<float*>(dst.data) + offset, src, size_t(n) * sizeof(float));
    }
    void write_i32(Tensor& dst, const int32_t* src, int64_t n, int64_t offset) override {
        bind();
        h2d(static_cast<int32_t*>(dst.data) + offset, src, size_t(n) * sizeof(int32_t));
    }
    void read(const Tensor& src, float* dst, int64_t n, int64_t offset) override {
        bind();
        ++host_reads_;
        if (src.dtype == DType::f32 || src.dtype == DType::i32) {
            d2h(dst, static_cast<const float*>(src.data) + offset, size_t(n) * sizeof(float));
            return;
        }
        // A half-precision weight read back as F32 (tests): convert on the device first.
        Tensor tmp;
        if (!scratch(n, &tmp)) return;
        const uint8_t* p = static_cast<const uint8_t*>(src.data) + size_t(offset) * dtype_size(src.dtype);
        cuda::convert_weight(p, src.dtype, n, tmp.data, DType::f32, st_->stream);
        d2h(dst, tmp.data, size_t(n) * sizeof(float));
    }
    void read_i32(const Tensor& src, int32_t* dst, int64_t n, int64_t offset) override {
        bind();
        ++host_reads_;
        d2h(dst, static_cast<const int32_t*>(src.data) + offset, size_t(n) * sizeof(int32_t));
    }

    // ---- ops
    void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
        bind();
        const float* b = bias ? static_cast<const float*>(bias->data) : nullptr;
#ifdef VLA_HAVE_CUBLAS
        if (x.rows > 8 && (w.dtype == DType::f16 || w.dtype == DType::bf16)) {
            if (cublas_matmul(x, w, b, y)) return;
        }
#endif
        cuda::gemm_xwt(F(x), x.rows, x.cols, w.data, w.dtype, w.rows, b, F(y), st_->stream);
        check("matmul");
    }

    void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) override {
        bind();
        cuda::layer_norm(F(x), F(w), F(b), eps, x.rows, x.cols, F(y), st_->stream);
        check("layer_norm");
    }
    void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& y) override {
        bind();
        cuda::rms_norm(F(x), F(w), eps, x.rows, x.cols, F(y), st_->stream);
        check("rms_norm");
    }
    void add(Tensor& y, const Tensor& x) override {
        bind();
        cuda::add(F(y), F(x), y.numel(), st_->stream);
        check("add");
    }
    void add_rows(Tensor& y, int64_t y_row0, const Tensor& table, int64_t t_row0, int64_t n, bool broadcast) override {
        bind();
        cuda::add_rows(F(y) + y_row0 * y.cols, y.cols, table.data, table.dtype, t_row0, n, broadcast, st_->stream);
        check("add_rows");
    }
    void unary(Unary op, Tensor& y) override {
        bind();
        cuda::unary(op, F(y), y.numel(), st_->stream);
        check("unary");
    }
    void swiglu(const Tensor& gate, const Tensor& up, Tensor& y) override {
        bind();
        cuda::swiglu(F(gate), F(up), F(y), y.numel(), st_->stream);
        check("swiglu");
    }
    void rope(Tensor& x, int n_heads, int head_dim, const Tensor& positions, float theta) override {
        bind();
        const float* inv = inv_freq(head_dim, theta);
        if (!inv) return;
        cuda::rope(F(x), x.rows, x.cols, n_heads, head_dim, static_cast<const int32_t*>(positions.data), inv, st_->stream);
        check("rope");
    }

    void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) override {
        bind();
        if (p.head_dim > 256) return fail(Code::input, "cuda attention: head_dim " + std::to_string(p.head_dim) + " > 256");
        cuda::AttnShape a{q.rows, q.cols, k.cols, v.cols, out.cols, p, max_smem_};
        const int splits = cuda::attention_splits(a, n_sm_);
        Tensor partial;
        const int64_t nf = cuda::attention_partial_floats(a, splits);
        if (nf > 0 && !scratch(nf, &partial)) return;
        cuda::attention(F(q), F(k), F(v), F(out), a, splits, nf > 0 ? F(partial) : nullptr, st_->stream);
        check("attention");
    }

    void attention_probs(const Tensor& q, const Tensor& k, const int32_t* rows, int64_t n_rows, Tensor& probs,
                         const AttentionParams& p) override {
                             bind();
        Tensor r;
        if (!upload_i32(rows, n_rows, &r)) return;
        cuda::AttnShape a{q.rows, q.cols, k.cols, k.cols, probs.cols, p, max_smem_};
        cuda::attention_probs(F(q), F(k), I(r), n_rows, F(probs), probs.cols, a, st_->stream);
        check("attention_probs");
    }

    void get_rows(const Tensor& table, const int32_t* ids, int64_t n, Tensor& out, int64_t out_row0) override {
        bind();
        Tensor d;
        if (!upload_i32(ids, n, &d)) return;
        cuda::get_rows(table.data, table.dtype, table.cols, I(d), n, F(out) + out_row0 * out.cols, st_->stream);
        check("get_rows");
    }
    void copy_rows(const Tensor& src, int64_t src_row0, int64_t n, Tensor& dst, int64_t dst_row0) override {
        bind();
        if (n <= 0) return;
        const size_t es = 4;
        cudaError_t e = cudaMemcpyAsync(static_cast<uint8_t*>(dst.data) + size_t(dst_row0 * dst.cols) * es,
                                        static_cast<const uint8_t*>(src.data) + size_t(src_row0 * src.cols) * es,
                                        size_t(n * src.cols) * es, cudaMemcpyDeviceToDevice, st_->stream);
        if (e != cudaSuccess) fail(Code::internal, "cuda copy_rows: " + cuda_msg(e));
    }
    void gather_rows(const Tensor& src, const int32_t* idx, int64_t n, Tensor& dst) override {
        bind();
        Tensor d;
        if (!upload_i32(idx, n, &d)) return;
        gather_rows_idx(src, d, n, dst);
    }
    void gather_rows_idx(const Tensor& src, const Tensor& idx, int64_t n, Tensor& dst) override {
        bind();
        cuda::gather_rows(src.data, src.cols, I(idx), n, dst.data, st_->stream);
        check("gather_rows");
    }

    void patch_embed(const Tensor& img, int n_img, int S, int P, const Tensor& w, Tensor& out) override {
        bind();
        const int64_t g = S / P, np = g * g, kk = int64_t(3) * P * P;
        Tensor cols, res;
        if (!scratch(int64_t(n_img) * np * kk, &cols) || !scratch(int64_t(n_img) * np * w.rows, &res)) return;
        cols.rows = int64_t(n_img) * np;
        cols.cols = kk;
        res.rows = cols.rows;
        res.cols = w.rows;
        cuda::im2col(F(img), n_img, S, P, F(cols), st_->stream);
        matmul(cols, w, nullptr, res);
        cuda::scatter_patches(F(res), n_img, np, w.rows, F(out), st_->stream);
        check("patch_embed");
    }

    Status preprocess(const ImageInput& in, const PreprocessParams& p, Tensor& out, int slot) override {
        bind();
        VLA_RETURN_IF_ERROR(image_validate(in, "image"));
        if (p.size <= 0 || p.size > 4096) return {Code::input, "preprocess size must be in 1..4096"};
        const PreprocessGeometry geo = image_preprocess_geometry(in, p);
        cuda::ResizeGeometry g;
        g.W = in.width;
        g.H = in.height;
        g.step = in.step;
        g.ch = pixel_format_channels(in.format);
        g.bgr = in.format == PixelFormat::bgr8 || in.format == PixelFormat::bgra8;
        g.canvas_w = geo.canvas_w;
        g.canvas_h = geo.canvas_h;
        g.img_x0 = geo.img_x0;
        g.img_y0 = geo.img_y0;
        g.out_w = geo.out_w;
        g.out_h = geo.out_h;
        g.S = p.size;
        g.crop_x = geo.crop_x;
        g.crop_y = geo.crop_y;
        for (int c = 0; c < 3; ++c) {
            g.fill[c] = geo.fill[c];
            g.mean[c] = p.mean[c];
            g.std[c] = p.std[c];
        }
        const cuda::DeviceTaps* tx = taps(geo.canvas_w, geo.out_w);
        const cuda::DeviceTaps* ty = taps(geo.canvas_h, geo.out_h);
        if (!tx || !ty) return take_error();
        // The raw frame, uploaded once as the message carries it.
        const size_t raw_bytes = size_t(in.step) * size_t(in.height - 1) + size_t(in.width) * size_t(g.ch);
        Tensor raw, mid;
        VLA_RETURN_IF_ERROR(alloc_typed(1, int64_t((raw_bytes + 3) / 4), DType::i32, &raw));
        VLA_RETURN_IF_ERROR(alloc_typed(1, (int64_t(geo.canvas_h) * geo.out_w * 3 + 3) / 4, DType::i32, &mid));
        h2d(raw.data, in.data, raw_bytes);
        cuda::preprocess(static_cast<const uint8_t*>(raw.data), g, *tx, *ty, static_cast<uint8_t*>(mid.data),
                         F(out) + int64_t(slot) * 3 * out.cols, st_->stream);
        check("preprocess");
        return take_error();
    }

    // ---- pruning
    void prune_scores(const Tensor& probs, int64_t n_rows, const Tensor& kind, int64_t n, Tensor& scores) override {
        bind();
        cuda::prune_scores(F(probs), probs.cols, n_rows, I(kind), n, F(scores), st_->stream);
        check("prune_scores");
    }
    void prune_mi(const Tensor& probs, int n_heads, int64_t nr, const Tensor& kind, int64_t n, Tensor& out,
                  int64_t slot) override {
                      bind();
        Tensor part;  // doubles: two floats each
        if (!scratch(2 * std::max<int64_t>(1, cuda::prune_mi_partial_doubles(n_heads, n)), &part)) return;
        cuda::prune_mi(F(probs), probs.cols, n_heads, nr, I(kind), n, static_cast<double*>(part.data), F(out) + 2 * slot,
                       st_->stream);
        check("prune_mi");
    }
    void prune_prior_scores(Tensor& scores, const Tensor& prior, const Tensor& kind, int64_t n, const Tensor& mi,
                            int64_t slot, double alpha, double divisor) override {
                                bind();
        cuda::prune_prior_scores(F(scores), F(prior), I(kind), n, F(mi) + 2 * slot, alpha, divisor, st_->stream);
        check("prune_prior_scores");
    }
    void prune_topk(const Tensor& scores, const Tensor& kind, const Tensor* exclude, int64_t n, int64_t k,
                    Tensor& flags) override {
                        bind();
        cuda::prune_topk(F(scores), I(kind), exclude ? I(*exclude) : nullptr, n, k, I(flags), st_->stream);
        check("prune_topk");
    }
    void prune_index(const Tensor& flags, const Tensor& kind, bool keep_other, int64_t n, Tensor& idx) override {
        bind();
        cuda::prune_index(I(flags), I(kind), keep_other, n, I(idx), st_->stream);
        check("prune_index");
    }
    void prune_merged_meta(Tensor& kind, Tensor& view, Tensor& pos, int64_t a, int64_t c, int64_t n,
                           bool reindex) override {
                               bind();
        cuda::prune_merged_meta(I(kind), I(view), I(pos), a, c, n, reindex, st_->stream);
        check("prune_merged_meta");
    }
    void prune_count(const Tensor& kind, const Tensor& view, int64_t n, int n_views, Tensor& counts,
                     int64_t row) override {
                         bind();
        cuda::prune_count(I(kind), I(view), n, n_views, I(counts) + row * counts.cols, st_->stream);
        check("prune_count");
    }
    Status dpc_knn_merge(const Tensor& x, int64_t c, Tensor& out, bool reference_ties) override {
        bind();
        const int64_t m = x.rows;
        c = std::max<int64_t>(1, std::min(c, m));
        if (m <= 0) {  // as the CPU: one zero row
            cudaMemsetAsync(out.data, 0, size_t(x.cols) * sizeof(float), st_->stream);
            return Status::OK();
        }
        Tensor sc;
        VLA_RETURN_IF_ERROR(alloc_typed(1, (cuda::dpc_scratch_bytes(m, c) + 3) / 4, DType::i32, &sc));
        cuda::dpc_knn_merge(F(x), m, x.cols, c, reference_ties, sc.data, F(out), st_->stream);
        check("dpc_knn_merge");
        return take_error();
    }
    void cls_prior(const Tensor& probs, int n_heads, int n_views, int64_t Tv, int64_t first, int64_t pv,
                   const Tensor& masked, Tensor& prior) override {
                       bind();
        cuda::cls_prior(F(probs), probs.cols, n_heads, n_views, Tv, first, pv, I(masked), F(prior), st_->stream);
        check("cls_prior");
    }
    void argmax(const Tensor& x, int64_t n, Tensor& out) override {
        bind();
        cuda::argmax(F(x), n, I(out), st_->stream);
        check("argmax");
    }

    void synchronize() override {
        bind();
        cudaError_t e = cudaStreamSynchronize(st_->stream);
        if (e != cudaSuccess) fail(Code::internal, "cuda: device error: " + cuda_msg(e));
    }

    Status take_error() override {
        std::lock_guard<std::mutex> lock(err_mu_);
        Status s = error_;
        error_ = Status::OK();
        return s;
    }

    int64_t allocated_bytes() const override { return st_->allocated.load(); }

private:
    // The addon loads on one thread and infers on others: make this backend's device current.
    void bind() const {
        int d = -1;
        if (cudaGetDevice(&d) != cudaSuccess || d != st_->device) cudaSetDevice(st_->device);
    }
    static float* F(const Tensor& t) { return static_cast<float*>(t.data); }
    static int32_t* I(const Tensor& t) { return static_cast<int32_t*>(t.data); }

    void fail(Code c, std::string msg) {
        std::lock_guard<std::mutex> lock(err_mu_);
        if (error_.ok()) error_ = Status(c, std::move(msg));
    }
    void check(const char* op) {
        const cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) fail(e == cudaErrorMemoryAllocation ? Code::oom : Code::internal, std::string("cuda ") + op + ": " + cuda_msg(e));
    }
    Status cuda_status(cudaError_t e, const std::string& what) {
        if (e == cudaSuccess) return Status::OK();
        cudaGetLastError();
        return {e == cudaErrorMemoryAllocation ? Code::oom : Code::backend, "cuda: " + what + ": " + cuda_msg(e)};
    }
    Status oom(int64_t bytes, const std::string& what) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return {Code::oom, "cuda: out of device memory " + what + ": " + std::to_string(bytes) + " bytes requested, " +
                               std::to_string(free_b >> 20) + " MiB free of " + std::to_string(total_b >> 20) + " MiB"};
    }

    DType matrix_dtype(const TensorView& src) const {
        switch (opts_.weight_dtype) {
        case WeightDType::f16: return DType::f16;
        case WeightDType::bf16: return DType::bf16;
        case WeightDType::auto_: break;
        }
        if (src.dtype == DType::f16 || src.dtype == DType::bf16) return src.dtype;
        // F32 file: F16 keeps more mantissa, BF16 when a value would overflow F16.
        const float* p = reinterpret_cast<const float*>(src.data);
        for (int64_t i = 0, n = src.numel(); i < n; ++i)
            if (std::fabs(p[i]) > 65504.f) return DType::bf16;
        return DType::f16;
    }

    Status alloc_typed(int64_t rows, int64_t cols, DType dt, Tensor* out) {
        bind();
        const size_t bytes = std::max<size_t>(size_t(rows) * size_t(cols) * dtype_size(dt), 4);
        if (opts_.max_activation_bytes > 0 && st_->allocated + int64_t(bytes) > opts_.max_activation_bytes)
            return {Code::oom, "cuda: activation memory limit of " + std::to_string(opts_.max_activation_bytes) + " bytes reached (" +
                                   std::to_string(st_->allocated.load()) + " held, " + std::to_string(bytes) + " more asked)"};
        void* p = nullptr;
        cudaError_t e = st_->pools ? cudaMallocAsync(&p, bytes, st_->stream) : cudaMalloc(&p, bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return oom(int64_t(bytes), "allocating a " + std::to_string(rows) + " x " + std::to_string(cols) + " tensor");
        }
        note_allocated(st_->allocated += int64_t(bytes));
        Tensor t;
        t.data = p;
        t.dtype = dt;
        t.rows = rows;
        t.cols = cols;
        std::shared_ptr<DeviceState> st = st_;
        t.mem = std::shared_ptr<void>(p, [st, bytes](void* q) {
            cudaSetDevice(st->device);
            if (st->pools) cudaFreeAsync(q, st->stream);
            else cudaFree(q);
            st->allocated -= int64_t(bytes);
        });
        *out = std::move(t);
        return Status::OK();
    }

    // Weights: permanent, outside the activation pool.
    Status alloc_weight(int64_t rows, int64_t cols, DType dt, Tensor* out) {
        const size_t bytes = std::max<size_t>(size_t(rows) * size_t(cols) * dtype_size(dt), 4);
        void* p = nullptr;
        cudaError_t e = cudaMalloc(&p, bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return oom(int64_t(bytes), "allocating weights");
        }
        Tensor t;
        t.data = p;
        t.dtype = dt;
        t.rows = rows;
        t.cols = cols;
        t.mem = std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
        *out = std::move(t);
        return Status::OK();
    }

    // F32 scratch of n floats from the pool; false (and the error kept) when it cannot be had.
    bool scratch(int64_t n, Tensor* out) {
        Status s = alloc(1, n, out);
        if (!s.ok()) {
            fail(s.code(), s.message());
            return false;
        }
        return true;
    }

    bool upload_i32(const int32_t* host, int64_t n, Tensor* out) {
        Status s = alloc_i32(std::max<int64_t>(n, 1), 1, out);
        if (!s.ok()) {
            fail(s.code(), s.message());
            return false;
        }
        if (n > 0) h2d(out->data, host, size_t(n) * sizeof(int32_t));
        return true;
    }

    void h2d(void* dst, const void* src, size_t bytes) {
        if (bytes == 0) return;
        size_t idx = 0;
        cudaError_t err = cudaSuccess;
        void* pin = staging_.acquire(bytes, &idx, &err);
        if (!pin) return fail(err == cudaErrorMemoryAllocation ? Code::oom : Code::internal, "cuda: pinned staging: " + cuda_msg(err));
        std::memcpy(pin, src, bytes);
        const cudaError_t e = cudaMemcpyAsync(dst, pin, bytes, cudaMemcpyHostToDevice, st_->stream);
        staging_.mark(idx);
        if (e != cudaSuccess) fail(Code::internal, "cuda: host-to-device copy: " + cuda_msg(e));
    }

    void d2h(void* dst, const void* src, size_t bytes) {
        if (bytes == 0) return;
        size_t idx = 0;
        cudaError_t err = cudaSuccess;
        void* pin = staging_.acquire(bytes, &idx, &err);
        if (!pin) {
            std::memset(dst, 0, bytes);
            return fail(err == cudaErrorMemoryAllocation ? Code::oom : Code::internal, "cuda: pinned staging: " + cuda_msg(err));
        }
        cudaError_t e = cudaMemcpyAsync(pin, src, bytes, cudaMemcpyDeviceToHost, st_->stream);
        staging_.mark(idx);
        if (e == cudaSuccess) e = cudaStreamSynchronize(st_->stream);
        if (e != cudaSuccess) {
            std::memset(dst, 0, bytes);
            return fail(Code::internal, "cuda: device error (found at a device-to-host read): " + cuda_msg(e));
        }
        std::memcpy(dst, pin, bytes);
    }

    // RoPE frequencies, computed on the host in double as the CPU backend and cached.
    const float* inv_freq(int head_dim, float theta) {
        const auto key = std::make_pair(head_dim, theta);
        auto it = freq_.find(key);
        if (it != freq_.end()) return F(it->second);
        const int half = head_dim / 2;
        std::vector<float> f(size_t(std::max(half, 1)));
        for (int i = 0; i < half; ++i) f[size_t(i)] = float(1.0 / std::pow(double(theta), 2.0 * i / head_dim));
        Tensor t;
        if (!alloc_weight(1, int64_t(f.size()), DType::f32, &t).ok()) {
            fail(Code::oom, "cuda: rope table");
            return nullptr;
        }
        h2d(t.data, f.data(), f.size() * sizeof(float));
        freq_[key] = t;
        return F(t);
    }

    // Resampling taps of one axis (in -> out), cached by size.
    const cuda::DeviceTaps* taps(int in_size, int out_size) {
        const auto key = std::make_pair(in_size, out_size);
        auto it = taps_.find(key);
        if (it != taps_.end()) return &it->second.dev;
        const ResampleTaps t = image_resample_taps(in_size, out_size);
        TapsEntry e;
        const int64_t ni = int64_t(t.lo.size()), nw = std::max<int64_t>(1, int64_t(t.w.size()));
        if (!alloc_weight(3, ni, DType::i32, &e.ints).ok() || !alloc_weight(1, nw, DType::f32, &e.w).ok()) {
            fail(Code::oom, "cuda: resampling taps");
            return nullptr;
        }
        int32_t* base = I(e.ints);
        h2d(base, t.lo.data(), size_t(ni) * 4);
        h2d(base + ni, t.count.data(), size_t(ni) * 4);
        h2d(base + 2 * ni, t.off.data(), size_t(ni) * 4);
        if (!t.w.empty()) h2d(e.w.data, t.w.data(), t.w.size() * 4);
        e.dev.lo = base;
        e.dev.count = base + ni;
        e.dev.off = base + 2 * ni;
        e.dev.w = F(e.w);
        return &(taps_[key] = e).dev;
    }

#ifdef VLA_HAVE_CUBLAS
    // y = x w^T through cuBLAS: x rounded to w's dtype first (the tensor cores' input), F32 out.
    bool cublas_matmul(const Tensor& x, const Tensor& w, const float* bias, Tensor& y) {
        const int64_t n = x.rows, k = x.cols, m = w.rows;
        Tensor xh;  // half-precision copy of x: n * k * 2 bytes
        if (!scratch((n * k + 1) / 2, &xh)) return false;
        cuda::convert_f32(F(x), n * k, xh.data, w.dtype, st_->stream);
        const cudaDataType_t dt = w.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F;
        const float one = 1.f, zero = 0.f;
        // Column-major view: y^T [m, n] = w [m, k] (stored as k x m, transposed) * x^T [k, n].
        const cublasStatus_t st = cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(n), int(k), &one, w.data, dt,
                                               int(k), xh.data, dt, int(k), &zero, y.data, CUDA_R_32F, int(m),
                                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) {
            fail(Code::internal, "cuda: cublasGemmEx failed with status " + std::to_string(int(st)));
            return true;
        }
        if (bias) cuda::add_bias(F(y), bias, n, m, st_->stream);
        check("matmul");
        return true;
    }
    cublasHandle_t cublas_ = nullptr;
#endif

    struct TapsEntry {
        Tensor ints, w;
        cuda::DeviceTaps dev;
    };

    std::shared_ptr<DeviceState> st_;
    Staging staging_;
    BackendOptions opts_;
    int n_sm_ = 1;
    int64_t max_smem_ = 48 << 10;  // opt-in shared memory per block (the tensor-core attention needs ~111 KB)
    std::mutex err_mu_;
    Status error_;
    std::map<std::pair<int, float>, Tensor> freq_;
    std::map<std::pair<int, int>, TapsEntry> taps_;
};

}  // namespace

std::string backend_cuda_probe() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (e == cudaErrorInsufficientDriver)
            return "no NVIDIA driver, or one older than this build's CUDA " + std::to_string(CUDART_VERSION / 1000) + " runtime (" + cuda_msg(e) + ")";
        return "no usable CUDA device (" + cuda_msg(e) + ")";
    }
    if (n == 0) return "no CUDA device";
    return "";
}

Status backend_cuda_create(const BackendOptions& o, std::unique_ptr<Backend>* out) {
    const std::string why = backend_cuda_probe();
    if (!why.empty()) return {Code::backend, "backend 'cuda': " + why};
    int n = 0;
    cudaGetDeviceCount(&n);
    if (o.device >= n)
        return {Code::backend, "backend 'cuda': device " + std::to_string(o.device) + " requested, " + std::to_string(n) + " present"};
    cudaError_t e = cudaSetDevice(o.device);
    if (e != cudaSuccess) return {Code::backend, "backend 'cuda': cudaSetDevice: " + cuda_msg(e)};
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, o.device);
    if (prop.major < 8)
        return {Code::backend, "backend 'cuda': " + std::string(prop.name) + " is sm_" + std::to_string(prop.major) +
                                   std::to_string(prop.minor) + "; the tensor-core kernels need sm_80 or newer"};
    auto st = std::make_shared<DeviceState>();
    st->device = o.device;
    e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) return {Code::backend, "backend 'cuda': cudaStreamCreate: " + cuda_msg(e)};
    int pools = 0;
    cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, o.device);
    st->pools = pools != 0;
    if (st->pools) {
        cudaMemPool_t pool;
        cudaDeviceGetDefaultMemPool(&pool, o.device);
        uint64_t keep = UINT64_MAX;  // never hand reserved memory back between inferences
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    // A kernel from this build must run here (catches a missing architecture up front).
    float* probe = nullptr;
    e = cudaMalloc(&probe, 8 * sizeof(float));
    if (e == cudaSuccess) {
        cuda::copy_f32(probe, probe + 4, 4, st->stream);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaStreamSynchronize(st->stream);
        cudaFree(probe);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return {Code::backend, "backend 'cuda': " + std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                                   std::to_string(prop.minor) + ") cannot run this build's kernels (" + cuda_msg(e) +
                                   "); rebuild with CMAKE_CUDA_ARCHITECTURES including " + std::to_string(prop.major) +
                                   std::to_string(prop.minor)};
    }
    int smem_optin = 0;
    cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, o.device);
    auto be = std::make_unique<CudaBackend>(st, o, prop.multiProcessorCount, int64_t(smem_optin));
    VLA_RETURN_IF_ERROR(be->init());
    *out = std::move(be);
    return Status::OK();
}

}  // namespace vla
