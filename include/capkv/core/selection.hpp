#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "capkv/core/scores.hpp"

namespace capkv {

// What a policy decided for one layer: per KV head, the kept token indices in ascending
// (positional) order. Heads may keep different counts (head-adaptive budgets), so the indices of
// all heads are stored back to back with offsets, as a CSR row structure.
struct Selection {
  std::int64_t n_tokens = 0;                // tokens in the cache before eviction
  std::vector<std::int64_t> offsets{0};     // n_kv_heads + 1 entries
  std::vector<std::int32_t> indices;        // ascending within each head
  ScoreMatrix scores;                       // [n_kv_heads, n_tokens] when asked for, else empty

  std::int64_t n_kv_heads() const { return static_cast<std::int64_t>(offsets.size()) - 1; }
  std::int64_t kept(std::int64_t head) const { return offsets[head + 1] - offsets[head]; }
  std::int64_t total_kept() const { return offsets.back(); }
  std::span<const std::int32_t> head(std::int64_t h) const {
    return {indices.data() + offsets[h], static_cast<std::size_t>(kept(h))};
  }
  // True when every head keeps the same count, so a dense [heads, B, dim] compaction applies.
  bool uniform() const {
    for (std::int64_t h = 1; h < n_kv_heads(); ++h) {
      if (kept(h) != kept(0)) return false;
    }
    return true;
  }
};

}  // namespace capkv
