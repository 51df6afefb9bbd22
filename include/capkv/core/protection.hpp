#pragma once

#include <algorithm>
#include <cstdint>

namespace capkv {

// Tokens every policy keeps regardless of score: the first `sinks` (attention sinks) and the last
// `window` (recent context). They count inside the budget.
struct Protection {
  std::int64_t sinks = 0;
  std::int64_t window = 0;

  bool contains(std::int64_t token, std::int64_t n) const {
    return token < sinks || token >= n - window;
  }
  // Size of the protected set among n tokens; sinks and window may overlap when n is small.
  std::int64_t count(std::int64_t n) const {
    const std::int64_t s = std::min(sinks, n);
    const std::int64_t w = std::min(window, n);
    return std::min(n, s + w);
  }
};

}  // namespace capkv
