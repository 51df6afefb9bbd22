#include "eval/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace capkv::llm::eval {

void set_compute_threads(int threads) {
#ifdef _OPENMP
  // Per calling thread (an OpenMP ICV): Eigen asks omp_get_max_threads() when it was never told
  // a global count through Eigen::setNbThreads, so workers and the main thread can differ.
  omp_set_num_threads(std::max(threads, 1));
#else
  (void)threads;
#endif
}

void parallel_for(std::int64_t count, int threads, const std::function<void(std::int64_t)>& task) {
  if (count <= 0) return;
  const int workers = static_cast<int>(std::clamp<std::int64_t>(threads, 1, count));
  std::atomic<std::int64_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&] {
    set_compute_threads(1);
    for (std::int64_t i = next++; i < count; i = next++) {
      {
        std::lock_guard lock(failure_mutex);
        if (failure) return;
      }
      try {
        task(i);
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    }
  };
  // Even one worker gets its own thread, so the caller keeps its OpenMP setting.
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace capkv::llm::eval
