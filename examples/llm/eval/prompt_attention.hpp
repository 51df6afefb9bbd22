#pragma once

#include <Eigen/Core>
#include <capkv/core/selection.hpp>
#include <cstdint>
#include <span>
#include <vector>

#include "model/kv_cache.hpp"

namespace capkv::llm::eval {

// What one layer's compression does to the attention of real future queries, measured without a
// forward pass: the continuation's queries (captured from the full-cache run) attend over the
// prompt part of the cache, once over every prompt token and once over a policy's kept ones.
//
// The softmax is restricted to the n prompt tokens. The continuation's own tokens are kept by every
// policy, so including them would only dilute the differences; restricted, each query's
// distribution sums to one over the prompt and recall reads directly as "the share of the
// prompt's attention mass that survives".
class PromptAttention {
 public:
  // queries: [M, Hq * d] after RoPE (one layer's continuation queries, heads side by side);
  // keys and values: per KV head, [n, d] (keys after RoPE, as cached). Query head h reads KV head
  // h / (Hq / Hkv).
  PromptAttention(const RowMatrixXf& queries, std::span<const ConstRowMap> keys,
                  std::span<const ConstRowMap> values);

  std::int64_t n_query_heads() const { return static_cast<std::int64_t>(probabilities_.size()); }
  std::int64_t n_kv_heads() const { return static_cast<std::int64_t>(values_.size()); }
  std::int64_t n_tokens() const { return n_tokens_; }

  // [M, n] softmax of one query head over the prompt tokens.
  const RowMatrixXf& probabilities(std::int64_t query_head) const {
    return probabilities_[static_cast<std::size_t>(query_head)];
  }

  // The attention mass each prompt token receives, per KV head: summed over the group's query heads
  // and over the M queries (the target of the surrogate-alignment Spearman).
  Eigen::VectorXd received_mass(std::int64_t kv_head) const;

  struct Fidelity {
    double recall = 0.0;        // mean over queries and query heads of the mass on kept tokens
    double output_error = 0.0;  // mean of ||o_full - o_kept|| / ||o_full||
  };
  // o_kept renormalises the attention over the kept tokens, as the model would. A query that puts
  // no representable mass on any kept token counts as error 1 (its output is lost).
  Fidelity fidelity(const capkv::Selection& selection) const;

 private:
  std::int64_t n_tokens_ = 0;
  std::int64_t group_ = 1;
  std::vector<RowMatrixXf> probabilities_;  // per query head, [M, n]
  std::vector<RowMatrixXf> outputs_;        // per query head, [M, d]: o_full
  std::vector<RowMatrixXf> values_;         // per KV head, [n, d]
};

}  // namespace capkv::llm::eval
