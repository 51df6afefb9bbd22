#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include "capkv/core/eviction_policy.hpp"
#include "capkv/cpu/greedy_logdet.hpp"
#include "capkv/cpu/head_matrix.hpp"
#include "capkv/cpu/weighted_leverage.hpp"
#include "capkv/policies/capkv.hpp"

namespace capkv::cpu {
namespace detail {

// The anchor mu_h of one query head (double accumulation, then fp32).
inline Eigen::VectorXf capkv_anchor(const CapKV::Config& c, const LayerInputs& in,
                                    std::int64_t query_head) {
  const std::int64_t n = in.n_tokens();
  const std::int64_t d = in.keys.head_dim();
  const bool rotated = c.anchor == CapKV::Anchor::kRotatedPromptMean;
  const TensorView& q = rotated ? *in.queries_pre_rope : *in.queries;
  const std::int64_t m = q.n_tokens();
  std::int64_t first = 0;
  if (c.anchor == CapKV::Anchor::kObservationWindow) {
    first = m - std::min(m, std::max<std::int64_t>(c.observation_window, 1));
  } else if (rotated) {
    // Query row r sits at position n - m + r; the sinks' own queries are left out.
    first = std::clamp<std::int64_t>(c.sinks - (n - m), 0, m - 1);
  }
  const HeadMatrix rows(q, query_head, rotated ? "queries_pre_rope" : "queries", first);
  Eigen::VectorXd mu = rows.matrix().cast<double>().colwise().mean().transpose();
  if (rotated) in.rope->rotate_averaged(mu.data(), d, n, c.rope_horizon);
  return mu.cast<float>();
}

// w_i = exp(tau * (t_i - max_j t_j)) over the candidates i >= begin; 0 before.
inline Eigen::RowVectorXf capkv_weights(const CapKV::Config& c, const ConstRowMap& keys,
                                        const Eigen::VectorXf& mu, std::int64_t begin) {
  const std::int64_t n = keys.rows();
  Eigen::RowVectorXf w = Eigen::RowVectorXf::Zero(n);
  if (begin >= n) return w;
  const auto candidates = keys.middleRows(begin, n - begin);
  Eigen::VectorXf t = candidates * mu;
  if (c.statistic == CapKV::Statistic::kCosine) {
    const float mu_norm = mu.norm();
    const Eigen::VectorXf key_norms = candidates.rowwise().norm();
    for (std::int64_t i = 0; i < t.size(); ++i) {
      const float denom = key_norms[i] * mu_norm;
      t[i] = denom > 0.0f ? std::clamp(t[i] / denom, -1.0f, 1.0f) : 0.0f;
    }
  }
  const float t_max = t.maxCoeff();
  w.segment(begin, n - begin) = (static_cast<float>(c.tau) * (t.array() - t_max)).exp().matrix().transpose();
  return w;
}

}  // namespace detail

template <>
struct Scorer<CapKV> {
  static Scores score(const CapKV& policy, const LayerInputs& in, std::int64_t budget) {
    const CapKV::Config& c = policy.config;
    const std::int64_t n = in.n_tokens();
    const std::int64_t g = in.group_size();
    const std::int64_t begin = std::min(c.sinks, n);
    const bool greedy = c.method == CapKV::Method::kGreedy;
    const Protection protection = policy.protection(n, budget);
    Scores out;
    out.granularity = greedy ? Scores::Granularity::kKvHead : Scores::Granularity::kQueryHead;
    out.values.setZero(greedy ? in.n_kv_heads() : in.n_kv_heads() * g, n);

    for (std::int64_t kv = 0; kv < in.n_kv_heads(); ++kv) {
      const HeadMatrix keys(in.keys, kv, "keys");
      std::optional<HeadMatrix> values;
      if (c.basis == CapKV::Basis::kValues) values.emplace(in.values, kv, "values");
      const HeadMatrix& basis = values ? *values : keys;
      RowMatrixXf weights(g, n);
      for (std::int64_t j = 0; j < g; ++j) {
        if (c.uniform_weights) {
          weights.row(j).setOnes();
          weights.row(j).head(begin).setZero();
        } else {
          weights.row(j) = detail::capkv_weights(c, keys.matrix(), detail::capkv_anchor(c, in, kv * g + j), begin);
        }
      }
      if (greedy) {
        Protection candidates = protection;
        candidates.sinks = std::max(candidates.sinks, begin);
        out.values.row(kv) = greedy_logdet_scores(basis.matrix(), weights, candidates,
                                                  budget - protection.count(n), c.eps, c.ridge);
      } else if (c.uniform_weights) {
        // Every query head of the group has the same weights, hence the same scores: compute once.
        const RowMatrixXf shared =
            weighted_leverage(basis.matrix(), weights.topRows(1), begin, c.eps, c.ridge);
        out.values.middleRows(kv * g, g) = shared.replicate(g, 1);
      } else {
        out.values.middleRows(kv * g, g) = weighted_leverage(basis.matrix(), weights, begin, c.eps, c.ridge);
      }
    }
    return out;
  }
};

}  // namespace capkv::cpu
