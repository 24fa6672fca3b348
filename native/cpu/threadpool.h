// A fixed pool of worker threads for data-parallel loops (GEMM, attention). The calling
// thread takes part; nested calls run serially on the caller.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

namespace vla {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads <= 0: hardware concurrency
    ~ThreadPool();
    int size() const;
    // Calls fn(begin, end) over [0, n) in chunks of at least `grain`, spread over the threads,
    // and returns when all are done.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace vla
