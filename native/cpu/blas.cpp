#include "blas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

namespace vla {

namespace {

Blas* load() {
    const char* off = std::getenv("VLA_BLAS");
    if (off && (std::strcmp(off, "off") == 0 || std::strcmp(off, "0") == 0)) return nullptr;
    const char* libs[] = {"libopenblas.so.0", "libopenblas.so"};
    // Environment first: OpenBLAS reads it in its load-time constructor. Not when another part of
    // the process loaded it already (then it keeps what it chose; the thread count is set below).
    bool loaded = false;
    for (const char* l : libs)
        if (void* h = dlopen(l, RTLD_NOW | RTLD_NOLOAD)) {
            loaded = true;
            dlclose(h);
        }
    if (!loaded) {
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
#if defined(__x86_64__) && defined(__GNUC__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vl"))
            setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
#endif
    }
    void* h = nullptr;
    for (const char* l : libs)
        if ((h = dlopen(l, RTLD_NOW | RTLD_LOCAL))) break;
    if (!h) return nullptr;
    auto sgemm = reinterpret_cast<Blas::Sgemm>(dlsym(h, "cblas_sgemm"));
    if (!sgemm) return nullptr;
    auto set_threads = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"));
    if (set_threads) set_threads(1);
    auto* b = new Blas;  // lives as long as the process, as the library does
    b->sgemm = sgemm;
    b->set_threads = set_threads;
    b->name = "openblas";
    if (auto cfg = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_config"))) {
        // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64": the version
        const char* c = cfg();
        const char* sp = c ? std::strchr(c, ' ') : nullptr;
        if (sp) b->name += " " + std::string(sp + 1, std::strcspn(sp + 1, " "));
    }
    if (auto core = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename"))) b->name += std::string(" ") + core();
    return b;
}

}  // namespace

const Blas* blas() {
    static const Blas* b = load();
    return b;
}

std::string gemm_provider() {
    const Blas* b = blas();
    return b ? b->name : "builtin";
}

}  // namespace vla
