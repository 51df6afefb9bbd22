#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "capkv/core/error.hpp"

namespace capkv {

// PyramidKV (arXiv 2406.02069): lower layers attend broadly and keep more, upper layers keep less.
// Budgets fall linearly from max at layer 0 to min at the last layer with min = mean / beta and
// max = 2 * mean - min, so the mean equals the uniform budget. Rounding uses largest remainders, so
// the layers' total is exactly n_layers * mean_budget.
inline std::vector<std::int64_t> pyramid_layer_budgets(std::int64_t n_layers,
                                                       std::int64_t mean_budget,
                                                       double beta = 20.0) {
  require(n_layers >= 1, "n_layers", "must be at least 1");
  require(mean_budget >= 0, "budget", "cannot be negative");
  require(beta >= 1.0, "beta", "must be at least 1 so the smallest layer budget is positive");
  if (n_layers == 1) return {mean_budget};
  const double mean = static_cast<double>(mean_budget);
  const double lo = mean / beta;
  const double hi = 2.0 * mean - lo;
  std::vector<double> exact(static_cast<std::size_t>(n_layers));
  for (std::int64_t l = 0; l < n_layers; ++l) {
    exact[l] = hi - (hi - lo) * static_cast<double>(l) / static_cast<double>(n_layers - 1);
  }
  std::vector<std::int64_t> budgets(exact.size());
  std::int64_t total = 0;
  for (std::size_t l = 0; l < exact.size(); ++l) {
    budgets[l] = static_cast<std::int64_t>(std::floor(exact[l]));
    total += budgets[l];
  }
  std::vector<std::size_t> order(exact.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return exact[a] - std::floor(exact[a]) > exact[b] - std::floor(exact[b]);
  });
  for (std::size_t k = 0; total < n_layers * mean_budget; ++k, ++total) ++budgets[order[k]];
  return budgets;
}

}  // namespace capkv
