// CUDA backend benchmark on LLaVA-1.5-7B shapes with synthetic (random) weights; prints one JSON
// document (docs/cuda-benchmark.md describes every field and how the goals are computed).
//   bench-cuda [--config configs/bench/llava-1.5-7b-shapes.json] [--views 1,6]
//              [--policies none,autoprune,fastv] [--budgets 64,128,192] [--budget-mode total|per-view]
//              [--iters 10] [--warmup 3] [--decode-tokens 32] [--out FILE] [--seed S] [--std 0.02]
//              [--gemm-size 8192] [--copy-mib 2048] [--kv-bytes 4] [--keep-eos]
//              [--width 1600] [--height 900] [--prefix-tokens 35] [--instruction-tokens 24]
//              [--model DIR] [--backend cuda|cpu] [--device N]
// The same run first measures the card's achieved peaks (bf16 tensor-core GEMM, device-to-device
// copy bandwidth), then times the engine case by case (views x policy x budget) and reports each
// stage against those peaks. Built only with the CUDA backend (it links the CUDA runtime);
// --backend cpu exists to smoke-test the harness on a small --model without a GPU.
#include <cuda_runtime.h>
#ifdef VLA_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"
#include "vla/config.h"
#include "vla/engine.h"
#include "vla/prune.h"

using namespace vla;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// Output

// v rounded to `sig` significant digits; null when not finite.
json num(double v, int sig = 5) {
    if (!std::isfinite(v)) return nullptr;
    char b[64];
    std::snprintf(b, sizeof b, "%.*g", sig, v);
    return std::strtod(b, nullptr);
}

std::string g_out_path;

int emit(const json& doc, int rc) {
    const std::string text = doc.dump(2);
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
    if (!g_out_path.empty()) {
        std::ofstream f(g_out_path, std::ios::binary);
        f << text << "\n";
        if (!f) {
            std::fprintf(stderr, "bench-cuda: cannot write %s\n", g_out_path.c_str());
            return rc ? rc : 1;
        }
    }
    return rc;
}

int fail(const std::string& code, const std::string& message) {
    json e;
    e["error"] = code;
    e["message"] = message;
    return emit(e, 1);
}

void progress(const std::string& s) {
    std::fprintf(stderr, "bench-cuda: %s\n", s.c_str());
    std::fflush(stderr);
}

// ---------------------------------------------------------------------------------------------
// Statistics

struct Summary {
    double median = NAN, p90 = NAN, min = NAN, max = NAN;
    int n = 0;
};

Summary summarize(std::vector<double> v) {
    Summary s;
    v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
    s.n = int(v.size());
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    // Nearest rank: the smallest value with at least 90 % of the samples at or below it.
    const size_t rank = size_t(std::ceil(0.9 * double(n)));
    s.p90 = v[std::min(n, std::max<size_t>(rank, 1)) - 1];
    s.min = v.front();
    s.max = v.back();
    return s;
}

json to_json(const Summary& s) {
    json j;
    j["median"] = num(s.median);
    j["p90"] = num(s.p90);
    j["min"] = num(s.min);
    j["max"] = num(s.max);
    return j;
}

// ---------------------------------------------------------------------------------------------
// Model arithmetic (FLOPs count 2 per multiply-add)

// Decoder prefill FLOPs of one layer over n tokens: q/k/v/o projections (GQA-aware), SwiGLU
// (gate, up, down) and causal attention (QK^T and PV over the n (n + 1) / 2 visible pairs).
double layer_model_flops(const TextConfig& t, double n) {
    const double d = t.hidden, m = t.intermediate;
    const double qd = double(t.n_heads) * t.head_dim, kvd = double(t.n_kv_heads) * t.head_dim;
    return 2.0 * n * (d * qd + 2.0 * d * kvd + qd * d) + 2.0 * n * 3.0 * d * m + 2.0 * n * (n + 1.0) * qd;
}

// Visual tokens each decoder layer processes: layer 0 sees what entered the decoder (all of
// them, or the pre-LLM selection for cls-prior / random), layer l sees layer l-1's output.
std::vector<double> visual_in_per_layer(const PruneStats& ps, int L, int64_t n_visual) {
    std::vector<double> in(static_cast<size_t>(L), static_cast<double>(n_visual));
    if (ps.kept.size() != size_t(L)) return in;
    const bool pre_llm = ps.policy == PrunePolicy::cls_prior || ps.policy == PrunePolicy::random;
    in[0] = pre_llm ? double(ps.kept[0]) : double(n_visual);
    for (int l = 1; l < L; ++l) in[size_t(l)] = double(ps.kept[size_t(l - 1)]);
    return in;
}

double prefill_model_flops(const TextConfig& t, const std::vector<double>& vis_in, double n_other) {
    double f = 0;
    for (double v : vis_in) f += layer_model_flops(t, n_other + v);
    return f;
}

// Vision tower (the layers up to the feature layer) + projector, per image.
double vision_flops_per_image(const ModelConfig& c) {
    const auto& v = c.vision;
    const double Np = v.n_patches(), T = Np + 1, D = v.hidden, Dff = v.intermediate, d = c.text.hidden;
    double f = 2.0 * Np * D * 3.0 * v.patch_size * v.patch_size;                       // patch embedding
    f += c.vision_layers_used() * (2.0 * T * (4.0 * D * D + 2.0 * D * Dff) + 4.0 * T * T * D);  // full attention
    const double Nout = c.drop_cls ? Np : T;
    f += 2.0 * Nout * (D * d + d * d);  // projector
    return f;
}

struct DecodeBytes {
    double layer_weights = 0;  // all decoder layers, bytes
    double lm_head = 0;        // lm_head + final norm, bytes
    double embed_row = 0;      // one embedding row, bytes
    double kv_row = 0;         // K + V of one position in one layer, bytes
};

DecodeBytes decode_bytes_model(const TextConfig& t, double wb, double kvb) {
    const double d = t.hidden, m = t.intermediate;
    const double qd = double(t.n_heads) * t.head_dim, kvd = double(t.n_kv_heads) * t.head_dim;
    DecodeBytes b;
    b.layer_weights = t.n_layers * wb * (d * qd + 2.0 * d * kvd + qd * d + 3.0 * d * m + 2.0 * d);
    b.lm_head = wb * (double(t.vocab) * d + d);
    b.embed_row = wb * d;
    b.kv_row = 2.0 * kvd * kvb;
    return b;
}

// Bytes the text head reads for one inference: `lm_calls` lm_head GEMVs and `passes` decoder
// passes, pass j at layer l reading its cache of kv_len[l] + j + 1 rows (the new one included).
double decode_bytes_total(const DecodeBytes& b, const std::vector<double>& kv_len, int64_t lm_calls, int64_t passes) {
    double kv_sum = 0;
    for (double x : kv_len) kv_sum += x;
    const double P = double(passes), L = double(kv_len.size());
    const double kv_rows = P * kv_sum + L * P * (P + 1.0) / 2.0;
    return double(lm_calls) * b.lm_head + P * (b.layer_weights + b.embed_row) + kv_rows * b.kv_row;
}

// ---------------------------------------------------------------------------------------------
// Peaks

const char* cuda_err(cudaError_t e) { return cudaGetErrorString(e); }

#define BENCH_CUDA_TRY(expr, where)                                                     \
    do {                                                                                \
        cudaError_t _e = (expr);                                                        \
        if (_e != cudaSuccess) {                                                        \
            out["error"] = std::string(where) + ": " + cuda_err(_e);                    \
            return out;                                                                 \
        }                                                                               \
    } while (0)

json device_info() {
    json out;
    int dev = 0, count = 0, rt = 0, drv = 0;
    BENCH_CUDA_TRY(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    BENCH_CUDA_TRY(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp p{};
    BENCH_CUDA_TRY(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    int clock_khz = 0, mem_clock_khz = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev);
    cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, dev);
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    out["ordinal"] = dev;
    out["count"] = count;
    out["name"] = std::string(p.name);
    out["compute_capability"] = std::to_string(p.major) + "." + std::to_string(p.minor);
    out["sm_count"] = p.multiProcessorCount;
    out["memory_bytes"] = int64_t(p.totalGlobalMem);
    out["clock_khz"] = clock_khz;
    out["memory_clock_khz"] = mem_clock_khz;
    out["memory_bus_bits"] = p.memoryBusWidth;
    // Data-sheet bandwidth from the attributes (double data rate); the measured one is in peaks.hbm.
    out["spec_memory_gbps"] = num(2.0 * mem_clock_khz * 1e3 * (p.memoryBusWidth / 8.0) / 1e9);
    out["cuda_runtime"] = rt;
    out["cuda_driver"] = drv;
    return out;
}

// Device-to-device copy of `bytes`, counted as 2 x bytes (read + write) per copy.
json measure_hbm(int64_t bytes) {
    json out;
    out["method"] = "cudaMemcpyAsync device-to-device, bytes counted twice (read + write)";
    out["bytes"] = bytes;
    void *a = nullptr, *b = nullptr;
    cudaStream_t s = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    auto cleanup = [&] {
        if (e0) cudaEventDestroy(e0);
        if (e1) cudaEventDestroy(e1);
        if (s) cudaStreamDestroy(s);
        if (a) cudaFree(a);
        if (b) cudaFree(b);
    };
    auto run = [&]() -> json {
        BENCH_CUDA_TRY(cudaMalloc(&a, size_t(bytes)), "cudaMalloc");
        BENCH_CUDA_TRY(cudaMalloc(&b, size_t(bytes)), "cudaMalloc");
        BENCH_CUDA_TRY(cudaMemset(a, 0x5a, size_t(bytes)), "cudaMemset");
        BENCH_CUDA_TRY(cudaMemset(b, 0x00, size_t(bytes)), "cudaMemset");
        BENCH_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
        BENCH_CUDA_TRY(cudaEventCreate(&e0), "cudaEventCreate");
        BENCH_CUDA_TRY(cudaEventCreate(&e1), "cudaEventCreate");
        for (int i = 0; i < 3; ++i) BENCH_CUDA_TRY(cudaMemcpyAsync(b, a, size_t(bytes), cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
        BENCH_CUDA_TRY(cudaStreamSynchronize(s), "cudaStreamSynchronize");
        const int reps = 10;
        std::vector<double> ms;
        for (int i = 0; i < reps; ++i) {
            BENCH_CUDA_TRY(cudaEventRecord(e0, s), "cudaEventRecord");
            BENCH_CUDA_TRY(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, size_t(bytes), cudaMemcpyDeviceToDevice, s),
                           "cudaMemcpyAsync");
            BENCH_CUDA_TRY(cudaEventRecord(e1, s), "cudaEventRecord");
            BENCH_CUDA_TRY(cudaEventSynchronize(e1), "cudaEventSynchronize");
            float t = 0;
            BENCH_CUDA_TRY(cudaEventElapsedTime(&t, e0, e1), "cudaEventElapsedTime");
            ms.push_back(t);
        }
        const Summary sm = summarize(ms);
        out["reps"] = reps;
        out["ms_per_copy"] = to_json(sm);
        // Best copy: the card's achievable bandwidth, the denominator of every fraction.
        out["gbps"] = num(2.0 * double(bytes) / (sm.min / 1e3) / 1e9);
        out["gbps_median"] = num(2.0 * double(bytes) / (sm.median / 1e3) / 1e9);
        return out;
    };
    json r = run();
    cleanup();
    return r;
}

#ifdef VLA_HAVE_CUBLAS
// bf16 x bf16 -> bf16 with fp32 accumulation through cublasGemmEx (tensor cores), column-major
// C[m, n] = A[k, m]^T B[k, n]: the layout the engine's y = x w^T maps to.
json cublas_gemm(const void* A, const void* B, void* C, int m, int n, int k, int warmup, int reps) {
    json out;
    out["m"] = m;
    out["n"] = n;
    out["k"] = k;
    cublasHandle_t h = nullptr;
    cudaStream_t s = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    auto cleanup = [&] {
        if (h) cublasDestroy(h);
        if (e0) cudaEventDestroy(e0);
        if (e1) cudaEventDestroy(e1);
        if (s) cudaStreamDestroy(s);
    };
    auto run = [&]() -> json {
        if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
            h = nullptr;
            out["error"] = "cublasCreate failed";
            return out;
        }
        BENCH_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
        BENCH_CUDA_TRY(cudaEventCreate(&e0), "cudaEventCreate");
        BENCH_CUDA_TRY(cudaEventCreate(&e1), "cudaEventCreate");
        cublasSetStream(h, s);
        const float alpha = 1.f, beta = 0.f;
        auto gemm = [&] {
            return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, A, CUDA_R_16BF, k, B, CUDA_R_16BF, k, &beta, C,
                                CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        };
        for (int i = 0; i < warmup; ++i) {
            if (gemm() != CUBLAS_STATUS_SUCCESS) {
                out["error"] = "cublasGemmEx failed";
                return out;
            }
        }
        BENCH_CUDA_TRY(cudaEventRecord(e0, s), "cudaEventRecord");
        for (int i = 0; i < reps; ++i) gemm();
        BENCH_CUDA_TRY(cudaEventRecord(e1, s), "cudaEventRecord");
        BENCH_CUDA_TRY(cudaEventSynchronize(e1), "cudaEventSynchronize");
        float t = 0;
        BENCH_CUDA_TRY(cudaEventElapsedTime(&t, e0, e1), "cudaEventElapsedTime");
        const double ms = t / reps;
        out["ms"] = num(ms);
        out["tflops"] = num(2.0 * m * double(n) * k / (ms / 1e3) / 1e12);
        return out;
    };
    json r = run();
    cleanup();
    return r;
}
#endif

// The GEMM peak: cuBLAS bf16 (when built with it) and the backend's own matmul (F32 activations
// x bf16 weights, the op every engine projection runs) on an N x N x N problem, plus cuBLAS on
// the decoder's prefill shapes. The peak is the fastest of the N^3 measurements.
json measure_gemm(int N, int device, const TextConfig& t, const std::vector<int64_t>& prefill_rows) {
    json out;
    out["size"] = N;
    BackendOptions bo;
    bo.weight_dtype = WeightDType::bf16;
    bo.device = device;
    std::unique_ptr<Backend> B;
    Status st = backend_create("cuda", bo, &B);
    if (!st.ok()) {
        out["error"] = st.to_string();
        return out;
    }
    Tensor wa, wb;
    if (!(st = B->random_weight(N, N, 11, 0.f, 1.f, &wa)).ok() || !(st = B->random_weight(N, N, 12, 0.f, 1.f, &wb)).ok()) {
        out["error"] = st.to_string();
        return out;
    }
    out["weight_dtype"] = dtype_name(wa.dtype);
    double best = 0;
    std::string source;

    // Backend matmul: y[N, N] = x[N, N] w[N, N]^T, x F32.
    {
        json bm;
        Tensor x, y;
        if (!(st = B->alloc(N, N, &x)).ok() || !(st = B->alloc(N, N, &y)).ok()) {
            bm["error"] = st.to_string();
        } else {
            std::vector<float> host(size_t(N) * size_t(N));
            uint64_t r = 0x9e3779b97f4a7c15ull;
            for (auto& v : host) {  // xorshift64*: uniform in [-1, 1)
                r ^= r >> 12; r ^= r << 25; r ^= r >> 27;
                v = float(double((r * 0x2545f4914f6cdd1dull) >> 11) / double(1ull << 53) * 2.0 - 1.0);
            }
            B->write(x, host.data(), x.numel());
            host.clear();
            host.shrink_to_fit();
            for (int i = 0; i < 5; ++i) B->matmul(x, wa, nullptr, y);
            B->synchronize();
            const int reps = 20;
            const auto t0 = Clock::now();
            for (int i = 0; i < reps; ++i) B->matmul(x, i % 2 ? wa : wb, nullptr, y);
            B->synchronize();
            const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / reps;
            const double tf = 2.0 * double(N) * N * N / (ms / 1e3) / 1e12;
            bm["method"] = "Backend::matmul, x F32 [N, N], w bf16 [N, N], host-timed with synchronize()";
            bm["ms"] = num(ms);
            bm["tflops"] = num(tf);
            if (tf > best) { best = tf; source = "backend_matmul"; }
        }
        out["backend_matmul"] = bm;
    }

#ifdef VLA_HAVE_CUBLAS
    {
        B->synchronize();  // wa, wb were generated on the backend's stream
        void* c = nullptr;
        const int64_t d = t.hidden, m = t.intermediate;
        int64_t rows_max = N;
        for (int64_t r : prefill_rows) rows_max = std::max(rows_max, r);
        const int64_t c_elems = std::max<int64_t>(int64_t(N) * N, rows_max * std::max(d, m));
        cudaError_t e = cudaMalloc(&c, size_t(c_elems) * 2);
        if (e != cudaSuccess) {
            out["cublas"] = json{{"error", std::string("cudaMalloc: ") + cuda_err(e)}};
        } else {
            json cb = cublas_gemm(wa.data, wb.data, c, N, N, N, 20, 50);
            cb["method"] = "cublasGemmEx bf16 x bf16 -> bf16, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT, event-timed";
            if (cb.contains("tflops") && cb["tflops"].is_number() && cb["tflops"].get<double>() > best) {
                best = cb["tflops"].get<double>();
                source = "cublas";
            }
            out["cublas"] = cb;
            // The decoder's own prefill GEMMs (activation rows x weight), operands cut from wa / wb:
            // what cuBLAS reaches at those shapes bounds what the engine can.
            json shapes = json::array();
            for (int64_t rows : prefill_rows) {
                const int64_t kk[] = {d, d, m}, mm[] = {d, m, d};
                const char* what[] = {"q/k/v/o projection", "gate/up projection", "down projection"};
                for (int s_ = 0; s_ < 3; ++s_) {
                    if (kk[s_] * mm[s_] > int64_t(N) * N || rows * kk[s_] > int64_t(N) * N) continue;
                    json g = cublas_gemm(wa.data, wb.data, c, int(mm[s_]), int(rows), int(kk[s_]), 5, 20);
                    g["what"] = what[s_];
                    shapes.push_back(g);
                }
            }
            out["cublas_prefill_shapes"] = shapes;
            cudaFree(c);
        }
    }
#else
    (void)t;
    (void)prefill_rows;
    out["cublas"] = json{{"error", "not built with cuBLAS (VLA_HAVE_CUBLAS undefined)"}};
#endif
    out["peak_tflops"] = best > 0 ? num(best) : json(nullptr);
    out["peak_source"] = source.empty() ? json(nullptr) : json(source);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Arguments

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> r;
    std::stringstream ss(s);
    for (std::string p; std::getline(ss, p, ',');)
        if (!p.empty()) r.push_back(p);
    return r;
}

struct Args {
    std::string config = "configs/bench/llava-1.5-7b-shapes.json";
    std::string model_dir;  // a real model directory instead of synthetic weights
    std::string backend = "cuda";
    std::vector<int> views{1, 6};
    std::vector<PrunePolicy> policies{PrunePolicy::none, PrunePolicy::autoprune, PrunePolicy::fastv};
    std::vector<double> budgets{64, 128, 192};
    bool budget_per_view = false;
    int iters = 10, warmup = 3, decode_tokens = 32;
    uint64_t seed = 1234;
    double std_ = 0.02;
    int gemm_size = 8192;
    int64_t copy_mib = 2048;
    double kv_bytes = 4;  // per cached element: the backend's activations (and KV cache) are F32
    bool keep_eos = false;
    int width = 1600, height = 900;
    int prefix_tokens = 35, instruction_tokens = 24;
    int device = 0;
};

const char* kUsage =
    "usage: bench-cuda [--config FILE] [--views 1,6] [--policies none,autoprune,fastv] [--budgets 64,128,192]\n"
    "                  [--budget-mode total|per-view] [--iters N] [--warmup N] [--decode-tokens N] [--out FILE]\n"
    "                  [--seed S] [--std X] [--gemm-size N] [--copy-mib MiB] [--kv-bytes B] [--keep-eos]\n"
    "                  [--width W] [--height H] [--prefix-tokens N] [--instruction-tokens N]\n"
    "                  [--model DIR] [--backend cuda|cpu] [--device N]\n";

// Empty on success, else the reason.
std::string parse_args(int argc, char** argv, Args* a, bool* help) {
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        auto next = [&](std::string* v) {
            if (i + 1 >= argc) return false;
            *v = argv[++i];
            return true;
        };
        std::string v;
        auto as_int = [&](int lo, int hi, int* out) -> std::string {
            if (!next(&v)) return k + " needs a value";
            char* end = nullptr;
            const long x = std::strtol(v.c_str(), &end, 10);
            if (end == v.c_str() || *end || x < lo || x > hi)
                return k + " " + v + ": an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] is needed";
            *out = int(x);
            return "";
        };
        auto as_double = [&](double lo, double* out) -> std::string {
            if (!next(&v)) return k + " needs a value";
            char* end = nullptr;
            const double x = std::strtod(v.c_str(), &end);
            if (end == v.c_str() || *end || !(x >= lo)) return k + " " + v + ": a number >= " + std::to_string(lo) + " is needed";
            *out = x;
            return "";
        };
        std::string err;
        if (k == "-h" || k == "--help") {
            *help = true;
            return "";
        } else if (k == "--config") {
            if (!next(&a->config)) err = k + " needs a value";
        } else if (k == "--model") {
            if (!next(&a->model_dir)) err = k + " needs a value";
        } else if (k == "--backend") {
            if (!next(&a->backend) || (a->backend != "cuda" && a->backend != "cpu")) err = "--backend is cuda or cpu";
        } else if (k == "--out") {
            if (!next(&g_out_path)) err = k + " needs a value";
        } else if (k == "--iters") {
            err = as_int(1, 100000, &a->iters);
        } else if (k == "--warmup") {
            err = as_int(0, 100000, &a->warmup);
        } else if (k == "--decode-tokens") {
            err = as_int(1, 4096, &a->decode_tokens);
        } else if (k == "--device") {
            err = as_int(0, 1024, &a->device);
        } else if (k == "--gemm-size") {
            err = as_int(256, 32768, &a->gemm_size);
        } else if (k == "--width") {
            err = as_int(1, 16384, &a->width);
        } else if (k == "--height") {
            err = as_int(1, 16384, &a->height);
        } else if (k == "--prefix-tokens") {
            err = as_int(1, 4096, &a->prefix_tokens);
        } else if (k == "--instruction-tokens") {
            err = as_int(1, 4096, &a->instruction_tokens);
        } else if (k == "--copy-mib") {
            int mib = 0;
            err = as_int(1024, 1 << 20, &mib);
            a->copy_mib = mib;
        } else if (k == "--seed") {
            double s = 0;
            err = as_double(0, &s);
            a->seed = uint64_t(s);
        } else if (k == "--std") {
            err = as_double(0, &a->std_);
        } else if (k == "--kv-bytes") {
            err = as_double(0.5, &a->kv_bytes);
        } else if (k == "--keep-eos") {
            a->keep_eos = true;
        } else if (k == "--budget-mode") {
            if (!next(&v) || (v != "total" && v != "per-view")) err = "--budget-mode is total or per-view";
            a->budget_per_view = v == "per-view";
        } else if (k == "--views") {
            if (!next(&v)) { err = k + " needs a value"; } else {
                a->views.clear();
                for (auto& p : split(v)) {
                    const int n = std::atoi(p.c_str());
                    if (n < 1) { err = "--views: '" + p + "' is not a positive count"; break; }
                    a->views.push_back(n);
                }
                if (err.empty() && a->views.empty()) err = "--views is empty";
            }
        } else if (k == "--policies") {
            if (!next(&v)) { err = k + " needs a value"; } else {
                a->policies.clear();
                for (auto& p : split(v)) {
                    PrunePolicy pp;
                    if (!prune_policy_parse(p, &pp)) { err = "--policies: unknown policy '" + p + "'"; break; }
                    a->policies.push_back(pp);
                }
                if (err.empty() && a->policies.empty()) err = "--policies is empty";
            }
        } else if (k == "--budgets") {
            if (!next(&v)) { err = k + " needs a value"; } else {
                a->budgets.clear();
                for (auto& p : split(v)) {
                    const double T = std::atof(p.c_str());
                    if (!(T > 0)) { err = "--budgets: '" + p + "' is not a positive token count"; break; }
                    a->budgets.push_back(T);
                }
                if (err.empty() && a->budgets.empty()) err = "--budgets is empty";
            }
        } else {
            err = "unknown argument " + k;
        }
        if (!err.empty()) return err;
    }
    return "";
}

// ---------------------------------------------------------------------------------------------
// Inputs

// LLaVA-1.5's chat template with random in-vocabulary ids of the right lengths:
//   [BOS system ... USER:] ([<image>] [\n]) x views [instruction ... ASSISTANT:]
// `prefix` counts BOS and "USER:", `instruction` counts "ASSISTANT:". Llama-tokenizer ids for
// the fixed words when the vocabulary has them (they change nothing with random weights).
std::vector<int32_t> build_prompt(const ModelConfig& c, int n_views, int prefix, int instruction, uint64_t seed) {
    const int V = c.text.vocab;
    const bool llama_vocab = V >= 32000;
    std::mt19937_64 g(seed);
    std::uniform_int_distribution<int32_t> pick(3, std::max(3, V - 1));
    auto word = [&]() {
        int32_t id = pick(g);
        if (id == c.image_token_id) id = 3;
        return id;
    };
    const std::vector<int32_t> user = llama_vocab ? std::vector<int32_t>{3148, 1001, 29901} : std::vector<int32_t>{};
    const std::vector<int32_t> assistant = llama_vocab ? std::vector<int32_t>{319, 1799, 9047, 13566, 29901} : std::vector<int32_t>{};
    const int32_t newline = V > 13 ? 13 : word();
    std::vector<int32_t> ids;
    ids.push_back(c.text.bos_id >= 0 && c.text.bos_id < V ? c.text.bos_id : word());
    while (int(ids.size()) < prefix - int(user.size())) ids.push_back(word());
    for (int32_t u : user)
        if (int(ids.size()) < prefix) ids.push_back(u);
    for (int v = 0; v < n_views; ++v) {
        ids.push_back(c.image_token_id);
        ids.push_back(newline);
    }
    const size_t start = ids.size();
    while (int(ids.size() - start) < instruction - int(assistant.size())) ids.push_back(word());
    for (int32_t a : assistant)
        if (int(ids.size() - start) < instruction) ids.push_back(a);
    return ids;
}

// ---------------------------------------------------------------------------------------------
// Cases

struct CaseSpec {
    int views = 1;
    PrunePolicy policy = PrunePolicy::none;
    double budget = 0;  // tokens T the engine gets (after --budget-mode); 0 for none
    double budget_arg = 0;  // T as given on the command line
};

struct CaseOut {
    CaseSpec spec;
    bool ok = false;
    json doc;
    double prefill_median = NAN, vision_median = NAN, total_median = NAN;
    double prefill_floor_ms = NAN, decode_frac = NAN;
};

std::string case_name(const CaseSpec& s) {
    std::string n = std::to_string(s.views) + (s.views == 1 ? " view, " : " views, ") + prune_policy_name(s.policy);
    if (s.policy != PrunePolicy::none) {
        char b[64];
        std::snprintf(b, sizeof b, " T=%g", s.budget);
        n += b;
    }
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    bool help = false;
    const std::string perr = parse_args(argc, argv, &a, &help);
    if (help) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (!perr.empty()) {
        std::fputs(kUsage, stderr);
        return fail(code_name(Code::input), perr);
    }
    const bool cuda = a.backend == "cuda";

    // ---- the backend must be there before anything else
    json device;
    if (cuda) {
        const auto names = backend_list();
        if (std::find(names.begin(), names.end(), "cuda") == names.end() || !backend_cuda_unavailable_reason().empty()) {
            std::string why = backend_cuda_unavailable_reason();
            if (why.empty()) why = "the CUDA backend is not compiled in";
            return fail(code_name(Code::backend), "backend 'cuda' is unavailable: " + why);
        }
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess || count == 0)
            return fail(code_name(Code::backend),
                        std::string("no CUDA device: ") + (e != cudaSuccess ? cuda_err(e) : "cudaGetDeviceCount returned 0"));
        if (a.device >= count)
            return fail(code_name(Code::backend), "--device " + std::to_string(a.device) + ": " + std::to_string(count) + " CUDA device(s)");
        const cudaError_t es = cudaSetDevice(a.device);
        if (es != cudaSuccess) return fail(code_name(Code::backend), std::string("cudaSetDevice: ") + cuda_err(es));
        device = device_info();
    }

    // ---- the model description
    ModelConfig cfg;
    std::string config_label = a.config;
    if (a.model_dir.empty()) {
        std::ifstream f(a.config, std::ios::binary);
        if (!f) return fail(code_name(Code::io), a.config + ": cannot open (run from the repository root or pass --config)");
        std::stringstream ss;
        ss << f.rdbuf();
        Status st = config_parse(ss.str(), a.config, &cfg);
        if (!st.ok()) return fail(code_name(st.code()), st.message());
        // Random weights hit eos now and then; without it every inference generates exactly
        // --decode-tokens tokens (the engine stops only on eos and stop_ids, and passes none).
        if (!a.keep_eos) cfg.text.eos_id = -1;
    } else {
        Status st = config_load(a.model_dir + "/config.json", &cfg);
        if (!st.ok()) return fail(code_name(st.code()), st.message());
        config_label = a.model_dir + "/config.json";
    }
    const auto& tc = cfg.text;
    const int n_cams = int(cfg.vla.cameras.size());
    for (int v : a.views)
        if (v > n_cams)
            return fail(code_name(Code::input), "--views " + std::to_string(v) + ": the config has " + std::to_string(n_cams) + " cameras");
    const int64_t per_view = cfg.drop_cls ? cfg.vision.n_patches() : cfg.vision.n_patches() + 1;

    // ---- peaks, measured before the model takes its memory
    json peaks;
    double peak_tflops = NAN, peak_gbps = NAN;
    if (cuda) {
        progress("measuring HBM bandwidth (device-to-device copy)");
        peaks["hbm"] = measure_hbm(a.copy_mib << 20);
        if (peaks["hbm"].contains("gbps") && peaks["hbm"]["gbps"].is_number()) peak_gbps = peaks["hbm"]["gbps"].get<double>();
        progress("measuring the bf16 GEMM peak");
        std::vector<int64_t> rows;
        for (int v : a.views) rows.push_back(a.prefix_tokens + a.instruction_tokens + int64_t(v) * (per_view + 1));
        peaks["gemm"] = measure_gemm(a.gemm_size, a.device, tc, rows);
        if (peaks["gemm"]["peak_tflops"].is_number()) peak_tflops = peaks["gemm"]["peak_tflops"].get<double>();
        cudaDeviceSynchronize();
    } else {
        peaks["skipped"] = "backend cpu: peaks are measured on cuda only";
    }

    // ---- the engine
    EngineOptions opts;
    opts.backend = a.backend;
    opts.weight_dtype = cuda ? "bf16" : "auto";
    opts.device = a.device;
    std::unique_ptr<Engine> engine;
    const auto t_load = Clock::now();
    {
        Status st;
        if (a.model_dir.empty()) {
            progress("building the synthetic model (random weights on the " + a.backend + " backend)");
            st = Engine::create_synthetic(cfg, opts, a.seed, a.std_, &engine);
        } else {
            progress("loading " + a.model_dir);
            st = Engine::load(a.model_dir, opts, &engine);
        }
        if (!st.ok()) return fail(code_name(st.code()), st.message());
    }
    const double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_load).count();
    const ModelInfo& info = engine->info();
    if (!a.model_dir.empty()) cfg = info.config;

    const double wb = cuda ? 2.0 : (info.n_params > 0 ? double(info.weight_bytes) / double(info.n_params) : 4.0);
    const DecodeBytes dbm = decode_bytes_model(tc, wb, a.kv_bytes);
    const double vision_flops_img = vision_flops_per_image(cfg);

    // ---- inputs: random rgb8 frames (distinct per camera), reused by every case
    const int n_views_max = *std::max_element(a.views.begin(), a.views.end());
    std::vector<std::vector<uint8_t>> frames(size_t(n_views_max), std::vector<uint8_t>(size_t(a.width) * a.height * 3));
    {
        uint64_t r = a.seed * 0x9e3779b97f4a7c15ull + 1;
        for (auto& fr : frames)
            for (auto& px : fr) {
                r ^= r >> 12; r ^= r << 25; r ^= r >> 27;
                px = uint8_t((r * 0x2545f4914f6cdd1dull) >> 56);
            }
    }

    // ---- cases
    std::vector<CaseSpec> specs;
    for (int v : a.views)
        for (PrunePolicy p : a.policies) {
            if (p == PrunePolicy::none) {
                specs.push_back({v, p, 0, 0});
                continue;
            }
            for (double T : a.budgets) specs.push_back({v, p, a.budget_per_view ? T * v : T, T});
        }

    std::vector<CaseOut> outs;
    for (const CaseSpec& s : specs) {
        CaseOut co;
        co.spec = s;
        json& j = co.doc;
        j["name"] = case_name(s);
        j["views"] = s.views;
        j["policy"] = prune_policy_name(s.policy);
        if (s.policy == PrunePolicy::none) j["budget"] = nullptr;
        else j["budget"] = json{{"kind", "tokens"}, {"T", num(s.budget)}, {"T_arg", num(s.budget_arg)}};

        InferRequest req;
        req.input_ids = build_prompt(cfg, s.views, a.prefix_tokens, a.instruction_tokens, a.seed + uint64_t(s.views));
        for (int v = 0; v < s.views; ++v)
            req.views.push_back({frames[size_t(v)].data(), frames[size_t(v)].size(), a.width, a.height, a.width * 3, PixelFormat::rgb8});
        req.head = int(ActionHead::text);
        req.max_new_tokens = a.decode_tokens;
        req.prune.policy = s.policy;
        if (s.policy != PrunePolicy::none) req.prune.budget = {BudgetKind::tokens, s.budget};

        progress("case " + j["name"].get<std::string>());
        std::vector<InferResult> rs;
        Status st;
        for (int i = 0; i < a.warmup + a.iters && st.ok(); ++i) {
            InferResult r;
            st = engine->infer(req, &r);
            if (st.ok() && i >= a.warmup) rs.push_back(std::move(r));
        }
        if (!st.ok()) {
            j["error"] = code_name(st.code());
            j["message"] = st.message();
            outs.push_back(std::move(co));
            continue;
        }
        co.ok = true;
        const InferResult& last = rs.back();
        const PruneStats& ps = last.prune;
        const double n_other = double(last.n_prompt_tokens - last.n_visual_tokens);

        // per-iteration series
        std::vector<double> pre, vis, pf, head, tot, dtok, dgbps;
        int64_t gen_min = INT64_MAX, gen_max = 0;
        bool stopped_any = false;
        const std::vector<double> vis_in = visual_in_per_layer(ps, tc.n_layers, last.n_visual_tokens);
        std::vector<double> kv_len(vis_in.size());
        for (size_t l = 0; l < vis_in.size(); ++l) kv_len[l] = n_other + vis_in[l];
        for (const InferResult& r : rs) {
            pre.push_back(r.timings.preprocess_ms);
            vis.push_back(r.timings.vision_ms);
            pf.push_back(r.timings.prefill_ms);
            head.push_back(r.timings.head_ms);
            tot.push_back(r.timings.total_ms);
            gen_min = std::min(gen_min, r.n_generated);
            gen_max = std::max(gen_max, r.n_generated);
            stopped_any = stopped_any || r.stopped;
            if (r.n_generated > 0) {
                dtok.push_back(r.timings.head_ms / double(r.n_generated));
                // N tokens to the limit: N lm_head GEMVs and N - 1 decoder passes; stopped after
                // N tokens: N + 1 GEMVs (the last picks the stop token) and N passes.
                const int64_t lm_calls = r.stopped ? r.n_generated + 1 : r.n_generated;
                const int64_t passes = r.stopped ? r.n_generated : r.n_generated - 1;
                dgbps.push_back(decode_bytes_total(dbm, kv_len, lm_calls, passes) / (r.timings.head_ms / 1e3) / 1e9);
            }
        }
        const Summary s_pre = summarize(pre), s_vis = summarize(vis), s_pf = summarize(pf), s_head = summarize(head),
                      s_tot = summarize(tot), s_dtok = summarize(dtok), s_dgbps = summarize(dgbps);
        co.prefill_median = s_pf.median;
        co.vision_median = s_vis.median;
        co.total_median = s_tot.median;

        j["tokens"] = {{"prompt", last.n_prompt_tokens},
                       {"visual", last.n_visual_tokens},
                       {"text", last.n_text_tokens},
                       {"generated_min", gen_min == INT64_MAX ? 0 : gen_min},
                       {"generated_max", gen_max},
                       {"decode_tokens_requested", a.decode_tokens},
                       {"stopped_on_eos", stopped_any}};
        j["iterations"] = int(rs.size());
        json ms;
        ms["preprocess"] = to_json(s_pre);
        ms["vision"] = to_json(s_vis);
        ms["prefill"] = to_json(s_pf);
        ms["head"] = to_json(s_head);
        ms["decode_per_token"] = to_json(s_dtok);
        ms["total"] = to_json(s_tot);
        j["ms"] = ms;

        // pruning
        json pj;
        pj["policy"] = prune_policy_name(ps.policy);
        pj["n_visual"] = ps.n_visual;
        pj["target_tokens"] = num(ps.target_tokens);
        pj["avg_tokens"] = num(ps.avg_tokens);
        pj["budget_met"] = ps.budget_met;
        pj["paper_gflop"] = num(ps.flops / 1e9);
        pj["paper_gflop_unpruned"] = num(ps.flops_unpruned / 1e9);
        pj["flops_ratio"] = ps.flops_unpruned > 0 ? num(ps.flops / ps.flops_unpruned) : json(nullptr);
        if (ps.policy == PrunePolicy::autoprune) {
            pj["mi1"] = num(ps.mi1);
            pj["k"] = num(ps.k);
            pj["scale"] = num(ps.scale);
        }
        pj["kept"] = ps.kept;
        pj["merged"] = ps.merged;
        if (!ps.kept_per_view.empty()) pj["kept_per_view_last_layer"] = ps.kept_per_view.back();
        j["prune"] = pj;

        // work, achieved rates and floors
        const double pf_flops = prefill_model_flops(tc, vis_in, n_other);
        const double pf_flops_full = prefill_model_flops(tc, std::vector<double>(size_t(tc.n_layers), double(last.n_visual_tokens)), n_other);
        const double vis_flops = vision_flops_img * s.views;
        double kv_read_at_prompt = 0;  // one decode pass right after the prefill
        for (double x : kv_len) kv_read_at_prompt += (x + 1.0) * dbm.kv_row;
        json work;
        work["prefill_tflop"] = num(pf_flops / 1e12);
        work["prefill_tflop_unpruned"] = num(pf_flops_full / 1e12);
        work["vision_tflop"] = num(vis_flops / 1e12);
        work["decoder_weight_gb"] = num(dbm.layer_weights / 1e9);
        work["decode_gb_per_token_at_prompt"] = num((dbm.layer_weights + dbm.lm_head + dbm.embed_row + kv_read_at_prompt) / 1e9);
        j["work"] = work;

        json ach;
        const double pf_tflops = pf_flops / (s_pf.median / 1e3) / 1e12;
        const double vis_tflops = vis_flops / (s_vis.median / 1e3) / 1e12;
        ach["prefill_tflops"] = num(pf_tflops);
        ach["prefill_frac_of_peak"] = num(pf_tflops / peak_tflops, 4);
        ach["vision_tflops"] = num(vis_tflops);
        ach["vision_frac_of_peak"] = num(vis_tflops / peak_tflops, 4);
        ach["decode_gbps"] = num(s_dgbps.median);
        ach["decode_frac_of_hbm"] = num(s_dgbps.median / peak_gbps, 4);
        co.decode_frac = s_dgbps.median / peak_gbps;
        j["achieved"] = ach;

        json fl;
        const double pf_compute_ms = pf_flops / (peak_tflops * 1e12) * 1e3;
        const double pf_memory_ms = dbm.layer_weights / (peak_gbps * 1e9) * 1e3;
        const double pf_floor = std::max(pf_compute_ms, pf_memory_ms);
        const double vis_floor = vis_flops / (peak_tflops * 1e12) * 1e3;
        const double dec_floor = (dbm.layer_weights + dbm.lm_head) / (peak_gbps * 1e9) * 1e3;
        co.prefill_floor_ms = pf_floor;
        fl["prefill_compute_ms"] = num(pf_compute_ms);
        fl["prefill_memory_ms"] = num(pf_memory_ms);
        fl["prefill_ms"] = num(pf_floor);
        fl["prefill_vs_floor"] = num(s_pf.median / pf_floor, 4);
        fl["vision_compute_ms"] = num(vis_floor);
        fl["vision_vs_floor"] = num(s_vis.median / vis_floor, 4);
        fl["decode_weights_ms_per_token"] = num(dec_floor);
        fl["decode_vs_floor"] = num(s_dtok.median / dec_floor, 4);
        j["floor"] = fl;
        outs.push_back(std::move(co));
    }

    // ---- speed-ups against the unpruned case of the same view count
    for (CaseOut& co : outs) {
        if (!co.ok || co.spec.policy == PrunePolicy::none) continue;
        for (const CaseOut& base : outs)
            if (base.ok && base.spec.views == co.spec.views && base.spec.policy == PrunePolicy::none) {
                co.doc["speedup_vs_none"] = {{"prefill", num(base.prefill_median / co.prefill_median, 4)},
                                             {"vision_plus_prefill", num((base.vision_median + base.prefill_median) /
                                                                         (co.vision_median + co.prefill_median), 4)},
                                             {"total", num(base.total_median / co.total_median, 4)}};
            }
    }

    // ---- goals
    auto find_case = [&](int views, PrunePolicy p, double T) -> const CaseOut* {
        for (const CaseOut& co : outs)
            if (co.ok && co.spec.views == views && co.spec.policy == p && (p == PrunePolicy::none || co.spec.budget_arg == T))
                return &co;
        return nullptr;
    };
    json goals = json::array();
    auto goal = [&](const char* name, const std::string& text, const CaseOut* c, double measured, bool higher_is_better,
                    double threshold, const char* missing) {
        json g;
        g["name"] = name;
        g["goal"] = text;
        g["case"] = c ? c->doc["name"] : json(nullptr);
        const bool have = c && std::isfinite(measured);
        g["measured"] = have ? num(measured, 4) : json(nullptr);
        g["met"] = have && (higher_is_better ? measured >= threshold : measured <= threshold);
        if (!have) g["note"] = missing;
        goals.push_back(g);
    };
    const char* no_peak = "not measured: the case did not run (see --views/--policies/--budgets) or a peak is missing";
    {
        const CaseOut* c1 = find_case(1, PrunePolicy::none, 0);
        goal("prefill_1_view_vs_floor",
             "prefill of 1 view (576 visual + ~60 text tokens, policy none), median ms / floor ms <= 1.5; floor = max(FLOPs / "
             "GEMM peak, decoder weight bytes / HBM peak)",
             c1, c1 ? c1->prefill_median / c1->prefill_floor_ms : NAN, false, 1.5, no_peak);
        const CaseOut* c6 = find_case(6, PrunePolicy::none, 0);
        goal("prefill_6_views_vs_floor", "prefill of 6 views unpruned (policy none), median ms / floor ms <= 1.5", c6,
             c6 ? c6->prefill_median / c6->prefill_floor_ms : NAN, false, 1.5, no_peak);
        goal("decode_hbm_fraction",
             "decode of 1 view (policy none): (weight + KV bytes read) / head time, as a fraction of the measured HBM "
             "bandwidth, >= 0.75",
             c1, c1 ? c1->decode_frac : NAN, true, 0.75, no_peak);
        const CaseOut* a6 = find_case(6, PrunePolicy::autoprune, 64);
        goal("autoprune_t64_6_views_prefill_speedup",
             std::string("prefill of 6 views: median ms unpruned / median ms with autoprune T=64 (budget mode ") +
                 (a.budget_per_view ? "per-view" : "total") + ") >= 3",
             a6 && c6 ? a6 : nullptr, a6 && c6 ? c6->prefill_median / a6->prefill_median : NAN, true, 3.0,
             "not measured: needs the 6-view none and autoprune T=64 cases");
    }

    // ---- the document
    json doc;
    doc["bench"] = "bench-cuda";
    doc["config"] = config_label;
    json model;
    model["backend"] = info.backend;
    model["weights"] = a.model_dir.empty() ? json{{"kind", "synthetic"}, {"seed", a.seed}, {"std", a.std_}}
                                           : json{{"kind", "directory"}, {"path", a.model_dir}};
    model["weight_dtype"] = opts.weight_dtype;
    model["n_params"] = info.n_params;
    model["weight_bytes"] = info.weight_bytes;
    model["build_ms"] = num(load_ms);
    model["text"] = {{"hidden", tc.hidden}, {"intermediate", tc.intermediate}, {"layers", tc.n_layers}, {"heads", tc.n_heads},
                     {"kv_heads", tc.n_kv_heads}, {"head_dim", tc.head_dim}, {"vocab", tc.vocab}};
    model["vision"] = {{"hidden", cfg.vision.hidden}, {"intermediate", cfg.vision.intermediate}, {"layers", cfg.vision.n_layers},
                       {"layers_run", cfg.vision_layers_used()}, {"heads", cfg.vision.n_heads},
                       {"image_size", cfg.vision.image_size}, {"patch_size", cfg.vision.patch_size},
                       {"tokens_per_view", per_view}};
    doc["model"] = model;
    doc["device"] = cuda ? device : json(nullptr);
    json settings;
    settings["iters"] = a.iters;
    settings["warmup"] = a.warmup;
    settings["views"] = a.views;
    json pol = json::array();
    for (PrunePolicy p : a.policies) pol.push_back(prune_policy_name(p));
    settings["policies"] = pol;
    settings["budgets"] = a.budgets;
    settings["budget_mode"] = a.budget_per_view ? "per-view" : "total";
    settings["decode_tokens"] = a.decode_tokens;
    settings["eos_disabled"] = a.model_dir.empty() && !a.keep_eos;
    settings["frames"] = {{"width", a.width}, {"height", a.height}, {"format", "rgb8"}, {"content", "uniform random bytes"}};
    settings["prompt"] = {{"template", "[BOS system USER:] ([<image>] [\\n]) x views [instruction ASSISTANT:]"},
                          {"prefix_tokens", a.prefix_tokens},
                          {"instruction_tokens", a.instruction_tokens},
                          {"text_tokens", "prefix + views + instruction"}};
    settings["weight_bytes_per_elem"] = wb;
    settings["kv_bytes_per_elem"] = a.kv_bytes;
    doc["settings"] = settings;
    doc["peaks"] = peaks;
    doc["conventions"] = {
        {"ms", "engine StageTimings per inference; median and p90 (nearest rank) over --iters after --warmup"},
        {"decode_per_token", "head_ms / n_generated: N lm_head GEMVs and N - 1 decoder passes for N tokens"},
        {"prefill_tflop", "2 FLOPs per multiply-add: q/k/v/o (GQA-aware), SwiGLU gate/up/down, causal attention "
                          "QK^T + PV over n(n+1)/2 pairs, per layer over the tokens that layer processes; pruning's "
                          "selection ops and the lm_head are not counted"},
        {"paper_gflop", "autoprune.md 2.8: sum over layers of 4 n d^2 + 2 n^2 d + 3 n d m (multiply-adds, full "
                        "attention, MHA), as the engine reports it"},
        {"vision_tflop", "patch embedding + the vision layers run (up to the feature layer) with full attention + projector"},
        {"decode_gbps", "(lm_head + decoder weights + KV cache rows read, each pass at its own context length) / head_ms"},
        {"floor", "prefill: max(prefill FLOPs / GEMM peak, decoder weight bytes / HBM peak); decode: weight bytes / HBM peak"}};
    json cases = json::array();
    for (auto& co : outs) cases.push_back(co.doc);
    doc["cases"] = cases;
    doc["goals"] = goals;
    return emit(doc, 0);
}
