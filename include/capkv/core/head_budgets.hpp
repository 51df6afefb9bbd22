#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "capkv/core/protection.hpp"
#include "capkv/core/scores.hpp"
#include "capkv/core/top_b.hpp"

namespace capkv {

// How a layer's total budget is spread over its KV heads.
struct HeadBudgets {
  enum class Mode { kUniform, kAdaptive };
  Mode mode = Mode::kUniform;
  double alpha = 0.2;  // AdaKV: the share of B each head is guaranteed

  static HeadBudgets uniform() { return {}; }
  static HeadBudgets adaptive(double alpha = 0.2) { return {Mode::kAdaptive, alpha}; }
};

// AdaKV (arXiv 2407.11550): the layer keeps H * B tokens in total. Each head first gets its own
// protected tokens and its best floor(alpha * B); the rest of the total goes to the highest scores
// across all heads. Scores are compared across heads as they are, which is what AdaKV does with
// its normalised attention scores. Returns the per-head counts.
inline std::vector<std::int64_t> adaptive_head_counts(const ScoreMatrix& scores,
                                                      const Protection& protection,
                                                      std::int64_t budget, double alpha) {
  const std::int64_t heads = scores.rows();
  const std::int64_t n = scores.cols();
  const std::int64_t per_head = std::min(budget, n);
  const std::int64_t guaranteed =
      std::min(n, std::max(protection.count(n),
                           static_cast<std::int64_t>(std::floor(alpha * static_cast<double>(per_head)))));
  std::vector<std::int64_t> counts(static_cast<std::size_t>(heads), guaranteed);
  std::int64_t pool = heads * per_head - heads * guaranteed;
  if (pool <= 0) return counts;

  // Every token outside a head's guaranteed set competes for the pool.
  struct Entry {
    float score;
    std::int32_t token;
    std::int32_t head;
  };
  std::vector<Entry> rest;
  rest.reserve(static_cast<std::size_t>(heads * (n - guaranteed)));
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  for (std::int64_t h = 0; h < heads; ++h) {
    const float* row = scores.row(h).data();
    // The guaranteed set is the protected tokens first, then the best by score.
    auto key = [&](std::int32_t i) { return protection.contains(i, n) ? INFINITY : row[i]; };
    for (std::int64_t i = 0; i < n; ++i) order[i] = static_cast<std::int32_t>(i);
    std::nth_element(order.begin(), order.begin() + guaranteed, order.end(),
                     [&](std::int32_t a, std::int32_t b) { return ranks_before(key(a), a, key(b), b); });
    for (std::int64_t k = guaranteed; k < n; ++k) {
      rest.push_back({row[order[k]], order[k], static_cast<std::int32_t>(h)});
    }
  }
  auto better = [](const Entry& a, const Entry& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.token != b.token) return a.token > b.token;
    return a.head < b.head;
  };
  pool = std::min<std::int64_t>(pool, static_cast<std::int64_t>(rest.size()));
  std::nth_element(rest.begin(), rest.begin() + pool, rest.end(), better);
  for (std::int64_t k = 0; k < pool; ++k) ++counts[rest[k].head];
  return counts;
}

}  // namespace capkv
