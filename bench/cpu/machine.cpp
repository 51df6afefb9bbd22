// What this machine can do with the same compiler flags and thread count as the library: Eigen's
// own sgemm (Eigen's OpenMP split, Eigen::nbThreads() threads) and streaming memory bandwidth.
// The summariser divides each policy's rates by these.

#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "registry.hpp"
#include "synthetic.hpp"

namespace capkv::bench {
namespace {

// C = A B with A m x k, B k x n: 2 m n k flops; every operand read once and C written once.
void sgemm(benchmark::State& state, std::int64_t m, std::int64_t n, std::int64_t k, int threads) {
  const ThreadScope scope(threads);
  Eigen::MatrixXf a(m, k), b(k, n), c(m, n);
  for (std::int64_t i = 0; i < a.size(); ++i) a.data()[i] = noise(4, i);
  for (std::int64_t i = 0; i < b.size(); ++i) b.data()[i] = noise(5, i);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_work(state, 2.0 * m * n * k, 4.0 * (m * k + k * n + m * n));
  state.counters["threads"] = Eigen::nbThreads();
}

// 512 MiB per buffer: beyond any cache this VM reports (L3 300 MiB), so the rate is DRAM's.
constexpr std::int64_t kStreamBytes = std::int64_t{512} << 20;

// memcpy split over the OpenMP threads; bytes = read + written (the STREAM "copy" convention).
void memcpy_bandwidth(benchmark::State& state) {
  std::vector<char> src(kStreamBytes, 1), dst(kStreamBytes, 0);
  for (auto _ : state) {
#pragma omp parallel
    {
      const std::int64_t t = thread_id(), nt = team_size();
      const std::int64_t lo = kStreamBytes * t / nt, hi = kStreamBytes * (t + 1) / nt;
      std::memcpy(dst.data() + lo, src.data() + lo, static_cast<std::size_t>(hi - lo));
    }
    benchmark::ClobberMemory();
  }
  set_work(state, 0.0, 2.0 * kStreamBytes);
  state.counters["threads"] = max_threads();
}

// A pure read (a float sum): the roof for policies that only read K and V.
void read_bandwidth(benchmark::State& state) {
  std::vector<float> src(kStreamBytes / sizeof(float), 1.0f);
  const auto size = static_cast<std::int64_t>(src.size());
  for (auto _ : state) {
    float sum = 0.0f;
#pragma omp parallel for simd reduction(+ : sum) schedule(static)
    for (std::int64_t i = 0; i < size; ++i) sum += src[i];
    benchmark::DoNotOptimize(sum);
  }
  set_work(state, 0.0, static_cast<double>(kStreamBytes));
  state.counters["threads"] = max_threads();
}

}  // namespace

void register_machine(const std::string& tag) {
  // The Gram pass of CapKV is U^T U (d x d out of n x d), the leverage pass U L^-T (n x d times
  // d x d); 2048^3 is the square reference Eigen runs closest to its peak on.
  struct Gemm {
    const char* label;
    std::int64_t m, n, k;
  };
  // Each at every thread count from all of them down to one (see ThreadScope).
  for (int threads = max_threads(); threads >= 1; threads = threads > 1 ? 1 : 0) {
    for (const Gemm& g : {Gemm{"gram", 128, 128, 32768}, Gemm{"proj", 32768, 128, 128},
                          Gemm{"gram", 64, 64, 32768}, Gemm{"square", 2048, 2048, 2048}}) {
      const std::string name = "machine/sgemm/" + std::string(g.label) + "/" + std::to_string(g.m) +
                               "x" + std::to_string(g.n) + "x" + std::to_string(g.k) +
                               "/threads:" + std::to_string(threads) + "/" + tag;
      configure(benchmark::RegisterBenchmark(
          name.c_str(), [g, threads](benchmark::State& s) { sgemm(s, g.m, g.n, g.k, threads); }));
    }
  }
  configure(
      benchmark::RegisterBenchmark(("machine/memcpy/512MiB/" + tag).c_str(), memcpy_bandwidth));
  configure(benchmark::RegisterBenchmark(("machine/read/512MiB/" + tag).c_str(), read_bandwidth));
}

}  // namespace capkv::bench
