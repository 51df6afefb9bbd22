#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "capkv/core/protection.hpp"

namespace capkv {

// The one ordering every backend uses: higher score first, and among equal scores the more recent
// (larger index) token first, so a selection is deterministic everywhere.
inline bool ranks_before(float score_a, std::int32_t index_a, float score_b, std::int32_t index_b) {
  return score_a > score_b || (score_a == score_b && index_a > index_b);
}

// Keeps the protected tokens plus the best (budget - protected) of the others, and appends the kept
// indices in ascending order to `out`. The caller has checked that budget >= protected count (or
// budget >= n) and that no score is NaN. O(n) expected through nth_element.
inline void select_top_b(std::span<const float> scores, const Protection& protection,
                         std::int64_t budget, std::vector<std::int32_t>& out) {
  const auto n = static_cast<std::int64_t>(scores.size());
  if (budget >= n) {
    for (std::int64_t i = 0; i < n; ++i) out.push_back(static_cast<std::int32_t>(i));
    return;
  }
  std::vector<std::int32_t> candidates;
  candidates.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    if (!protection.contains(i, n)) candidates.push_back(static_cast<std::int32_t>(i));
  }
  const std::int64_t free_slots = budget - protection.count(n);
  auto better = [&](std::int32_t a, std::int32_t b) {
    return ranks_before(scores[a], a, scores[b], b);
  };
  if (free_slots < static_cast<std::int64_t>(candidates.size())) {
    std::nth_element(candidates.begin(), candidates.begin() + free_slots, candidates.end(), better);
    candidates.resize(static_cast<std::size_t>(free_slots));
  }
  std::vector<char> keep(static_cast<std::size_t>(n), 0);
  for (std::int64_t i = 0; i < n; ++i) keep[i] = protection.contains(i, n);
  for (std::int32_t i : candidates) keep[i] = 1;
  for (std::int64_t i = 0; i < n; ++i) {
    if (keep[i]) out.push_back(static_cast<std::int32_t>(i));
  }
}

}  // namespace capkv
