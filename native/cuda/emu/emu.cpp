// The CPU emulation's runtime: memory, streams, events, and the block scheduler that runs each
// CUDA thread as a cooperative fiber (see include/vla_cuda_emu.h for what it checks).
// Environment: VLA_EMU_DEVICE_MB (capacity), VLA_EMU_FIBERS=1 (no direct runs),
// VLA_EMU_SCHEDULE=reverse (threads run highest first between barriers: races show).
#include <ucontext.h>

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define VLA_EMU_ASM_SWITCH 1
// Saves the callee-saved registers on the current stack, stores its pointer in *save and
// continues on the stack `next` (as left by an earlier switch, or prepared by fiber_stack()).
// swapcontext's signal-mask system calls made context switches the emulator's main cost.
extern "C" void vla_emu_switch(void** save, void* next);
asm(R"(
    .text
    .globl vla_emu_switch
    .type vla_emu_switch, @function
vla_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size vla_emu_switch, .-vla_emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "vla_cuda_emu.h"

namespace {

thread_local cudaError_t g_last = cudaSuccess;
std::mutex g_mem_mu;
std::map<void*, size_t> g_device;  // live device allocations
size_t g_used = 0;

size_t capacity() {
    static const size_t cap = [] {
        const char* e = std::getenv("VLA_EMU_DEVICE_MB");
        const long mb = e ? std::atol(e) : 4096;
        return size_t(mb > 0 ? mb : 4096) << 20;
    }();
    return cap;
}

cudaError_t set(cudaError_t e) {
    if (e != cudaSuccess) g_last = e;
    return e;
}

cudaError_t dev_alloc(void** p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    if (g_used + bytes > capacity()) {
        *p = nullptr;
        return set(cudaErrorMemoryAllocation);
    }
    void* q = ::operator new(bytes ? bytes : 1, std::align_val_t(256), std::nothrow);
    if (!q) return set(cudaErrorMemoryAllocation);
    // Fresh device memory is not zero: a pattern that reads back as NaN exposes uninitialised use.
    std::memset(q, 0xff, bytes);
    g_device[q] = bytes;
    g_used += bytes;
    *p = q;
    return cudaSuccess;
}

cudaError_t dev_free(void* p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> lock(g_mem_mu);
    auto it = g_device.find(p);
    if (it == g_device.end()) return set(cudaErrorInvalidValue);
    g_used -= it->second;
    g_device.erase(it);
    ::operator delete(p, std::align_val_t(256));
    return cudaSuccess;
}

bool fibers_forced() {
    static const bool v = [] {
        const char* e = std::getenv("VLA_EMU_FIBERS");
        return e && *e && *e != '0';
    }();
    return v;
}

// The order threads run between barriers: VLA_EMU_SCHEDULE=reverse runs the highest thread
// first, so a result that differs between the two orders is a race between barriers.
int order(int o, int n) {
    static const bool reverse = [] {
        const char* e = std::getenv("VLA_EMU_SCHEDULE");
        return e && std::string(e) == "reverse";
    }();
    return reverse ? n - 1 - o : o;
}

std::mutex g_attr_mu;
std::map<const void*, int> g_max_dyn_smem;

// ---- the scheduler
constexpr size_t kStack = 256 << 10;
constexpr size_t kDefaultSmem = 48 << 10, kMaxSmem = 227 << 10;

struct Fiber {
    ucontext_t ctx;
    void* sp = nullptr;  // saved stack pointer (asm switch)
    char* stack = nullptr;
    vla_emu::Thread t;
    enum { ready, wait_block, wait_warp, done } state = ready;
    uint64_t gen = 0;
};

struct Block {
    uint3 idx;
    dim3 dim, grid;
    int n = 0, n_done = 0;
    std::vector<Fiber> fibers;
    int cur = 0;
    ucontext_t sched;
    void* sched_sp = nullptr;
    bool direct = false;  // threads run one after another on this stack: no barrier may be reached
    bool hit_barrier = false;
    const std::function<void()>* body = nullptr;
    int b_arrived = 0;
    uint64_t b_gen = 0;
    std::vector<int> w_arrived, w_done, w_size;
    std::vector<uint64_t> w_gen;
    std::vector<uint64_t> slots;
    std::vector<unsigned char> smem;
    const char* name = "";
};

thread_local Block* g_block = nullptr;
std::mutex g_launch_mu;  // one emulated kernel at a time
// Fiber stacks, kept for the next launch and freed at exit.
struct Stacks {
    std::vector<char*> v;
    ~Stacks() {
        for (char* p : v) std::free(p);
    }
} g_stack_pool;
std::vector<char*>& g_stacks = g_stack_pool.v;

void release_block(Block& b) {
    if (b.b_arrived > 0 && b.b_arrived + b.n_done == b.n) {
        ++b.b_gen;
        b.b_arrived = 0;
    }
}
void release_warp(Block& b, int w) {
    if (b.w_arrived[size_t(w)] > 0 && b.w_arrived[size_t(w)] + b.w_done[size_t(w)] == b.w_size[size_t(w)]) {
        ++b.w_gen[size_t(w)];
        b.w_arrived[size_t(w)] = 0;
    }
}

void yield(Block& b) {
#ifdef VLA_EMU_ASM_SWITCH
    vla_emu_switch(&b.fibers[size_t(b.cur)].sp, b.sched_sp);
#else
    swapcontext(&b.fibers[size_t(b.cur)].ctx, &b.sched);
#endif
}

void finish(Block& b) {
    Fiber& f = b.fibers[size_t(b.cur)];
    f.state = Fiber::done;
    ++b.n_done;
    const int w = f.t.linear / 32;
    ++b.w_done[size_t(w)];
    release_block(b);
    release_warp(b, w);
}

void fiber_main() {
    Block& b = *g_block;
    (*b.body)();
    finish(b);
#ifdef VLA_EMU_ASM_SWITCH
    void* dead = nullptr;
    vla_emu_switch(&dead, b.sched_sp);  // never resumed
    std::abort();
#endif
    // (ucontext: returning ends the context and uc_link resumes the scheduler)
}

#ifdef VLA_EMU_ASM_SWITCH
// A fresh stack whose first switch "returns" into fiber_main (six zero registers, then the
// return address; 16-byte alignment as after a call).
void* fiber_stack(char* base, size_t size) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(base) + size) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top - 64);
    for (int i = 0; i < 6; ++i) sp[i] = nullptr;
    sp[6] = reinterpret_cast<void*>(&fiber_main);
    sp[7] = nullptr;
    return sp;
}
#endif

// Kernels seen to reach no barrier on their first launch run later launches directly (each
// thread to completion in turn, no fibers); VLA_EMU_FIBERS=1 turns this off.
std::mutex g_kind_mu;
std::map<const void*, bool> g_barrier_free;

[[noreturn]] void barrier_in_direct(const char* what) {
    std::fprintf(stderr,
                 "vla_emu: kernel %s reached %s on a launch run without fibers (its first launch reached no "
                 "barrier); rerun with VLA_EMU_FIBERS=1\n",
                 g_block->name, what);
    std::abort();
}

}  // namespace

namespace vla_emu {

Thread* current() { return &g_block->fibers[size_t(g_block->cur)].t; }
const uint3& block_idx() { return g_block->idx; }
const dim3& block_dim() { return g_block->dim; }
const dim3& grid_dim() { return g_block->grid; }
void* dynamic_smem() { return g_block->smem.data(); }

void trap() {
    std::fprintf(stderr, "vla_emu: __trap() in kernel %s\n", g_block ? g_block->name : "?");
    std::abort();
}

void sync_threads() {
    Block& b = *g_block;
    if (b.direct) barrier_in_direct("__syncthreads");
    b.hit_barrier = true;
    Fiber& f = b.fibers[size_t(b.cur)];
    ++b.b_arrived;
    if (b.b_arrived + b.n_done == b.n) {
        ++b.b_gen;
        b.b_arrived = 0;
        return;
    }
    f.state = Fiber::wait_block;
    f.gen = b.b_gen;
    yield(b);
}

void sync_warp() {
    Block& b = *g_block;
    if (b.direct) barrier_in_direct("a warp barrier");
    b.hit_barrier = true;
    Fiber& f = b.fibers[size_t(b.cur)];
    const int w = f.t.linear / 32;
    ++b.w_arrived[size_t(w)];
    if (b.w_arrived[size_t(w)] + b.w_done[size_t(w)] == b.w_size[size_t(w)]) {
        ++b.w_gen[size_t(w)];
        b.w_arrived[size_t(w)] = 0;
        return;
    }
    f.state = Fiber::wait_warp;
    f.gen = b.w_gen[size_t(w)];
    yield(b);
}

uint64_t shuffle(uint64_t bits, int src_lane) {
    Block& b = *g_block;
    const int me = current()->linear, base = me / 32 * 32;
    b.slots[size_t(me)] = bits;
    sync_warp();
    const int src = base + src_lane;
    const uint64_t r = src < b.n ? b.slots[size_t(src)] : bits;
    sync_warp();
    return r;
}

cudaError_t func_set_attribute(const void* f, cudaFuncAttribute a, int v) {
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (v < 0 || size_t(v) > kMaxSmem) return set(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(g_attr_mu);
    g_max_dyn_smem[f] = v;
    return cudaSuccess;
}

void launch(const void* key, const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t,
            const std::function<void()>& body) {
    const uint64_t threads = uint64_t(block.x) * block.y * block.z;
    size_t allowed = kDefaultSmem;
    {
        std::lock_guard<std::mutex> lock(g_attr_mu);
        auto it = g_max_dyn_smem.find(key);
        if (it != g_max_dyn_smem.end()) allowed = size_t(it->second);
    }
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
        grid.z > 65535) {
        std::fprintf(stderr, "vla_emu: invalid launch of %s: grid (%u, %u, %u) block (%u, %u, %u)\n", name, grid.x, grid.y,
                     grid.z, block.x, block.y, block.z);
        set(cudaErrorInvalidValue);
        return;
    }
    if (smem > allowed) {
        std::fprintf(stderr, "vla_emu: launch of %s asks %zu bytes of dynamic shared memory, %zu allowed%s\n", name, smem,
                     allowed, allowed == kDefaultSmem ? " (no cudaFuncSetAttribute)" : "");
        set(cudaErrorInvalidValue);
        return;
    }
    std::lock_guard<std::mutex> lock(g_launch_mu);
    const int n = int(threads);
    while (g_stacks.size() < size_t(n)) g_stacks.push_back(static_cast<char*>(std::malloc(kStack)));
    Block b;
    b.dim = block;
    b.grid = grid;
    b.n = n;
    b.body = &body;
    b.name = name;
    b.fibers.resize(size_t(n));
    const int nw = (n + 31) / 32;
    b.w_arrived.assign(size_t(nw), 0);
    b.w_done.assign(size_t(nw), 0);
    b.w_gen.assign(size_t(nw), 0);
    b.w_size.assign(size_t(nw), 32);
    b.w_size[size_t(nw - 1)] = n - (nw - 1) * 32;
    b.slots.assign(size_t(n), 0);
    b.smem.assign(smem + 16, 0xff);
    bool first = false;
    {
        std::lock_guard<std::mutex> kl(g_kind_mu);
        auto it = g_barrier_free.find(key);
        if (it == g_barrier_free.end()) first = true;
        else b.direct = it->second && !fibers_forced();
        if (first) g_barrier_free[key] = false;
    }
    Block* saved = g_block;
    g_block = &b;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                b.idx = {bx, by, bz};
                b.n_done = 0;
                b.b_arrived = 0;
                std::fill(b.w_arrived.begin(), b.w_arrived.end(), 0);
                std::fill(b.w_done.begin(), b.w_done.end(), 0);
                for (int i = 0; i < n; ++i) {
                    Fiber& f = b.fibers[size_t(i)];
                    f.state = Fiber::ready;
                    f.t.linear = i;
                    f.t.tid = {unsigned(i) % block.x, unsigned(i) / block.x % block.y, unsigned(i) / (block.x * block.y)};
                }
                if (b.direct) {
                    for (int o = 0; o < n; ++o) {
                        b.cur = order(o, n);
                        body();
                    }
                    continue;
                }
                for (int i = 0; i < n; ++i) {
                    Fiber& f = b.fibers[size_t(i)];
                    f.stack = g_stacks[size_t(i)];
#ifdef VLA_EMU_ASM_SWITCH
                    f.sp = fiber_stack(f.stack, kStack);
#else
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack;
                    f.ctx.uc_stack.ss_size = kStack;
                    f.ctx.uc_link = &b.sched;
                    makecontext(&f.ctx, fiber_main, 0);
#endif
                }
                while (b.n_done < n) {
                    bool progressed = false;
                    for (int o = 0; o < n; ++o) {
                        const int i = order(o, n);
                        Fiber& f = b.fibers[size_t(i)];
                        if (f.state == Fiber::done) continue;
                        if (f.state == Fiber::wait_block && f.gen == b.b_gen) continue;
                        if (f.state == Fiber::wait_warp && f.gen == b.w_gen[size_t(i / 32)]) continue;
                        f.state = Fiber::ready;
                        b.cur = i;
#ifdef VLA_EMU_ASM_SWITCH
                        vla_emu_switch(&b.sched_sp, f.sp);
#else
                        swapcontext(&b.sched, &f.ctx);
#endif
                        progressed = true;
                    }
                    if (!progressed) {
                        std::fprintf(stderr,
                                     "vla_emu: deadlock in kernel %s, block (%u, %u, %u): %d of %d threads wait at a barrier "
                                     "the others never reach\n",
                                     name, bx, by, bz, n - b.n_done, n);
                        std::abort();
                    }
                }
                if (first && !b.hit_barrier) {  // decided on the first block of the first launch
                    std::lock_guard<std::mutex> kl(g_kind_mu);
                    g_barrier_free[key] = true;
                    b.direct = !fibers_forced();
                }
                first = false;
            }
    g_block = saved;
}

}  // namespace vla_emu

// ---- runtime API
const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    }
    return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory (emulated device)";
    case cudaErrorInvalidValue: return "invalid argument";
    default: return "emulated device error";
    }
}
cudaError_t cudaGetLastError() {
    const cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaGetDeviceCount(int* n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : set(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
    std::memset(p, 0, sizeof *p);
    std::snprintf(p->name, sizeof p->name, "CPU emulation (sm_90 semantics)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 8;  // few "SMs": decode attention takes the split-KV path
    p->totalGlobalMem = capacity();
    p->sharedMemPerBlockOptin = kMaxSmem;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMultiProcessorCount ? 8 : a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? int(kMaxSmem) : 1;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* p, int) {
    *p = reinterpret_cast<cudaMemPool_t>(1);
    return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
    *s = reinterpret_cast<cudaStream_t>(new char(0));
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete reinterpret_cast<char*>(s);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaMalloc(void** p, size_t bytes) { return dev_alloc(p, bytes); }
cudaError_t cudaFree(void* p) { return dev_free(p); }
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return dev_alloc(p, bytes); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return dev_free(p); }
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, k);
}
cudaError_t cudaMemsetAsync(void* dst, int v, size_t bytes, cudaStream_t) {
    std::memset(dst, v, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    *total_b = capacity();
    *free_b = capacity() - g_used;
    return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
    *p = std::malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : set(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void* p) {
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
    *e = reinterpret_cast<cudaEvent_t>(new char(0));
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
    *ms = 0.f;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete reinterpret_cast<char*>(e);
    return cudaSuccess;
}
