#pragma once

#include "capkv/core/eviction_policy.hpp"
#include "capkv/cpu/head_matrix.hpp"
#include "capkv/policies/l2norm.hpp"

namespace capkv::cpu {

template <>
struct Scorer<L2Norm> {
  static Scores score(const L2Norm&, const LayerInputs& in, std::int64_t) {
    Scores out{ScoreMatrix(in.n_kv_heads(), in.n_tokens()), Scores::Granularity::kKvHead};
    for (std::int64_t kv = 0; kv < in.n_kv_heads(); ++kv) {
      const HeadMatrix keys(in.keys, kv, "keys");
      out.values.row(kv) = -keys.matrix().rowwise().norm().transpose();
    }
    return out;
  }
};

}  // namespace capkv::cpu
