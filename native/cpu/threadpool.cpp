#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace vla {

namespace {
thread_local bool t_in_pool = false;  // nested parallel_for runs inline
}

struct ThreadPool::State {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable cv_work, cv_done;
    uint64_t generation = 0;
    bool stop = false;
    // the current job
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0, chunk = 1, n_chunks = 0;
    std::atomic<int64_t> next{0};
    int active = 0;

    void run_chunks() {
        for (;;) {
            int64_t c = next.fetch_add(1, std::memory_order_acq_rel);
            if (c >= n_chunks) break;
            int64_t b = c * chunk, e = std::min(n, b + chunk);
            (*fn)(b, e);
        }
    }

    void worker_loop() {
        t_in_pool = true;
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lk(mu);
                cv_work.wait(lk, [&] { return stop || generation != seen; });
                if (stop) return;
                seen = generation;
                ++active;
            }
            run_chunks();
            {
                std::lock_guard<std::mutex> lk(mu);
                if (--active == 0) cv_done.notify_one();
            }
        }
    }
};

ThreadPool::ThreadPool(int n_threads) : s_(new State) {
    if (n_threads <= 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
    for (int i = 1; i < n_threads; ++i) s_->workers.emplace_back([this] { s_->worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(s_->mu);
        s_->stop = true;
    }
    s_->cv_work.notify_all();
    for (auto& t : s_->workers) t.join();
}

int ThreadPool::size() const { return static_cast<int>(s_->workers.size()) + 1; }

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int64_t threads = size();
    if (t_in_pool || threads == 1 || n <= grain) {
        fn(0, n);
        return;
    }
    // A few chunks per thread balance uneven work without much scheduling cost.
    int64_t chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
    State& s = *s_;
    {
        std::unique_lock<std::mutex> lk(s.mu);
        s.fn = &fn;
        s.n = n;
        s.chunk = chunk;
        s.n_chunks = (n + chunk - 1) / chunk;
        s.next.store(0, std::memory_order_release);
        ++s.generation;
    }
    s.cv_work.notify_all();
    t_in_pool = true;
    s.run_chunks();
    t_in_pool = false;
    std::unique_lock<std::mutex> lk(s.mu);
    s.cv_done.wait(lk, [&] { return s.active == 0 && s.next.load() >= s.n_chunks; });
    s.fn = nullptr;
}

}  // namespace vla
