#pragma once

#include <cstdint>
#include <string_view>

#include "capkv/core/eviction_policy.hpp"

namespace capkv {

// Uniform random scores from a seeded generator: the floor every policy must beat. It protects what
// the policy it is compared with protects, so the comparison isolates the scoring.
struct RandomPolicy : PolicyDefaults {
  struct Config {
    std::uint64_t seed = 0;
    std::int64_t sinks = 0;
    std::int64_t window = 0;
  };

  Config config;

  RandomPolicy() = default;
  explicit RandomPolicy(const Config& c) : config(c) {}

  std::string_view name() const { return "Random"; }
  InputNeeds needs() const { return {}; }
  Protection protection(std::int64_t, std::int64_t) const { return {config.sinks, config.window}; }
};

}  // namespace capkv
