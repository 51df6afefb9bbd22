#pragma once

#include <cstdint>
#include <string_view>

#include "capkv/core/eviction_policy.hpp"

namespace capkv {

// SnapKV (arXiv 2404.14469): the last `window` prompt queries vote, through their softmax
// attention, for the earlier tokens; the votes are smoothed along the sequence by 1-D pooling so
// that kept tokens come with their neighbours. The window itself is always kept.
struct SnapKV : PolicyDefaults {
  enum class Pooling { kMax, kAvg };
  enum class Aggregation { kSum, kMean };  // over the window queries

  struct Config {
    std::int64_t window = 32;
    std::int64_t kernel = 7;
    Pooling pooling = Pooling::kMax;
    Aggregation aggregation = Aggregation::kSum;
    std::int64_t sinks = 0;
  };

  Config config;

  SnapKV() = default;
  explicit SnapKV(const Config& c) : config(c) {}

  static SnapKV paper() { return SnapKV(); }
  // kvpress SnapKVPress: window 64, average pooling of width 5 (zero padding counted), mean.
  static SnapKV kvpress() {
    return SnapKV(Config{.window = 64, .kernel = 5, .pooling = Pooling::kAvg,
                         .aggregation = Aggregation::kMean});
  }

  std::string_view name() const { return "SnapKV"; }
  InputNeeds needs() const { return {.queries = true}; }
  Protection protection(std::int64_t, std::int64_t) const { return {config.sinks, config.window}; }
};

}  // namespace capkv
