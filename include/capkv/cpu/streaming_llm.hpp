#pragma once

#include "capkv/core/eviction_policy.hpp"
#include "capkv/cpu/head_matrix.hpp"
#include "capkv/policies/streaming_llm.hpp"

namespace capkv::cpu {

// Position is the score: the protected sinks and recent window are exactly the budget, so the
// score only has to be finite. The keys are still checked: a NaN cache is an error for every
// policy, even one that would not notice it.
template <>
struct Scorer<StreamingLLM> {
  static Scores score(const StreamingLLM&, const LayerInputs& in, std::int64_t) {
    Scores out{ScoreMatrix(in.n_kv_heads(), in.n_tokens()), Scores::Granularity::kKvHead};
    check_finite(in.keys, "keys");
    for (std::int64_t kv = 0; kv < in.n_kv_heads(); ++kv) {
      for (std::int64_t i = 0; i < in.n_tokens(); ++i) out.values(kv, i) = static_cast<float>(i);
    }
    return out;
  }
};

}  // namespace capkv::cpu
