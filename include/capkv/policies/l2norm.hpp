#pragma once

#include <cstdint>
#include <string_view>

#include "capkv/core/eviction_policy.hpp"

namespace capkv {

// Knorm (arXiv 2406.11430): keys with a low L2 norm attract the most attention, so keep the
// lowest-norm keys. s_i = -||k_i||.
struct L2Norm : PolicyDefaults {
  struct Config {
    std::int64_t skip_first_layers = 0;  // layers kept whole
    std::int64_t min_length = 0;         // caches shorter than this are kept whole
    bool round_up = false;               // ceil instead of floor for fractional budgets
    std::int64_t sinks = 0;
    std::int64_t window = 0;
  };

  Config config;

  L2Norm() = default;
  explicit L2Norm(const Config& c) : config(c) {}

  static L2Norm kvpress() { return L2Norm(); }
  // The paper leaves layers 0 and 1 alone and compresses only long caches; the minimum length (512)
  // is our choice, the paper does not fix one.
  static L2Norm paper() {
    return L2Norm(Config{.skip_first_layers = 2, .min_length = 512, .round_up = true});
  }

  std::string_view name() const { return "L2Norm"; }
  InputNeeds needs() const { return {}; }
  Protection protection(std::int64_t, std::int64_t) const { return {config.sinks, config.window}; }

  std::int64_t resolve_budget(const Budget& budget, const LayerInputs& in) const {
    const std::int64_t n = in.n_tokens();
    if (in.layer < config.skip_first_layers || n < config.min_length) return n;
    return (config.round_up ? budget.rounded_up() : budget).resolve(n);
  }
};

}  // namespace capkv
