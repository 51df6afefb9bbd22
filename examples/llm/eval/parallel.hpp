#pragma once

#include <cstdint>
#include <functional>

namespace capkv::llm::eval {

// Runs task(0..count-1) on `threads` workers. Each worker restricts itself to one OpenMP thread:
// the tasks (one policy's variant, one layer's scoring) are independent, so running them side by
// side uses the cores better than splitting every small GEMM, and it never oversubscribes. The
// first exception a task throws is rethrown here once every worker has stopped.
void parallel_for(std::int64_t count, int threads, const std::function<void(std::int64_t)>& task);

// Sets how many OpenMP threads the calling thread's Eigen products may use (the prefill's GEMMs).
void set_compute_threads(int threads);

}  // namespace capkv::llm::eval
