#pragma once

#include <cstdint>
#include <random>

#include "capkv/core/eviction_policy.hpp"
#include "capkv/cpu/head_matrix.hpp"
#include "capkv/policies/random.hpp"

namespace capkv::cpu {

// Seeded per layer so each layer draws independently yet every run is reproducible.
template <>
struct Scorer<RandomPolicy> {
  static Scores score(const RandomPolicy& policy, const LayerInputs& in, std::int64_t) {
    std::mt19937_64 rng(policy.config.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(in.layer));
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    Scores out{ScoreMatrix(in.n_kv_heads(), in.n_tokens()), Scores::Granularity::kKvHead};
    check_finite(in.keys, "keys");
    for (std::int64_t kv = 0; kv < in.n_kv_heads(); ++kv) {
      for (std::int64_t i = 0; i < in.n_tokens(); ++i) out.values(kv, i) = uniform(rng);
    }
    return out;
  }
};

}  // namespace capkv::cpu
