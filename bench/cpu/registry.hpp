#pragma once

#include <benchmark/benchmark.h>

#include <string>

namespace capkv::bench {

// Every benchmark reports its work per iteration as plain counters ("flop", "byte") next to the
// shape ("n", "d", "g", ...); bench/summarize.py turns them into rates from the median real time,
// so a rate is never computed from the CPU time of one thread of an OpenMP region.
inline void set_work(benchmark::State& state, double flop, double byte) {
  state.counters["flop"] = flop;
  state.counters["byte"] = byte;
  // Rates for the console only; the summariser recomputes them from real time.
  state.counters["FLOP/s"] =
      benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["B/s"] = benchmark::Counter(byte, benchmark::Counter::kIsIterationInvariantRate);
}

// Wall-clock time throughout: the work runs on OpenMP threads the main thread's CPU clock misses.
inline benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
  return b->UseRealTime()->Unit(benchmark::kMillisecond);
}

// The machine's own rates: Eigen sgemm and memcpy/read bandwidth. `tag` tells the two passes
// (before and after the library benchmarks) apart, so drift on a shared machine is visible.
void register_machine(const std::string& tag);
// capkv::cpu::weighted_leverage on one packed basis, and the naive inverse-based baseline.
void register_kernels();
// The full capkv::select call of every policy over the n x head_dim sweep.
void register_policies();

}  // namespace capkv::bench
