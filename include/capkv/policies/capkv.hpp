#pragma once

#include <cstdint>
#include <string_view>

#include "capkv/core/eviction_policy.hpp"

namespace capkv {

// CapKV (arXiv 2604.25975): keep the tokens that carry the most information about future queries
// under a linear-Gaussian surrogate, 1/2 logdet(I + sum_i w_i u_i u_i^T). Each token's score is its
// weighted leverage s_i = w_i u_i^T A^-1 u_i, relevance (w_i) times diversity (the leverage), with
// A = ridge * I + sum_i (w_i + eps) u_i u_i^T over the candidate (non-sink) tokens.
struct CapKV : PolicyDefaults {
  enum class Basis { kValues, kKeys };  // u_i = v_i (the paper) or k_i (ridge leverage of keys)
  enum class Anchor {
    kObservationWindow,  // mean of the last `observation_window` queries (after RoPE)
    kPromptMean,         // mean of every prompt query given (after RoPE)
    kRotatedPromptMean,  // mean of pre-RoPE prompt queries after the sinks, rotated by the RoPE
                         // rotation averaged over the next `rope_horizon` positions
  };
  enum class Statistic { kDot, kCosine };  // t_i = <k_i, mu> or cos(k_i, mu) clamped to [-1, 1]
  enum class Method { kOneShot, kGreedy };

  struct Config {
    Basis basis = Basis::kValues;
    Anchor anchor = Anchor::kObservationWindow;
    std::int64_t observation_window = 32;
    std::int64_t rope_horizon = 512;
    Statistic statistic = Statistic::kDot;
    double tau = 5.0;          // w_i = exp(tau * (t_i - max_j t_j))
    double eps = 1e-6;         // keeps A well conditioned when weights underflow
    double ridge = 1.0;        // the I of the capacity matrix; lambda of the key-Gram form
    bool uniform_weights = false;  // w_i = 1: pure leverage, no relevance
    Method method = Method::kOneShot;
    std::int64_t sinks = 4;
    std::int64_t recent_window = 0;
  };

  Config config;

  CapKV() = default;
  explicit CapKV(const Config& c) : config(c) {}

  // The paper: anchor = mean of the prompt queries, t = <k, mu>.
  static CapKV paper() {
    Config c;
    c.anchor = Anchor::kPromptMean;
    return CapKV(c);
  }
  // kvpress CapPress: anchor from pre-RoPE queries rotated to the next 512 positions, t = cosine.
  static CapKV kvpress() {
    Config c;
    c.anchor = Anchor::kRotatedPromptMean;
    c.statistic = Statistic::kCosine;
    return CapKV(c);
  }
  // diag(K (K^T K + ridge I)^-1 K^T): the diversity-only member of the family.
  static CapKV key_leverage(double ridge = 1.0) {
    Config c;
    c.basis = Basis::kKeys;
    c.uniform_weights = true;
    c.ridge = ridge;
    return CapKV(c);
  }
  // The same objective maximised greedily by exact marginal log-det gain (D-optimal greedy).
  CapKV greedy() const {
    CapKV p = *this;
    p.config.method = Method::kGreedy;
    return p;
  }

  std::string_view name() const { return config.method == Method::kGreedy ? "CapKV-greedy" : "CapKV"; }

  InputNeeds needs() const {
    InputNeeds n;
    n.values = config.basis == Basis::kValues;
    const bool relevance = !config.uniform_weights;
    n.queries = relevance && config.anchor != Anchor::kRotatedPromptMean;
    n.queries_pre_rope = relevance && config.anchor == Anchor::kRotatedPromptMean;
    n.rope = n.queries_pre_rope;
    return n;
  }

  Protection protection(std::int64_t, std::int64_t) const {
    return {config.sinks, config.recent_window};
  }
};

}  // namespace capkv
