#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "capkv/core/select.hpp"
#include "capkv/cpu/causal_attention.hpp"
#include "capkv/cpu/head_matrix.hpp"
#include "capkv/policies/h2o.hpp"

namespace capkv::cpu {

// Prefill: acc_i = sum over the group's query heads and the given prompt queries of the causal
// attention probability on token i (kvpress: divided by how many of those queries see i).
template <>
struct Scorer<H2O> {
  static Scores score(const H2O& policy, const LayerInputs& in, std::int64_t) {
    const std::int64_t n = in.n_tokens();
    const std::int64_t g = in.group_size();
    const TensorView& q = *in.queries;
    const std::int64_t m = q.n_tokens();
    require(m <= n, "queries", "H2O's prompt queries cannot outnumber the cached tokens");
    Scores out{ScoreMatrix::Zero(in.n_kv_heads(), n), Scores::Granularity::kKvHead};
    for (std::int64_t kv = 0; kv < in.n_kv_heads(); ++kv) {
      const HeadMatrix keys(in.keys, kv, "keys");
      for (std::int64_t j = 0; j < g; ++j) {
        const HeadMatrix queries(q, kv * g + j, "queries");
        out.values.row(kv) += causal_attention(queries.matrix(), keys.matrix()).colwise().sum();
      }
      if (policy.config.normalize_by_exposure) {
        for (std::int64_t i = 0; i < n; ++i) out.values(kv, i) /= static_cast<float>(std::min(m, n - i));
      }
    }
    return out;
  }
};

// H2O through decoding, for one layer: after the prefill selection, each step appends the new
// token to every KV head's cache, adds this step's attention to the accumulators, and once a head
// holds more than the budget evicts its lowest-accumulator token outside the recent window (the
// older one on ties, mirroring the keep-the-more-recent rule). Evicted tokens leave for good.
class H2OState {
 public:
  H2OState(const H2O& policy, std::int64_t budget) : policy_(policy), budget_(budget) {
    require(budget >= 1, "budget", "H2O decoding needs room for at least one token");
  }

  // Scores the prompt, keeps `budget` tokens per KV head and remembers their accumulators.
  Selection prefill(const LayerInputs& in) {
    Selection sel = select(policy_, in, Budget::tokens(budget_), {.return_scores = true});
    group_ = in.group_size();
    positions_.assign(static_cast<std::size_t>(in.n_kv_heads()), {});
    accumulators_.assign(positions_.size(), {});
    for (std::int64_t h = 0; h < in.n_kv_heads(); ++h) {
      for (std::int32_t i : sel.head(h)) {
        positions_[h].push_back(i);
        accumulators_[h].push_back(sel.scores(h, i));
      }
    }
    next_position_ = in.n_tokens();
    return sel;
  }

  // One decoding step. `attention` is [Hq, size() + 1]: each query head's probabilities over its
  // KV head's cache in cache order (the kept tokens, then the new one last). Returns, per KV head,
  // the slot (index into that head's cache after the append) that was evicted, or -1.
  std::vector<std::int64_t> observe(const RowMatrixXf& attention) {
    require(!positions_.empty(), "state", "prefill() must come before observe()");
    require(!policy_.config.normalize_by_exposure, "policy",
            "the kvpress ObservedAttention preset scores the prefill only");
    const std::int64_t heads = n_kv_heads();
    require(attention.rows() == heads * group_ && attention.cols() == size() + 1, "attention",
            "must be [query heads, cache size + 1]");
    require(attention.allFinite(), "attention", "contains NaN or Inf");
    std::vector<std::int64_t> evicted(static_cast<std::size_t>(heads), -1);
    for (std::int64_t h = 0; h < heads; ++h) {
      auto& pos = positions_[h];
      auto& acc = accumulators_[h];
      pos.push_back(next_position_);
      acc.push_back(0.0);
      for (std::int64_t j = 0; j < group_; ++j) {
        for (std::size_t s = 0; s < acc.size(); ++s) acc[s] += attention(h * group_ + j, s);
      }
      const auto size = static_cast<std::int64_t>(pos.size());
      if (size <= budget_) continue;
      const std::int64_t evictable = size - policy_.protection(size, budget_).window;
      require(evictable >= 1, "budget", "the recent window leaves no token to evict");
      const auto victim = std::min_element(acc.begin(), acc.begin() + evictable) - acc.begin();
      pos.erase(pos.begin() + victim);
      acc.erase(acc.begin() + victim);
      evicted[h] = victim;
    }
    ++next_position_;
    return evicted;
  }

  std::int64_t n_kv_heads() const { return static_cast<std::int64_t>(positions_.size()); }
  // Every head holds the same count: the budget, or the whole cache while it is smaller.
  std::int64_t size() const { return positions_.empty() ? 0 : static_cast<std::int64_t>(positions_[0].size()); }
  std::span<const std::int64_t> positions(std::int64_t head) const { return positions_[head]; }
  std::span<const double> accumulators(std::int64_t head) const { return accumulators_[head]; }

 private:
  H2O policy_;
  std::int64_t budget_;
  std::int64_t group_ = 1;
  std::vector<std::vector<std::int64_t>> positions_;
  std::vector<std::vector<double>> accumulators_;
  std::int64_t next_position_ = 0;
};

}  // namespace capkv::cpu
