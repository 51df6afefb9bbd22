#pragma once

// Synthetic layers for the CPU benchmarks. The scoring cost of every policy depends on the shapes
// only, so the tensors are uniform noise; what matters is that they are finite (the views are
// checked) and laid out the way an engine caches them: fp32 [tokens, heads, dim], packed.

#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "capkv/capkv.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace capkv::bench {

// Without OpenMP everything runs on one thread; the benchmarks still build.
inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Runs a benchmark on `threads` threads (OpenMP regions and Eigen's own GEMM split) and restores
// the previous count. The single-thread pass is the check that survives a loaded machine: one
// thread never waits at a barrier for a sibling the scheduler has parked.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) : saved_(max_threads()) { set(threads); }
  ~ThreadScope() { set(saved_); }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  static void set(int threads) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Eigen::setNbThreads(threads);
  }
  int saved_;
};

// Counter-based noise (splitmix64 of the index) so the fill parallelises and is reproducible.
inline float noise(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;  // uniform in [-1, 1)
}

inline void fill(std::vector<float>& v, std::uint64_t seed) {
  const auto size = static_cast<std::int64_t>(v.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < size; ++i) v[i] = noise(seed, static_cast<std::uint64_t>(i));
}

struct Shape {
  std::int64_t n = 0;    // cached tokens
  std::int64_t d = 0;    // head dim
  std::int64_t hq = 32;  // query heads
  std::int64_t hkv = 8;  // KV heads
  std::int64_t m = 64;   // prompt queries given (H2O uses all of them; the rest the last few)
  auto key() const { return std::tie(n, d, hq, hkv, m); }
  bool operator<(const Shape& o) const { return key() < o.key(); }
};

// One layer's buffers plus the views a policy reads.
struct Layer {
  Shape shape;
  std::vector<float> keys, values, queries;
  LayerInputs inputs;

  explicit Layer(const Shape& s)
      : shape(s),
        keys(static_cast<std::size_t>(s.n * s.hkv * s.d)),
        values(keys.size()),
        queries(static_cast<std::size_t>(s.m * s.hq * s.d)) {
    fill(keys, 1);
    fill(values, 2);
    fill(queries, 3);
    const auto layout = Layout::kTokensHeadsDim;
    inputs.keys = TensorView(keys.data(), DType::kF32, layout, s.n, s.hkv, s.d);
    inputs.values = TensorView(values.data(), DType::kF32, layout, s.n, s.hkv, s.d);
    inputs.queries = TensorView(queries.data(), DType::kF32, layout, s.m, s.hq, s.d);
    // Only the cost matters, so the pre-RoPE queries (CapKV kvpress anchor) reuse the same buffer.
    inputs.queries_pre_rope = inputs.queries;
    inputs.rope = Rope{};
  }

  // Bytes of one full read of K, and of K and V.
  double key_bytes() const { return 4.0 * static_cast<double>(keys.size()); }
  double kv_bytes() const { return 2.0 * key_bytes(); }
};

// Building a 64K-token layer takes a moment, so each shape is built once and shared by every
// benchmark that uses it. The whole sweep holds about 1 GiB.
inline const Layer& layer(const Shape& s) {
  static std::map<Shape, std::unique_ptr<Layer>> cache;
  auto& slot = cache[s];
  if (!slot) slot = std::make_unique<Layer>(s);
  return *slot;
}

}  // namespace capkv::bench
