#pragma once

#include <capkv/capkv.hpp>
#include <span>
#include <vector>

#include "eval/policy_set.hpp"

namespace capkv::llm::eval {

// One policy's decisions for one layer at every budget, plus its KV-head scores.
struct LayerSelections {
  std::vector<capkv::Selection> by_budget;  // same order as the budgets given
  capkv::ScoreMatrix scores;                // [n_kv_heads, n_tokens]
};

// Runs capkv::select at the first budget with return_scores, then selects the other budgets from
// those same KV-head scores through capkv::select_from_scores with the policy's own budget
// resolution and protection, which is exactly the back half of capkv::select. Scoring once instead
// of once per budget matters for H2O, whose prefill scoring (every prompt query against every
// key) dominates. Policies whose scores depend on the budget are scored at each budget.
LayerSelections select_at_budgets(const AnyPolicy& policy, const capkv::LayerInputs& inputs,
                                  std::span<const capkv::Budget> budgets);

}  // namespace capkv::llm::eval
