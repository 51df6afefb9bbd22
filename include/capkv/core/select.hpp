#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "capkv/core/budget.hpp"
#include "capkv/core/eviction_policy.hpp"
#include "capkv/core/head_budgets.hpp"
#include "capkv/core/selection.hpp"
#include "capkv/core/top_b.hpp"

namespace capkv {

struct SelectOptions {
  GqaReduction gqa = GqaReduction::kMean;  // for policies that score per query head
  HeadBudgets head_budgets = HeadBudgets::uniform();
  bool return_scores = false;  // fill Selection::scores with the KV-head scores
};

// Selects from already computed KV-head scores; the shared back half of every policy and backend.
inline Selection select_from_scores(const ScoreMatrix& scores, const Protection& protection,
                                    std::int64_t budget, const HeadBudgets& head_budgets) {
  const std::int64_t heads = scores.rows();
  const std::int64_t n = scores.cols();
  require(scores.allFinite(), "scores", "contain NaN or Inf");
  require(budget >= 0, "budget", "cannot be negative");
  const std::int64_t kept = std::min(budget, n);
  require(kept == n || kept >= protection.count(n), "budget",
          "keeps " + std::to_string(kept) + " tokens but the policy protects " +
              std::to_string(protection.count(n)) + " (sinks + recent window)");
  std::vector<std::int64_t> counts(static_cast<std::size_t>(heads), kept);
  if (head_budgets.mode == HeadBudgets::Mode::kAdaptive && kept < n) {
    counts = adaptive_head_counts(scores, protection, kept, head_budgets.alpha);
  }
  Selection sel;
  sel.n_tokens = n;
  sel.offsets.assign(1, 0);
  sel.indices.reserve(static_cast<std::size_t>(heads * kept));
  for (std::int64_t h = 0; h < heads; ++h) {
    select_top_b(std::span<const float>(scores.row(h).data(), static_cast<std::size_t>(n)),
                 protection, counts[h], sel.indices);
    sel.offsets.push_back(static_cast<std::int64_t>(sel.indices.size()));
  }
  return sel;
}

// The one entry point: scores the layer with `policy` on the CPU and keeps `budget` tokens per KV
// head. Throws capkv::Error naming the offending argument; nothing of the caller's is written.
template <EvictionPolicy P>
Selection select(const P& policy, const LayerInputs& in, const Budget& budget,
                 const SelectOptions& options = {}) {
  validate(in, policy.needs());
  const std::int64_t n = in.n_tokens();
  require(n > 0 || budget.is_zero(), "budget", "is nonzero but the cache is empty");
  const std::int64_t kept = policy.resolve_budget(budget, in);
  const Protection protection = policy.protection(n, kept);
  // Checked before scoring so a hopeless budget costs nothing.
  require(kept >= n || kept >= protection.count(n), "budget",
          "keeps " + std::to_string(kept) + " tokens but " + std::string(policy.name()) +
              " protects " + std::to_string(protection.count(n)));

  Scores scores = cpu::Scorer<P>::score(policy, in, kept);
  ScoreMatrix kv_scores = scores.granularity == Scores::Granularity::kQueryHead
                              ? reduce_gqa(scores.values, in.n_kv_heads(), options.gqa)
                              : std::move(scores.values);
  require(kv_scores.rows() == in.n_kv_heads() && kv_scores.cols() == n, "scores",
          "the scorer returned a matrix of the wrong shape");
  Selection sel = select_from_scores(kv_scores, protection, kept, options.head_budgets);
  if (options.return_scores) sel.scores = std::move(kv_scores);
  return sel;
}

}  // namespace capkv
