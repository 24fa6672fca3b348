// CPU backend benchmark; prints one JSON object.
//   bench-cpu --model DIR [--views 1,6] [--iters N] [--threads T] [--gemm] [--prune]
//   bench-cpu --model DIR --serve FRAMES [--threads T]   (scripts/bench-cpu.js --peer)
// --serve: a worker for interleaved rounds against the PyTorch peer. FRAMES holds rgb8 views of
// image_size x image_size, back to back; each stdin line "VIEWS POLICY TOKENS" runs one inference
// on the first VIEWS of them with the prompt bench_prompt() builds, and prints one JSON line
// (stage timings, waypoints, prune FLOPs). The peer (tools/bench/peer_cpu.py) builds the same.
// Per view count: ms per inference (min and mean over iterations) with stage timings, model
// FLOPs of vision + prefill and the GFLOP/s they imply; with --gemm also the threaded GEMM
// against the plain single-threaded loop on the model's own shapes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fstream>
#include <iostream>

#include "blas.h"
#include "gemm.h"
#include "vla/engine.h"
#include "vla/prune.h"

using namespace vla;
using Clock = std::chrono::steady_clock;

namespace {

double flops_forward(const ModelConfig& c, int n_views, int64_t n_text) {
    const auto& v = c.vision;
    const auto& t = c.text;
    const double T = v.n_patches() + 1, D = v.hidden, Dff = v.intermediate, nv = n_views;
    double f = 2.0 * nv * v.n_patches() * D * 3 * v.patch_size * v.patch_size;  // patch embedding
    f += c.vision_layers_used() * nv * (2 * T * (4 * D * D + 2 * D * Dff) + 4 * T * T * D);
    const double Np = c.drop_cls ? v.n_patches() : T, d = t.hidden;
    f += 2.0 * nv * Np * (D * d + d * d);  // projector
    const double n = n_text + nv * Np + c.vla.n_waypoints;
    const double qd = double(t.n_heads) * t.head_dim, kvd = double(t.n_kv_heads) * t.head_dim;
    // projections, SwiGLU, causal attention (QK^T and PV over n^2/2)
    f += t.n_layers * (2 * n * (2 * d * qd + 2 * d * kvd) + 2 * n * 3 * d * t.intermediate + 2 * n * n * qd);
    return f;
}

std::string json_num(double v) {
    char b[64];
    std::snprintf(b, sizeof b, "%.4g", v);
    return b;
}

// The prompt of --serve (and of tools/bench/peer_cpu.py): bos, 30 text ids, one image token per
// view, 20 text ids.
std::vector<int32_t> bench_prompt(const ModelConfig& c, int n_views) {
    std::vector<int32_t> ids{c.text.bos_id};
    for (int i = 0; i < 30; ++i) ids.push_back(3 + i);
    for (int v = 0; v < n_views; ++v) ids.push_back(c.image_token_id);
    for (int i = 0; i < 20; ++i) ids.push_back(40 + i);
    return ids;
}

int serve(Engine& e, const std::string& frames_path) {
    const auto& c = e.info().config;
    const int S = c.vision.image_size;
    const size_t frame = size_t(S) * S * 3;
    std::ifstream f(frames_path, std::ios::binary);
    std::vector<uint8_t> frames((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const int n_frames = int(frames.size() / frame);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        int nv = 0;
        std::string policy;
        double T = 0;
        in >> nv >> policy >> T;
        InferRequest r;
        r.input_ids = bench_prompt(c, nv);
        if (nv < 1 || nv > n_frames || nv > int(c.vla.cameras.size())) {
            std::printf("{\"error\": \"VLA_E_INPUT\", \"message\": \"views %d: %d frames, %d cameras\"}\n", nv, n_frames,
                        int(c.vla.cameras.size()));
            std::fflush(stdout);
            continue;
        }
        for (int v = 0; v < nv; ++v) r.views.push_back({frames.data() + size_t(v) * frame, frame, S, S, S * 3, PixelFormat::rgb8});
        if (policy != "none") {
            bool known = false;
            for (PrunePolicy p : {PrunePolicy::autoprune, PrunePolicy::fastv, PrunePolicy::pdrop, PrunePolicy::sparsevlm_fixed,
                                  PrunePolicy::cls_prior, PrunePolicy::random})
                if (policy == prune_policy_name(p)) {
                    r.prune.policy = p;
                    known = true;
                }
            if (!known) {
                std::printf("{\"error\": \"VLA_E_INPUT\", \"message\": \"unknown policy\"}\n");
                std::fflush(stdout);
                continue;
            }
            r.prune.budget = {BudgetKind::tokens, T};
        }
        InferResult res;
        Status st = e.infer(r, &res);
        if (!st.ok()) {
            std::printf("{\"error\": \"%s\"}\n", st.to_string().c_str());
            std::fflush(stdout);
            continue;
        }
        const auto& t = res.timings;
        std::printf("{\"total_ms\": %.4f, \"preprocess_ms\": %.4f, \"vision_ms\": %.4f, \"prefill_ms\": %.4f, \"head_ms\": %.4f, "
                    "\"prompt_tokens\": %lld, \"flops\": %.6g, \"flops_unpruned\": %.6g, \"waypoints\": [",
                    t.total_ms, t.preprocess_ms, t.vision_ms, t.prefill_ms, t.head_ms, (long long)res.n_prompt_tokens, res.prune.flops,
                    res.prune.flops_unpruned);
        for (size_t i = 0; i < res.waypoints.size(); ++i) std::printf("%s%.7g", i ? ", " : "", res.waypoints[i]);
        std::printf("]}\n");
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model;
    std::vector<int> views{1, 6};
    int iters = 3, threads = 0;
    bool gemm = false, prune = false, gemm_only = false;
    std::string serve_frames;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "--model") model = next();
        else if (a == "--iters") iters = std::max(1, std::atoi(next().c_str()));
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--gemm") gemm = true;
        else if (a == "--gemm-only") gemm = gemm_only = true;  // no inference runs
        else if (a == "--prune") prune = true;
        else if (a == "--serve") serve_frames = next();
        else if (a == "--views") {
            views.clear();
            std::stringstream ss(next());
            for (std::string p; std::getline(ss, p, ',');) views.push_back(std::atoi(p.c_str()));
        } else {
            std::fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    if (model.empty()) {
        std::fprintf(stderr, "usage: bench-cpu --model DIR [--views 1,6] [--iters N] [--threads T] [--gemm]\n");
        return 2;
    }
    std::unique_ptr<Engine> e;
    EngineOptions o;
    o.n_threads = threads;
    Status st = Engine::load(model, o, &e);
    if (!st.ok()) {
        std::fprintf(stderr, "%s\n", st.to_string().c_str());
        return 1;
    }
    if (!serve_frames.empty()) return serve(*e, serve_frames);
    const auto& c = e->info().config;
    std::printf("{\"model\": \"%s\", \"params\": %lld, \"weight_bytes\": %lld, \"threads\": %d, \"runs\": [", model.c_str(),
                (long long)e->info().n_params, (long long)e->info().weight_bytes, threads);
    bool first = true;
    for (int nv : gemm_only ? std::vector<int>{} : views) {
        if (nv > int(c.vla.cameras.size())) continue;
        const int W = 640, H = 360;
        std::vector<std::vector<uint8_t>> bufs(static_cast<size_t>(nv), std::vector<uint8_t>(size_t(W * H * 3)));
        std::mt19937 g(7);
        InferRequest r;
        r.input_ids = {c.text.bos_id};
        for (int i = 0; i < 30; ++i) r.input_ids.push_back(3 + i);  // ~ a system prompt
        for (int v = 0; v < nv; ++v) {
            for (auto& x : bufs[size_t(v)]) x = uint8_t(g());
            r.views.push_back({bufs[size_t(v)].data(), bufs[size_t(v)].size(), W, H, W * 3, PixelFormat::rgb8});
            r.input_ids.push_back(c.image_token_id);
        }
        for (int i = 0; i < 20; ++i) r.input_ids.push_back(40 + i);  // ~ an instruction
        InferResult res;
        if (!(st = e->infer(r, &res)).ok()) {  // warm-up
            std::fprintf(stderr, "%s\n", st.to_string().c_str());
            return 1;
        }
        std::vector<InferResult> rs;
        for (int i = 0; i < iters; ++i) {
            if (!(st = e->infer(r, &res)).ok()) return 1;
            rs.push_back(res);
        }
        auto best = *std::min_element(rs.begin(), rs.end(), [](auto& a, auto& b) { return a.timings.total_ms < b.timings.total_ms; });
        double mean = 0;
        for (auto& x : rs) mean += x.timings.total_ms / rs.size();
        const int64_t n_text = int64_t(r.input_ids.size()) - nv;
        const double fl = flops_forward(c, nv, n_text);
        const double compute_ms = best.timings.vision_ms + best.timings.prefill_ms + best.timings.head_ms;
        std::printf("%s{\"views\": %d, \"prompt_tokens\": %lld, \"visual_tokens\": %lld, \"ms_min\": %s, \"ms_mean\": %s, "
                    "\"preprocess_ms\": %s, \"vision_ms\": %s, \"prefill_ms\": %s, \"head_ms\": %s, \"gflop\": %s, "
                    "\"gflops_per_s\": %s}",
                    first ? "" : ", ", nv, (long long)best.n_prompt_tokens, (long long)best.n_visual_tokens,
                    json_num(best.timings.total_ms).c_str(), json_num(mean).c_str(), json_num(best.timings.preprocess_ms).c_str(),
                    json_num(best.timings.vision_ms).c_str(), json_num(best.timings.prefill_ms).c_str(),
                    json_num(best.timings.head_ms).c_str(), json_num(fl / 1e9).c_str(), json_num(fl / 1e6 / compute_ms).c_str());
        first = false;
    }
    std::printf("]");
    if (prune) {
        const int nv = std::min<int>(views.empty() ? 1 : *std::max_element(views.begin(), views.end()), int(c.vla.cameras.size()));
        const int W = 640, H = 360;
        std::vector<std::vector<uint8_t>> bufs(static_cast<size_t>(nv), std::vector<uint8_t>(size_t(W * H * 3)));
        std::mt19937 g(9);
        InferRequest r;
        r.input_ids = {c.text.bos_id};
        for (int i = 0; i < 30; ++i) r.input_ids.push_back(3 + i);
        for (int v = 0; v < nv; ++v) {
            for (auto& x : bufs[size_t(v)]) x = uint8_t(g());
            r.views.push_back({bufs[size_t(v)].data(), bufs[size_t(v)].size(), W, H, W * 3, PixelFormat::rgb8});
            r.input_ids.push_back(c.image_token_id);
        }
        for (int i = 0; i < 20; ++i) r.input_ids.push_back(40 + i);
        std::string last_error;
        auto best_prefill = [&](const InferRequest& q, InferResult* keep) {
            double best = 1e30;
            for (int i = 0; i < iters; ++i) {
                InferResult res;
                Status s = e->infer(q, &res);
                if (!s.ok()) {
                    last_error = s.to_string();
                    return -1.0;
                }
                if (res.timings.prefill_ms < best) { best = res.timings.prefill_ms; *keep = res; }
            }
            return best;
        };
        InferResult base;
        const double base_ms = best_prefill(r, &base);
        std::printf(", \"prune\": {\"views\": %d, \"visual_tokens\": %lld, \"none_prefill_ms\": %s, \"runs\": [", nv,
                    (long long)base.n_visual_tokens, json_num(base_ms).c_str());
        bool first_p = true;
        for (PrunePolicy p : {PrunePolicy::autoprune, PrunePolicy::fastv, PrunePolicy::pdrop, PrunePolicy::sparsevlm_fixed,
                              PrunePolicy::cls_prior, PrunePolicy::random}) {
            for (double T : {64.0, 128.0, 192.0}) {
                InferRequest q = r;
                q.prune.policy = p;
                q.prune.budget = {BudgetKind::tokens, T};
                InferResult res;
                const double ms = best_prefill(q, &res);
                if (ms < 0) {  // a budget the policy cannot meet on this model: say so
                    std::string msg;
                    for (char ch : last_error) msg += (ch == '"' || ch == '\\') ? '\'' : ch;
                    std::printf("%s{\"policy\": \"%s\", \"T\": %g, \"error\": \"%s\"}", first_p ? "" : ", ", prune_policy_name(p), T,
                                msg.c_str());
                    first_p = false;
                    continue;
                }
                std::printf("%s{\"policy\": \"%s\", \"T\": %g, \"prefill_ms\": %s, \"time_ratio\": %s, \"flops_ratio\": %s, "
                            "\"avg_tokens\": %s, \"budget_met\": %s}",
                            first_p ? "" : ", ", prune_policy_name(p), T, json_num(ms).c_str(), json_num(ms / base_ms).c_str(),
                            json_num(res.prune.flops / res.prune.flops_unpruned).c_str(), json_num(res.prune.avg_tokens).c_str(),
                            res.prune.budget_met ? "true" : "false");
                first_p = false;
            }
        }
        std::printf("]}");
    }
    if (gemm) {
        // Every matrix shape of the model at the largest view count (vision tower, projector,
        // decoder prefill): the engine's gemm_xwt (the BLAS in the pool where one loads), the
        // library's own figure (one direct cblas_sgemm with its own threads, as many) and the
        // builtin kernel.
        ThreadPool pool(threads);
        const int T = pool.size();
        const int nv = std::min<int>(views.empty() ? 1 : *std::max_element(views.begin(), views.end()), int(c.vla.cameras.size()));
        const int64_t vt = int64_t(nv) * (c.vision.n_patches() + 1), D = c.vision.hidden, Dff = c.vision.intermediate;
        const int64_t pt = int64_t(nv) * c.vision.n_patches(), d = c.text.hidden;
        const int64_t nt = 51 + pt + c.vla.n_waypoints, qd = int64_t(c.text.n_heads) * c.text.head_dim;
        const int64_t kvd = int64_t(c.text.n_kv_heads) * c.text.head_dim, ff = c.text.intermediate;
        struct Shape { const char* name; int64_t n, k, m; } shapes[] = {
            {"vision.qkvo", vt, D, D}, {"vision.fc1", vt, D, Dff}, {"vision.fc2", vt, Dff, D}, {"projector.1", pt, D, d},
            {"projector.2", pt, d, d},  {"text.q_o", nt, d, qd},    {"text.kv", nt, d, kvd},    {"text.gate_up", nt, d, ff},
            {"text.down", nt, ff, d},   {"decode.gate_up", 1, d, ff}};
        const Blas* lib = blas();
        std::printf(", \"gemm_provider\": \"%s\", \"gemm_threads\": %d, \"gemm\": [", gemm_provider().c_str(), T);
        bool first_g = true;
        for (const Shape& sh : shapes) {
            const int64_t n = sh.n, k = sh.k, mm = sh.m;
            std::vector<float> x(static_cast<size_t>(n * k)), w(size_t(mm * k)), y(size_t(n * mm));
            std::mt19937 g(3);
            std::uniform_real_distribution<float> u(-1.f, 1.f);
            for (auto& v : x) v = u(g);
            for (auto& v : w) v = 0.05f * u(g);
            // Interleaved repetitions (engine, library, builtin in turn), medians of the times and
            // of the per-repetition engine/library ratio: a shared machine's load hits all three.
            auto once = [&](auto&& f) {
                auto t0 = Clock::now();
                f();
                return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            };
            auto median = [](std::vector<double> v) {
                std::sort(v.begin(), v.end());
                return v.empty() ? 0.0 : v[v.size() / 2];
            };
            const double fl = 2.0 * n * k * mm;
            auto run_eng = [&] { gemm_xwt(pool, x.data(), n, k, w.data(), DType::f32, mm, nullptr, y.data()); };
            auto run_own = [&] { gemm_xwt_builtin(pool, x.data(), n, k, w.data(), DType::f32, mm, nullptr, y.data()); };
            auto run_lib = [&] {
                lib->sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, int(n), int(mm), int(k), 1.f, x.data(), int(k), w.data(),
                           int(k), 0.f, y.data(), int(mm));
            };
            // The library's own threads only around its own call (untimed switch); the engine's
            // calls need it single-threaded.
            auto timed_lib = [&] {
                lib->set_threads(T);
                const double ms = once(run_lib);
                lib->set_threads(1);
                return ms;
            };
            const bool has_lib = lib && lib->set_threads;
            run_eng();
            run_own();
            if (has_lib) timed_lib();
            std::vector<double> te, to, tl, ratio;
            for (int r = 0; r < 7; ++r) {
                te.push_back(once(run_eng));
                if (has_lib) {
                    tl.push_back(timed_lib());
                    ratio.push_back(tl.back() / te.back());
                }
                if (r < 3) to.push_back(once(run_own));
            }
            const double eng = median(te), own = median(to), direct = has_lib ? median(tl) : 0;
            std::printf("%s{\"shape\": \"%s\", \"n\": %lld, \"k\": %lld, \"m\": %lld, \"engine_gflops_per_s\": %s, "
                        "\"library_direct_gflops_per_s\": %s, \"builtin_gflops_per_s\": %s, \"engine_vs_library\": %s}",
                        first_g ? "" : ", ", sh.name, (long long)n, (long long)k, (long long)mm, json_num(fl / 1e6 / eng).c_str(),
                        direct > 0 ? json_num(fl / 1e6 / direct).c_str() : "null", json_num(fl / 1e6 / own).c_str(),
                        direct > 0 ? json_num(median(ratio)).c_str() : "null");
            first_g = false;
        }
        std::printf("]");
    }
    std::printf("}\n");
    return 0;
}
