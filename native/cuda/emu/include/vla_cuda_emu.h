// A CPU emulation of the CUDA subset the CUDA backend uses, so that the backend's real kernels
// and host code run (slowly) on machines without a GPU: CI runs the op-by-op and end-to-end
// tests against it on every commit. It is not a simulator of the hardware: it checks semantics.
//  - a kernel launch runs every block in turn; each thread of a block is a cooperative fiber
//    (ucontext), so __syncthreads, __syncwarp and warp shuffles really wait for their peers, and a
//    barrier some thread never reaches is reported as a deadlock instead of hanging;
//  - WMMA fragments hold the whole 16 x 16 tile in every lane; the collective load/store/mma
//    calls synchronise the warp around them as the hardware's collective semantics imply;
//  - device memory is host memory (AddressSanitizer builds then check kernel accesses), with a
//    configurable capacity (VLA_EMU_DEVICE_MB, default 4096) so out-of-memory paths are testable;
//  - launches are validated: block size, grid limits, dynamic shared memory over 48 KB without
//    cudaFuncSetAttribute, over the device's maximum (227 KB) at all;
//  - streams are synchronous; events always complete;
//  - threads run in order between barriers, or in reverse (VLA_EMU_SCHEDULE=reverse): a kernel
//    whose result depends on the order has a race the hardware would expose.
// The headers cuda_runtime.h, cuda_runtime_api.h, cuda_fp16.h, cuda_bf16.h and mma.h in this
// directory include this file, so the backend's sources compile unchanged as C++.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#define VLA_CUDA_EMULATION 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif
#define CUDART_VERSION 13000
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x = 0, y = 0, z = 0;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

// ---- runtime API
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaDeviceAttr { cudaDevAttrMemoryPoolsSupported = 115, cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1, cudaHostAllocDefault = 0, cudaEventDisableTiming = 2;
typedef struct vla_emu_stream* cudaStream_t;
typedef struct vla_emu_event* cudaEvent_t;
typedef struct vla_emu_pool* cudaMemPool_t;
struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t totalGlobalMem, sharedMemPerBlockOptin;
};

const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* p, int d);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t p, cudaMemPoolAttr a, void* v);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s = nullptr);
cudaError_t cudaMemsetAsync(void* dst, int v, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaEventDestroy(cudaEvent_t e);

template <typename T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <typename T>
cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t s) {
    return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, s);
}

namespace vla_emu {
cudaError_t func_set_attribute(const void* f, cudaFuncAttribute a, int v);
}  // namespace vla_emu
template <typename F>
cudaError_t cudaFuncSetAttribute(F* f, cudaFuncAttribute a, int v) {
    return vla_emu::func_set_attribute(reinterpret_cast<const void*>(f), a, v);
}

// ---- execution model
namespace vla_emu {

struct Thread {
    uint3 tid;
    int linear = 0;
};
Thread* current();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void sync_threads();
void sync_warp();
uint64_t shuffle(uint64_t bits, int src_lane);  // lane's value from src_lane of its warp
void* dynamic_smem();
[[noreturn]] void trap();
// Runs body for every thread of every block; validates the configuration first.
void launch(const void* key, const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
            const std::function<void()>& body);

template <typename T>
T shfl(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a wider type");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    b = shuffle(b, src);
    T r;
    std::memcpy(&r, &b, sizeof(T));
    return r;
}

}  // namespace vla_emu

#define threadIdx (::vla_emu::current()->tid)
#define blockIdx (::vla_emu::block_idx())
#define blockDim (::vla_emu::block_dim())
#define gridDim (::vla_emu::grid_dim())

inline void __syncthreads() { vla_emu::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { vla_emu::sync_warp(); }
[[noreturn]] inline void __trap() { vla_emu::trap(); }
template <typename T>
T __shfl_sync(unsigned, T v, int src) {
    return vla_emu::shfl(v, src & 31);
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask) {
    return vla_emu::shfl(v, (int(vla_emu::current()->linear) % 32) ^ mask);
}
// Fibers never run concurrently: a plain update is atomic here.
inline int atomicAdd(int* p, int v) {
    const int old = *p;
    *p = v + old;
    return old;
}
inline float cospif(float x) { return std::cos(float(M_PI) * x); }
// Separately rounded operations (the emulation is compiled with -ffp-contract=off).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }

// ---- half types, round to nearest even as the hardware's _rn conversions
struct __half {
    uint16_t bits;
};
struct __nv_bfloat16 {
    uint16_t bits;
};
inline __half __float2half_rn(float f) {
    const _Float16 h = static_cast<_Float16>(f);
    __half r;
    std::memcpy(&r.bits, &h, 2);
    return r;
}
inline float __half2float(__half h) {
    _Float16 v;
    std::memcpy(&v, &h.bits, 2);
    return static_cast<float>(v);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.bits = uint16_t((u >> 16) | 0x40);  // quiet NaN
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);
        r.bits = uint16_t(u >> 16);
    }
    return r;
}
inline float __bfloat162float(__nv_bfloat16 b) {
    const uint32_t u = uint32_t(b.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// ---- kernel launch and dynamic shared memory, spelled the same in both builds (common.cuh)
namespace vla_emu {
template <typename F>
const void* key_of(F* f) {  // a kernel's identity: its address (names and pointers alike)
    return reinterpret_cast<const void*>(f);
}
}  // namespace vla_emu
#define VLA_LAUNCH(k, g, b, sm, s, ...) \
    ::vla_emu::launch(::vla_emu::key_of(k), #k, dim3(g), dim3(b), size_t(sm), (s), [&] { k(__VA_ARGS__); })
#define VLA_DYNAMIC_SMEM(T, name) T* name = static_cast<T*>(::vla_emu::dynamic_smem())

// ---- WMMA (16 x 16 x 16 only, the shapes the kernels use)
namespace nvcuda::wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "emulated WMMA: 16 x 16 x 16 only");
    T x[256];  // the whole tile, [row][col] (a: M x K, b: K x N, accumulator: M x N)
    static constexpr int num_elements = 256;
};

namespace detail {
inline float f(float v) { return v; }
inline float f(__half v) { return __half2float(v); }
inline float f(__nv_bfloat16 v) { return __bfloat162float(v); }
struct WarpCollective {  // the warp meets before and after a collective call
    WarpCollective() { __syncwarp(); }
    ~WarpCollective() { __syncwarp(); }
};
}  // namespace detail

template <typename L>
void fill_fragment(fragment<accumulator, 16, 16, 16, float, L>& a, float v) {
    for (auto& e : a.x) e = v;
}

template <typename T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, row_major>& a, const T* p, unsigned ldm) {
    detail::WarpCollective w;
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c) a.x[r * 16 + c] = p[size_t(r) * ldm + c];
}
template <typename T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, col_major>& a, const T* p, unsigned ldm) {
    detail::WarpCollective w;
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c) a.x[r * 16 + c] = p[size_t(c) * ldm + r];
}
template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, row_major>& b, const T* p, unsigned ldm) {
    detail::WarpCollective w;
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 16; ++n) b.x[k * 16 + n] = p[size_t(k) * ldm + n];
}
template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, col_major>& b, const T* p, unsigned ldm) {
    detail::WarpCollective w;
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 16; ++n) b.x[k * 16 + n] = p[size_t(n) * ldm + k];
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& c, const float* p, unsigned ldm, layout_t l) {
    detail::WarpCollective w;
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 16; ++n) c.x[r * 16 + n] = l == mem_row_major ? p[size_t(r) * ldm + n] : p[size_t(n) * ldm + r];
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& c, unsigned ldm, layout_t l) {
    detail::WarpCollective w;
    if (::vla_emu::current()->linear % 32 != 0) return;  // one lane writes: the values are the same
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 16; ++n) (l == mem_row_major ? p[size_t(r) * ldm + n] : p[size_t(n) * ldm + r]) = c.x[r * 16 + n];
}
template <typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
    float out[256];
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 16; ++n) {
            float s = c.x[r * 16 + n];
            for (int k = 0; k < 16; ++k) s += detail::f(a.x[r * 16 + k]) * detail::f(b.x[k * 16 + n]);
            out[r * 16 + n] = s;
        }
    std::memcpy(d.x, out, sizeof out);
}
}  // namespace nvcuda::wmma
