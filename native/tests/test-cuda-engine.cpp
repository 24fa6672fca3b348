// End-to-end parity of the engine on a peer backend (default "cuda") against the engine on the
// "cpu" backend, on the generated tiny models (build/test-models, VLA_TEST_MODELS overrides):
// every pruning policy, 1 view and every camera (tiny: 3, tiny-6cam: 6), both heads (waypoints;
// text: tiny-text, tiny-6cam-text), F32, F16 and BF16 weight files; then a loop of inferences
// that must not grow memory. One line per case goes to stdout.
//
// Environment:
//   VLA_TEST_PEER=cuda|cpu   the backend under test (default cuda; cpu: a second CPU engine, so
//                            that the harness runs, and must pass, on any machine)
//   VLA_TEST_MODELS=DIR      root of the tiny models (default build/test-models)
//   VLA_TEST_THREADS=N       threads of each CPU engine (default 2)
//   VLA_TEST_DEVICE=N, VLA_TEST_WEIGHT_DTYPE=auto|f16|bf16   the peer engine's device / weight dtype
//   VLA_TEST_TOL_SCALE=x     multiplies every tolerance (default 1)
//   VLA_TEST_MAX_FLIPS=N     near-tie selection flips allowed per policy and test case (default 1)
//   VLA_LEAK_ITERS=N         inferences of the loop test (default 200; the GPU script sets 10000)
//   VLA_TEST_QUICK=1         a subset for slow peers (the CUDA backend on its CPU emulation: seconds
//                            per inference): every camera only, policies none/autoprune/fastv/
//                            cls-prior, each file's own head, no tiny-6cam-text
// Without the peer: prints "SKIPPED: cuda backend unavailable: <reason>" and exits 0.
//
// Tolerances (peer against cpu, same request, same weights file):
//   logits, hidden states, waypoints: NMSE <= 1e-4 for F32 and F16 files, 3e-3 for BF16, and
//   waypoints also max |diff| <= 2e-2 (F16) / 5e-2 (BF16) x max(1, max |cpu|), as test-engine's
//   half-precision check. The CUDA backend holds F32 files' matrices as F16, and may round
//   activations to F16/BF16 at every GEMM and in attention: in the tiny models some 30 such
//   roundings of ~1e-7 (F16) or ~1e-5 (BF16) each, with 20-50x headroom on top.
//   Pruning: visual tokens kept and merged per layer, budgets, FLOPs: exactly equal (the counts
//   are fixed by each policy's schedule, whatever the scores); MI_0/MI_1 and the schedule slope
//   within 5e-2 relative (they come from attention probabilities).
// Near ties. Which tokens a policy keeps is a top-k over attention scores, and generated text is
// an argmax over logits; rounding on the peer can flip a near tie. Guards:
//   * kept_per_view (the original tokens of each view that survive each layer) must be equal; if
//     it is not, the case is reported as "selection differs" and its outputs are compared for
//     finiteness only; at most VLA_TEST_MAX_FLIPS such cases per policy in each test case, since a
//     real selection bug shows in many cases, a near tie in one;
//   * tokens: step k is compared only while the CPU's top-2 logit margin at step k is at least
//     4 x the largest logit difference measured between the two engines at step 0 (and 1e-5 of
//     the logits' RMS): for no pruning the margins of later steps come from re-running the CPU
//     prefill over the prompt plus the tokens so far (test-engine shows this equals decoding);
//     under pruning the re-run would prune differently, so only step 0's margin is known and a
//     difference at a later step counts as a selection flip of that policy.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "test-models.h"
#include "vla/config.h"
#include "vla/engine.h"
#include "vla/prune.h"

using namespace vla;
using vla_test::Frames;
using vla_test::frames;
using vla_test::model_dir;

namespace {

std::string g_peer = "cuda";
std::string g_wdt = "auto";
bool g_peer_is_cpu = false;
bool g_quick = false;
double g_tol_scale = 1;

using vla_test::env_int;
using vla_test::fmt;

EngineOptions options(const std::string& backend) {
    EngineOptions o;
    o.backend = backend;
    o.n_threads = env_int("VLA_TEST_THREADS", 2);
    if (backend != "cpu") {
        o.device = env_int("VLA_TEST_DEVICE", 0);
        o.weight_dtype = g_wdt;
    }
    return o;
}

std::unique_ptr<Engine> load(const std::string& dir, const std::string& backend) {
    std::unique_ptr<Engine> e;
    Status st = Engine::load(dir, options(backend), &e);
    REQUIRE_MESSAGE(st.ok(), backend << ": " << st.to_string());
    return e;
}

// Both engines of a model, loaded once and kept for the whole run (a GPU load uploads weights).
struct Pair {
    std::unique_ptr<Engine> cpu, peer;
};
std::map<std::string, Pair>& engines() {
    static std::map<std::string, Pair> m;
    return m;
}
Pair& pair_of(const std::string& model) {
    auto& m = engines();
    auto it = m.find(model);
    if (it != m.end()) return it->second;
    Pair p;
    const std::string dir = model_dir(model.c_str());
    p.cpu = load(dir, "cpu");
    p.peer = load(dir, g_peer);
    return m.emplace(model, std::move(p)).first->second;
}

struct Tol {
    double nmse, wp_abs;
    const char* what;
};
Tol tol_for(const std::string& model) {
    const bool bf = model.find("bf16") != std::string::npos || g_wdt == "bf16";
    Tol t = bf ? Tol{3e-3, 5e-2, "bf16"} : Tol{1e-4, 2e-2, "f16"};
    t.nmse *= g_tol_scale;
    t.wp_abs *= g_tol_scale;
    return t;
}

double nmse(const std::vector<float>& a, const std::vector<float>& ref) {
    if (a.size() != ref.size()) return INFINITY;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
    }
    return den > 0 ? num / den : num;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
    return m;
}

bool all_finite(const std::vector<float>& v) {
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

double top2_margin(const std::vector<float>& l) {
    if (l.size() < 2) return INFINITY;
    float a = -INFINITY, b = -INFINITY;
    for (float x : l) {
        if (x > a) { b = a; a = x; }
        else if (x > b) b = x;
    }
    return double(a) - b;
}

double rms(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return v.empty() ? 0 : std::sqrt(s / double(v.size()));
}

// The prompt of test-prune: BOS, two words, one image token (and a word) per view, 8 words.
InferRequest request(const Engine& e, const Frames& f) { return vla_test::prune_request(e, f); }

InferResult run(Engine& e, const InferRequest& r, const char* who) {
    InferResult out;
    Status st = e.infer(r, &out);
    REQUIRE_MESSAGE(st.ok(), who << ": " << st.to_string());
    return out;
}

// Selection flips per policy within one test case (see the header comment).
struct Flips {
    std::map<PrunePolicy, int> n;
    void check() const {
        const int allowed = env_int("VLA_TEST_MAX_FLIPS", 1);
        for (const auto& [p, k] : n) {
            std::printf("  near-tie flips, policy %s: %d (allowed %d)\n", prune_policy_name(p), k, allowed);
            CHECK_MESSAGE(k <= allowed, "policy " << prune_policy_name(p) << ": " << k
                                                  << " cases selected other tokens than the cpu engine: more than near ties explain");
        }
    }
};

struct Timing {
    double cpu_ms = 0, peer_ms = 0;
    int n = 0;
};

// One request on both engines, every comparison of the header comment.
// variant: 0 the defaults; 1 parity (re-indexed positions, recycling, tail rows, the reference's
// DPC-kNN tie rule); 2 recycling and re-indexing with the instruction rows; 3 the last prompt row.
void parity(const std::string& model, int nv, PrunePolicy policy, int head, Flips& flips, Timing& tm, int variant = 0) {
    Pair& e = pair_of(model);
    const auto& c = e.cpu->info().config;
    const Tol tol = tol_for(model);
    const auto f = frames(nv, uint32_t(11 + nv), 40, 30);
    InferRequest r = request(*e.cpu, f);
    r.head = head;
    const bool text = (head < 0 ? c.vla.head : ActionHead(head)) == ActionHead::text;
    r.return_logits = text;
    r.return_hidden = true;
    const int nvis = nv * c.vision.n_patches();
    if (policy != PrunePolicy::none) {
        r.prune.policy = policy;
        // A third of the visual tokens on average; FastV 0.6: on the 3-layer tiny models a third
        // would make it keep none after its layer, leaving its selection untested.
        r.prune.budget = {BudgetKind::tokens, nvis * (policy == PrunePolicy::fastv ? 0.6 : 1 / 3.0)};
        r.prune.parity = variant == 1;
        r.prune.recycle = r.prune.reindex_positions = variant == 2;
        if (variant == 3) r.prune.score_rows = ScoreRows::last;
    }
    const std::string label = fmt("%s views=%d %s %s variant %d", model.c_str(), nv, prune_policy_name(policy),
                                  text ? "text" : "waypoints", variant);
    INFO(label);
    const InferResult a = run(*e.cpu, r, "cpu");
    const InferResult b = run(*e.peer, r, g_peer.c_str());
    tm.cpu_ms += a.timings.total_ms;
    tm.peer_ms += b.timings.total_ms;
    tm.n++;

    // Shapes and bookkeeping: exact.
    CHECK(b.head == a.head);
    CHECK(b.n_waypoints == a.n_waypoints);
    CHECK(b.waypoint_dim == a.waypoint_dim);
    CHECK(b.n_prompt_tokens == a.n_prompt_tokens);
    CHECK(b.n_visual_tokens == a.n_visual_tokens);
    CHECK(b.n_text_tokens == a.n_text_tokens);
    CHECK_MESSAGE(b.prefill_host_reads == a.prefill_host_reads, "device-to-host reads in vision + prefill: peer "
                                                                   << b.prefill_host_reads << ", cpu " << a.prefill_host_reads);
    // Pruning counts: exact.
    const PruneStats &pa = a.prune, &pb = b.prune;
    CHECK(pb.policy == pa.policy);
    CHECK(pb.n_visual == pa.n_visual);
    CHECK_MESSAGE(pb.kept == pa.kept, "visual tokens kept per layer differ");
    CHECK_MESSAGE(pb.merged == pa.merged, "merged tokens per layer differ");
    CHECK(pb.budget_met == pa.budget_met);
    CHECK(pb.target_tokens == pa.target_tokens);
    CHECK(pb.flops == doctest::Approx(pa.flops).epsilon(1e-12));
    CHECK(pb.flops_unpruned == doctest::Approx(pa.flops_unpruned).epsilon(1e-12));
    CHECK(pb.avg_tokens == doctest::Approx(pa.avg_tokens).epsilon(1e-12));
    for (auto [x, y, name] : {std::make_tuple(pb.mi0, pa.mi0, "mi0"), std::make_tuple(pb.mi1, pa.mi1, "mi1"),
                              std::make_tuple(pb.k, pa.k, "k"), std::make_tuple(pb.scale, pa.scale, "scale")})
        CHECK_MESSAGE(std::fabs(x - y) <= 5e-2 * g_tol_scale * std::max(1.0, std::fabs(y)), name << ": peer " << x << ", cpu " << y);
    if (policy != PrunePolicy::none) {  // the budget does prune, and leaves something to select
        CHECK(pa.avg_tokens < double(nvis));
        CHECK(!pa.kept.empty());
        if (!pa.kept.empty()) CHECK(pa.kept.back() > 0);
    }

    const bool same_selection = pb.kept_per_view == pa.kept_per_view;
    std::string what;
    bool ok = true;
    CHECK(all_finite(b.waypoints));
    CHECK(all_finite(b.hidden));
    CHECK(all_finite(b.logits));
    REQUIRE(b.waypoints.size() == a.waypoints.size());
    REQUIRE(b.hidden.size() == a.hidden.size());
    REQUIRE(b.logits.size() == a.logits.size());
    if (!same_selection) {
        flips.n[policy]++;
        what = "selection differs (near tie?): outputs checked for finiteness only";
    } else {
        const double nw = nmse(b.waypoints, a.waypoints), nh = nmse(b.hidden, a.hidden), nl = nmse(b.logits, a.logits);
        double scale = 1;
        for (float v : a.waypoints) scale = std::max(scale, double(std::fabs(v)));
        const double dw = max_abs_diff(b.waypoints, a.waypoints);
        what = fmt("hidden=%.2e", nh);
        if (!a.waypoints.empty()) what += fmt(" wp=%.2e max|d|=%.1e (<=%.1e)", nw, dw, tol.wp_abs * scale);
        if (!a.logits.empty()) what += fmt(" logits=%.2e", nl);
        what += fmt(" tol=%.0e", tol.nmse);
        CHECK_MESSAGE(nh <= tol.nmse, "hidden states nmse " << nh);
        if (!a.waypoints.empty()) {
            CHECK_MESSAGE(nw <= tol.nmse, "waypoints nmse " << nw);
            CHECK_MESSAGE(dw <= tol.wp_abs * scale, "waypoints max |diff| " << dw);
        }
        if (!a.logits.empty()) CHECK_MESSAGE(nl <= tol.nmse, "logits nmse " << nl);
        ok = nh <= tol.nmse && (a.waypoints.empty() || (nw <= tol.nmse && dw <= tol.wp_abs * scale)) &&
             (a.logits.empty() || nl <= tol.nmse);

        if (text) {
            // Tokens, guarded by the CPU's top-2 margin at each step.
            const double thr = std::max(4 * max_abs_diff(b.logits, a.logits), 1e-5 * rms(a.logits));
            std::vector<double> margin(a.tokens.size(), -1);  // -1: unknown
            if (!margin.empty()) margin[0] = top2_margin(a.logits);
            if (policy == PrunePolicy::none)
                for (size_t k = 1; k < a.tokens.size(); ++k) {
                    InferRequest r2 = r;
                    r2.input_ids.insert(r2.input_ids.end(), a.tokens.begin(), a.tokens.begin() + long(k));
                    r2.max_new_tokens = 1;
                    r2.return_logits = true;
                    margin[k] = top2_margin(run(*e.cpu, r2, "cpu").logits);
                }
            size_t k = 0, compared = 0;
            std::string note;
            for (; k < a.tokens.size(); ++k) {
                if (margin[k] >= 0 && margin[k] < thr) {
                    note = fmt(", step %zu: margin %.2e < %.2e, not compared on", k, margin[k], thr);
                    break;
                }
                if (k >= b.tokens.size() || b.tokens[k] != a.tokens[k]) {
                    if (margin[k] < 0) {  // unknown margin under pruning
                        flips.n[policy]++;
                        note = fmt(", step %zu differs (margin unknown under pruning: counted as a flip)", k);
                    } else {
                        ok = false;
                        note = fmt(", step %zu differs with margin %.2e >= %.2e", k, margin[k], thr);
                        CHECK_MESSAGE(false, "generated token " << k << ": peer " << (k < b.tokens.size() ? b.tokens[k] : -1)
                                                                  << ", cpu " << a.tokens[k] << " (cpu margin " << margin[k] << ")");
                    }
                    break;
                }
                ++compared;
            }
            if (k == a.tokens.size()) {
                CHECK_MESSAGE(b.tokens.size() == a.tokens.size(), "peer generated " << b.tokens.size() << " tokens, cpu " << a.tokens.size());
                CHECK(b.stopped == a.stopped);
            }
            what += fmt(" tokens %zu/%zu equal%s", compared, a.tokens.size(), note.c_str());
        }
    }
    std::string kept;
    for (int k : pa.kept) kept += (kept.empty() ? "" : ",") + std::to_string(k);
    std::printf("%-46s kept=%-10s %s %s\n", label.c_str(), kept.c_str(), what.c_str(), !ok ? "FAIL" : same_selection ? "ok" : "flip");
    std::fflush(stdout);
}

const PrunePolicy kPolicies[] = {PrunePolicy::none,  PrunePolicy::autoprune, PrunePolicy::fastv,  PrunePolicy::pdrop,
                                 PrunePolicy::sparsevlm_fixed, PrunePolicy::cls_prior, PrunePolicy::random};

void parity_models(std::initializer_list<const char*> models, std::initializer_list<int> heads) {
    Flips flips;
    for (const char* m : models) {
        if (g_quick && std::string(m) == "tiny-6cam-text") continue;
        Timing tm;
        const int cams = int(pair_of(m).cpu->info().config.vla.cameras.size());
        for (int nv : {1, cams})
            for (int head : heads)
                for (PrunePolicy p : kPolicies) {
                    if (g_quick && (nv != cams || head != *heads.begin() ||
                                    !(p == PrunePolicy::none || p == PrunePolicy::autoprune || p == PrunePolicy::fastv || p == PrunePolicy::cls_prior)))
                        continue;
                    parity(m, nv, p, head, flips, tm);
                }
        std::printf("  %s: %d cases, mean total %.2f ms on %s, %.2f ms on cpu\n", m, tm.n, tm.peer_ms / std::max(1, tm.n),
                    g_peer.c_str(), tm.cpu_ms / std::max(1, tm.n));
    }
    flips.check();
}

// ---------------------------------------------------------------- memory measurements

int64_t rss_bytes() {
    std::ifstream f("/proc/self/statm");
    int64_t size = 0, resident = 0;
    if (!(f >> size >> resident)) return -1;
    return resident * int64_t(sysconf(_SC_PAGESIZE));
}

// Device memory, engine-independently: the public headers expose none (Backend::allocated_bytes
// is not reachable through Engine), so NVML is opened at run time when present (it ships with
// the driver; nothing links against it). This process's usage when NVML lists it (not in every
// container: NVML reports host PIDs), else the device's used memory.
class Nvml {
public:
    explicit Nvml(unsigned device) {
        lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!lib_) return;
        auto init = reinterpret_cast<int (*)()>(dlsym(lib_, "nvmlInit_v2"));
        auto handle = reinterpret_cast<int (*)(unsigned, void**)>(dlsym(lib_, "nvmlDeviceGetHandleByIndex_v2"));
        mem_ = reinterpret_cast<int (*)(void*, Memory*)>(dlsym(lib_, "nvmlDeviceGetMemoryInfo"));
        procs_ = reinterpret_cast<int (*)(void*, unsigned*, void*)>(dlsym(lib_, "nvmlDeviceGetComputeRunningProcesses_v3"));
        if (!procs_) procs_ = reinterpret_cast<int (*)(void*, unsigned*, void*)>(dlsym(lib_, "nvmlDeviceGetComputeRunningProcesses_v2"));
        shutdown_ = reinterpret_cast<int (*)()>(dlsym(lib_, "nvmlShutdown"));
        if (!init || !handle || !mem_ || !shutdown_ || init() != 0) return;
        inited_ = true;
        ok_ = handle(device, &dev_) == 0;
    }
    ~Nvml() {
        if (inited_) shutdown_();
        if (lib_) dlclose(lib_);
    }
    bool ok() const { return ok_; }
    // Bytes, and what they are ("process" or "device"); -1 when unknown.
    int64_t used(const char** what) {
        *what = "unavailable";
        if (!ok_) return -1;
        if (procs_) {
            struct Proc { unsigned pid; unsigned long long used; unsigned gi, ci; };
            std::vector<unsigned char> buf(256 * 64);  // room for a longer struct in a newer NVML
            unsigned count = unsigned(buf.size() / 64);
            if (procs_(dev_, &count, buf.data()) == 0)
                for (unsigned i = 0; i < count; ++i) {
                    Proc p;
                    std::memcpy(&p, buf.data() + i * sizeof(Proc), sizeof p);
                    if (p.pid == unsigned(getpid())) {
                        *what = "process";
                        return int64_t(p.used);
                    }
                }
        }
        Memory m{};
        if (mem_(dev_, &m) != 0) return -1;
        *what = "device";
        return int64_t(m.used);
    }

private:
    struct Memory { unsigned long long total, free, used; };
    void* lib_ = nullptr;
    void* dev_ = nullptr;
    bool inited_ = false, ok_ = false;
    int (*mem_)(void*, Memory*) = nullptr;
    int (*procs_)(void*, unsigned*, void*) = nullptr;
    int (*shutdown_)() = nullptr;
};

double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[size_t(std::min<double>(double(v.size()) - 1, std::floor(q * double(v.size() - 1) + 0.5)))];
}

}  // namespace

TEST_CASE("smoke: tiny model; no pruning and autoprune; waypoints and text heads") {
    Flips flips;
    Timing tm;
    for (int head : {int(ActionHead::waypoints), int(ActionHead::text)})  // the tiny waypoints model keeps an lm_head
        for (PrunePolicy p : {PrunePolicy::none, PrunePolicy::autoprune}) parity("tiny", 3, p, head, flips, tm);
    flips.check();
}

TEST_CASE("parity switch, recycling with re-indexing, and the last-row scoring (tiny, tiny-6cam)") {
    Flips flips;
    Timing tm;
    for (const char* m : {"tiny", "tiny-6cam"})
        for (int variant : {1, 2, 3})
            for (PrunePolicy p : {PrunePolicy::autoprune, PrunePolicy::sparsevlm_fixed, PrunePolicy::fastv})
                parity(m, int(pair_of(m).cpu->info().config.vla.cameras.size()), p, -1, flips, tm, variant);
    flips.check();
}

TEST_CASE("info: the peer engine runs on the peer and loads the same parameters") {
    for (const char* m : {"tiny", "tiny-f16", "tiny-bf16"}) {
        Pair& e = pair_of(m);
        const ModelInfo &a = e.cpu->info(), &b = e.peer->info();
        std::printf("%-48s backend=%s params=%" PRId64 " weight_bytes=%" PRId64 " (cpu %" PRId64 ")\n", m, b.backend.c_str(), b.n_params,
                    b.weight_bytes, a.weight_bytes);
        CHECK(a.backend == "cpu");
        CHECK(b.backend == (g_peer_is_cpu ? "cpu" : g_peer));
        CHECK(b.n_params == a.n_params);
    }
}

TEST_CASE("parity: every policy; 1 and all views; waypoints head (tiny; tiny-6cam)") {
    parity_models({"tiny", "tiny-6cam"}, {-1});
}

TEST_CASE("parity: every policy; 1 and all views; text head (tiny-text; tiny-6cam-text) and its waypoints head") {
    parity_models({"tiny-text", "tiny-6cam-text"}, {-1, int(ActionHead::waypoints)});
}

TEST_CASE("parity: F16 and BF16 weight files; every policy; both heads") {
    parity_models({"tiny-f16", "tiny-bf16"}, {-1, int(ActionHead::text)});
}

TEST_CASE("peer: bad requests are coded errors and the engine keeps working") {
    Engine& e = *pair_of("tiny").peer;
    const auto f = frames(3, 5);
    const InferRequest good = request(e, f);
    const InferResult ref = run(e, good, "peer");
    InferResult out;
    InferRequest r = good;
    r.views[1].step = 2;  // step below width * 3
    Status st = e.infer(r, &out);
    CHECK(st.code() == Code::image);
    CHECK(st.message().find("view 1") != std::string::npos);
    r = good;
    r.views[0].size = 100;  // buffer shorter than the frame
    CHECK(e.infer(r, &out).code() == Code::image);
    r = good;
    r.input_ids.push_back(e.info().config.text.vocab + 5);
    CHECK(e.infer(r, &out).code() == Code::input);
    r = good;
    r.prune.policy = PrunePolicy::fastv;  // no budget
    CHECK(e.infer(r, &out).code() == Code::input);
    // after every failure the engine still works, with the same result as before them
    const InferResult again = run(e, good, "peer");
    CHECK(again.waypoints.size() == ref.waypoints.size());
    CHECK_MESSAGE(nmse(again.waypoints, ref.waypoints) <= 1e-10, "the peer's result changed after failed requests");
    std::printf("%-48s %s\n", "peer bad requests", again.waypoints == ref.waypoints ? "coded errors; result bit-identical after them"
                                                                                     : "coded errors; result within 1e-10 after them");
}

TEST_CASE("peer: a synthetic model (weights generated by the backend) runs and is finite") {
    ModelConfig c;
    REQUIRE(config_load(model_dir("tiny") + "/config.json", &c).ok());
    for (const std::string& be : {std::string("cpu"), g_peer}) {
        std::unique_ptr<Engine> e;
        Status st = Engine::create_synthetic(c, options(be), 7, 0.02, &e);
        REQUIRE_MESSAGE(st.ok(), be << ": " << st.to_string());
        const auto f = frames(3, 9);
        InferRequest r = request(*e, f);
        r.prune.policy = PrunePolicy::autoprune;
        r.prune.budget = {BudgetKind::tokens, 16};
        const InferResult out = run(*e, r, be.c_str());
        CHECK(out.waypoints.size() == size_t(c.vla.n_waypoints * c.vla.waypoint_dim));
        CHECK(all_finite(out.waypoints));
        std::printf("%-48s %s: %zu waypoints, finite\n", "synthetic tiny", be.c_str(), out.waypoints.size());
    }
}

TEST_CASE("out of memory on the peer: over max_activation_bytes is VLA_E_OOM, a pool too large to reserve fails the load, the engine carries on") {
    Engine& e = *pair_of("tiny").peer;
    const int cams = int(e.info().config.vla.cameras.size());
    const auto f = frames(cams, 23), f1 = frames(1, 23);  // the requests point into these
    InferRequest all = request(e, f), one = request(e, f1);
    const InferResult r1 = run(e, one, g_peer.c_str()), ra = run(e, all, g_peer.c_str());
    REQUIRE(ra.peak_activation_bytes > r1.peak_activation_bytes);
    EngineOptions o = options(g_peer);
    o.max_activation_bytes = (r1.peak_activation_bytes + ra.peak_activation_bytes) / 2;
    std::unique_ptr<Engine> lim;
    REQUIRE(Engine::load(model_dir("tiny"), o, &lim).ok());
    InferResult out;
    const Status st = lim->infer(all, &out);
    CHECK(st.code() == Code::oom);
    std::printf("oom: %s\n", st.to_string().c_str());
    const InferResult again = run(*lim, one, g_peer.c_str());
    CHECK(again.waypoints == r1.waypoints);
    CHECK(lim->activation_bytes() <= o.max_activation_bytes);
    if (!g_peer_is_cpu) {
        EngineOptions far = options(g_peer);
        far.device = 64;  // no machine has 65 GPUs
        std::unique_ptr<Engine> none;
        const Status ds = Engine::load(model_dir("tiny"), far, &none);
        CHECK(ds.code() == Code::backend);
        CHECK(ds.message().find("device 64") != std::string::npos);
        EngineOptions big = options(g_peer);
        big.pool_bytes = int64_t(1) << 50;  // 1 PiB: no device has it
        const Status ls = Engine::load(model_dir("tiny"), big, &none);
        CHECK(ls.code() == Code::oom);
        std::printf("oom at load: %s\n", ls.to_string().c_str());
    }
}

TEST_CASE("loop: repeated inferences on the peer do not grow host or device memory (VLA_LEAK_ITERS)") {
    const int N = std::max(4, env_int("VLA_LEAK_ITERS", 200));
    Engine& e = *pair_of("tiny").peer;
    const auto f = frames(3, 17);
    // Four requests in rotation: no pruning, autoprune (recycling: DPC-kNN), FastV, and the text
    // head with CLS-prior pruning (decode steps, the KV cache).
    std::vector<InferRequest> reqs(4, request(e, f));
    reqs[1].prune.policy = PrunePolicy::autoprune;
    reqs[1].prune.budget = {BudgetKind::tokens, 16};
    reqs[2].prune.policy = PrunePolicy::fastv;
    reqs[2].prune.budget = {BudgetKind::tokens, 16};
    reqs[3].head = int(ActionHead::text);
    reqs[3].max_new_tokens = 3;
    reqs[3].prune.policy = PrunePolicy::cls_prior;
    reqs[3].prune.budget = {BudgetKind::tokens, 24};
    std::vector<InferResult> first(4);
    std::vector<int> bit_identical(4, 0), runs(4, 0);
    std::vector<double> total, prefill, vision;
    Nvml nvml(unsigned(env_int("VLA_TEST_DEVICE", 0)));
    const int warm = std::min(N / 2, std::max(10, N / 10));
    int64_t rss_warm = -1, rss_mid = -1, dev_warm = -1, dev_mid = -1, act_warm = -1;
    int64_t act_peak_max = 0;
    const char* dev_what = "unavailable";
    for (int i = 0; i < N; ++i) {
        const int k = i % 4;
        InferResult out;
        Status st = e.infer(reqs[size_t(k)], &out);
        REQUIRE_MESSAGE(st.ok(), "iteration " << i << ": " << st.to_string());
        total.push_back(out.timings.total_ms);
        prefill.push_back(out.timings.prefill_ms);
        vision.push_back(out.timings.vision_ms);
        if (runs[size_t(k)]++ == 0) {
            first[size_t(k)] = out;
        } else {
            const InferResult& a = first[size_t(k)];
            // run-to-run: the same counts, results within tolerance; bit-identical ones counted
            REQUIRE_MESSAGE(out.prune.kept == a.prune.kept, "iteration " << i << ": kept counts changed");
            REQUIRE_MESSAGE(out.tokens == a.tokens, "iteration " << i << ": generated tokens changed");
            REQUIRE_MESSAGE(nmse(out.waypoints, a.waypoints) <= 1e-8, "iteration " << i << ": waypoints changed");
            bit_identical[size_t(k)] += out.waypoints == a.waypoints;
        }
        act_peak_max = std::max(act_peak_max, out.peak_activation_bytes);
        if (i + 1 == warm) {
            act_warm = e.activation_bytes();
            rss_warm = rss_bytes();
            dev_warm = nvml.used(&dev_what);
        }
        if (i + 1 == warm + (N - warm) / 2) {
            rss_mid = rss_bytes();
            dev_mid = nvml.used(&dev_what);
        }
    }
    const int64_t rss_end = rss_bytes();
    const int64_t dev_end = nvml.used(&dev_what);
    const int64_t act_end = e.activation_bytes();
    const double MiB = 1024.0 * 1024.0;
    std::printf("loop: %d inferences on %s (tiny, 3 views; none / autoprune / fastv / text+cls-prior in rotation)\n", N, g_peer.c_str());
    std::printf("  host RSS (/proc/self/statm): after %d warm-up %.1f MiB, midway %.1f MiB, end %.1f MiB (growth %+.2f MiB)\n", warm,
                rss_warm / MiB, rss_mid / MiB, rss_end / MiB, (rss_end - rss_warm) / MiB);
    if (dev_warm >= 0 && dev_end >= 0)
        std::printf("  GPU memory used (NVML, %s): after warm-up %.1f MiB, midway %.1f MiB, end %.1f MiB (growth %+.2f MiB)\n", dev_what,
                    dev_warm / MiB, dev_mid / MiB, dev_end / MiB, (dev_end - dev_warm) / MiB);
    else
        std::printf("  GPU memory: not measured (%s; the public headers expose no device memory use)\n",
                    g_peer_is_cpu ? "the peer is cpu" : "NVML not found");
    std::printf("  activation memory held between inferences (the backend's own count): after warm-up %lld B, end %lld B; "
                "peak during one %lld B\n",
                (long long)act_warm, (long long)act_end, (long long)act_peak_max);
    // Exact: every temporary of an inference goes back; only the engine's reusable scratch stays.
    CHECK_MESSAGE(act_end == act_warm, "activation memory held between inferences went from " << act_warm << " to " << act_end
                                                                                              << " bytes");
    std::printf("  total ms: mean %.3f p50 %.3f p99 %.3f max %.3f; vision p50 %.3f; prefill p50 %.3f\n",
                std::accumulate(total.begin(), total.end(), 0.0) / double(total.size()), percentile(total, 0.5), percentile(total, 0.99),
                percentile(total, 1.0), percentile(vision, 0.5), percentile(prefill, 0.5));
    for (int k = 0; k < 4; ++k)
        std::printf("  request %d: %d runs, %d of the repeats bit-identical to the first\n", k, runs[size_t(k)],
                    bit_identical[size_t(k)]);
    // After the warm-up the pools and caches have their size: a steady state grows by nothing
    // but allocator noise. A leak of even one small tensor per inference exceeds this over
    // thousands of iterations (the GPU script runs 10000).
    const double rss_slack = env_int("VLA_LEAK_RSS_MIB", 16) * MiB, dev_slack = env_int("VLA_LEAK_DEV_MIB", 16) * MiB;
    CHECK_MESSAGE(double(rss_end - rss_warm) <= rss_slack, "host RSS grew by " << (rss_end - rss_warm) / MiB << " MiB over "
                                                                                 << N - warm << " inferences");
    if (dev_warm >= 0 && dev_end >= 0)
        CHECK_MESSAGE(double(dev_end - dev_warm) <= dev_slack, "GPU memory grew by " << (dev_end - dev_warm) / MiB << " MiB over "
                                                                                      << N - warm << " inferences");
}

int main(int argc, char** argv) {
    const char* pe = std::getenv("VLA_TEST_PEER");
    g_peer = pe && *pe ? pe : "cuda";
    const char* wd = std::getenv("VLA_TEST_WEIGHT_DTYPE");
    if (wd && *wd) g_wdt = wd;
    const char* ts = std::getenv("VLA_TEST_TOL_SCALE");
    if (ts && *ts) g_tol_scale = std::atof(ts);
    g_quick = env_int("VLA_TEST_QUICK", 0) != 0;
    {
        // The probe: the peer backend must exist here; the engine would say Code::backend later.
        std::unique_ptr<Backend> b;
        BackendOptions o;
        o.n_threads = 1;
        o.device = env_int("VLA_TEST_DEVICE", 0);
        Status st = backend_create(g_peer, o, &b);
        if (!st.ok()) {
            std::string why = g_peer == "cuda" ? backend_cuda_unavailable_reason() : "";
            if (why.empty()) why = st.to_string();
            std::printf("SKIPPED: %s backend unavailable: %s\n", g_peer.c_str(), why.c_str());
            return 0;
        }
        g_peer_is_cpu = std::string(b->name()) == "cpu";
    }
    std::printf("test-cuda-engine: engine on '%s' against the engine on cpu; weight_dtype %s, models %s%s\n", g_peer.c_str(),
                g_wdt.c_str(), std::getenv("VLA_TEST_MODELS") ? std::getenv("VLA_TEST_MODELS") : "build/test-models", g_quick ? ", quick" : "");
    std::fflush(stdout);
    doctest::Context ctx(argc, argv);
    const int rc = ctx.run();
    engines().clear();  // free every engine (and device memory) before exit: leak checkers run at exit
    return rc;
}
