#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "capkv/core/eviction_policy.hpp"
#include "capkv/cpu/causal_attention.hpp"
#include "capkv/cpu/head_matrix.hpp"
#include "capkv/policies/snapkv.hpp"

namespace capkv::cpu {
namespace detail {

// 1-D pooling with stride 1 and padding kernel/2: max ignores the padding (PyTorch pads max-pool
// with -inf); average counts it as zeros (count_include_pad).
inline Eigen::RowVectorXf pool_1d(const Eigen::RowVectorXf& x, std::int64_t kernel, SnapKV::Pooling pooling) {
  const std::int64_t len = x.size();
  const std::int64_t pad = kernel / 2;
  Eigen::RowVectorXf out(len);
  for (std::int64_t i = 0; i < len; ++i) {
    const std::int64_t lo = std::max<std::int64_t>(0, i - pad);
    const std::int64_t hi = std::min<std::int64_t>(len, i + pad + 1);
    const auto span = x.segment(lo, hi - lo);
    out[i] = pooling == SnapKV::Pooling::kMax ? span.maxCoeff() : span.sum() / static_cast<float>(kernel);
  }
  return out;
}

}  // namespace detail

template <>
struct Scorer<SnapKV> {
  static Scores score(const SnapKV& policy, const LayerInputs& in, std::int64_t) {
    const SnapKV::Config& c = policy.config;
    require(c.window >= 1, "window", "SnapKV needs at least one observation query");
    require(c.kernel >= 1 && c.kernel % 2 == 1, "kernel", "the pooling kernel must be odd");
    const std::int64_t n = in.n_tokens();
    const std::int64_t w = std::min(c.window, n);
    const TensorView& q = *in.queries;
    require(q.n_tokens() >= w, "queries",
            "SnapKV needs the last " + std::to_string(w) + " queries, got " + std::to_string(q.n_tokens()));
    const std::int64_t g = in.group_size();
    Scores out{ScoreMatrix::Zero(in.n_query_heads(), n), Scores::Granularity::kQueryHead};
    const std::int64_t prefix = n - w;
    for (std::int64_t kv = 0; kv < in.n_kv_heads(); ++kv) {
      const HeadMatrix keys(in.keys, kv, "keys");
      for (std::int64_t j = 0; j < g; ++j) {
        const std::int64_t h = kv * g + j;
        const HeadMatrix window(q, h, "queries", q.n_tokens() - w);
        if (prefix == 0) continue;
        const RowMatrixXf p = causal_attention(window.matrix(), keys.matrix());
        Eigen::RowVectorXf raw = p.leftCols(prefix).colwise().sum();
        if (c.aggregation == SnapKV::Aggregation::kMean) raw /= static_cast<float>(w);
        out.values.row(h).head(prefix) = detail::pool_1d(raw, c.kernel, c.pooling);
      }
    }
    return out;
  }
};

}  // namespace capkv::cpu
