// Every Backend op of a peer backend (default "cuda") against the "cpu" oracle on identical
// inputs, in llama.cpp's test-backend-ops pattern: each case builds the same inputs on both
// backends, runs the op on both, reads both back and compares. One line per case goes to stdout
// (op, shape, dtype, error, tolerance) so that a GPU run's log says what was measured.
//
// Environment:
//   VLA_TEST_PEER=cuda|cpu    the backend under test (default cuda; cpu: a second CPU backend, so
//                             that the harness itself runs, and must pass, on any machine)
//   VLA_TEST_THREADS=N        threads of each CPU backend (default 2)
//   VLA_TEST_DEVICE=N         the peer's device ordinal (default 0)
//   VLA_TEST_WEIGHT_DTYPE=auto|f16|bf16   the peer's BackendOptions::weight_dtype (default auto)
//   VLA_TEST_TOL_SCALE=x      multiplies every non-zero tolerance (default 1)
//   VLA_TEST_GUARD=N          guard rows before and after every tensor (default 3)
//   VLA_TEST_QUICK=1          skip the cases above ~2e7 multiply-adds (slow peers: the CUDA
//                             backend on its CPU emulation)
// Without the peer (no CUDA build, no device, driver error) the binary prints
// "SKIPPED: cuda backend unavailable: <reason>" and exits 0.
//
// What every case checks:
//  * float outputs by NMSE = sum (peer - cpu)^2 / sum cpu^2, over the whole output and for the
//    worst row (a localised bug such as one wrongly masked query row hides in the mean of 1153
//    rows but not in the worst row); integer outputs (flags, indices, counts, argmax, row meta)
//    for exact equality;
//  * no NaN/Inf in any float output;
//  * guard rows: every tensor an op sees is a rows() view into an allocation with VLA_TEST_GUARD
//    extra rows before and after. Around outputs and in-place tensors they hold a sentinel that
//    must come back bit for bit; around inputs they hold NaN (I32: a large negative value), which
//    an op reading outside its view carries into its output, and the inputs themselves must come
//    back unchanged. The guard offset also makes views start at addresses that are not 16-byte
//    aligned for odd column counts, which rows() allows;
//  * host arrays passed to ops (ids, idx, rows, frames) are overwritten as soon as the op returns:
//    the header's synchronisation contract says the backend must not read them later;
//  * allocated_bytes() is back to its value before the test case when the case ends.
// For the pruning ops (new in the interface, not covered by test-ops) the oracle itself is also
// checked against a host loop written here from the header's definition ("oracle" lines).
//
// Tolerances (NMSE unless stated) and why:
//   exact (bitwise)   add; add_rows and get_rows when the table keeps its dtype on the peer;
//                     copy_rows, gather_rows, gather_rows_idx; every integer output
//   1e-10             layer_norm, rms_norm, unary, swiglu: F32 arithmetic in another order or
//                     with another libm (a few ulp: ~1e-13); with inputs of scale 1e-3 it catches
//                     a wrong eps; 1e-8 on rows of mean 100 catches a one-pass F32 variance
//   1e-6              rope: the angle inv_freq * pos is F32 (as HF computes it), so 1 ulp of
//                     inv_freq or of the angle's sin/cos argument reduction grows with pos (<= 4095)
//   2e-5, row 1e-3    attention, attention_probs: allows an F16/BF16 tensor-core attention
//   by the peer's weight dtype (matmul, patch_embed; the peer may round x like the weights):
//                     F32 1e-10, F16 2e-6, BF16 1e-4 (rows 10x)
//   a table/weight the peer converted from F32 (get_rows, add_rows, norm weights):
//                     F16 1e-6, BF16 3e-5 (rounding alone is ~8e-8 and ~5e-6)
//   prune_scores, cls_prior 1e-12 (double accumulation on both sides, one float rounding)
//   prune_mi          |peer - cpu| <= 1e-9 (1 + |mi|) on the double rebuilt as hi + lo
//   prune_prior_scores <= 1 ulp per element (FMA contraction may differ between compilers)
//   preprocess        at most 0.5 % (or 8) of the values one 8-bit level apart, the rest within 1e-3
//                     level (see the test); dpc_knn_merge: see the test
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "convert.h"
#include "test-models.h"
#include "backend.h"
#include "prune/ops.h"

using namespace vla;

namespace {

// ------------------------------------------------------------------ environment and reporting

std::unique_ptr<Backend> g_ref, g_peer;
WeightDType g_wdt = WeightDType::auto_;
double g_tol_scale = 1;
int64_t g_guard = 3;
bool g_peer_is_cpu = false;
bool g_quick = false;
bool g_track_ref = true, g_track_peer = true;  // allocated_bytes() follows live alloc()s

// "cpu" for the oracle, "peer <name>" for the backend under test (both may be cpu).
std::string who(const Backend* B) { return B == g_ref.get() ? std::string("cpu oracle") : std::string("peer ") + B->name(); }

using vla_test::env_int;
using vla_test::fmt;

struct Tally {
    int cases = 0, failed = 0, skipped = 0;
    double worst = 0;  // largest error / tolerance (exact: mismatch count)
};
std::map<std::string, Tally>& tally() {
    static std::map<std::string, Tally> t;
    return t;
}

void line(const std::string& op, const std::string& shape, const std::string& dtype, const std::string& what, bool ok,
          double ratio = 0) {
    std::printf("%-20s %-52s %-12s %s %s\n", op.c_str(), shape.c_str(), dtype.c_str(), what.c_str(), ok ? "ok" : "FAIL");
    std::fflush(stdout);
    auto& t = tally()[op];
    t.cases++;
    if (!ok) t.failed++;
    t.worst = std::max(t.worst, ratio);
}

// VLA_TEST_QUICK: true (and a line in the log) when a case of `work` multiply-adds is skipped.
bool skip_big(const std::string& op, const std::string& shape, double work) {
    if (!g_quick || work <= 2e7) return false;
    std::printf("%-20s %-52s %-12s skipped (VLA_TEST_QUICK)\n", op.c_str(), shape.c_str(), "");
    tally()[op].skipped++;
    return true;
}

// --------------------------------------------------------------------------- host data

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f, float mean = 0.f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(mean, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// rows x cols of softmax(randn * temp) rows: attention-probability-like, strictly positive.
std::vector<float> softmax_rows(int64_t rows, int64_t cols, uint32_t seed, float temp = 2.f) {
    auto v = randn(size_t(rows * cols), seed, temp);
    for (int64_t r = 0; r < rows; ++r) {
        float* p = v.data() + r * cols;
        const float mx = *std::max_element(p, p + cols);
        double s = 0;
        for (int64_t j = 0; j < cols; ++j) s += (p[j] = std::exp(p[j] - mx));
        for (int64_t j = 0; j < cols; ++j) p[j] = float(p[j] / s);
    }
    return v;
}

using vla::f32_to_bf16;
using vla::f32_to_f16;

float f16_value(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0) v = std::ldexp(float(m), -24);
    else if (e == 31) v = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else v = std::ldexp(float(m | 0x400), int(e) - 25);
    return sign ? -v : v;
}

float bf16_value(uint16_t b) {
    const uint32_t u = uint32_t(b) << 16;
    float v;
    std::memcpy(&v, &u, 4);
    return v;
}

// Host bytes behind weights. upload_weight's `src stays mapped for the backend's lifetime` (the
// CPU backend reads it in place), so nothing here is ever freed before exit.
std::deque<std::vector<uint8_t>>& weight_store() {
    static std::deque<std::vector<uint8_t>> s;
    return s;
}

// A weight as a file would hold it; *held gets the values it really holds after rounding.
TensorView host_weight(DType t, const std::vector<float>& vals, std::vector<int64_t> shape, std::vector<float>* held = nullptr) {
    auto& bytes = weight_store().emplace_back(vals.size() * dtype_size(t));
    if (held) held->resize(vals.size());
    for (size_t i = 0; i < vals.size(); ++i) {
        float h = vals[i];
        if (t == DType::f32) {
            std::memcpy(bytes.data() + 4 * i, &vals[i], 4);
        } else {
            const uint16_t b = t == DType::f16 ? f32_to_f16(vals[i]) : f32_to_bf16(vals[i]);
            std::memcpy(bytes.data() + 2 * i, &b, 2);
            h = t == DType::f16 ? f16_value(b) : bf16_value(b);
        }
        if (held) (*held)[i] = h;
    }
    TensorView v;
    v.name = "test.weight";
    v.dtype = t;
    v.shape = std::move(shape);
    v.data = bytes.data();
    v.nbytes = bytes.size();
    return v;
}

Tensor upload(Backend& B, const TensorView& v, int64_t rows, int64_t cols) {
    Tensor t;
    Status st = B.upload_weight(v, rows, cols, &t);
    REQUIRE_MESSAGE(st.ok(), who(&B) << ": upload_weight: " << st.to_string());
    return t;
}

// The dtype the peer holds a weight of file dtype `src` in (BackendOptions::weight_dtype).
DType peer_dtype(DType src) {
    if (g_peer_is_cpu) return src;
    if (g_wdt == WeightDType::f16) return DType::f16;
    if (g_wdt == WeightDType::bf16) return DType::bf16;
    return src == DType::f32 ? DType::f16 : src;  // auto; the test values are within F16's range
}

std::string wname(DType src) {
    const DType p = peer_dtype(src);
    return p == src ? dtype_name(src) : std::string(dtype_name(src)) + "->" + dtype_name(p);
}

double tol_matmul(DType src) {
    switch (peer_dtype(src)) {
    case DType::f16: return 2e-6;
    case DType::bf16: return 1e-4;
    default: return 1e-10;
    }
}

// Error of a table the peer converted from its file dtype (0: it kept it, the op is exact).
double tol_convert(DType src) {
    const DType p = peer_dtype(src);
    if (p == src) return 0;
    return p == DType::f16 ? 1e-6 : 3e-5;
}

// ------------------------------------------------------------------------ guarded tensors

constexpr float kSentinel = -1234.5f;
const int32_t kSentinelI = int32_t(0xA5A5A5A5);  // negative: as an index it is out of bounds
const float kNaN = std::numeric_limits<float>::quiet_NaN();

enum class Role { in, out, inout };

// read()/read_i32() calls this file made on each backend: Backend::host_reads() must move by
// exactly these (the header: ops queue and return; reads are the only device-to-host syncs).
int64_t& my_reads(const Backend* B) {
    static std::map<const Backend*, int64_t> m;
    return m[B];
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

int64_t count_bit_diff(const float* a, const float* b, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; ++i) c += !same_bits(a[i], b[i]);
    return c;
}

// One tensor of an op: a rows() view of `rows` rows inside an allocation with g guard rows on
// each side. hf / hi hold what was written to the whole allocation.
struct Buf {
    Backend* B = nullptr;
    std::string name;
    Role role = Role::out;
    bool i32 = false;
    int64_t rows = 0, cols = 0, g = 0;
    Tensor full, t;
    std::vector<float> hf;
    std::vector<int32_t> hi;

    int64_t total() const { return (rows + 2 * g) * cols; }
    int64_t mid0() const { return g * cols; }
    int64_t mid_n() const { return rows * cols; }

    // Reads the allocation back: guard rows must be as written, and so must an input's middle.
    std::vector<float> get(const std::string& ctx) {
        REQUIRE(!i32);
        std::vector<float> all(static_cast<size_t>(total()));
        B->read(full, all.data(), total());
        ++my_reads(B);
        const int64_t before = count_bit_diff(all.data(), hf.data(), mid0());
        const int64_t after = count_bit_diff(all.data() + mid0() + mid_n(), hf.data() + mid0() + mid_n(), g * cols);
        CHECK_MESSAGE(before + after == 0, ctx << ": " << who(B) << " changed " << before << " values before and "
                                               << after << " after '" << name << "' (guard rows)");
        if (role == Role::in) {
            const int64_t mod = count_bit_diff(all.data() + mid0(), hf.data() + mid0(), mid_n());
            CHECK_MESSAGE(mod == 0, ctx << ": " << who(B) << " modified " << mod << " values of its input '" << name << "'");
        }
        return std::vector<float>(all.begin() + mid0(), all.begin() + mid0() + mid_n());
    }
    std::vector<int32_t> get_i32(const std::string& ctx) {
        REQUIRE(i32);
        std::vector<int32_t> all(static_cast<size_t>(total()));
        B->read_i32(full, all.data(), total());
        ++my_reads(B);
        int64_t before = 0, after = 0;
        for (int64_t i = 0; i < mid0(); ++i) before += all[size_t(i)] != hi[size_t(i)];
        for (int64_t i = mid0() + mid_n(); i < total(); ++i) after += all[size_t(i)] != hi[size_t(i)];
        CHECK_MESSAGE(before + after == 0, ctx << ": " << who(B) << " changed " << before << " values before and "
                                               << after << " after '" << name << "' (guard rows)");
        if (role == Role::in) {
            int64_t mod = 0;
            for (int64_t i = mid0(); i < mid0() + mid_n(); ++i) mod += all[size_t(i)] != hi[size_t(i)];
            CHECK_MESSAGE(mod == 0, ctx << ": " << who(B) << " modified " << mod << " values of its input '" << name << "'");
        }
        return std::vector<int32_t>(all.begin() + mid0(), all.begin() + mid0() + mid_n());
    }
};

Buf fbuf(Backend& B, const char* name, Role role, int64_t rows, int64_t cols, const std::vector<float>& mid = {}) {
    Buf b;
    b.B = &B;
    b.name = name;
    b.role = role;
    b.rows = rows;
    b.cols = cols;
    b.g = g_guard;
    Status st = B.alloc(rows + 2 * b.g, cols, &b.full);
    REQUIRE_MESSAGE(st.ok(), who(&B) << ": alloc " << name << ": " << st.to_string());
    b.t = B.rows(b.full, b.g, rows);
    b.hf.assign(size_t(b.total()), role == Role::in ? kNaN : kSentinel);
    if (!mid.empty()) {
        REQUIRE(int64_t(mid.size()) == rows * cols);
        std::copy(mid.begin(), mid.end(), b.hf.begin() + b.mid0());
    }
    B.write(b.full, b.hf.data(), b.total());
    return b;
}

Buf ibuf(Backend& B, const char* name, Role role, int64_t rows, int64_t cols, const std::vector<int32_t>& mid = {}) {
    Buf b;
    b.B = &B;
    b.name = name;
    b.role = role;
    b.i32 = true;
    b.rows = rows;
    b.cols = cols;
    b.g = g_guard;
    Status st = B.alloc_i32(rows + 2 * b.g, cols, &b.full);
    REQUIRE_MESSAGE(st.ok(), who(&B) << ": alloc_i32 " << name << ": " << st.to_string());
    CHECK(b.full.dtype == DType::i32);
    b.t = B.rows(b.full, b.g, rows);
    b.hi.assign(size_t(b.total()), kSentinelI);
    if (!mid.empty()) {
        REQUIRE(int64_t(mid.size()) == rows * cols);
        std::copy(mid.begin(), mid.end(), b.hi.begin() + b.mid0());
    }
    B.write_i32(b.full, b.hi.data(), b.total());
    return b;
}

// ------------------------------------------------------------------------------ comparisons

struct Err {
    double nmse = 0, row = 0, max_abs = 0;
    int64_t nonfinite = 0, ref_nonfinite = 0, mismatched = 0;
};

Err measure(const std::vector<float>& got, const std::vector<float>& ref, int64_t cols) {
    Err e;
    REQUIRE(got.size() == ref.size());
    const int64_t rows = cols > 0 ? int64_t(ref.size()) / cols : 0;
    double num = 0, den = 0;
    std::vector<double> rn(size_t(rows), 0.0), rd(size_t(rows), 0.0);
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i])) { e.nonfinite++; continue; }
        if (!std::isfinite(ref[i])) { e.ref_nonfinite++; continue; }
        e.mismatched += !same_bits(got[i], ref[i]);
        const double d = double(got[i]) - ref[i];
        num += d * d;
        den += double(ref[i]) * ref[i];
        e.max_abs = std::max(e.max_abs, std::fabs(d));
        rn[i / size_t(cols)] += d * d;
        rd[i / size_t(cols)] += double(ref[i]) * ref[i];
    }
    e.nmse = den > 0 ? num / den : num;
    // Row NMSE, with rows far below the mean energy judged against a floor (1e-3 of the mean)
    // so that a near-zero row's rounding does not count as a localised error.
    const double mean_row = rows ? den / double(rows) : 0;
    for (int64_t r = 0; r < rows; ++r) {
        const double d = std::max(rd[size_t(r)], 1e-3 * mean_row);
        if (d > 0) e.row = std::max(e.row, rn[size_t(r)] / d);
        else e.row = std::max(e.row, rn[size_t(r)]);
    }
    return e;
}

// Peer against oracle. tol 0: bit-identical. row_tol < 0: 10x tol.
bool expect_close(const std::string& op, const std::string& shape, const std::string& dtype, const std::vector<float>& got,
                  const std::vector<float>& ref, int64_t cols, double tol, double row_tol = -1) {
    const Err e = measure(got, ref, cols);
    if (row_tol < 0) row_tol = 10 * tol;
    tol *= g_tol_scale;
    row_tol *= g_tol_scale;
    bool ok = e.nonfinite == 0 && e.ref_nonfinite == 0;
    std::string what;
    double ratio;
    if (tol == 0) {
        ok = ok && e.mismatched == 0;
        what = fmt("exact: %" PRId64 "/%zu differ", e.mismatched, got.size());
        ratio = double(e.mismatched);
    } else {
        ok = ok && e.nmse <= tol && e.row <= row_tol;
        what = fmt("nmse=%.2e row=%.2e tol=%.0e max|d|=%.2e", e.nmse, e.row, tol, e.max_abs);
        ratio = std::max(e.nmse / tol, e.row / row_tol);
    }
    if (e.nonfinite || e.ref_nonfinite) what += fmt(" nonfinite=%" PRId64 " (cpu %" PRId64 ")", e.nonfinite, e.ref_nonfinite);
    line(op, shape, dtype, what, ok, ratio);
    CHECK_MESSAGE(e.nonfinite == 0, op << " " << shape << ": " << e.nonfinite << " NaN/Inf in the peer's output");
    CHECK_MESSAGE(e.ref_nonfinite == 0, op << " " << shape << ": " << e.ref_nonfinite << " NaN/Inf in the cpu oracle's output");
    if (tol == 0) CHECK_MESSAGE(e.mismatched == 0, op << " " << shape << " " << dtype << ": not bit-identical");
    else {
        CHECK_MESSAGE(e.nmse <= tol, op << " " << shape << " " << dtype << ": nmse " << e.nmse << " > " << tol);
        CHECK_MESSAGE(e.row <= row_tol, op << " " << shape << " " << dtype << ": worst row nmse " << e.row << " > " << row_tol);
    }
    return ok;
}

template <class T>
int64_t first_diff(const std::vector<T>& a, const std::vector<T>& b, int64_t* count) {
    int64_t first = -1;
    *count = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
        if (!(a[i] == b[i])) {
            if (first < 0) first = int64_t(i);
            ++*count;
        }
    if (a.size() != b.size()) ++*count;
    return first;
}

bool expect_equal(const std::string& op, const std::string& shape, const std::vector<int32_t>& got,
                  const std::vector<int32_t>& ref, const char* who = "I32") {
    int64_t n = 0;
    const int64_t first = first_diff(got, ref, &n);
    std::string what = fmt("exact: %" PRId64 "/%zu differ", n, ref.size());
    if (first >= 0) what += fmt(" (first at %" PRId64 ": %d vs %d)", first, got[size_t(first)], ref[size_t(first)]);
    line(op, shape, who, what, n == 0, double(n));
    CHECK_MESSAGE(n == 0, op << " " << shape << ": " << what);
    return n == 0;
}

// The oracle against the header's definition, computed on the host here.
void oracle_equal(const std::string& op, const std::string& shape, const std::vector<int32_t>& cpu,
                  const std::vector<int32_t>& host) {
    int64_t n = 0;
    const int64_t first = first_diff(cpu, host, &n);
    std::string what = fmt("cpu vs host: %" PRId64 " differ", n);
    if (first >= 0) what += fmt(" (first at %" PRId64 ": %d vs %d)", first, cpu[size_t(first)], host[size_t(first)]);
    line(op + " oracle", shape, "I32", what, n == 0);
    CHECK_MESSAGE(n == 0, op << " " << shape << ": the cpu oracle disagrees with the header's definition: " << what);
}

void oracle_close(const std::string& op, const std::string& shape, const std::vector<float>& cpu,
                  const std::vector<float>& host, int64_t cols, double tol) {
    const Err e = measure(cpu, host, cols);
    const bool ok = e.nonfinite == 0 && e.nmse <= tol;
    line(op + " oracle", shape, "F32", fmt("cpu vs host: nmse=%.2e tol=%.0e", e.nmse, tol), ok);
    CHECK_MESSAGE(ok, op << " " << shape << ": the cpu oracle disagrees with the header's definition: nmse " << e.nmse);
}

// allocated_bytes() of both backends is back where it was when the case started.
struct LeakCheck {
    int64_t r0, p0;
    LeakCheck() : r0(g_ref->allocated_bytes()), p0(g_peer->allocated_bytes()) {}
    void done(const char* what) const {
        if (g_track_ref)
            CHECK_MESSAGE(g_ref->allocated_bytes() == r0, what << ": cpu allocated_bytes " << g_ref->allocated_bytes() << " != " << r0);
        if (g_track_peer)
            CHECK_MESSAGE(g_peer->allocated_bytes() == p0,
                          what << ": peer allocated_bytes " << g_peer->allocated_bytes() << " != " << p0 << " after every tensor was freed");
    }
};

std::string rc(int64_t r, int64_t c) { return fmt("[%" PRId64 ",%" PRId64 "]", r, c); }

// Runs f (build inputs, queue ops, read outputs) on one backend; afterwards the backend holds
// no pending error (take_error) and made no device-to-host reads besides this file's.
template <class F>
auto run_on(Backend& B, F&& f) {
    const int64_t r0 = B.host_reads(), m0 = my_reads(&B);
    auto out = f(B);
    const int64_t extra = (B.host_reads() - r0) - (my_reads(&B) - m0);
    CHECK_MESSAGE(extra == 0, who(&B) << ": the ops made " << extra << " device-to-host reads of their own (host_reads)");
    Status st = B.take_error();
    CHECK_MESSAGE(st.ok(), who(&B) << ": take_error after the ops: " << st.to_string());
    return out;
}

// Runs f on the oracle and on the peer; returns {peer, cpu}.
template <class F>
auto both(F&& f) {
    auto ref = run_on(*g_ref, f);
    auto got = run_on(*g_peer, f);
    return std::make_pair(std::move(got), std::move(ref));
}

}  // namespace

// ============================================================================== memory

TEST_CASE("alloc; write/read; alloc_i32; rows() views; allocated_bytes") {
    for (Backend* B : {g_ref.get(), g_peer.get()}) {
        const int64_t a0 = B->allocated_bytes(), reads0 = B->host_reads();
        {
            Tensor t;
            REQUIRE(B->alloc(1000, 1001, &t).ok());
            CHECK(t.rows == 1000);
            CHECK(t.cols == 1001);
            CHECK(t.dtype == DType::f32);
            CHECK(B->allocated_bytes() - a0 >= int64_t(1000) * 1001 * 4);
            auto v = randn(1001 * 1000, 1);
            B->write(t, v.data(), t.numel());
            std::vector<float> back(v.size());
            B->read(t, back.data(), t.numel());
            CHECK(count_bit_diff(back.data(), v.data(), t.numel()) == 0);
            // offset write/read, through a view
            Tensor r = B->rows(t, 7, 3);
            CHECK(r.rows == 3);
            const std::vector<float> ones(3 * 1001, 1.f);
            B->write(r, ones.data(), 2 * 1001, 1001);  // rows 8 and 9 of t
            B->read(t, back.data(), t.numel());
            CHECK(back[7 * 1001] == v[7 * 1001]);
            CHECK(back[8 * 1001] == 1.f);
            CHECK(back[10 * 1001 - 1] == 1.f);
            CHECK(back[10 * 1001] == v[10 * 1001]);
            std::vector<float> part(5);
            B->read(t, part.data(), 5, 123457);
            CHECK(count_bit_diff(part.data(), v.data() + 123457, 5) == 0);

            Tensor it;
            REQUIRE(B->alloc_i32(37, 3, &it).ok());
            CHECK(it.dtype == DType::i32);
            std::vector<int32_t> iv(37 * 3);
            for (size_t i = 0; i < iv.size(); ++i) iv[i] = int32_t(i * 2654435761u);
            B->write_i32(it, iv.data(), it.numel());
            std::vector<int32_t> ib(iv.size());
            B->read_i32(it, ib.data(), it.numel());
            CHECK(ib == iv);
            Tensor iv2 = B->rows(it, 10, 2);
            const int32_t k[2] = {-5, 77};
            B->write_i32(iv2, k, 2, 1);  // elements 31 and 32 of it
            B->read_i32(it, ib.data(), it.numel());
            CHECK(ib[30] == iv[30]);
            CHECK(ib[31] == -5);
            CHECK(ib[32] == 77);
            CHECK(ib[33] == iv[33]);
            B->synchronize();
            CHECK_MESSAGE(B->host_reads() - reads0 == 5, who(B) << ": host_reads counts every read/read_i32");
            CHECK(B->take_error().ok());
        }
        const int64_t a1 = B->allocated_bytes();
        const bool back_to_start = a1 == a0;
        std::printf("%-20s %-52s %-12s %s\n", "allocated_bytes", who(B).c_str(), "",
                    back_to_start ? "returns to its start after the tensors are freed" : "DOES NOT return to its start");
        CHECK_MESSAGE(back_to_start, who(B) << ": allocated_bytes " << a1 << " after freeing everything, was " << a0);
        if (B == g_ref.get()) g_track_ref = back_to_start;
        else g_track_peer = back_to_start;
    }
}

TEST_CASE("random_weight: shape; dtype; moments; determinism by seed") {
    LeakCheck lc;
    for (Backend* B : {g_ref.get(), g_peer.get()}) {
        struct C { int64_t r, c; uint64_t seed; float mean, std; };
        for (const C& c : {C{256, 1024, 7, 0.f, 0.02f}, C{33, 65, 8, 1.f, 0.5f}, C{64, 64, 9, 0.25f, 0.f}}) {
            // A weight is read back through get_rows (the op for tables of any dtype).
            auto values = [&](uint64_t seed) {
                Tensor w;
                Status st = B->random_weight(c.r, c.c, seed, c.mean, c.std, &w);
                REQUIRE_MESSAGE(st.ok(), st.to_string());
                CHECK(w.rows == c.r);
                CHECK(w.cols == c.c);
                CHECK(w.dtype != DType::i32);
                std::vector<int32_t> ids(static_cast<size_t>(c.r));
                std::iota(ids.begin(), ids.end(), 0);
                Buf out = fbuf(*B, "out", Role::out, c.r, c.c);
                B->get_rows(w, ids.data(), c.r, out.t, 0);
                return std::make_pair(out.get("random_weight"), w.dtype);
            };
            auto [v, dt] = values(c.seed);
            double s = 0, ss = 0;
            int64_t bad = 0;
            for (float x : v) {
                bad += !std::isfinite(x);
                s += x;
                ss += double(x) * x;
            }
            const double n = double(v.size()), mean = s / n, sd = std::sqrt(std::max(0.0, ss / n - mean * mean));
            const std::string shape = fmt("%s %s mean=%g std=%g", who(B).c_str(), rc(c.r, c.c).c_str(), c.mean, c.std);
            // The moments of N(mean, std) rounded to the weight dtype; 6 sigma of the estimate.
            const double tol_mean = 6 * c.std / std::sqrt(n) + 4e-3 * std::fabs(c.mean);
            const bool ok = bad == 0 && std::fabs(mean - c.mean) <= tol_mean &&
                            (c.std == 0 ? sd <= 4e-3 * std::fabs(c.mean) : std::fabs(sd - c.std) <= 0.05 * c.std);
            line("random_weight", shape, dtype_name(dt), fmt("mean=%.5f std=%.5f", mean, sd), ok);
            CHECK(bad == 0);
            CHECK(std::fabs(mean - c.mean) <= tol_mean);
            if (c.std == 0) CHECK(sd <= 4e-3 * std::fabs(c.mean));
            else CHECK(std::fabs(sd - c.std) <= 0.05 * c.std);
            CHECK(values(c.seed).first == v);  // same seed, same values
            if (c.std > 0) CHECK(values(c.seed + 1).first != v);
        }
    }
    lc.done("random_weight");
}

// ============================================================================== dense ops

TEST_CASE("matmul: aligned and awkward shapes; GEMV and large n; F32/F16/BF16 weights; with and without bias") {
    LeakCheck lc;
    struct S { int64_t n, k, m; };
    const S shapes[] = {{64, 128, 256}, {1, 7, 13}, {3, 97, 33}, {129, 65, 130}, {1, 4096, 512}, {1, 1024, 1001},
                        {2, 64, 32000}, {577, 256, 192}, {16, 4096, 1024}, {1153, 64, 96}};
    uint32_t seed = 100;
    for (const S& s : shapes)
        for (DType dt : {DType::f32, DType::f16, DType::bf16})
            for (bool with_bias : {false, true}) {
                if (skip_big("matmul", fmt("n=%" PRId64 " k=%" PRId64 " m=%" PRId64, s.n, s.k, s.m), double(s.n) * s.k * s.m)) continue;
                const auto xv = randn(size_t(s.n * s.k), ++seed);
                const auto wv = randn(size_t(s.m * s.k), ++seed, 1.f / std::sqrt(float(s.k)));
                const auto bv = randn(size_t(s.m), ++seed, 0.5f);
                const TensorView wt = host_weight(dt, wv, {s.m, s.k});
                const TensorView bt = host_weight(dt, bv, {s.m});
                auto [got, ref] = both([&](Backend& B) {
                    Tensor w = upload(B, wt, s.m, s.k), b;
                    if (with_bias) b = upload(B, bt, 1, s.m);
                    Buf x = fbuf(B, "x", Role::in, s.n, s.k, xv), y = fbuf(B, "y", Role::out, s.n, s.m);
                    B.matmul(x.t, w, with_bias ? &b : nullptr, y.t);
                    x.get("matmul");
                    return y.get("matmul");
                });
                expect_close("matmul", fmt("n=%" PRId64 " k=%" PRId64 " m=%" PRId64 "%s", s.n, s.k, s.m, with_bias ? " +bias" : ""),
                             wname(dt), got, ref, s.m, tol_matmul(dt));
            }
    lc.done("matmul");
}

TEST_CASE("layer_norm and rms_norm: widths; weights from alloc and from every dtype; y aliasing x") {
    LeakCheck lc;
    // scale 1e-3: mean(x^2) ~ 1e-6 is comparable to eps, so a wrong eps shows (at unit scale it
    // moves the output by ~eps / 2 only). mean 100, unit spread: a one-pass E[x^2] - E[x]^2 in F32
    // loses ~1e-3 of the variance (NMSE ~1e-7); a two-pass F32 mean and variance stays near 1e-10,
    // hence this case's 1e-8; the oracle is two-pass in double.
    struct S { int64_t r, d; float mean, scale; };
    const S shapes[] = {{1, 32, 0.f, 1.f}, {7, 13, 0.f, 1.f}, {577, 1024, 0.f, 1.f}, {3, 4096, 0.f, 1.f}, {16, 1024, 100.f, 1.f},
                        {8, 1024, 0.f, 1e-3f}};
    uint32_t seed = 200;
    for (const S& s : shapes)
        for (int wk = 0; wk < 4; ++wk)  // 0: F32 activation tensors; 1..3: uploaded F32/F16/BF16 weights
            for (bool alias : {false, true}) {
                if (alias && wk != 0 && wk != 2) continue;
                const DType dt = wk == 2 ? DType::f16 : wk == 3 ? DType::bf16 : DType::f32;
                const auto xv = randn(size_t(s.r * s.d), ++seed, s.scale, s.mean);
                const auto wv = randn(size_t(s.d), ++seed, 0.3f, 1.f), bv = randn(size_t(s.d), ++seed, 0.2f);
                std::vector<float> wh, bh;
                const TensorView wt = host_weight(dt, wv, {s.d}, &wh), bt = host_weight(dt, bv, {s.d}, &bh);
                const std::string shape = fmt("%s mean=%g scale=%g%s", rc(s.r, s.d).c_str(), double(s.mean), double(s.scale), alias ? " y=x" : "");
                const std::string dts = wk == 0 ? "w=alloc" : "w=" + wname(dt);
                const double tol = (s.mean != 0 ? 1e-8 : 1e-10) + (wk == 0 ? 0 : tol_convert(dt));
                for (int op = 0; op < 2; ++op) {
                    auto [got, ref] = both([&](Backend& B) {
                        Buf x = fbuf(B, "x", alias ? Role::inout : Role::in, s.r, s.d, xv);
                        Buf y = alias ? Buf{} : fbuf(B, "y", Role::out, s.r, s.d);
                        Buf wb, bb;
                        Tensor w, b;
                        if (wk == 0) {
                            wb = fbuf(B, "w", Role::in, 1, s.d, wh);
                            bb = fbuf(B, "b", Role::in, 1, s.d, bh);
                            w = wb.t;
                            b = bb.t;
                        } else {
                            w = upload(B, wt, 1, s.d);
                            b = upload(B, bt, 1, s.d);
                        }
                        Tensor& yt = alias ? x.t : y.t;
                        if (op == 0) B.layer_norm(x.t, w, b, 1e-5f, yt);
                        else B.rms_norm(x.t, w, 1e-6f, yt);
                        if (wk == 0) {
                            wb.get("norm");
                            bb.get("norm");
                        }
                        auto xr = x.get("norm");
                        return alias ? xr : y.get("norm");
                    });
                    expect_close(op == 0 ? "layer_norm" : "rms_norm", shape, dts, got, ref, s.d, tol);
                }
            }
    lc.done("norms");
}

TEST_CASE("add and add_rows (broadcast and not; tables of every dtype)") {
    LeakCheck lc;
    uint32_t seed = 300;
    for (auto [r, c] : {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {577, 1024}}) {
        const auto yv = randn(size_t(r * c), ++seed), xv = randn(size_t(r * c), ++seed);
        auto [got, ref] = both([&](Backend& B) {
            Buf y = fbuf(B, "y", Role::inout, r, c, yv), x = fbuf(B, "x", Role::in, r, c, xv);
            B.add(y.t, x.t);
            x.get("add");
            return y.get("add");
        });
        expect_close("add", rc(r, c), "F32", got, ref, c, 0);
    }
    struct S { int64_t yr, d, tr, y0, t0, n; bool bc; };
    const S cases[] = {{20, 32, 17, 3, 5, 10, false}, {20, 32, 17, 3, 2, 12, true}, {3 * 577, 1024, 577, 577, 0, 577, false},
                       {6 * 16, 64, 6, 32, 2, 16, true}, {7, 13, 1, 0, 0, 7, true}};
    for (const S& s : cases)
        for (int tk = 0; tk < 4; ++tk) {  // 0: F32 activation table; 1..3: uploaded F32/F16/BF16
            const DType dt = tk == 2 ? DType::f16 : tk == 3 ? DType::bf16 : DType::f32;
            const auto yv = randn(size_t(s.yr * s.d), ++seed), tv = randn(size_t(s.tr * s.d), ++seed);
            std::vector<float> th;
            const TensorView tt = host_weight(dt, tv, {s.tr, s.d}, &th);
            auto [got, ref] = both([&](Backend& B) {
                Buf y = fbuf(B, "y", Role::inout, s.yr, s.d, yv), tb;
                Tensor table;
                if (tk == 0) {
                    tb = fbuf(B, "table", Role::in, s.tr, s.d, th);
                    table = tb.t;
                } else {
                    table = upload(B, tt, s.tr, s.d);
                }
                B.add_rows(y.t, s.y0, table, s.t0, s.n, s.bc);
                if (tk == 0) tb.get("add_rows");
                return y.get("add_rows");
            });
            // rows outside [y0, y0 + n) stay as they were, on both
            int64_t moved = 0;
            for (int64_t i = 0; i < s.yr * s.d; ++i) {
                const int64_t row = i / s.d;
                if (row < s.y0 || row >= s.y0 + s.n) moved += !same_bits(got[size_t(i)], yv[size_t(i)]) + !same_bits(ref[size_t(i)], yv[size_t(i)]);
            }
            CHECK_MESSAGE(moved == 0, "add_rows wrote rows outside [y_row0, y_row0 + n)");
            expect_close("add_rows",
                         fmt("y%s t%s y0=%" PRId64 " t0=%" PRId64 " n=%" PRId64 "%s", rc(s.yr, s.d).c_str(), rc(s.tr, s.d).c_str(), s.y0,
                             s.t0, s.n, s.bc ? " bcast" : ""),
                         tk == 0 ? "t=alloc" : "t=" + wname(dt), got, ref, s.d, tk == 0 ? 0 : tol_convert(dt));
        }
    lc.done("add");
}

TEST_CASE("unary: gelu; quick_gelu; silu; including large magnitudes") {
    LeakCheck lc;
    uint32_t seed = 400;
    const std::pair<Unary, const char*> ops[] = {{Unary::gelu, "gelu"}, {Unary::quick_gelu, "quick_gelu"}, {Unary::silu, "silu"}};
    for (auto [r, c] : {std::pair<int64_t, int64_t>{1, 1}, {33, 97}, {577, 4096}})
        for (auto [op, name] : ops) {
            auto v = randn(size_t(r * c), ++seed, 3.f);
            const float extremes[] = {0.f, -0.f, 1e-4f, -1e-4f, 20.f, -20.f, 60.f, -60.f, 100.f, -100.f, 1e4f, -1e4f};
            for (size_t i = 0; i < std::size(extremes) && i < v.size(); ++i) v[i] = extremes[i];
            auto [got, ref] = both([&](Backend& B) {
                Buf y = fbuf(B, "y", Role::inout, r, c, v);
                B.unary(op, y.t);
                return y.get(name);
            });
            expect_close(std::string("unary ") + name, rc(r, c), "F32", got, ref, c, 1e-10);
        }
    lc.done("unary");
}

TEST_CASE("swiglu; separate output and y aliasing gate") {
    LeakCheck lc;
    uint32_t seed = 500;
    for (auto [r, c] : {std::pair<int64_t, int64_t>{1, 160}, {37, 688}, {577, 4096}})
        for (bool alias : {false, true}) {
            const auto gv = randn(size_t(r * c), ++seed, 2.f), uv = randn(size_t(r * c), ++seed);
            auto [got, ref] = both([&](Backend& B) {
                Buf g = fbuf(B, "gate", alias ? Role::inout : Role::in, r, c, gv), u = fbuf(B, "up", Role::in, r, c, uv);
                Buf y = alias ? Buf{} : fbuf(B, "y", Role::out, r, c);
                B.swiglu(g.t, u.t, alias ? g.t : y.t);
                u.get("swiglu");
                auto gr = g.get("swiglu");
                return alias ? gr : y.get("swiglu");
            });
            expect_close("swiglu", rc(r, c) + (alias ? " y=gate" : ""), "F32", got, ref, c, 1e-10);
        }
    lc.done("swiglu");
}

TEST_CASE("rope: positions tensor; head_dim 2/16/64/128; odd head counts; large and repeated positions") {
    LeakCheck lc;
    struct S { int64_t n; int heads, hd; float theta; int pos_kind; };  // 0 ascending, 1 random + repeats, 2 gaps
    const S cases[] = {{1, 32, 128, 10000.f, 1}, {17, 5, 128, 10000.f, 1}, {300, 7, 64, 10000.f, 2}, {64, 4, 16, 10000.f, 0},
                       {33, 8, 64, 500000.f, 1}, {5, 3, 2, 10000.f, 0}, {577, 2, 128, 10000.f, 2}};
    uint32_t seed = 600;
    for (const S& s : cases) {
        const int64_t cols = int64_t(s.heads) * s.hd;
        const auto xv = randn(size_t(s.n * cols), ++seed);
        std::vector<int32_t> pos(static_cast<size_t>(s.n));
        std::mt19937 g(++seed);
        for (int64_t i = 0; i < s.n; ++i) {
            if (s.pos_kind == 0) pos[size_t(i)] = int32_t(i);
            else if (s.pos_kind == 1) pos[size_t(i)] = int32_t(g() % 4096);
            else pos[size_t(i)] = int32_t(std::min<int64_t>(4095, i * 7 + (i % 3)));
        }
        if (s.n > 3 && s.pos_kind == 1) pos[1] = pos[2];  // merged rows share a position
        if (s.n > 0) pos[0] = s.pos_kind == 1 ? 4095 : 0;
        auto [got, ref] = both([&](Backend& B) {
            Buf x = fbuf(B, "x", Role::inout, s.n, cols, xv);
            Buf p = ibuf(B, "positions", Role::in, s.n, 1, pos);
            B.rope(x.t, s.heads, s.hd, p.t, s.theta);
            p.get_i32("rope");
            return x.get("rope");
        });
        expect_close("rope", fmt("n=%" PRId64 " heads=%d hd=%d theta=%g", s.n, s.heads, s.hd, double(s.theta)), "F32", got, ref,
                     cols, 1e-6);
    }
    lc.done("rope");
}

namespace {
struct AttnCase {
    int nh, nkv, hd;
    int64_t nq, n_kv, cache, off;
    bool causal;
    int batch;
};
std::string attn_shape(const AttnCase& c) {
    return fmt("h=%d/%d hd=%d nq=%" PRId64 " nkv=%" PRId64 "/%" PRId64 " off=%" PRId64 " %s", c.nh, c.nkv, c.hd, c.nq, c.n_kv,
               c.cache, c.off, c.causal ? "causal" : fmt("blocks=%d", c.batch).c_str());
}
AttentionParams attn_params(const AttnCase& c) {
    AttentionParams p;
    p.n_head = c.nh;
    p.n_kv_head = c.nkv;
    p.head_dim = c.hd;
    p.n_kv = c.n_kv;
    p.kv_offset = c.off;
    p.causal = c.causal;
    p.n_batch = c.batch;
    p.scale = 1.f / std::sqrt(float(c.hd));
    return p;
}
// k, v [cache, n_kv_heads * hd]: rows >= n_kv are NaN (an unfilled cache holds garbage; an op
// that reads past n_kv, or masks by adding -inf to NaN, fails the NaN check).
std::vector<float> kv_rows(const AttnCase& c, uint32_t seed) {
    const int64_t kvd = int64_t(c.nkv) * c.hd;
    auto v = randn(size_t(c.cache * kvd), seed);
    std::fill(v.begin() + c.n_kv * kvd, v.end(), kNaN);
    return v;
}
}  // namespace

TEST_CASE("attention: causal with cache offset; decode; GQA 4; non-causal blocks; lengths 1..3462; both CUDA paths") {
    LeakCheck lc;
    const AttnCase cases[] = {
        {4, 4, 64, 17, 17, 17, 0, true, 1},          {8, 2, 128, 577, 577, 577, 0, true, 1},
        {4, 1, 128, 1153, 1153, 1153, 0, true, 1},   {32, 8, 128, 1, 1153, 2048, 1152, true, 1},
        {4, 4, 32, 1, 1, 8, 0, true, 1},             {8, 2, 64, 17, 117, 256, 100, true, 1},
        {8, 8, 128, 1, 577, 640, 576, true, 1},      {2, 2, 32, 6 * 17, 6 * 17, 6 * 17, 0, false, 6},
        {4, 4, 64, 6 * 577, 6 * 577, 6 * 577, 0, false, 6}, {16, 16, 64, 577, 577, 600, 0, false, 1},
        {4, 2, 16, 70, 70, 80, 0, true, 1},          {2, 2, 16, 3 * 17, 3 * 17, 3 * 17, 0, false, 3},
        // the tensor-core path (>= 32 rows, head_dim 64/128): a cache offset under GQA, a partial
        // 64-row tile, view blocks that end inside a tile
        {8, 2, 64, 64, 164, 256, 100, true, 1},      {4, 4, 128, 33, 33, 40, 0, true, 1},
        {4, 4, 64, 3 * 50, 3 * 50, 3 * 50, 0, false, 3},
    };
    uint32_t seed = 700;
    for (const AttnCase& c : cases) {
        const int64_t qd = int64_t(c.nh) * c.hd, kvd = int64_t(c.nkv) * c.hd;
        if (skip_big("attention", attn_shape(c), 2.0 * c.nh * c.nq * (c.causal ? c.n_kv : c.n_kv / c.batch) * c.hd)) continue;
        const auto qv = randn(size_t(c.nq * qd), ++seed, 1.5f);
        const auto kv = kv_rows(c, ++seed), vv = kv_rows(c, ++seed);
        const AttentionParams p = attn_params(c);
        auto [got, ref] = both([&](Backend& B) {
            Buf q = fbuf(B, "q", Role::in, c.nq, qd, qv), k = fbuf(B, "k", Role::in, c.cache, kvd, kv),
                v = fbuf(B, "v", Role::in, c.cache, kvd, vv), o = fbuf(B, "out", Role::out, c.nq, qd);
            B.attention(q.t, k.t, v.t, o.t, p);
            q.get("attention");
            k.get("attention");
            v.get("attention");
            return o.get("attention");
        });
        expect_close("attention", attn_shape(c), "F32", got, ref, qd, 2e-5, 1e-3);
    }
    lc.done("attention");
}

TEST_CASE("attention_probs: text rows; class rows of view blocks; cache offset; decode") {
    LeakCheck lc;
    struct C { AttnCase a; std::vector<int32_t> rows; };
    std::vector<int32_t> last10(10), cls6(6), cls3(3);
    std::iota(last10.begin(), last10.end(), 567);
    for (int v = 0; v < 6; ++v) cls6[size_t(v)] = v * 577;
    for (int v = 0; v < 3; ++v) cls3[size_t(v)] = v * 17;
    const C cases[] = {
        {{8, 2, 64, 577, 577, 577, 0, true, 1}, last10},
        {{4, 2, 32, 20, 120, 160, 100, true, 1}, {0, 5, 19}},
        {{2, 2, 16, 3 * 17, 3 * 17, 3 * 17, 0, false, 3}, cls3},
        {{16, 16, 64, 6 * 577, 6 * 577, 6 * 577, 0, false, 6}, cls6},
        {{32, 8, 128, 1, 1153, 1200, 1152, true, 1}, {0}},
        {{4, 4, 16, 40, 40, 40, 0, true, 1}, {0, 1, 39, 20}},
    };
    uint32_t seed = 800;
    for (const C& cc : cases) {
        const AttnCase& c = cc.a;
        const int64_t qd = int64_t(c.nh) * c.hd, kvd = int64_t(c.nkv) * c.hd, nr = int64_t(cc.rows.size());
        if (skip_big("attention_probs", attn_shape(c), double(c.nh) * nr * c.n_kv * c.hd)) continue;
        const auto qv = randn(size_t(c.nq * qd), ++seed, 1.5f);
        const auto kv = kv_rows(c, ++seed);
        const AttentionParams p = attn_params(c);
        auto [got, ref] = both([&](Backend& B) {
            Buf q = fbuf(B, "q", Role::in, c.nq, qd, qv), k = fbuf(B, "k", Role::in, c.cache, kvd, kv),
                pr = fbuf(B, "probs", Role::out, c.nh * nr, c.n_kv);
            std::vector<int32_t> rows = cc.rows;
            B.attention_probs(q.t, k.t, rows.data(), nr, pr.t, p);
            std::fill(rows.begin(), rows.end(), 0x7fffffff);  // the contract: reusable at once
            q.get("attention_probs");
            k.get("attention_probs");
            return pr.get("attention_probs");
        });
        // masked entries are exactly 0 on both
        int64_t zeros = 0;
        for (size_t i = 0; i < ref.size(); ++i)
            if (ref[i] == 0.f || got[i] == 0.f) zeros += !(ref[i] == 0.f && got[i] == 0.f);
        CHECK_MESSAGE(zeros == 0, "attention_probs: " << zeros << " entries zero on one side only (masking differs)");
        expect_close("attention_probs", attn_shape(c) + fmt(" rows=%" PRId64, nr), "F32", got, ref, c.n_kv, 2e-5, 1e-3);
    }
    lc.done("attention_probs");
}

// ============================================================================== row ops

TEST_CASE("get_rows: F32/F16/BF16 tables; repeated ids; out_row0") {
    LeakCheck lc;
    struct S { int64_t V, d, n, out_rows, row0; };
    const S cases[] = {{512, 64, 37, 45, 5}, {300, 4096, 3, 4, 1}, {32064, 64, 1, 1, 0}, {17, 13, 40, 42, 2}};
    uint32_t seed = 900;
    for (const S& s : cases)
        for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
            const auto tv = randn(size_t(s.V * s.d), ++seed);
            const TensorView tt = host_weight(dt, tv, {s.V, s.d});
            std::vector<int32_t> ids(static_cast<size_t>(s.n));
            std::mt19937 g(++seed);
            for (auto& i : ids) i = int32_t(g() % uint32_t(s.V));
            ids[0] = int32_t(s.V - 1);
            if (s.n > 2) ids[2] = ids[1];
            const auto init = randn(size_t(s.out_rows * s.d), ++seed);
            auto [got, ref] = both([&](Backend& B) {
                Tensor table = upload(B, tt, s.V, s.d);
                Buf out = fbuf(B, "out", Role::inout, s.out_rows, s.d, init);
                std::vector<int32_t> host = ids;
                B.get_rows(table, host.data(), s.n, out.t, s.row0);
                std::fill(host.begin(), host.end(), -1);
                return out.get("get_rows");
            });
            // rows not written keep their values
            int64_t moved = 0;
            for (int64_t i = 0; i < s.out_rows * s.d; ++i) {
                const int64_t r = i / s.d;
                if (r < s.row0 || r >= s.row0 + s.n) moved += !same_bits(got[size_t(i)], init[size_t(i)]);
            }
            CHECK_MESSAGE(moved == 0, "get_rows wrote rows it was not asked to");
            expect_close("get_rows", fmt("table%s n=%" PRId64 " row0=%" PRId64, rc(s.V, s.d).c_str(), s.n, s.row0), "t=" + wname(dt),
                         got, ref, s.d, tol_convert(dt));
        }
    lc.done("get_rows");
}

TEST_CASE("copy_rows") {
    LeakCheck lc;
    struct S { int64_t sr, dr, d, s0, d0, n; };
    const S cases[] = {{50, 40, 96, 7, 13, 20}, {577, 2048, 1024, 0, 1100, 577}, {5, 5, 13, 4, 0, 1}, {64, 64, 1, 0, 0, 64}};
    uint32_t seed = 1000;
    for (const S& s : cases) {
        const auto sv = randn(size_t(s.sr * s.d), ++seed), dv = randn(size_t(s.dr * s.d), ++seed);
        auto [got, ref] = both([&](Backend& B) {
            Buf src = fbuf(B, "src", Role::in, s.sr, s.d, sv), dst = fbuf(B, "dst", Role::inout, s.dr, s.d, dv);
            B.copy_rows(src.t, s.s0, s.n, dst.t, s.d0);
            src.get("copy_rows");
            return dst.get("copy_rows");
        });
        expect_close("copy_rows",
                     fmt("src%s[%" PRId64 ",+%" PRId64 ") -> dst%s@%" PRId64, rc(s.sr, s.d).c_str(), s.s0, s.n, rc(s.dr, s.d).c_str(), s.d0),
                     "F32", got, ref, s.d, 0);
    }
    lc.done("copy_rows");
}

TEST_CASE("gather_rows (host idx) and gather_rows_idx (I32 tensor idx); F32 and I32 rows") {
    LeakCheck lc;
    struct S { int64_t sr, d, n; };
    const S cases[] = {{100, 64, 37}, {1200, 4096, 600}, {10, 1, 10}, {50, 3, 1}, {7, 13, 20}};
    uint32_t seed = 1100;
    for (const S& s : cases) {
        std::vector<int32_t> idx(static_cast<size_t>(s.n));
        std::mt19937 g(++seed);
        for (auto& i : idx) i = int32_t(g() % uint32_t(s.sr));
        idx[0] = int32_t(s.sr - 1);  // last row, and repeats / descending runs
        if (s.n > 3) { idx[2] = idx[1]; idx[3] = 0; }
        const auto sv = randn(size_t(s.sr * s.d), ++seed);
        std::vector<int32_t> si(sv.size());
        for (size_t i = 0; i < si.size(); ++i) si[i] = int32_t(g());
        for (int via_tensor = 0; via_tensor < 2; ++via_tensor) {
            const char* op = via_tensor ? "gather_rows_idx" : "gather_rows";
            const std::string shape = fmt("src%s n=%" PRId64, rc(s.sr, s.d).c_str(), s.n);
            auto [gf, rf] = both([&](Backend& B) {
                Buf src = fbuf(B, "src", Role::in, s.sr, s.d, sv), dst = fbuf(B, "dst", Role::out, s.n, s.d);
                std::vector<int32_t> host = idx;
                // idx tensor [n + 5, 1]: the rows past n hold the (out-of-bounds) I32 sentinel
                std::vector<int32_t> padded = idx;
                padded.resize(size_t(s.n + 5), kSentinelI);
                Buf it = ibuf(B, "idx", Role::in, s.n + 5, 1, padded);
                if (via_tensor) B.gather_rows_idx(src.t, it.t, s.n, dst.t);
                else B.gather_rows(src.t, host.data(), s.n, dst.t);
                std::fill(host.begin(), host.end(), -1);
                src.get(op);
                it.get_i32(op);
                return dst.get(op);
            });
            expect_close(op, shape, "F32", gf, rf, s.d, 0);
            auto [gi, ri] = both([&](Backend& B) {
                Buf src = ibuf(B, "src", Role::in, s.sr, s.d, si), dst = ibuf(B, "dst", Role::out, s.n, s.d);
                std::vector<int32_t> host = idx;
                Buf it = ibuf(B, "idx", Role::in, s.n, 1, idx);
                if (via_tensor) B.gather_rows_idx(src.t, it.t, s.n, dst.t);
                else B.gather_rows(src.t, host.data(), s.n, dst.t);
                std::fill(host.begin(), host.end(), -1);
                src.get_i32(op);
                it.get_i32(op);
                return dst.get_i32(op);
            });
            expect_equal(op, shape, gi, ri);
            std::vector<int32_t> host_ref(size_t(s.n * s.d));
            for (int64_t i = 0; i < s.n; ++i)
                for (int64_t c = 0; c < s.d; ++c) host_ref[size_t(i * s.d + c)] = si[size_t(idx[size_t(i)] * s.d + c)];
            oracle_equal(op, shape, ri, host_ref);
        }
    }
    lc.done("gather_rows");
}

TEST_CASE("patch_embed: tiny and CLIP-like sizes; F32/F16/BF16 weights; class rows untouched") {
    LeakCheck lc;
    struct S { int S_, P, D, n_img; };
    const S cases[] = {{28, 7, 32, 1}, {28, 7, 32, 3}, {28, 7, 32, 6}, {336, 14, 256, 2}, {30, 5, 13, 2}};
    uint32_t seed = 1200;
    for (const S& s : cases)
        for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
            const int g = s.S_ / s.P, np = g * g, kk = 3 * s.P * s.P;
            const int64_t out_rows = int64_t(s.n_img) * (np + 1);
            if (skip_big("patch_embed", fmt("S=%d P=%d D=%d imgs=%d", s.S_, s.P, s.D, s.n_img), double(s.n_img) * np * kk * s.D)) continue;
            const auto img = randn(size_t(s.n_img) * 3 * s.S_ * s.S_, ++seed);
            const auto wv = randn(size_t(s.D) * kk, ++seed, 1.f / std::sqrt(float(kk)));
            const TensorView wt = host_weight(dt, wv, {s.D, 3, s.P, s.P});
            const auto init = randn(size_t(out_rows * s.D), ++seed);
            auto [got, ref] = both([&](Backend& B) {
                Tensor w = upload(B, wt, s.D, kk);
                Buf im = fbuf(B, "img", Role::in, int64_t(s.n_img) * 3, int64_t(s.S_) * s.S_, img);
                Buf out = fbuf(B, "out", Role::inout, out_rows, s.D, init);
                B.patch_embed(im.t, s.n_img, s.S_, s.P, w, out.t);
                im.get("patch_embed");
                return out.get("patch_embed");
            });
            // the class-token row of each image keeps its value; compare the patch rows
            std::vector<float> gp, rp;
            int64_t cls_moved = 0;
            for (int64_t r = 0; r < out_rows; ++r)
                for (int64_t c = 0; c < s.D; ++c) {
                    const size_t i = size_t(r * s.D + c);
                    if (r % (np + 1) == 0) cls_moved += !same_bits(got[i], init[i]) + !same_bits(ref[i], init[i]);
                    else {
                        gp.push_back(got[i]);
                        rp.push_back(ref[i]);
                    }
                }
            CHECK_MESSAGE(cls_moved == 0, "patch_embed wrote the class-token rows");
            expect_close("patch_embed", fmt("S=%d P=%d D=%d imgs=%d", s.S_, s.P, s.D, s.n_img), "w=" + wname(dt), gp, rp, s.D,
                         tol_matmul(dt));
        }
    lc.done("patch_embed");
}

TEST_CASE("preprocess: every pixel format; odd sizes; padded steps; pad and crop; slots") {
    LeakCheck lc;
    struct F { int w, h; PixelFormat f; int extra_step; };
    const F frames[] = {{37, 23, PixelFormat::rgb8, 3},  {23, 37, PixelFormat::bgr8, 1},    {1, 1, PixelFormat::rgba8, 0},
                        {2, 3, PixelFormat::bgra8, 5},  {640, 480, PixelFormat::mono8, 64}, {1600, 900, PixelFormat::bgr8, 0},
                        {336, 336, PixelFormat::rgb8, 0}, {100, 401, PixelFormat::rgba8, 12}, {333, 17, PixelFormat::mono8, 1}};
    const char* fnames[] = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8"};
    uint32_t seed = 1300;
    for (const F& fr : frames)
        for (int size : {28, 336})
            for (bool pad : {true, false}) {
                const int ch = pixel_format_channels(fr.f), step = fr.w * ch + fr.extra_step;
                const size_t need = size_t(step) * size_t(fr.h - 1) + size_t(fr.w * ch);
                std::vector<uint8_t> bytes(need);
                std::mt19937 g(++seed);
                // smooth content plus noise: resize rounding is exercised on realistic gradients too
                for (int y = 0; y < fr.h; ++y)
                    for (int x = 0; x < step && size_t(y) * step + x < need; ++x)
                        bytes[size_t(y) * step + x] = uint8_t((x * 7 + y * 3 + int(g() % 64)) & 0xff);
                PreprocessParams p;
                p.size = size;
                p.pad = pad;
                if (size == 28) {  // custom normalisation
                    p.mean[0] = 0.5f; p.mean[1] = 0.25f; p.mean[2] = 0.75f;
                    p.std[0] = 0.5f; p.std[1] = 0.3f; p.std[2] = 0.2f;
                }
                const int slot = int(seed % 3);
                const int64_t S2 = int64_t(size) * size;
                auto run = [&](Backend& B) {
                    Buf out = fbuf(B, "out", Role::out, 9, S2);  // three slots, all sentinel
                    std::vector<uint8_t> copy = bytes;
                    ImageInput in{copy.data(), copy.size(), fr.w, fr.h, step, fr.f};
                    Status st = B.preprocess(in, p, out.t, slot);
                    std::fill(copy.begin(), copy.end(), uint8_t(0x55));  // the frame may be reused at once
                    REQUIRE_MESSAGE(st.ok(), who(&B) << ": preprocess: " << st.to_string());
                    auto v = out.get("preprocess");
                    int64_t outside = 0;  // the other slots stay sentinel
                    for (int64_t i = 0; i < 9 * S2; ++i)
                        if (i / S2 / 3 != slot) outside += !same_bits(v[size_t(i)], kSentinel);
                    CHECK_MESSAGE(outside == 0, who(&B) << ": preprocess wrote outside slot " << slot);
                    return std::vector<float>(v.begin() + slot * 3 * S2, v.begin() + (slot + 1) * 3 * S2);
                };
                auto [got, ref] = both(run);
                // The oracle rounds to 8 bits after each of the two resize passes (PIL). A peer
                // summing the taps of the first pass in another order can land on the other side
                // of a .5 in a few intermediate pixels; the second pass then moves the output by
                // at most one level. So: levels = |peer - cpu| * std * 255; every value within one
                // level, at most 0.5 % of them (or 8 of a small output) more than 1e-3 level apart.
                int64_t off = 0, nonfinite = 0;
                double worst = 0;
                for (int64_t i = 0; i < 3 * S2; ++i) {
                    if (!std::isfinite(got[size_t(i)])) { ++nonfinite; continue; }
                    const double lv = std::fabs(double(got[size_t(i)]) - ref[size_t(i)]) * p.std[i / S2] * 255.0;
                    worst = std::max(worst, lv);
                    off += lv > 1e-3;
                }
                const double frac = double(off) / double(3 * S2);
                const bool few = off <= std::max<int64_t>(8, int64_t(5e-3 * double(3 * S2)));  // 0.5 %, or 8 values of a small output
                const bool ok = nonfinite == 0 && worst <= 1.0 + 1e-3 && few;
                line("preprocess", fmt("%dx%d %s step=%d -> %d %s slot=%d", fr.w, fr.h, fnames[int(fr.f)], step, size, pad ? "pad" : "crop", slot),
                     "U8->F32", fmt("max=%.3f levels, %.3f%% off by >1e-3", worst, 100 * frac), ok, worst);
                CHECK(nonfinite == 0);
                CHECK_MESSAGE(worst <= 1.0 + 1e-3, "preprocess: a value differs by " << worst << " 8-bit levels");
                CHECK_MESSAGE(few, "preprocess: " << off << " values (" << 100 * frac << "%) differ");
            }
    // Bad geometry: the same coded error on both, and nothing written.
    for (Backend* B : {g_ref.get(), g_peer.get()}) {
        std::vector<uint8_t> px(100);
        PreprocessParams p;
        p.size = 28;
        Buf out = fbuf(*B, "out", Role::out, 3, 28 * 28);
        const ImageInput bad[] = {{px.data(), px.size(), 4, 1, 3, PixelFormat::rgb8},    // step < width * 3
                                  {px.data(), px.size(), 10, 10, 30, PixelFormat::rgb8},  // buffer too short
                                  {px.data(), px.size(), 0, 2, 6, PixelFormat::rgb8},
                                  {nullptr, 0, 1, 1, 3, PixelFormat::rgb8}};
        for (const ImageInput& in : bad) CHECK_MESSAGE(B->preprocess(in, p, out.t, 0).code() == Code::image, who(B));
        const auto v = out.get("preprocess bad input");
        int64_t written = 0;
        for (float x : v) written += !same_bits(x, kSentinel);
        CHECK_MESSAGE(written == 0, who(B) << ": preprocess wrote " << written << " values for a rejected frame");
        line("preprocess", fmt("%s: rejected frames", who(B).c_str()), "", "Code::image, nothing written", written == 0);
    }
    lc.done("preprocess");
}

// ============================================================================== pruning ops

namespace {
// Row kinds: 0 other, 1 visual, 2 merged; random (a harder pattern than the engine's runs).
std::vector<int32_t> random_kinds(int64_t n, uint32_t seed, double p_other = 0.3, double p_merged = 0.1) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<int32_t> k(static_cast<size_t>(n));
    for (auto& x : k) {
        const double r = u(g);
        x = r < p_other ? 0 : r < p_other + p_merged ? 2 : 1;
    }
    return k;
}
}  // namespace

TEST_CASE("prune_scores: mean of probability rows over candidate columns") {
    LeakCheck lc;
    struct S { int64_t nr, n, ld; };
    const S cases[] = {{1, 17, 17}, {64, 600, 640}, {256, 1200, 1200}, {8, 5000, 5003}, {2 * 8, 60, 60}};
    uint32_t seed = 1400;
    for (const S& s : cases) {
        const auto probs = softmax_rows(s.nr, s.ld, ++seed);
        const auto kind = random_kinds(s.n, ++seed);
        auto [got, ref] = both([&](Backend& B) {
            Buf pr = fbuf(B, "probs", Role::in, s.nr, s.ld, probs), k = ibuf(B, "kind", Role::in, s.n, 1, kind),
                sc = fbuf(B, "scores", Role::out, s.n, 1);
            B.prune_scores(pr.t, s.nr, k.t, s.n, sc.t);
            pr.get("prune_scores");
            k.get_i32("prune_scores");
            return sc.get("prune_scores");
        });
        std::vector<float> host(static_cast<size_t>(s.n));
        for (int64_t j = 0; j < s.n; ++j) {
            double acc = 0;
            for (int64_t r = 0; r < s.nr; ++r) acc += probs[size_t(r * s.ld + j)];
            host[size_t(j)] = kind[size_t(j)] ? float(acc / double(s.nr)) : 0.f;
        }
        int64_t nonzero_other = 0;
        for (int64_t j = 0; j < s.n; ++j) nonzero_other += kind[size_t(j)] == 0 && !(got[size_t(j)] == 0.f);
        CHECK_MESSAGE(nonzero_other == 0, "prune_scores: " << nonzero_other << " non-candidate rows not 0");
        const std::string shape = fmt("probs%s n=%" PRId64, rc(s.nr, s.ld).c_str(), s.n);
        oracle_close("prune_scores", shape, ref, host, 1, 1e-14);
        expect_close("prune_scores", shape, "F32", got, ref, 1, 1e-12, 1e-10);
    }
    lc.done("prune_scores");
}

TEST_CASE("prune_mi: per-head MI summed in double; returned as a float pair") {
    LeakCheck lc;
    struct S { int heads; int64_t nr, n, ld, slot; };
    const S cases[] = {{2, 8, 60, 60, 0}, {4, 8, 600, 650, 1}, {32, 40, 700, 700, 5}, {4, 1, 100, 100, 2}, {8, 3, 1153, 1160, 7}};
    uint32_t seed = 1500;
    for (const S& s : cases) {
        const auto probs = softmax_rows(int64_t(s.heads) * s.nr, s.ld, ++seed, 3.f);
        const auto kind = random_kinds(s.n, ++seed);
        const int64_t W = 2 * (s.slot + 2);  // room for slots past this one, which stay sentinel
        auto [got, ref] = both([&](Backend& B) {
            Buf pr = fbuf(B, "probs", Role::in, int64_t(s.heads) * s.nr, s.ld, probs), k = ibuf(B, "kind", Role::in, s.n, 1, kind),
                out = fbuf(B, "mi", Role::out, 1, W);
            B.prune_mi(pr.t, s.heads, s.nr, k.t, s.n, out.t, s.slot);
            pr.get("prune_mi");
            k.get_i32("prune_mi");
            auto v = out.get("prune_mi");
            int64_t others = 0;
            for (int64_t i = 0; i < W; ++i)
                if (i / 2 != s.slot) others += !same_bits(v[size_t(i)], kSentinel);
            CHECK_MESSAGE(others == 0, who(&B) << ": prune_mi wrote outside its slot");
            // hi is the double rounded to float; lo the rest
            const float hi = v[size_t(2 * s.slot)], lo = v[size_t(2 * s.slot + 1)];
            CHECK_MESSAGE(std::fabs(double(lo)) <= std::fabs(double(hi)) * 1.2e-7 + 1e-30,
                          who(&B) << ": prune_mi pair (" << hi << ", " << lo << ") is not (float(mi), mi - float(mi))");
            return double(hi) + double(lo);
        });
        std::vector<int64_t> cols;
        for (int64_t j = 0; j < s.n; ++j)
            if (kind[size_t(j)]) cols.push_back(j);
        double host = 0;
        for (int h = 0; h < s.heads; ++h) host += prune_mutual_information(probs.data() + size_t(h) * s.nr * s.ld, s.ld, s.nr, cols);
        const std::string shape = fmt("heads=%d nr=%" PRId64 " n=%" PRId64 " ld=%" PRId64 " slot=%" PRId64, s.heads, s.nr, s.n, s.ld, s.slot);
        const double tol = 1e-9 * (1 + std::fabs(ref)) * g_tol_scale;
        line("prune_mi oracle", shape, "F64", fmt("cpu=%.15g host=%.15g", ref, host), std::fabs(ref - host) <= 1e-12 * (1 + std::fabs(host)));
        CHECK_MESSAGE(std::fabs(ref - host) <= 1e-12 * (1 + std::fabs(host)), "prune_mi: the cpu oracle " << ref << " != host " << host);
        const bool ok = std::isfinite(got) && std::fabs(got - ref) <= tol;
        line("prune_mi", shape, "F64", fmt("mi=%.12g |d|=%.2e tol=%.0e", ref, std::fabs(got - ref), tol), ok, std::fabs(got - ref) / tol);
        CHECK_MESSAGE(ok, "prune_mi " << shape << ": peer " << got << " cpu " << ref);
    }
    lc.done("prune_mi");
}

TEST_CASE("prune_prior_scores: prior + float(alpha * mi / divisor) * score on candidates") {
    LeakCheck lc;
    struct S { int64_t n, slot; double mi, alpha, divisor; };
    const S cases[] = {{60, 0, 1.2345678901234567, 0.3, 8}, {1153, 3, 0.0123456789, 0.3, 40}, {17, 1, 7.5, 0.3, 1}, {600, 0, 0.0, 0.3, 8}};
    uint32_t seed = 1600;
    for (const S& s : cases) {
        auto scores = softmax_rows(1, s.n, ++seed);
        const auto prior = softmax_rows(1, s.n, ++seed, 1.f);
        const auto kind = random_kinds(s.n, ++seed);
        std::vector<float> mi(size_t(2 * (s.slot + 1)), 99.f);  // other slots hold junk
        const float hi = float(s.mi);
        mi[size_t(2 * s.slot)] = hi;
        mi[size_t(2 * s.slot + 1)] = float(s.mi - double(hi));
        auto [got, ref] = both([&](Backend& B) {
            Buf sc = fbuf(B, "scores", Role::inout, s.n, 1, scores), pr = fbuf(B, "prior", Role::in, s.n, 1, prior),
                k = ibuf(B, "kind", Role::in, s.n, 1, kind), m = fbuf(B, "mi", Role::in, 1, int64_t(mi.size()), mi);
            B.prune_prior_scores(sc.t, pr.t, k.t, s.n, m.t, s.slot, s.alpha, s.divisor);
            pr.get("prune_prior_scores");
            k.get_i32("prune_prior_scores");
            m.get("prune_prior_scores");
            return sc.get("prune_prior_scores");
        });
        const double m = double(mi[size_t(2 * s.slot)]) + double(mi[size_t(2 * s.slot + 1)]);
        const float coef = float(s.alpha * (m / s.divisor));
        int64_t ulp_got = 0, ulp_ref = 0, worse = 0, other = 0;
        for (int64_t j = 0; j < s.n; ++j) {
            const size_t i = size_t(j);
            if (!kind[i]) {
                other += !same_bits(got[i], scores[i]);
                continue;
            }
            const float h = prior[i] + coef * scores[i];
            auto ulps = [](float a, float b) {
                int32_t x, y;
                std::memcpy(&x, &a, 4);
                std::memcpy(&y, &b, 4);
                return std::abs(int64_t(x) - int64_t(y));
            };
            ulp_ref += ulps(ref[i], h) > 0;
            ulp_got += ulps(got[i], ref[i]) > 0;
            worse += ulps(got[i], ref[i]) > 1 || !std::isfinite(got[i]);
            CHECK(ulps(ref[i], h) <= 1);
        }
        const std::string shape = fmt("n=%" PRId64 " slot=%" PRId64 " mi=%g", s.n, s.slot, s.mi);
        line("prune_prior_scores", shape, "F32", fmt("%" PRId64 " differ by 1 ulp, %" PRId64 " by more (cpu vs host: %" PRId64 " by 1 ulp)", ulp_got, worse, ulp_ref),
             worse == 0 && other == 0, double(worse));
        CHECK_MESSAGE(other == 0, "prune_prior_scores changed non-candidate rows");
        CHECK_MESSAGE(worse == 0, "prune_prior_scores: " << worse << " values more than 1 ulp from the oracle");
    }
    lc.done("prune_prior_scores");
}

namespace {
// flags of the k best eligible rows (score desc, index asc), from the header's definition.
std::vector<int32_t> host_topk(const std::vector<float>& sc, const std::vector<int32_t>& kind, const std::vector<int32_t>* ex, int64_t k) {
    std::vector<int64_t> el;
    for (size_t j = 0; j < sc.size(); ++j)
        if (kind[j] != 0 && !(ex && (*ex)[j] != 0)) el.push_back(int64_t(j));
    std::stable_sort(el.begin(), el.end(), [&](int64_t a, int64_t b) { return sc[size_t(a)] > sc[size_t(b)]; });
    std::vector<int32_t> f(sc.size(), 0);
    for (int64_t i = 0; i < k && i < int64_t(el.size()); ++i) f[size_t(el[size_t(i)])] = 1;
    return f;
}
}  // namespace

TEST_CASE("prune_topk: ties to the lower index; exclude; k from 0 to every candidate") {
    LeakCheck lc;
    uint32_t seed = 1700;
    for (int64_t n : {1, 10, 600, 1200, 5000})
        for (int variant = 0; variant < 4; ++variant) {  // 0 distinct, 1 many ties, 2 ties + exclude, 3 signed zeros
            std::mt19937 g(++seed);
            std::normal_distribution<float> nd;
            auto kind = random_kinds(n, ++seed);
            if (n == 1) kind[0] = 1;
            std::vector<float> sc(static_cast<size_t>(n));
            for (auto& x : sc) {
                const float v = nd(g);
                x = variant == 0 ? v : variant == 3 ? ((g() & 1) ? 0.f : -0.f) : std::round(v * 2.f) / 2.f;  // few levels: ties
            }
            std::vector<int32_t> ex;
            if (variant == 2) {
                ex.resize(size_t(n));
                for (auto& e : ex) e = (g() % 5 == 0) ? int32_t(1 + g() % 3) : 0;
            }
            int64_t eligible = 0;
            for (int64_t j = 0; j < n; ++j) eligible += kind[size_t(j)] != 0 && !(variant == 2 && ex[size_t(j)] != 0);
            for (int64_t k : {int64_t(0), int64_t(1), eligible / 3, eligible}) {
                if (k > eligible) continue;
                auto [got, ref] = both([&](Backend& B) {
                    Buf s = fbuf(B, "scores", Role::in, n, 1, sc), kd = ibuf(B, "kind", Role::in, n, 1, kind),
                        fl = ibuf(B, "flags", Role::out, n, 1), e;
                    if (variant == 2) e = ibuf(B, "exclude", Role::in, n, 1, ex);
                    B.prune_topk(s.t, kd.t, variant == 2 ? &e.t : nullptr, n, k, fl.t);
                    s.get("prune_topk");
                    kd.get_i32("prune_topk");
                    if (variant == 2) e.get_i32("prune_topk");
                    return fl.get_i32("prune_topk");
                });
                const char* vn[] = {"distinct", "ties", "ties+exclude", "signed zeros"};
                const std::string shape = fmt("n=%" PRId64 " k=%" PRId64 " of %" PRId64 " %s", n, k, eligible, vn[variant]);
                oracle_equal("prune_topk", shape, ref, host_topk(sc, kind, variant == 2 ? &ex : nullptr, k));
                expect_equal("prune_topk", shape, got, ref);
            }
        }
    lc.done("prune_topk");
}

TEST_CASE("prune_index: ascending kept rows; keep_other true and false") {
    LeakCheck lc;
    uint32_t seed = 1800;
    for (int64_t n : {1, 17, 600, 5000})
        for (bool keep_other : {true, false}) {
            std::mt19937 g(++seed);
            const auto kind = random_kinds(n, ++seed);
            std::vector<int32_t> flags(static_cast<size_t>(n));
            for (auto& f : flags) f = g() % 3 == 0 ? (g() % 4 == 0 ? 7 : 1) : 0;  // any non-zero flags
            if (n == 1) flags[0] = 1;
            std::vector<int32_t> host;
            for (int64_t j = 0; j < n; ++j)
                if (flags[size_t(j)] != 0 || (keep_other && kind[size_t(j)] == 0)) host.push_back(int32_t(j));
            const int64_t count = int64_t(host.size());
            if (count == 0) continue;
            auto [got, ref] = both([&](Backend& B) {
                Buf f = ibuf(B, "flags", Role::in, n, 1, flags), k = ibuf(B, "kind", Role::in, n, 1, kind),
                    idx = ibuf(B, "idx", Role::out, count, 1);  // exactly count rows: a write past them hits the guard
                B.prune_index(f.t, k.t, keep_other, n, idx.t);
                f.get_i32("prune_index");
                k.get_i32("prune_index");
                return idx.get_i32("prune_index");
            });
            const std::string shape = fmt("n=%" PRId64 " count=%" PRId64 "%s", n, count, keep_other ? " keep_other" : "");
            oracle_equal("prune_index", shape, ref, host);
            expect_equal("prune_index", shape, got, ref);
        }
    lc.done("prune_index");
}

TEST_CASE("prune_merged_meta: merged rows' kind/view/pos; reindex both ways") {
    LeakCheck lc;
    struct S { int64_t n, a, c; };
    const S cases[] = {{40, 10, 3}, {40, 0, 2}, {40, 37, 3}, {40, 12, 0}, {1, 0, 1}, {2000, 700, 13}};
    uint32_t seed = 1900;
    for (const S& s : cases)
        for (bool reindex : {false, true}) {
            std::mt19937 g(++seed);
            const int64_t extra = 2;  // rows past n inside the tensor: untouched
            std::vector<int32_t> kind(size_t(s.n + extra)), view(size_t(s.n + extra)), pos(size_t(s.n + extra));
            for (int64_t i = 0; i < s.n + extra; ++i) {
                kind[size_t(i)] = int32_t(g() % 2);
                view[size_t(i)] = kind[size_t(i)] ? int32_t(g() % 6) : -1;
                pos[size_t(i)] = int32_t(i * 3 + 5);
            }
            auto run = [&](Backend& B) {
                Buf k = ibuf(B, "kind", Role::inout, s.n + extra, 1, kind), v = ibuf(B, "view", Role::inout, s.n + extra, 1, view),
                    p = ibuf(B, "pos", Role::inout, s.n + extra, 1, pos);
                B.prune_merged_meta(k.t, v.t, p.t, s.a, s.c, s.n, reindex);
                std::vector<int32_t> all = k.get_i32("prune_merged_meta"), vv = v.get_i32("prune_merged_meta"),
                                     pp = p.get_i32("prune_merged_meta");
                all.insert(all.end(), vv.begin(), vv.end());
                all.insert(all.end(), pp.begin(), pp.end());
                return all;
            };
            auto [got, ref] = both(run);
            std::vector<int32_t> hk = kind, hv = view, hp = pos;
            const int32_t after = s.a > 0 ? pos[size_t(s.a - 1)] + 1 : 0;
            for (int64_t j = s.a; j < s.a + s.c; ++j) {
                hk[size_t(j)] = 2;
                hv[size_t(j)] = -1;
                hp[size_t(j)] = after;
            }
            if (reindex)
                for (int64_t j = 0; j < s.n; ++j) hp[size_t(j)] = int32_t(j);
            std::vector<int32_t> host = hk;
            host.insert(host.end(), hv.begin(), hv.end());
            host.insert(host.end(), hp.begin(), hp.end());
            const std::string shape = fmt("n=%" PRId64 " a=%" PRId64 " c=%" PRId64 "%s", s.n, s.a, s.c, reindex ? " reindex" : "");
            oracle_equal("prune_merged_meta", shape, ref, host);
            expect_equal("prune_merged_meta", shape, got, ref, "I32 x3");
        }
    lc.done("prune_merged_meta");
}

TEST_CASE("prune_count: per-view visual; visual + merged; merged; one row of the counts table") {
    LeakCheck lc;
    struct S { int64_t n; int views; int64_t L, row; };
    const S cases[] = {{60, 1, 3, 0}, {60, 3, 3, 2}, {3500, 6, 32, 17}, {7, 6, 1, 0}};
    uint32_t seed = 2000;
    for (const S& s : cases) {
        std::mt19937 g(++seed);
        const auto kind = random_kinds(s.n, ++seed);
        std::vector<int32_t> view(static_cast<size_t>(s.n));
        for (int64_t j = 0; j < s.n; ++j)  // text rows carry a view id too: it must not count
            view[size_t(j)] = kind[size_t(j)] == 2 ? -1 : int32_t(g() % uint32_t(s.views));
        const int64_t W = s.views + 2;
        std::vector<int32_t> init(size_t(s.L * W));
        for (auto& x : init) x = int32_t(g() % 1000);  // other rows: earlier layers' counts
        auto [got, ref] = both([&](Backend& B) {
            Buf k = ibuf(B, "kind", Role::in, s.n, 1, kind), v = ibuf(B, "view", Role::in, s.n, 1, view),
                c = ibuf(B, "counts", Role::inout, s.L, W, init);
            B.prune_count(k.t, v.t, s.n, s.views, c.t, s.row);
            k.get_i32("prune_count");
            v.get_i32("prune_count");
            return c.get_i32("prune_count");
        });
        std::vector<int32_t> host = init;
        int32_t* h = host.data() + s.row * W;
        std::fill(h, h + W, 0);
        for (int64_t j = 0; j < s.n; ++j) {
            if (kind[size_t(j)] == 1) ++h[view[size_t(j)]];
            if (kind[size_t(j)] != 0) ++h[s.views];
            if (kind[size_t(j)] == 2) ++h[s.views + 1];
        }
        const std::string shape = fmt("n=%" PRId64 " views=%d counts%s row=%" PRId64, s.n, s.views, rc(s.L, W).c_str(), s.row);
        oracle_equal("prune_count", shape, ref, host);
        expect_equal("prune_count", shape, got, ref);
    }
    lc.done("prune_count");
}

TEST_CASE("dpc_knn_merge: separated clusters exactly; random tokens up to near-tie flips") {
    LeakCheck lc;
    // Clustered input with c = the number of clusters: each cluster's densest point has the
    // largest delta * rho, every point's nearest centre is in its own cluster, so the output (the
    // cluster means, whichever member is the centre) does not depend on rounding: strict NMSE.
    // Random Gaussian tokens: which points become centres, and which centre a point joins, are
    // decided by comparisons that a peer computing distances in F32 (or as |a|^2 + |b|^2 - 2ab) may
    // resolve the other way on a near-tie; a flip moves one point between two clusters and changes
    // those two rows only. So random cases compare row by row and allow at most 2 differing rows.
    struct S { int64_t m, d, c; bool clustered; };
    const S cases[] = {{60, 64, 4, true},   {300, 256, 10, true}, {1000, 64, 16, true}, {150, 4096, 16, true},
                       {33, 64, 2, false},  {1, 64, 1, false},    {7, 13, 3, false},    {150, 4096, 16, false},
                       {400, 256, 8, false}};
    uint32_t seed = 2100;
    for (const S& s : cases) {
        if (skip_big("dpc_knn_merge", fmt("m=%" PRId64 " d=%" PRId64 " c=%" PRId64, s.m, s.d, s.c), double(s.m) * s.m * s.d)) continue;
        std::vector<float> x(static_cast<size_t>(s.m * s.d));
        std::mt19937 g(++seed);
        if (s.clustered) {
            const auto centres = randn(size_t(s.c * s.d), ++seed, 3.f);
            const auto noise = randn(x.size(), ++seed, 0.05f);
            for (int64_t i = 0; i < s.m; ++i) {
                const int64_t cl = i < s.c ? i : int64_t(g() % uint32_t(s.c));  // every cluster populated
                for (int64_t e = 0; e < s.d; ++e) x[size_t(i * s.d + e)] = centres[size_t(cl * s.d + e)] + noise[size_t(i * s.d + e)];
            }
        } else {
            x = randn(x.size(), ++seed);
        }
        auto [got, ref] = both([&](Backend& B) {
            Buf xb = fbuf(B, "x", Role::in, s.m, s.d, x), out = fbuf(B, "out", Role::out, s.c, s.d);
            Status st = B.dpc_knn_merge(xb.t, s.c, out.t, false);
            CHECK_MESSAGE(st.ok(), who(&B) << ": dpc_knn_merge: " << st.to_string());
            xb.get("dpc_knn_merge");
            return out.get("dpc_knn_merge");
        });
        const std::string shape = fmt("m=%" PRId64 " d=%" PRId64 " c=%" PRId64 " %s", s.m, s.d, s.c, s.clustered ? "clusters" : "random");
        oracle_close("dpc_knn_merge", shape, ref, prune_dpc_knn_merge(x, s.m, s.d, s.c), s.d, 1e-14);
        if (s.clustered) {
            expect_close("dpc_knn_merge", shape, "F32", got, ref, s.d, 1e-9, 1e-8);
        } else {
            int64_t rows_off = 0, nonfinite = 0;
            for (int64_t r = 0; r < s.c; ++r) {
                double num = 0, den = 0;
                for (int64_t e = 0; e < s.d; ++e) {
                    const size_t i = size_t(r * s.d + e);
                    nonfinite += !std::isfinite(got[i]);
                    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
                    den += double(ref[i]) * ref[i];
                }
                rows_off += !(num <= 1e-9 * g_tol_scale * std::max(den, 1e-30));
            }
            const bool ok = nonfinite == 0 && rows_off <= 2;
            line("dpc_knn_merge", shape, "F32", fmt("%" PRId64 "/%" PRId64 " rows differ (<= 2: near-tie flips)", rows_off, s.c), ok, double(rows_off));
            CHECK(nonfinite == 0);
            CHECK_MESSAGE(rows_off <= 2, "dpc_knn_merge " << shape << ": " << rows_off << " merged rows differ");
        }
    }
    // Exact density ties (two pairs: every token has the same density), under our rule and the
    // reference's (parity): the two rules pick different centres, and both backends agree on each.
    const std::vector<float> tied = {0, 0, 1, 0, 100, 0, 101, 0};
    for (bool reference_ties : {false, true}) {
        auto [got, ref] = both([&](Backend& B) {
            Buf xb = fbuf(B, "x", Role::in, 4, 2, tied), out = fbuf(B, "out", Role::out, 2, 2);
            Status st = B.dpc_knn_merge(xb.t, 2, out.t, reference_ties);
            CHECK_MESSAGE(st.ok(), who(&B) << ": dpc_knn_merge: " << st.to_string());
            xb.get("dpc_knn_merge");
            return out.get("dpc_knn_merge");
        });
        const std::string shape = reference_ties ? "m=4 d=2 c=2 ties, reference rule" : "m=4 d=2 c=2 ties, our rule";
        oracle_close("dpc_knn_merge", shape, ref, prune_dpc_knn_merge(tied, 4, 2, 2, reference_ties), 2, 1e-14);
        expect_close("dpc_knn_merge", shape, "F32", got, ref, 2, 1e-9, 1e-8);
    }
    lc.done("dpc_knn_merge");
}

TEST_CASE("cls_prior: head mean of the class rows' probabilities; masked to 0") {
    LeakCheck lc;
    struct S { int heads, views; int64_t T, first, pv; };
    const S cases[] = {{2, 3, 17, 1, 16}, {2, 1, 17, 1, 16}, {16, 6, 577, 1, 576}, {16, 2, 577, 0, 577}, {4, 6, 17, 1, 16}};
    uint32_t seed = 2200;
    for (const S& s : cases) {
        const int64_t N = int64_t(s.views) * s.T, npv = int64_t(s.views) * s.pv;
        const auto probs = softmax_rows(int64_t(s.heads) * s.views, N, ++seed);
        std::mt19937 g(++seed);
        std::vector<int32_t> masked(static_cast<size_t>(npv));
        for (auto& m : masked) m = g() % 5 == 0 ? 1 : 0;
        const int64_t extra = 3;  // prior [>= views * pv, 1]: the rows past it stay as they are
        const auto init = randn(size_t(npv + extra), ++seed);
        auto [got, ref] = both([&](Backend& B) {
            Buf pr = fbuf(B, "probs", Role::in, int64_t(s.heads) * s.views, N, probs), mk = ibuf(B, "masked", Role::in, npv, 1, masked),
                out = fbuf(B, "prior", Role::inout, npv + extra, 1, init);
            B.cls_prior(pr.t, s.heads, s.views, s.T, s.first, s.pv, mk.t, out.t);
            pr.get("cls_prior");
            mk.get_i32("cls_prior");
            return out.get("cls_prior");
        });
        std::vector<float> host = init;
        for (int v = 0; v < s.views; ++v)
            for (int64_t i = 0; i < s.pv; ++i) {
                double sum = 0;
                for (int h = 0; h < s.heads; ++h) sum += probs[size_t((int64_t(h) * s.views + v) * N + v * s.T + s.first + i)];
                host[size_t(v * s.pv + i)] = masked[size_t(v * s.pv + i)] ? 0.f : float(sum / s.heads);
            }
        int64_t mask_bad = 0, tail_bad = 0;
        for (int64_t i = 0; i < npv; ++i) mask_bad += masked[size_t(i)] && !(got[size_t(i)] == 0.f);
        for (int64_t i = npv; i < npv + extra; ++i) tail_bad += !same_bits(got[size_t(i)], init[size_t(i)]);
        CHECK_MESSAGE(mask_bad == 0, "cls_prior: " << mask_bad << " masked entries not 0");
        CHECK_MESSAGE(tail_bad == 0, "cls_prior wrote past n_views * pv");
        const std::string shape = fmt("heads=%d views=%d T=%" PRId64 " first=%" PRId64 " pv=%" PRId64, s.heads, s.views, s.T, s.first, s.pv);
        oracle_close("cls_prior", shape, ref, host, 1, 1e-14);
        expect_close("cls_prior", shape, "F32", got, ref, 1, 1e-12, 1e-10);
    }
    lc.done("cls_prior");
}

TEST_CASE("argmax: ties to the lowest index; -inf; values past n ignored") {
    LeakCheck lc;
    struct S { int64_t rows, cols, n; int kind; };  // 0 random, 1 tie, 2 all equal, 3 max last, 4 all negative with -inf
    const S cases[] = {{1, 1, 1, 0},       {1, 7, 7, 2},         {1, 512, 512, 1},  {1, 32064, 32064, 0}, {1, 152064, 152064, 3},
                       {1, 1000, 600, 1},  {600, 1, 600, 4},     {1, 33, 33, 4},    {1, 4096, 4096, 1}};
    uint32_t seed = 2300;
    for (const S& s : cases) {
        auto x = randn(size_t(s.rows * s.cols), ++seed);
        const size_t n = size_t(s.n);
        if (s.kind == 1) { x[n / 3] = 50.f; x[n / 2] = 50.f; x[n - 1] = 50.f; }
        if (s.kind == 2) std::fill(x.begin(), x.begin() + long(n), 0.25f);
        if (s.kind == 3) x[n - 1] = 40.f;
        if (s.kind == 4) {
            for (auto& v : x) v = -std::fabs(v) - 1.f;
            for (size_t i = 0; i < n; i += 3) x[i] = -INFINITY;
        }
        for (size_t i = n; i < x.size(); ++i) x[i] = 1e30f;  // past n: must not be picked
        auto [got, ref] = both([&](Backend& B) {
            Buf xb = fbuf(B, "x", Role::in, s.rows, s.cols, x), out = ibuf(B, "out", Role::out, 1, 1);
            B.argmax(xb.t, s.n, out.t);
            xb.get("argmax");
            return out.get_i32("argmax");
        });
        const int32_t host = int32_t(std::max_element(x.begin(), x.begin() + long(n)) - x.begin());
        const char* kn[] = {"random", "ties", "all equal", "max last", "negative, -inf"};
        const std::string shape = fmt("x%s n=%" PRId64 " %s", rc(s.rows, s.cols).c_str(), s.n, kn[s.kind]);
        oracle_equal("argmax", shape, ref, {host});
        expect_equal("argmax", shape, got, ref);
    }
    lc.done("argmax");
}

// ============================================================================== chains

TEST_CASE("chain: a decoder layer queued without intermediate reads (stream order; aliasing; views)") {
    LeakCheck lc;
    const int64_t d = 256, heads = 8, kvh = 2, hd = 32, ffn = 688, n = 40, cache = 64, past = 9;
    const int64_t qd = heads * hd, kvd = kvh * hd;
    uint32_t seed = 2400;
    auto wt = [&](int64_t r, int64_t c) { return host_weight(DType::f16, randn(size_t(r * c), ++seed, 1.f / std::sqrt(float(c))), {r, c}); };
    const TensorView wq = wt(qd, d), wk = wt(kvd, d), wv = wt(kvd, d), wo = wt(d, qd), wg = wt(ffn, d), wu = wt(ffn, d), wd = wt(d, ffn);
    const TensorView n1 = host_weight(DType::f16, randn(size_t(d), ++seed, 0.1f, 1.f), {d}),
                     n2 = host_weight(DType::f16, randn(size_t(d), ++seed, 0.1f, 1.f), {d});
    const auto xv = randn(size_t(n * d), ++seed);
    const auto kc = randn(size_t(cache * kvd), ++seed), vc = randn(size_t(cache * kvd), ++seed);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    std::iota(pos.begin(), pos.end(), int32_t(past));
    auto [got, ref] = both([&](Backend& B) {
        Tensor Wq = upload(B, wq, qd, d), Wk = upload(B, wk, kvd, d), Wv = upload(B, wv, kvd, d), Wo = upload(B, wo, d, qd),
               Wg = upload(B, wg, ffn, d), Wu = upload(B, wu, ffn, d), Wd = upload(B, wd, d, ffn), N1 = upload(B, n1, 1, d),
               N2 = upload(B, n2, 1, d);
        Buf x = fbuf(B, "x", Role::inout, n, d, xv), K = fbuf(B, "kcache", Role::inout, cache, kvd, kc),
            V = fbuf(B, "vcache", Role::inout, cache, kvd, vc), P = ibuf(B, "pos", Role::in, n, 1, pos);
        // scratch larger than n, used through rows() views as the engine does
        Buf h = fbuf(B, "h", Role::out, n + 8, d), q = fbuf(B, "q", Role::out, n + 8, qd), k = fbuf(B, "k", Role::out, n + 8, kvd),
            v = fbuf(B, "v", Role::out, n + 8, kvd), a = fbuf(B, "a", Role::out, n + 8, qd), g = fbuf(B, "g", Role::out, n + 8, ffn),
            u = fbuf(B, "u", Role::out, n + 8, ffn);
        Tensor hv = B.rows(h.t, 0, n), qv = B.rows(q.t, 0, n), kv = B.rows(k.t, 0, n), vv = B.rows(v.t, 0, n), av = B.rows(a.t, 0, n),
               gv = B.rows(g.t, 0, n), uv = B.rows(u.t, 0, n);
        B.rms_norm(x.t, N1, 1e-6f, hv);
        B.matmul(hv, Wq, nullptr, qv);
        B.matmul(hv, Wk, nullptr, kv);
        B.matmul(hv, Wv, nullptr, vv);
        B.rope(qv, int(heads), int(hd), P.t, 10000.f);
        B.rope(kv, int(kvh), int(hd), P.t, 10000.f);
        B.copy_rows(kv, 0, n, K.t, past);
        B.copy_rows(vv, 0, n, V.t, past);
        AttentionParams p;
        p.n_head = int(heads);
        p.n_kv_head = int(kvh);
        p.head_dim = int(hd);
        p.n_kv = past + n;
        p.kv_offset = past;
        p.scale = 1.f / std::sqrt(float(hd));
        B.attention(qv, K.t, V.t, av, p);
        B.matmul(av, Wo, nullptr, hv);
        B.add(x.t, hv);
        B.rms_norm(x.t, N2, 1e-6f, hv);
        B.matmul(hv, Wg, nullptr, gv);
        B.matmul(hv, Wu, nullptr, uv);
        B.swiglu(gv, uv, gv);
        B.matmul(gv, Wd, nullptr, hv);
        B.add(x.t, hv);
        P.get_i32("chain");
        auto kr = K.get("chain");
        auto out = x.get("chain");
        out.insert(out.end(), kr.begin(), kr.end());
        for (Buf* b : {&h, &q, &k, &v, &a, &g, &u}) b->get("chain");  // guards of the scratch
        return out;
    });
    // F16 weights throughout: a few GEMMs' rounding (rows: the residual stream and the k cache)
    expect_close("chain decoder", fmt("n=%" PRId64 " d=%" PRId64 " past=%" PRId64, n, d, past), "w=" + wname(DType::f16), got, ref, d,
                 10 * tol_matmul(DType::f16));
    lc.done("chain decoder");
}

TEST_CASE("chain: pruning compaction on the backend (topk -> index -> gather_rows_idx -> meta -> count)") {
    LeakCheck lc;
    // The engine's sequence: [5 prefix text][4 views x 25 visual][15 tail text]; keep 30 visual,
    // insert 3 merged rows after the kept head, re-index positions.
    const int64_t pre = 5, nvis = 100, tail = 15, n = pre + nvis + tail, K = 30, c = 3, d = 64, views = 4;
    std::vector<int32_t> kind(static_cast<size_t>(n), 0), view(static_cast<size_t>(n), -1), pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < nvis; ++i) {
        kind[size_t(pre + i)] = 1;
        view[size_t(pre + i)] = int32_t(i / 25);
    }
    std::iota(pos.begin(), pos.end(), 0);
    auto sc = softmax_rows(1, n, 2500);
    sc[20] = sc[21] = sc[22] = *std::max_element(sc.begin(), sc.end());  // ties inside the selection
    const auto xv = randn(size_t(n * d), 2501), merged = randn(size_t(c * d), 2502);
    const int64_t a = pre + K, n_new = a + c + tail;
    auto [got, ref] = both([&](Backend& B) {
        Buf S = fbuf(B, "scores", Role::in, n, 1, sc), Kd = ibuf(B, "kind", Role::in, n, 1, kind), Vw = ibuf(B, "view", Role::in, n, 1, view),
            Ps = ibuf(B, "pos", Role::in, n, 1, pos), X = fbuf(B, "x", Role::in, n, d, xv), M = fbuf(B, "merged", Role::in, c, d, merged);
        Buf flags = ibuf(B, "flags", Role::out, n, 1), idx = ibuf(B, "idx", Role::out, pre + K + tail, 1);
        Buf nx = fbuf(B, "nx", Role::out, n_new, d), nk = ibuf(B, "nkind", Role::out, n_new, 1), nv = ibuf(B, "nview", Role::out, n_new, 1),
            np = ibuf(B, "npos", Role::out, n_new, 1), counts = ibuf(B, "counts", Role::out, 2, views + 2);
        B.prune_topk(S.t, Kd.t, nullptr, n, K, flags.t);
        B.prune_index(flags.t, Kd.t, true, n, idx.t);
        Tensor head_idx = B.rows(idx.t, 0, a), tail_idx = B.rows(idx.t, a, tail);
        for (auto [src, dst] : {std::pair<Buf*, Buf*>{&X, &nx}, {&Kd, &nk}, {&Vw, &nv}, {&Ps, &np}}) {
            Tensor hp = B.rows(dst->t, 0, a), tp = B.rows(dst->t, a + c, tail);
            B.gather_rows_idx(src->t, head_idx, a, hp);
            B.gather_rows_idx(src->t, tail_idx, tail, tp);
        }
        B.copy_rows(M.t, 0, c, nx.t, a);
        B.prune_count(Kd.t, Vw.t, n, int(views), counts.t, 0);
        B.prune_merged_meta(nk.t, nv.t, np.t, a, c, n_new, true);
        B.prune_count(nk.t, nv.t, n_new, int(views), counts.t, 1);
        std::vector<float> out = nx.get("chain prune");
        for (Buf* b : {&flags, &idx, &nk, &nv, &np, &counts})
            for (int32_t v : b->get_i32("chain prune")) out.push_back(float(v));
        for (Buf* b : {&Kd, &Vw, &Ps}) b->get_i32("chain prune");
        S.get("chain prune");
        X.get("chain prune");
        return out;
    });
    expect_close("chain prune", fmt("n=%" PRId64 " keep=%" PRId64 " merged=%" PRId64 " -> %" PRId64, n, K, c, n_new), "F32+I32", got, ref, 1, 0);
    // and the oracle's counts are the plan's
    const size_t cnt0 = ref.size() - 2 * size_t(views + 2);
    CHECK(ref[cnt0 + size_t(views)] == float(nvis));
    CHECK(ref[cnt0 + size_t(views + 2 + views)] == float(K + c));
    CHECK(ref[cnt0 + size_t(views + 2 + views + 1)] == float(c));
    lc.done("chain prune");
}

// ============================================================================== main

int main(int argc, char** argv) {
    const char* pe = std::getenv("VLA_TEST_PEER");
    const std::string peer = pe && *pe ? pe : "cuda";
    g_tol_scale = [] {
        const char* v = std::getenv("VLA_TEST_TOL_SCALE");
        return v && *v ? std::atof(v) : 1.0;
    }();
    g_guard = std::max(1, env_int("VLA_TEST_GUARD", 3));
    g_quick = env_int("VLA_TEST_QUICK", 0) != 0;
    const char* wd = std::getenv("VLA_TEST_WEIGHT_DTYPE");
    const std::string wds = wd ? wd : "auto";
    if (wds == "f16") g_wdt = WeightDType::f16;
    else if (wds == "bf16") g_wdt = WeightDType::bf16;

    BackendOptions ro;
    ro.n_threads = env_int("VLA_TEST_THREADS", 2);
    Status st = backend_create("cpu", ro, &g_ref);
    if (!st.ok()) {
        std::fprintf(stderr, "cannot create the cpu oracle: %s\n", st.to_string().c_str());
        return 1;
    }
    BackendOptions po = ro;
    po.device = env_int("VLA_TEST_DEVICE", 0);
    po.weight_dtype = g_wdt;
    st = backend_create(peer, po, &g_peer);
    if (!st.ok()) {
        std::string why = peer == "cuda" ? backend_cuda_unavailable_reason() : "";
        if (why.empty()) why = st.to_string();
        std::printf("SKIPPED: %s backend unavailable: %s\n", peer.c_str(), why.c_str());
        return 0;
    }
#ifdef VLA_TEST_WRAP_PEER  // self-test of this harness: wraps the peer in a deliberately faulty one
    g_peer = VLA_TEST_WRAP_PEER(std::move(g_peer));
#endif
    g_peer_is_cpu = std::string(g_peer->name()) == "cpu";
    std::printf("test-backend-ops: peer '%s' (%s) against the cpu oracle; weight_dtype %s, guard rows %" PRId64 ", tolerance scale %g%s\n",
                peer.c_str(), g_peer->name(), wds.c_str(), g_guard, g_tol_scale, g_quick ? ", quick" : "");
    std::printf("%-20s %-52s %-12s %s\n", "op", "shape", "dtype", "error");
    std::fflush(stdout);

    doctest::Context ctx(argc, argv);
    const int rc = ctx.run();

    if (!tally().empty()) {
        std::printf("\nsummary (worst = largest error / tolerance; exact ops: differing values)\n");
        for (const auto& [op, t] : tally())
            std::printf("  %-26s %4d cases %3d failed  worst %-10.3g%s\n", op.c_str(), t.cases, t.failed, t.worst,
                        t.skipped ? fmt("  (%d skipped: quick)", t.skipped).c_str() : "");
    }
    g_peer.reset();
    g_ref.reset();
    return rc;
}
