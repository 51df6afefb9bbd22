#pragma once

// A CPU team of real threads meeting at a std::barrier, the closest host analogue of a CUDA block
// for the shared device algorithms (capkv/device/host_device.hpp's team interface): the workers
// run the same sweeps concurrently, so a missing barrier or two workers writing one element shows
// up as a wrong result (and as a race under ThreadSanitizer).

#include <barrier>
#include <thread>
#include <vector>

namespace capkv_cuda_test {

struct ThreadTeam {
  int r;
  int n;
  std::barrier<>* barrier;
  int rank() const { return r; }
  int size() const { return n; }
  void sync() const { barrier->arrive_and_wait(); }
};

// Runs work(team) on `workers` threads at once and waits for all of them.
template <class Work>
void run_team(int workers, Work work) {
  std::barrier<> barrier(workers);
  std::vector<std::thread> threads;
  for (int r = 0; r < workers; ++r)
    threads.emplace_back([&, r] { work(ThreadTeam{r, workers, &barrier}); });
  for (auto& t : threads) t.join();
}

}  // namespace capkv_cuda_test
