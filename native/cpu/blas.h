// A maintained BLAS for the CPU backend's matrix products: OpenBLAS's cblas_sgemm, loaded at run
// time (dlopen) so the engine builds and runs where it is absent (its own kernel, gemm.cpp, is then
// used and stays the reference the tests compare against).
//
// Thread policy: the engine's ThreadPool is the only pool. OpenBLAS is loaded single-threaded
// (OPENBLAS_NUM_THREADS=1 before it loads, openblas_set_num_threads(1) after): gemm_xwt splits a
// product into blocks and each pool task calls sgemm on its block. So `threads` sets the whole
// engine's parallelism, no BLAS thread ever spins next to the pool, and nothing is oversubscribed.
//
// Kernel choice: OpenBLAS picks its kernel per CPU at load (DYNAMIC_ARCH); Debian's 0.3.21 does
// not know AMD Zen 4/5 and picks its AVX2 (Haswell) kernel there, about half the speed of its
// AVX-512 one. Where the CPU has AVX-512 F/BW/DQ/VL and OPENBLAS_CORETYPE is unset, it is set to
// SkylakeX before loading (users may set OPENBLAS_CORETYPE themselves).
//
// VLA_BLAS=off in the environment keeps the engine's own kernel (benchmarks and diagnosis).
#pragma once
#include <string>

namespace vla {

struct Blas {
    // cblas_sgemm's C ABI (LP64: int dimensions), enums as their CBLAS values.
    using Sgemm = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                           const float* b, int ldb, float beta, float* c, int ldc);
    Sgemm sgemm = nullptr;
    // openblas_set_num_threads: the engine keeps it at 1; benchmarks time the library's own
    // threading with it (then set it back).
    void (*set_threads)(int) = nullptr;
    std::string name;  // e.g. "openblas 0.3.21 SkylakeX" (library, version, kernel)
};
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;

// The loaded library, or nullptr where none loads (or VLA_BLAS=off). Loaded once, thread-safe.
const Blas* blas();

// What the CPU backend's matrix products run on: the Blas name, or "builtin".
std::string gemm_provider();

}  // namespace vla
