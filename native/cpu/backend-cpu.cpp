// The reference backend: plain loops, multithreaded where the work is (GEMM, attention).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#include "blas.h"
#include "convert.h"
#include "gemm.h"
#include "backend.h"
#include "image.h"
#include "prune/ops.h"
#include "threadpool.h"

namespace vla {

Tensor Backend::rows(const Tensor& t, int64_t row0, int64_t n) const {
    Tensor v = t;
    v.data = static_cast<uint8_t*>(t.data) + row0 * t.cols * int64_t(dtype_size(t.dtype));
    v.rows = n;
    return v;
}

namespace {

typedef float v8 __attribute__((vector_size(32)));

// Dot product; 8-wide partial sums (the compiler does not reorder float sums by itself).
inline float dot(const float* a, const float* b, int64_t n) {
    int64_t i = 0;
    float s = 0.f;
    if (n >= 8) {
        v8 acc = {};
        for (; i + 8 <= n; i += 8) {
            v8 x, y;
            __builtin_memcpy(&x, a + i, sizeof x);
            __builtin_memcpy(&y, b + i, sizeof y);
            acc += x * y;
        }
        s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

inline float* F(Tensor& t) { return static_cast<float*>(t.data); }
inline const float* F(const Tensor& t) { return static_cast<const float*>(t.data); }
inline int32_t* I(Tensor& t) { return static_cast<int32_t*>(t.data); }
inline const int32_t* I(const Tensor& t) { return static_cast<const int32_t*>(t.data); }

class CpuBackend final : public Backend {
public:
    // Half-precision weight matrices get an F32 copy on their first product where the BLAS does
    // the products (weight_dtype auto): twice the file's size in memory, converted once instead of
    // panel by panel on every call. Copies stop at half the memory free at creation (what does not
    // fit stays in place, on the builtin kernel); weight_dtype f16/bf16 keeps every weight mmapped.
    explicit CpuBackend(const BackendOptions& o)
        : pool_(o.n_threads),
          limit_(o.max_activation_bytes),
          blas_(o.cpu_blas ? blas() : nullptr),
          f32_weights_(o.weight_dtype == WeightDType::auto_ && blas_),
          f32_budget_(f32_weights_ ? int64_t(sysconf(_SC_AVPHYS_PAGES)) * int64_t(sysconf(_SC_PAGESIZE)) / 2 : 0) {}
    const char* name() const override { return "cpu"; }

    Status alloc(int64_t rows, int64_t cols, Tensor* out) override {
        const size_t bytes = size_t(rows) * size_t(cols) * sizeof(float);
        if (limit_ > 0 && allocated_ + int64_t(bytes) > limit_)
            return {Code::oom, "cpu: activation memory limit of " + std::to_string(limit_) + " bytes reached (" +
                                   std::to_string(allocated_.load()) + " held, " + std::to_string(bytes) + " more asked)"};
        float* p = static_cast<float*>(::operator new(std::max<size_t>(bytes, 64), std::align_val_t(64), std::nothrow));
        if (!p) return {Code::oom, "cpu: cannot allocate " + std::to_string(bytes) + " bytes"};
        note_allocated(allocated_ += int64_t(bytes));
        Tensor t;
        t.data = p;
        t.rows = rows;
        t.cols = cols;
        t.mem = std::shared_ptr<void>(p, [this, bytes](void* q) {
            ::operator delete(q, std::align_val_t(64));
            allocated_ -= int64_t(bytes);
        });
        *out = std::move(t);
        return Status::OK();
    }

    Status alloc_i32(int64_t rows, int64_t cols, Tensor* out) override {
        VLA_RETURN_IF_ERROR(alloc(rows, cols, out));  // same element size
        out->dtype = DType::i32;
        return Status::OK();
    }
    void write_i32(Tensor& dst, const int32_t* src, int64_t n, int64_t offset) override {
        std::memcpy(I(dst) + offset, src, size_t(n) * sizeof(int32_t));
    }
    void read_i32(const Tensor& src, int32_t* dst, int64_t n, int64_t offset) override {
        ++host_reads_;
        std::memcpy(dst, I(src) + offset, size_t(n) * sizeof(int32_t));
    }

    // A weight, not an activation: outside allocated_bytes() and the activation limit.
    Status random_weight(int64_t rows, int64_t cols, uint64_t seed, float mean, float std, Tensor* out) override {
        const size_t n = size_t(rows) * size_t(cols);
        auto mem = std::shared_ptr<float>(new (std::nothrow) float[std::max<size_t>(n, 1)], std::default_delete<float[]>());
        if (!mem) return {Code::oom, "cpu: cannot allocate a " + std::to_string(rows) + " x " + std::to_string(cols) + " weight"};
        float* p = mem.get();
        if (std > 0) {
            std::mt19937_64 g(seed);
            std::normal_distribution<float> nd(mean, std);
            for (size_t i = 0; i < n; ++i) p[i] = nd(g);
        } else {
            std::fill(p, p + n, mean);
        }
        Tensor t;
        t.data = p;
        t.rows = rows;
        t.cols = cols;
        t.mem = mem;
        *out = std::move(t);
        return Status::OK();
    }

    Status upload_weight(const TensorView& src, int64_t rows, int64_t cols, Tensor* out) override {
        Tensor t;  // zero-copy: the mmap outlives the backend
        t.data = const_cast<uint8_t*>(src.data);
        t.dtype = src.dtype;
        t.rows = rows;
        t.cols = cols;
        *out = t;
        return Status::OK();
    }

    void write(Tensor& dst, const float* src, int64_t n, int64_t offset) override {
        std::memcpy(F(dst) + offset, src, size_t(n) * sizeof(float));
    }
    void read(const Tensor& src, float* dst, int64_t n, int64_t offset) override {
        ++host_reads_;
        if (src.dtype == DType::f32) std::memcpy(dst, F(src) + offset, size_t(n) * sizeof(float));
        else convert_to_f32(src.data, src.dtype, offset, n, dst);
    }

    void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
        std::vector<float> b;
        const float* bp = nullptr;
        if (bias) {
            if (bias->dtype == DType::f32) {
                bp = F(*bias);
            } else {
                b.resize(size_t(bias->numel()));
                convert_to_f32(bias->data, bias->dtype, 0, bias->numel(), b.data());
                bp = b.data();
            }
        }
        if (const float* wf = f32_weight(w)) gemm(F(x), x.rows, x.cols, wf, DType::f32, w.rows, bp, F(y));
        else gemm(F(x), x.rows, x.cols, w.data, w.dtype, w.rows, bp, F(y));
    }

    void gemm(const float* x, int64_t n, int64_t k, const void* w, DType wt, int64_t m, const float* bias, float* y) {
        if (blas_) gemm_xwt(pool_, x, n, k, w, wt, m, bias, y);
        else gemm_xwt_builtin(pool_, x, n, k, w, wt, m, bias, y);
    }

    // The F32 copy of a half-precision weight for the BLAS (made on first use), or nullptr: F32
    // weights, no BLAS, weight_dtype f16/bf16, or the copies' budget spent.
    const float* f32_weight(const Tensor& w) {
        if (!f32_weights_ || (w.dtype != DType::f16 && w.dtype != DType::bf16)) return nullptr;
        std::lock_guard<std::mutex> lk(f32_mu_);
        auto it = f32_.find(w.data);
        if (it != f32_.end()) return it->second.get();
        const int64_t n = w.numel(), bytes = n * int64_t(sizeof(float));
        if (f32_bytes_ + bytes > f32_budget_) return nullptr;
        auto mem = std::shared_ptr<float>(new (std::nothrow) float[size_t(std::max<int64_t>(n, 1))], std::default_delete<float[]>());
        if (!mem) return nullptr;
        float* p = mem.get();
        pool_.parallel_for(n, 1 << 16, [&](int64_t a, int64_t b) { convert_to_f32(w.data, w.dtype, a, b - a, p + a); });
        f32_bytes_ += bytes;
        f32_.emplace(w.data, mem);
        return p;
    }

    // Norm weights may be half precision: convert the row once per call.
    std::vector<float> vec(const Tensor& t) {
        std::vector<float> v(static_cast<size_t>(t.numel()));
        convert_to_f32(t.data, t.dtype, 0, t.numel(), v.data());
        return v;
    }

    void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) override {
        const auto wv = vec(w), bv = vec(b);
        const int64_t d = x.cols;
        pool_.parallel_for(x.rows, 16, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const float* xi = F(x) + r * d;
                float* yi = F(y) + r * d;
                double mean = 0, var = 0;
                for (int64_t i = 0; i < d; ++i) mean += xi[i];
                mean /= d;
                for (int64_t i = 0; i < d; ++i) var += (xi[i] - mean) * (xi[i] - mean);
                var /= d;
                const float inv = float(1.0 / std::sqrt(var + eps)), m = float(mean);
                for (int64_t i = 0; i < d; ++i) yi[i] = (xi[i] - m) * inv * wv[i] + bv[i];
            }
        });
    }

    void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& y) override {
        const auto wv = vec(w);
        const int64_t d = x.cols;
        pool_.parallel_for(x.rows, 16, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const float* xi = F(x) + r * d;
                float* yi = F(y) + r * d;
                double ss = 0;
                for (int64_t i = 0; i < d; ++i) ss += double(xi[i]) * xi[i];
                const float inv = float(1.0 / std::sqrt(ss / d + eps));
                for (int64_t i = 0; i < d; ++i) yi[i] = xi[i] * inv * wv[i];
            }
        });
    }

    void add(Tensor& y, const Tensor& x) override {
        float* yp = F(y);
        const float* xp = F(x);
        for (int64_t i = 0, n = y.numel(); i < n; ++i) yp[i] += xp[i];
    }

    void add_rows(Tensor& y, int64_t y_row0, const Tensor& table, int64_t t_row0, int64_t n, bool broadcast) override {
        const int64_t d = y.cols;
        std::vector<float> row(static_cast<size_t>(d));
        for (int64_t i = 0; i < n; ++i) {
            if (!broadcast || i == 0) convert_to_f32(table.data, table.dtype, (t_row0 + (broadcast ? 0 : i)) * d, d, row.data());
            float* yi = F(y) + (y_row0 + i) * d;
            for (int64_t c = 0; c < d; ++c) yi[c] += row[c];
        }
    }

    void unary(Unary op, Tensor& y) override {
        float* p = F(y);
        pool_.parallel_for(y.numel(), 4096, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                const float v = p[i];
                switch (op) {
                case Unary::gelu: p[i] = 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f)); break;
                case Unary::quick_gelu: p[i] = v / (1.f + std::exp(-1.702f * v)); break;
                case Unary::silu: p[i] = v / (1.f + std::exp(-v)); break;
                }
            }
        });
    }

    void swiglu(const Tensor& gate, const Tensor& up, Tensor& y) override {
        const float* g = F(gate);
        const float* u = F(up);
        float* o = F(y);
        pool_.parallel_for(y.numel(), 4096, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) o[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
        });
    }

    void rope(Tensor& x, int n_heads, int head_dim, const Tensor& pos_t, float theta) override {
        const int32_t* positions = I(pos_t);
        const int half = head_dim / 2;
        std::vector<double> inv_freq(static_cast<size_t>(half));
        for (int i = 0; i < half; ++i) inv_freq[i] = 1.0 / std::pow(double(theta), 2.0 * i / head_dim);
        pool_.parallel_for(x.rows, 8, [&](int64_t r0, int64_t r1) {
            std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
            for (int64_t r = r0; r < r1; ++r) {
                for (int i = 0; i < half; ++i) {
                    // Angles in float like HF (inv_freq * pos in fp32), then cos/sin.
                    const float ang = float(inv_freq[i]) * float(positions[r]);
                    cs[i] = std::cos(ang);
                    sn[i] = std::sin(ang);
                }
                for (int h = 0; h < n_heads; ++h) {
                    float* v = F(x) + r * x.cols + int64_t(h) * head_dim;
                    for (int i = 0; i < half; ++i) {
                        const float a = v[i], b = v[i + half];
                        v[i] = a * cs[i] - b * sn[i];
                        v[i + half] = b * cs[i] + a * sn[i];
                    }
                }
            }
        });
    }

    void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) override {
        if (blas_ && q.rows > 1 && p.n_kv < (int64_t(1) << 31) / std::max<int64_t>(64, q.cols)) attention_gemm(q, k, v, out, p);
        else attention_rows(q, k, v, out, p);
    }

    // Attention as two products per (head, block of up to 64 query rows): S = scale * Q K^T over
    // the block's keys, softmax per row (a causal row's later keys zeroed), O = P V; both
    // products single-threaded sgemm calls on strided views of q, k, v and out (no copies).
    void attention_gemm(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) {
        const int64_t n_q = q.rows, hd = p.head_dim;
        const int group = p.n_head / p.n_kv_head;
        const int64_t nb = p.causal ? 1 : p.n_batch;                 // query blocks never straddle a batch
        const int64_t qb = p.causal ? n_q : n_q / p.n_batch, kb = p.causal ? p.n_kv : p.n_kv / p.n_batch;
        constexpr int64_t RB = 64;
        const int64_t blocks = (qb + RB - 1) / RB;
        pool_.parallel_for(int64_t(p.n_head) * nb * blocks, 1, [&](int64_t t0, int64_t t1) {
            std::vector<float> s;
            for (int64_t t = t0; t < t1; ++t) {
                const int h = int(t / (nb * blocks)), hk = h / group;
                const int64_t bi = (t / blocks) % nb, rb = t % blocks;
                const int64_t i0 = bi * qb + rb * RB, i1 = std::min(bi * qb + qb, i0 + RB), nr = i1 - i0;
                const int64_t j0 = p.causal ? 0 : bi * kb, j1 = p.causal ? std::min(p.n_kv, p.kv_offset + i1) : j0 + kb;
                const int64_t nk = j1 - j0;
                s.resize(size_t(nr * nk));
                blas_->sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, int(nr), int(nk), int(hd), p.scale,
                             F(q) + i0 * q.cols + int64_t(h) * hd, int(q.cols), F(k) + j0 * k.cols + int64_t(hk) * hd, int(k.cols),
                             0.f, s.data(), int(nk));
                for (int64_t r = 0; r < nr; ++r) {
                    float* sr = s.data() + r * nk;
                    const int64_t lim = p.causal ? std::min(p.n_kv, p.kv_offset + i0 + r + 1) - j0 : nk;
                    float mx = -INFINITY;
                    for (int64_t j = 0; j < lim; ++j) mx = std::max(mx, sr[j]);
                    double sum = 0;
                    for (int64_t j = 0; j < lim; ++j) sum += (sr[j] = std::exp(sr[j] - mx));
                    const float inv = float(1.0 / sum);
                    for (int64_t j = 0; j < lim; ++j) sr[j] *= inv;
                    std::fill(sr + lim, sr + nk, 0.f);
                }
                blas_->sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, int(nr), int(hd), int(nk), 1.f, s.data(), int(nk),
                             F(v) + j0 * v.cols + int64_t(hk) * hd, int(v.cols), 0.f, F(out) + i0 * out.cols + int64_t(h) * hd,
                             int(out.cols));
            }
        });
    }

    // The reference: row by row, dot products and a scaled sum of value rows.
    void attention_rows(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) {
        const int64_t n_q = q.rows, hd = p.head_dim;
        const int group = p.n_head / p.n_kv_head;
        const int64_t qb = p.causal ? n_q : n_q / p.n_batch;    // query rows per batch block
        const int64_t kb = p.causal ? p.n_kv : p.n_kv / p.n_batch;
        // One task per (head, query row block): scores live in a row-sized scratch, never n x n.
        constexpr int64_t RB = 16;
        const int64_t row_blocks = (n_q + RB - 1) / RB;
        pool_.parallel_for(int64_t(p.n_head) * row_blocks, 1, [&](int64_t t0, int64_t t1) {
            std::vector<float> s(static_cast<size_t>(p.n_kv));
            std::vector<float> acc(static_cast<size_t>(hd));
            for (int64_t t = t0; t < t1; ++t) {
                const int h = int(t / row_blocks), hk = h / group;
                const int64_t rb = t % row_blocks;
                for (int64_t i = rb * RB; i < std::min(n_q, (rb + 1) * RB); ++i) {
                    int64_t j0, j1;
                    if (p.causal) {
                        j0 = 0;
                        j1 = std::min(p.n_kv, p.kv_offset + i + 1);
                    } else {
                        j0 = (i / qb) * kb;
                        j1 = j0 + kb;
                    }
                    const float* qi = F(q) + i * q.cols + h * hd;
                    float mx = -INFINITY;
                    for (int64_t j = j0; j < j1; ++j) {
                        const float* kj = F(k) + j * k.cols + hk * hd;
                        s[j] = dot(qi, kj, hd) * p.scale;
                        mx = std::max(mx, s[j]);
                    }
                    double sum = 0;
                    for (int64_t j = j0; j < j1; ++j) {
                        s[j] = std::exp(s[j] - mx);
                        sum += s[j];
                    }
                    std::fill(acc.begin(), acc.end(), 0.f);
                    for (int64_t j = j0; j < j1; ++j) {
                        const float* vj = F(v) + j * v.cols + hk * hd;
                        const float pj = s[j];
                        for (int64_t c = 0; c < hd; ++c) acc[c] += pj * vj[c];
                    }
                    float* oi = F(out) + i * out.cols + h * hd;
                    const float inv = float(1.0 / sum);
                    for (int64_t c = 0; c < hd; ++c) oi[c] = acc[c] * inv;
                }
            }
        });
    }

    void attention_probs(const Tensor& q, const Tensor& k, const int32_t* rows, int64_t n_rows, Tensor& probs,
                         const AttentionParams& p) override {
        const int64_t hd = p.head_dim, n_q = q.rows;
        const int group = p.n_head / p.n_kv_head;
        const int64_t qb = p.causal ? n_q : n_q / p.n_batch, kb = p.causal ? p.n_kv : p.n_kv / p.n_batch;
        pool_.parallel_for(int64_t(p.n_head) * n_rows, 4, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                const int h = int(t / n_rows);
                const int64_t i = rows[t % n_rows];
                int64_t j0 = 0, j1 = p.n_kv;
                if (p.causal) j1 = std::min(p.n_kv, p.kv_offset + i + 1);
                else { j0 = (i / qb) * kb; j1 = j0 + kb; }
                float* out = F(probs) + t * probs.cols;
                std::fill(out, out + probs.cols, 0.f);
                const float* qi = F(q) + i * q.cols + int64_t(h) * hd;
                float mx = -INFINITY;
                for (int64_t j = j0; j < j1; ++j) {
                    out[j] = dot(qi, F(k) + j * k.cols + int64_t(h / group) * hd, hd) * p.scale;
                    mx = std::max(mx, out[j]);
                }
                double sum = 0;
                for (int64_t j = j0; j < j1; ++j) sum += (out[j] = std::exp(out[j] - mx));
                const float inv = float(1.0 / sum);
                for (int64_t j = j0; j < j1; ++j) out[j] *= inv;
            }
        });
    }

    void get_rows(const Tensor& table, const int32_t* ids, int64_t n, Tensor& out, int64_t out_row0) override {
        const int64_t d = table.cols;
        for (int64_t i = 0; i < n; ++i) convert_to_f32(table.data, table.dtype, int64_t(ids[i]) * d, d, F(out) + (out_row0 + i) * d);
    }

    void copy_rows(const Tensor& src, int64_t src_row0, int64_t n, Tensor& dst, int64_t dst_row0) override {
        std::memmove(F(dst) + dst_row0 * dst.cols, F(src) + src_row0 * src.cols, size_t(n * src.cols) * sizeof(float));
    }

    // F32 and I32 rows alike: 4-byte elements copied as bytes.
    void gather_rows(const Tensor& src, const int32_t* idx, int64_t n, Tensor& dst) override {
        for (int64_t i = 0; i < n; ++i)
            std::memcpy(F(dst) + i * dst.cols, F(src) + int64_t(idx[i]) * src.cols, size_t(src.cols) * sizeof(float));
    }
    void gather_rows_idx(const Tensor& src, const Tensor& idx, int64_t n, Tensor& dst) override {
        gather_rows(src, I(idx), n, dst);
    }

    // ---- pruning ops: the oracle for the device versions (same arithmetic, same order)
    void prune_scores(const Tensor& probs, int64_t n_rows, const Tensor& kind, int64_t n, Tensor& scores) override {
        const int64_t ld = probs.cols;
        for (int64_t j = 0; j < n; ++j) {
            if (I(kind)[j] == 0) { F(scores)[j] = 0.f; continue; }
            double s = 0;
            for (int64_t r = 0; r < n_rows; ++r) s += F(probs)[r * ld + j];
            F(scores)[j] = float(s / double(n_rows));
        }
    }

    void prune_mi(const Tensor& probs, int n_heads, int64_t nr, const Tensor& kind, int64_t n, Tensor& out,
                  int64_t slot) override {
        std::vector<int64_t> cols;
        for (int64_t j = 0; j < n; ++j)
            if (I(kind)[j] != 0) cols.push_back(j);
        const int64_t ld = probs.cols;
        double mi = 0;
        for (int h = 0; h < n_heads; ++h) mi += prune_mutual_information(F(probs) + int64_t(h) * nr * ld, ld, nr, cols);
        const float hi = float(mi);
        F(out)[2 * slot] = hi;
        F(out)[2 * slot + 1] = float(mi - double(hi));
    }

    void prune_prior_scores(Tensor& scores, const Tensor& prior, const Tensor& kind, int64_t n, const Tensor& mi,
                            int64_t slot, double alpha, double divisor) override {
        const double m = double(F(mi)[2 * slot]) + double(F(mi)[2 * slot + 1]);
        const float coef = float(alpha * (m / divisor));
        for (int64_t j = 0; j < n; ++j)
            if (I(kind)[j] != 0) F(scores)[j] = prune_prior_score(F(prior)[j], coef, F(scores)[j]);
    }

    void prune_topk(const Tensor& scores, const Tensor& kind, const Tensor* exclude, int64_t n, int64_t k,
                    Tensor& flags) override {
        std::vector<int64_t> cand;
        std::vector<float> sc;
        for (int64_t j = 0; j < n; ++j) {
            I(flags)[j] = 0;
            if (I(kind)[j] != 0 && !(exclude && I(*exclude)[j] != 0)) {
                cand.push_back(j);
                sc.push_back(F(scores)[j]);
            }
        }
        for (int64_t c : vla::prune_topk(sc, k)) I(flags)[cand[size_t(c)]] = 1;
    }

    void prune_index(const Tensor& flags, const Tensor& kind, bool keep_other, int64_t n, Tensor& idx) override {
        int64_t o = 0;
        for (int64_t j = 0; j < n; ++j)
            if (I(flags)[j] != 0 || (keep_other && I(kind)[j] == 0)) I(idx)[o++] = int32_t(j);
    }

    void prune_merged_meta(Tensor& kind, Tensor& view, Tensor& pos, int64_t a, int64_t c, int64_t n,
                           bool reindex) override {
        const int32_t after = a > 0 ? I(pos)[a - 1] + 1 : 0;
        for (int64_t j = a; j < a + c; ++j) {
            I(kind)[j] = 2;
            I(view)[j] = -1;
            I(pos)[j] = after;
        }
        if (reindex)
            for (int64_t j = 0; j < n; ++j) I(pos)[j] = int32_t(j);
    }

    void prune_count(const Tensor& kind, const Tensor& view, int64_t n, int n_views, Tensor& counts,
                     int64_t row) override {
        int32_t* c = I(counts) + row * counts.cols;
        std::fill(c, c + n_views + 2, 0);
        for (int64_t j = 0; j < n; ++j) {
            const int32_t k = I(kind)[j];
            if (k == 1 && I(view)[j] >= 0 && I(view)[j] < n_views) ++c[I(view)[j]];
            if (k != 0) ++c[n_views];
            if (k == 2) ++c[n_views + 1];
        }
    }

    Status dpc_knn_merge(const Tensor& x, int64_t c, Tensor& out, bool reference_ties) override {
        std::vector<float> xs(F(x), F(x) + x.numel());
        const std::vector<float> m = prune_dpc_knn_merge(xs, x.rows, x.cols, c, reference_ties);
        std::memcpy(F(out), m.data(), m.size() * sizeof(float));
        return Status::OK();
    }

    void cls_prior(const Tensor& probs, int n_heads, int n_views, int64_t Tv, int64_t first, int64_t pv,
                   const Tensor& masked, Tensor& prior) override {
        const int64_t N = probs.cols;
        for (int v = 0; v < n_views; ++v)
            for (int64_t i = 0; i < pv; ++i) {
                const int64_t key = int64_t(v) * Tv + first + i;
                double sum = 0;
                for (int h = 0; h < n_heads; ++h) sum += F(probs)[(int64_t(h) * n_views + v) * N + key];
                F(prior)[v * pv + i] = I(masked)[v * pv + i] ? 0.f : float(sum / n_heads);
            }
    }

    void argmax(const Tensor& x, int64_t n, Tensor& out) override {
        const float* p = F(x);
        I(out)[0] = int32_t(std::max_element(p, p + n) - p);
    }

    void patch_embed(const Tensor& img, int n_img, int S, int P, const Tensor& w, Tensor& out) override {
        // im2col: each patch becomes one row [3 * P * P] (channel, y, x order as the conv weight),
        // then one GEMM against w [D, 3 * P * P].
        const int g = S / P, np = g * g, kk = 3 * P * P;
        std::vector<float> cols(size_t(n_img) * np * kk);
        for (int b = 0; b < n_img; ++b)
            for (int py = 0; py < g; ++py)
                for (int px = 0; px < g; ++px) {
                    float* row = cols.data() + (size_t(b) * np + py * g + px) * kk;
                    for (int c = 0; c < 3; ++c)
                        for (int y = 0; y < P; ++y)
                            std::memcpy(row + (c * P + y) * P,
                                        F(img) + (int64_t(b) * 3 + c) * S * S + int64_t(py * P + y) * S + px * P,
                                        size_t(P) * sizeof(float));
                }
        std::vector<float> res(size_t(n_img) * np * w.rows);
        const float* wf = f32_weight(w);
        gemm(cols.data(), int64_t(n_img) * np, kk, wf ? wf : w.data, wf ? DType::f32 : w.dtype, w.rows, nullptr, res.data());
        for (int b = 0; b < n_img; ++b)
            std::memcpy(F(out) + (int64_t(b) * (np + 1) + 1) * out.cols, res.data() + size_t(b) * np * w.rows,
                        size_t(np) * w.rows * sizeof(float));
    }

    Status preprocess(const ImageInput& in, const PreprocessParams& p, Tensor& out, int slot) override {
        // rows of both resampling passes spread over the pool
        return image_preprocess(in, p, F(out) + int64_t(slot) * 3 * out.cols,
                                [this](int64_t n, const std::function<void(int64_t, int64_t)>& fn) { pool_.parallel_for(n, 8, fn); });
    }

    int64_t allocated_bytes() const override { return allocated_; }

private:
    ThreadPool pool_;
    int64_t limit_ = 0;
    const Blas* blas_ = nullptr;
    bool f32_weights_ = false;
    int64_t f32_budget_ = 0, f32_bytes_ = 0;
    std::mutex f32_mu_;
    std::unordered_map<const void*, std::shared_ptr<float>> f32_;  // by the weight's data pointer
    std::atomic<int64_t> allocated_{0};
};

}  // namespace

std::unique_ptr<Backend> backend_cpu_create(const BackendOptions& o) { return std::make_unique<CpuBackend>(o); }

}  // namespace vla
