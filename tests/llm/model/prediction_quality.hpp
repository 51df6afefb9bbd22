#pragma once

// How well logits predict the tokens that really follow (teacher forcing).

#include <cmath>
#include <cstdint>
#include <span>

#include "model/kv_cache.hpp"
#include "tokenizer/vocabulary.hpp"

namespace capkv::llm::testing {

struct PredictionQuality {
  double mean_nll = 0.0;  // nats per token
  double top1 = 0.0;      // fraction of tokens that were the argmax
  std::int64_t count = 0;

  double perplexity() const { return std::exp(mean_nll); }
};

// Row r of `logits` is the prediction for targets[r]. The log-softmax is taken in double.
PredictionQuality score_predictions(const RowMatrixXf& logits, std::span<const TokenId> targets);

}  // namespace capkv::llm::testing
