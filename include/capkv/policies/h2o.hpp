#pragma once

#include <cstdint>
#include <string_view>

#include "capkv/core/eviction_policy.hpp"

namespace capkv {

// H2O (arXiv 2306.14048): a token's importance is the attention mass it has accumulated from every
// query that has seen it. Keeps the heavy hitters plus a recent window (the paper splits the budget
// 50/50). Scoring a prompt here is the prefill; cpu::H2OState carries it through decoding.
struct H2O : PolicyDefaults {
  struct Config {
    double recent_fraction = 0.5;  // share of the budget given to the recent window
    bool normalize_by_exposure = false;  // divide by the number of queries that could see the token
  };

  Config config;

  H2O() = default;
  explicit H2O(const Config& c) : config(c) {}

  static H2O paper() { return H2O(); }
  // kvpress ObservedAttentionPress: prefill only, mean attention per observing query, no window.
  static H2O kvpress() { return H2O(Config{.recent_fraction = 0.0, .normalize_by_exposure = true}); }

  std::string_view name() const { return "H2O"; }
  InputNeeds needs() const { return {.queries = true}; }

  // Heavy hitters get floor(B * (1 - recent_fraction)); the recent window gets the rest.
  Protection protection(std::int64_t, std::int64_t budget) const {
    const auto heavy = static_cast<std::int64_t>(static_cast<double>(budget) * (1.0 - config.recent_fraction));
    return {0, budget - heavy};
  }
};

}  // namespace capkv
