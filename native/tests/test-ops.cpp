// Every CPU op against hand-derived values, known identities or a naive loop written here.
// (The CUDA backend's test-backend-ops will run the same cases against this backend.)
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "convert.h"
#include "blas.h"
#include "gemm.h"
#include "backend.h"
#include "image.h"
#include "threadpool.h"

using namespace vla;

namespace {

std::unique_ptr<Backend> cpu(int threads = 2) {
    std::unique_ptr<Backend> b;
    BackendOptions o;
    o.n_threads = threads;
    REQUIRE(backend_create("cpu", o, &b).ok());
    return b;
}

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

Tensor make(Backend& b, int64_t rows, int64_t cols, const std::vector<float>& v) {
    Tensor t;
    REQUIRE(b.alloc(rows, cols, &t).ok());
    if (!v.empty()) b.write(t, v.data(), rows * cols);
    return t;
}

Tensor positions(Backend& b, std::vector<int32_t> p) {
    Tensor t;
    REQUIRE(b.alloc_i32(int64_t(p.size()), 1, &t).ok());
    b.write_i32(t, p.data(), int64_t(p.size()));
    return t;
}

std::vector<float> get(Backend& b, const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    b.read(t, v.data(), t.numel());
    return v;
}

double nmse(const std::vector<float>& a, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
    }
    return den > 0 ? num / den : num;
}


}  // namespace

TEST_CASE("dtype conversions") {
    CHECK(f16_to_f32(0x3c00) == 1.0f);
    CHECK(f16_to_f32(0xc000) == -2.0f);
    CHECK(f16_to_f32(0x7bff) == 65504.0f);
    CHECK(f16_to_f32(0x0001) == doctest::Approx(5.960464477539063e-08).epsilon(1e-12));  // smallest subnormal
    CHECK(std::isinf(f16_to_f32(0x7c00)));
    CHECK(std::isnan(f16_to_f32(0x7e00)));
    CHECK(bf16_to_f32(0x3f80) == 1.0f);
    CHECK(bf16_to_f32(0xc0a0) == -5.0f);
    for (float v : {0.5f, -3.25f, 1024.f, 1e-3f, -7e-6f}) {
        CHECK(f16_to_f32(f32_to_f16(v)) == doctest::Approx(v).epsilon(1e-3));
        CHECK(bf16_to_f32(f32_to_bf16(v)) == doctest::Approx(v).epsilon(1e-2));
    }
}

TEST_CASE("thread pool covers every index exactly once") {
    ThreadPool pool(3);
    for (int64_t n : {1, 7, 64, 1000, 12345}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h = 0;
        pool.parallel_for(n, 3, [&](int64_t a, int64_t b) {
            for (int64_t i = a; i < b; ++i) hits[size_t(i)]++;
        });
        for (auto& h : hits) REQUIRE(h.load() == 1);
    }
    // nested calls run inline instead of deadlocking
    std::atomic<int64_t> total{0};
    pool.parallel_for(8, 1, [&](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; ++i) pool.parallel_for(10, 1, [&](int64_t c, int64_t d) { total += d - c; });
    });
    CHECK(total.load() == 80);
}

TEST_CASE("gemm matches the naive loop for aligned and awkward shapes, all weight dtypes") {
    ThreadPool pool(2);
    INFO("gemm provider: " << gemm_provider());
    // Besides the small ones: products split over output columns (m >= n) and over rows (n > m).
    const int64_t shapes[][3] = {{1, 8, 4}, {1, 13, 7}, {5, 13, 7}, {4, 256, 32}, {37, 300, 65}, {9, 513, 33}, {64, 1024, 96},
                                 {300, 64, 40}, {33, 200, 301}};
    for (auto& s : shapes) {
        const int64_t n = s[0], k = s[1], m = s[2];
        auto x = randn(size_t(n * k), 1);
        auto w = randn(size_t(m * k), 2, 0.1f);
        auto bias = randn(size_t(m), 3);
        std::vector<uint16_t> wh(w.size()), wb(w.size());
        for (size_t i = 0; i < w.size(); ++i) {
            wh[i] = f32_to_f16(w[i]);
            wb[i] = f32_to_bf16(w[i]);
        }
        struct Case { const void* p; DType t; } cases[] = {{w.data(), DType::f32}, {wh.data(), DType::f16}, {wb.data(), DType::bf16}};
        for (auto& c : cases) {
            std::vector<float> y(static_cast<size_t>(n * m)), ref(size_t(n * m));
            std::vector<float> yb(static_cast<size_t>(n * m)), y0(static_cast<size_t>(n * m));
            gemm_xwt(pool, x.data(), n, k, c.p, c.t, m, bias.data(), y.data());
            gemm_xwt_builtin(pool, x.data(), n, k, c.p, c.t, m, bias.data(), yb.data());
            gemm_xwt(pool, x.data(), n, k, c.p, c.t, m, nullptr, y0.data());
            gemm_xwt_naive(x.data(), n, k, c.p, c.t, m, bias.data(), ref.data());
            INFO("n=" << n << " k=" << k << " m=" << m << " dtype=" << dtype_name(c.t));
            CHECK(nmse(y, ref) < 1e-12);
            CHECK(nmse(yb, ref) < 1e-12);
            for (int64_t i = 0; i < n * m; ++i) y0[size_t(i)] += bias[size_t(i % m)];  // without bias, then added
            CHECK(nmse(y0, ref) < 1e-12);
        }
    }
}

TEST_CASE("layer_norm and rms_norm on hand-derived values") {
    auto b = cpu();
    Tensor x = make(*b, 2, 4, {1, 2, 3, 4, -1, 1, -1, 1});
    Tensor w = make(*b, 1, 4, {1, 1, 2, 2}), bias = make(*b, 1, 4, {0, 0, 1, 1});
    Tensor y = make(*b, 2, 4, {});
    b->layer_norm(x, w, bias, 0.f, y);
    auto v = get(*b, y);
    const float s = 1.f / std::sqrt(1.25f);  // mean 2.5, variance 1.25
    CHECK(v[0] == doctest::Approx(-1.5f * s));
    CHECK(v[1] == doctest::Approx(-0.5f * s));
    CHECK(v[2] == doctest::Approx(0.5f * s * 2 + 1));
    CHECK(v[3] == doctest::Approx(1.5f * s * 2 + 1));
    CHECK(v[4] == doctest::Approx(-1.f));  // mean 0, variance 1
    CHECK(v[7] == doctest::Approx(3.f));
}

TEST_CASE("rms_norm") {
    auto b = cpu();
    Tensor x = make(*b, 1, 2, {3, 4});
    Tensor w = make(*b, 1, 2, {1, 0.5f});
    Tensor y = make(*b, 1, 2, {});
    b->rms_norm(x, w, 0.f, y);
    auto v = get(*b, y);
    const float r = std::sqrt(12.5f);
    CHECK(v[0] == doctest::Approx(3 / r));
    CHECK(v[1] == doctest::Approx(0.5f * 4 / r));
    b->rms_norm(x, w, 0.f, x);  // in place
    CHECK(get(*b, x)[1] == doctest::Approx(v[1]));
}

TEST_CASE("activations") {
    auto b = cpu();
    Tensor t = make(*b, 1, 3, {-1, 0, 1});
    b->unary(Unary::gelu, t);
    auto v = get(*b, t);
    CHECK(v[0] == doctest::Approx(-0.15865525393145707));
    CHECK(v[1] == 0.f);
    CHECK(v[2] == doctest::Approx(0.8413447460685429));
    t = make(*b, 1, 2, {1, -2});
    b->unary(Unary::quick_gelu, t);
    v = get(*b, t);
    CHECK(v[0] == doctest::Approx(1.0 / (1.0 + std::exp(-1.702))));
    CHECK(v[1] == doctest::Approx(-2.0 / (1.0 + std::exp(3.404))));
    Tensor g = make(*b, 1, 2, {1, 2}), u = make(*b, 1, 2, {3, -1});
    b->swiglu(g, u, g);
    v = get(*b, g);
    CHECK(v[0] == doctest::Approx(3 * 0.7310585786300049));
    CHECK(v[1] == doctest::Approx(-2 * 0.8807970779778823));
}

TEST_CASE("rope: identity at position 0, preserves pair norms, scores depend on relative position only") {
    auto b = cpu();
    const int H = 2, hd = 8;
    auto qv = randn(H * hd, 5), kv = randn(H * hd, 6);
    Tensor q0 = make(*b, 1, H * hd, qv);
    int32_t p0 = 0;
    b->rope(q0, H, hd, positions(*b, {p0}), 10000.f);
    CHECK(nmse(get(*b, q0), qv) == 0.0);
    auto score = [&](int32_t pq, int32_t pk) {
        Tensor q = make(*b, 1, H * hd, qv), k = make(*b, 1, H * hd, kv);
        b->rope(q, H, hd, positions(*b, {pq}), 10000.f);
        b->rope(k, H, hd, positions(*b, {pk}), 10000.f);
        auto a = get(*b, q), c = get(*b, k);
        double d = 0;
        for (int i = 0; i < hd; ++i) d += a[i] * c[i];  // head 0
        // pair (i, i + hd/2) norms preserved
        for (int i = 0; i < hd / 2; ++i)
            CHECK(std::hypot(a[i], a[i + hd / 2]) == doctest::Approx(std::hypot(qv[i], qv[i + hd / 2])).epsilon(1e-5));
        return d;
    };
    CHECK(score(7, 3) == doctest::Approx(score(104, 100)).epsilon(1e-4));
    CHECK(score(3, 3) == doctest::Approx(score(50, 50)).epsilon(1e-4));
    // Hand-derived: head_dim 2, theta any: one pair rotated by angle = position.
    Tensor r = make(*b, 1, 2, {1, 0});
    int32_t p = 1;
    b->rope(r, 1, 2, positions(*b, {p}), 10000.f);
    auto rv = get(*b, r);
    CHECK(rv[0] == doctest::Approx(std::cos(1.0)));
    CHECK(rv[1] == doctest::Approx(std::sin(1.0)));
}

namespace {
// Naive attention with an explicit score matrix, for comparison.
std::vector<float> attention_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                 int64_t nq, const AttentionParams& p) {
    const int hd = p.head_dim, group = p.n_head / p.n_kv_head;
    const int64_t qc = int64_t(p.n_head) * hd, kc = int64_t(p.n_kv_head) * hd;
    std::vector<float> out(static_cast<size_t>(nq * qc));
    for (int h = 0; h < p.n_head; ++h)
        for (int64_t i = 0; i < nq; ++i) {
            std::vector<double> s(size_t(p.n_kv), -INFINITY);
            for (int64_t j = 0; j < p.n_kv; ++j) {
                bool ok = p.causal ? j <= p.kv_offset + i : (j / (p.n_kv / p.n_batch)) == (i / (nq / p.n_batch));
                if (!ok) continue;
                double d = 0;
                for (int c = 0; c < hd; ++c) d += double(q[i * qc + h * hd + c]) * k[j * kc + (h / group) * hd + c];
                s[size_t(j)] = d * p.scale;
            }
            double mx = *std::max_element(s.begin(), s.end()), sum = 0;
            for (auto& x : s) sum += (x = std::exp(x - mx));
            for (int c = 0; c < hd; ++c) {
                double acc = 0;
                for (int64_t j = 0; j < p.n_kv; ++j) acc += s[size_t(j)] * v[j * kc + (h / group) * hd + c];
                out[size_t(i * qc + h * hd + c)] = float(acc / sum);
            }
        }
    return out;
}
}  // namespace

TEST_CASE("attention: causal with cache offset, GQA, non-causal batches, against the naive loop") {
    // the BLAS path (where OpenBLAS loads) and the builtin row loop alike
    for (bool use_blas : {true, false}) {
        BackendOptions bo;
        bo.n_threads = 2;
        bo.cpu_blas = use_blas;
        std::unique_ptr<Backend> b;
        REQUIRE(backend_create("cpu", bo, &b).ok());
        INFO("cpu_blas " << use_blas << " (" << gemm_provider() << ")");
        struct Case { int nh, nkv, hd; int64_t nq, nkv_rows, off; bool causal; int batch; };
        // beyond the small ones: several 64-row query blocks, a partial one, a cache offset, and view
        // blocks of 50 rows (blocks end inside a batch)
        const Case cases[] = {{4, 2, 8, 5, 5, 0, true, 1},   {4, 4, 16, 7, 12, 5, true, 1}, {8, 2, 4, 1, 33, 32, true, 1},
                              {2, 2, 8, 6, 6, 0, false, 3}, {3, 1, 5, 17, 17, 0, true, 1}, {2, 2, 16, 20, 20, 0, false, 1},
                              {4, 2, 24, 150, 150, 0, true, 1}, {2, 1, 16, 70, 100, 30, true, 1}, {4, 4, 24, 150, 150, 0, false, 3}};
        for (auto& c : cases) {
            AttentionParams p;
            p.n_head = c.nh; p.n_kv_head = c.nkv; p.head_dim = c.hd;
            p.n_kv = c.nkv_rows; p.kv_offset = c.off; p.causal = c.causal; p.n_batch = c.batch;
            p.scale = 1.f / std::sqrt(float(c.hd));
            auto qv = randn(size_t(c.nq * c.nh * c.hd), 11), kv = randn(size_t(c.nkv_rows * c.nkv * c.hd), 12),
                 vv = randn(size_t(c.nkv_rows * c.nkv * c.hd), 13);
            Tensor q = make(*b, c.nq, c.nh * c.hd, qv), k = make(*b, c.nkv_rows, c.nkv * c.hd, kv),
                   v = make(*b, c.nkv_rows, c.nkv * c.hd, vv), o = make(*b, c.nq, c.nh * c.hd, {});
            b->attention(q, k, v, o, p);
            INFO("heads " << c.nh << "/" << c.nkv << " hd " << c.hd << " nq " << c.nq << " causal " << c.causal);
            CHECK(nmse(get(*b, o), attention_ref(qv, kv, vv, c.nq, p)) < 1e-10);
        }
    }
    auto b = cpu();
    // Hand-derived: the first causal row sees only key 0, so it returns v[0].
    AttentionParams p;
    p.n_head = p.n_kv_head = 1; p.head_dim = 2; p.n_kv = 2; p.scale = 1.f;
    Tensor q = make(*b, 2, 2, {1, 0, 0, 0}), k = make(*b, 2, 2, {1, 0, 0, 1}), v = make(*b, 2, 2, {3, 4, 5, 6}),
           o = make(*b, 2, 2, {});
    b->attention(q, k, v, o, p);
    auto ov = get(*b, o);
    CHECK(ov[0] == 3.f);
    CHECK(ov[1] == 4.f);
    CHECK(ov[2] == doctest::Approx(4.f));  // q = 0: uniform over both keys
    CHECK(ov[3] == doctest::Approx(5.f));
}

TEST_CASE("attention_probs: selected rows' softmax rows, consistent with attention") {
    auto b = cpu();
    struct Case { int nh, nkv, hd; int64_t nq, nkv_rows, off; bool causal; int batch; std::vector<int32_t> rows; };
    const Case cases[] = {{4, 2, 8, 9, 9, 0, true, 1, {6, 7, 8}}, {2, 2, 16, 6, 6, 0, false, 3, {0, 2, 4}},
                          {4, 1, 8, 3, 10, 7, true, 1, {0, 2}}};
    for (auto& c : cases) {
        AttentionParams p;
        p.n_head = c.nh; p.n_kv_head = c.nkv; p.head_dim = c.hd;
        p.n_kv = c.nkv_rows; p.kv_offset = c.off; p.causal = c.causal; p.n_batch = c.batch;
        p.scale = 1.f / std::sqrt(float(c.hd));
        auto qv = randn(size_t(c.nq * c.nh * c.hd), 31), kv = randn(size_t(c.nkv_rows * c.nkv * c.hd), 32),
             vv = randn(size_t(c.nkv_rows * c.nkv * c.hd), 33);
        Tensor q = make(*b, c.nq, c.nh * c.hd, qv), k = make(*b, c.nkv_rows, c.nkv * c.hd, kv),
               v = make(*b, c.nkv_rows, c.nkv * c.hd, vv), o = make(*b, c.nq, c.nh * c.hd, {});
        const int64_t nr = int64_t(c.rows.size());
        Tensor pr = make(*b, c.nh * nr, c.nkv_rows, {});
        b->attention_probs(q, k, c.rows.data(), nr, pr, p);
        b->attention(q, k, v, o, p);
        auto P = get(*b, pr), O = get(*b, o);
        for (int h = 0; h < c.nh; ++h)
            for (int64_t r = 0; r < nr; ++r) {
                const float* row = P.data() + (h * nr + r) * c.nkv_rows;
                double sum = 0;
                for (int64_t j = 0; j < c.nkv_rows; ++j) sum += row[j];
                CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
                if (c.causal)  // keys after the query are masked
                    for (int64_t j = c.off + c.rows[size_t(r)] + 1; j < c.nkv_rows; ++j) CHECK(row[j] == 0.f);
                // probs . v reproduces the attention output of that row and head
                const int hk = h / (c.nh / c.nkv);
                for (int d = 0; d < c.hd; ++d) {
                    double acc = 0;
                    for (int64_t j = 0; j < c.nkv_rows; ++j) acc += row[j] * vv[size_t(j * c.nkv * c.hd + hk * c.hd + d)];
                    CHECK(O[size_t(c.rows[size_t(r)] * c.nh * c.hd + h * c.hd + d)] == doctest::Approx(acc).epsilon(1e-4));
                }
            }
    }
}

TEST_CASE("row ops: get_rows converts dtypes, copy_rows, gather_rows, add_rows") {
    auto b = cpu();
    std::vector<uint16_t> table = {f32_to_f16(1), f32_to_f16(2), f32_to_f16(-3), f32_to_f16(0.5f)};  // [2, 2]
    TensorView tv{"t", DType::f16, {2, 2}, reinterpret_cast<const uint8_t*>(table.data()), 8};
    Tensor t;
    REQUIRE(b->upload_weight(tv, 2, 2, &t).ok());
    Tensor out = make(*b, 3, 2, {0, 0, 0, 0, 0, 0});
    const int32_t ids[] = {1, 0};
    b->get_rows(t, ids, 2, out, 1);
    CHECK(get(*b, out) == std::vector<float>{0, 0, -3, 0.5f, 1, 2});
    Tensor g = make(*b, 2, 2, {});
    const int32_t idx[] = {2, 0};
    b->gather_rows(out, idx, 2, g);
    CHECK(get(*b, g) == std::vector<float>{1, 2, 0, 0});
    b->copy_rows(g, 0, 1, out, 0);
    CHECK(get(*b, out)[0] == 1.f);
    b->add_rows(out, 0, t, 1, 3, true);  // broadcast row 1 of the table onto all 3 rows
    CHECK(get(*b, out) == std::vector<float>{-2, 2.5f, -6, 1, -2, 2.5f});
    b->add_rows(out, 1, t, 0, 2, false);
    CHECK(get(*b, out) == std::vector<float>{-2, 2.5f, -5, 3, -5, 3});
}

TEST_CASE("patch_embed equals a direct convolution with stride = patch") {
    auto b = cpu();
    const int S = 12, P = 4, D = 5, n_img = 2, g = S / P, np = g * g;
    auto img = randn(size_t(n_img) * 3 * S * S, 21);
    auto wv = randn(size_t(D) * 3 * P * P, 22, 0.1f);
    Tensor it = make(*b, n_img * 3, S * S, img);
    TensorView tv{"w", DType::f32, {D, 3, P, P}, reinterpret_cast<const uint8_t*>(wv.data()), wv.size() * 4};
    Tensor w;
    REQUIRE(b->upload_weight(tv, D, 3 * P * P, &w).ok());
    Tensor out = make(*b, n_img * (np + 1), D, std::vector<float>(size_t(n_img * (np + 1) * D), 0.f));
    b->patch_embed(it, n_img, S, P, w, out);
    auto o = get(*b, out);
    for (int im = 0; im < n_img; ++im)
        for (int py = 0; py < g; ++py)
            for (int px = 0; px < g; ++px)
                for (int d = 0; d < D; ++d) {
                    double s = 0;
                    for (int c = 0; c < 3; ++c)
                        for (int y = 0; y < P; ++y)
                            for (int x = 0; x < P; ++x)
                                s += img[size_t(((im * 3 + c) * S + py * P + y) * S + px * P + x)] *
                                     wv[size_t(((d * 3 + c) * P + y) * P + x)];
                    CHECK(o[size_t((im * (np + 1) + 1 + py * g + px) * D + d)] == doctest::Approx(s).epsilon(1e-4));
                }
}

TEST_CASE("image preprocessing") {
    PreprocessParams p;
    p.size = 8;
    std::vector<float> out(3 * 8 * 8);
    auto expect_norm = [&](int c, float byte) { return (byte / 255.f - p.mean[c]) / p.std[c]; };

    SUBCASE("a constant image stays constant in both modes, any size") {
        for (bool pad : {true, false}) {
            p.pad = pad;
            std::vector<uint8_t> px(20 * 20 * 3);
            for (size_t i = 0; i < px.size(); i += 3) { px[i] = 200; px[i + 1] = 100; px[i + 2] = 50; }
            ImageInput in{px.data(), px.size(), 20, 20, 60, PixelFormat::rgb8};
            REQUIRE(image_preprocess(in, p, out.data()).ok());
            for (int c = 0; c < 3; ++c)
                for (int i = 0; i < 64; ++i) CHECK(out[size_t(c * 64 + i)] == doctest::Approx(expect_norm(c, c == 0 ? 200 : c == 1 ? 100 : 50)));
        }
    }
    SUBCASE("same size is the identity; bgr and rgb agree; mono replicates; step padding is ignored") {
        std::vector<uint8_t> rgb(8 * 8 * 3), bgr(8 * 10 * 4), mono(8 * 8);
        std::mt19937 g(3);
        for (int y = 0; y < 8; ++y)
            for (int x = 0; x < 8; ++x) {
                uint8_t r = uint8_t(g()), gg = uint8_t(g()), bb = uint8_t(g());
                rgb[size_t((y * 8 + x) * 3)] = r; rgb[size_t((y * 8 + x) * 3 + 1)] = gg; rgb[size_t((y * 8 + x) * 3 + 2)] = bb;
                bgr[size_t(y * 40 + x * 4)] = bb; bgr[size_t(y * 40 + x * 4 + 1)] = gg; bgr[size_t(y * 40 + x * 4 + 2)] = r;
                mono[size_t(y * 8 + x)] = r;
            }
        ImageInput a{rgb.data(), rgb.size(), 8, 8, 24, PixelFormat::rgb8};
        REQUIRE(image_preprocess(a, p, out.data()).ok());
        for (int y = 0; y < 8; ++y)
            for (int x = 0; x < 8; ++x)
                for (int c = 0; c < 3; ++c) CHECK(out[size_t(c * 64 + y * 8 + x)] == doctest::Approx(expect_norm(c, rgb[size_t((y * 8 + x) * 3 + c)])));
        std::vector<float> out2(out.size());
        ImageInput bi{bgr.data(), bgr.size(), 8, 8, 40, PixelFormat::bgra8};
        REQUIRE(image_preprocess(bi, p, out2.data()).ok());
        CHECK(out == out2);
        ImageInput mi{mono.data(), mono.size(), 8, 8, 8, PixelFormat::mono8};
        REQUIRE(image_preprocess(mi, p, out2.data()).ok());
        for (int i = 0; i < 64; ++i) CHECK(out2[size_t(i)] == doctest::Approx(out[size_t(i)]));
    }
    SUBCASE("pad letterboxes a wide image with the mean colour") {
        p.pad = true;
        // 64x16 -> a 64x64 canvas with 24 fill rows above; the 8x8 output's top row reads canvas
        // rows < 21 (bicubic support 2 * 64/8), all fill.
        std::vector<uint8_t> px(64 * 16 * 3, 255);
        ImageInput in{px.data(), px.size(), 64, 16, 192, PixelFormat::rgb8};
        REQUIRE(image_preprocess(in, p, out.data()).ok());
        // top row is padding: fill = int(mean * 255)
        for (int c = 0; c < 3; ++c) CHECK(out[size_t(c * 64)] == doctest::Approx(expect_norm(c, float(int(p.mean[c] * 255.f)))));
        CHECK(out[size_t(4 * 8 + 4)] > expect_norm(0, 200));  // the centre row sees the white image
    }
    SUBCASE("bad geometry is a coded error, never a read out of bounds") {
        std::vector<uint8_t> px(10);
        ImageInput bad_step{px.data(), px.size(), 4, 1, 3, PixelFormat::rgb8};
        CHECK(image_preprocess(bad_step, p, out.data()).code() == Code::image);
        ImageInput short_buf{px.data(), px.size(), 2, 2, 6, PixelFormat::rgb8};
        Status st = image_preprocess(short_buf, p, out.data());
        CHECK(st.code() == Code::image);
        CHECK(st.message().find("needs 12") != std::string::npos);
        ImageInput zero{px.data(), px.size(), 0, 2, 6, PixelFormat::rgb8};
        CHECK(image_preprocess(zero, p, out.data()).code() == Code::image);
        ImageInput null{nullptr, 0, 1, 1, 3, PixelFormat::rgb8};
        CHECK(image_preprocess(null, p, out.data()).code() == Code::image);
    }
}

TEST_CASE("backend registry") {
    std::unique_ptr<Backend> b;
    CHECK(backend_create("cpu", {}, &b).ok());
    CHECK(backend_create("tpu", {}, &b).code() == Code::backend);
#ifndef VLA_HAVE_CUDA
    CHECK(backend_create("cuda", {}, &b).code() == Code::backend);
    REQUIRE(backend_create("auto", {}, &b).ok());
    CHECK(std::string(b->name()) == "cpu");
#endif
}
