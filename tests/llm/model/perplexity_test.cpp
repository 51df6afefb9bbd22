// Sanity (b): on plain English prose the model's perplexity is finite and in the range a small
// instruction-tuned model reaches. The text (data/prose.txt) was written for this repository, so it
// cannot have been memorised; a broken forward pass (wrong norms, RoPE or weight layout) lands in
// the hundreds or thousands instead.

#include <gtest/gtest.h>

#include <iostream>
#include <vector>

#include "model_fixture.hpp"
#include "prediction_quality.hpp"
#include "test_texts.hpp"

namespace capkv::llm::testing {
namespace {

constexpr std::int64_t kTokens = 512;

class PerplexityTest : public ModelTest {};

TEST_F(PerplexityTest, EnglishProseIsPlausible) {
  const auto text = read_text(prose_path());
  ASSERT_TRUE(text) << "cannot read " << prose_path();
  std::vector<TokenId> tokens = tokenizer().encode(*text);
  ASSERT_GE(static_cast<std::int64_t>(tokens.size()), kTokens + 1);
  tokens.resize(kTokens + 1);

  KvCache cache = model().make_cache(kTokens);
  const RowMatrixXf logits =
      model().forward(std::span<const TokenId>(tokens).first(kTokens), cache, Logits::kAll);
  const PredictionQuality q =
      score_predictions(logits, std::span<const TokenId>(tokens).subspan(1));
  std::cout << "[ measured ] perplexity " << q.perplexity() << " over " << q.count
            << " tokens, top-1 " << q.top1 << "\n";
  ASSERT_TRUE(std::isfinite(q.mean_nll));
  EXPECT_GT(q.perplexity(), 2.0);
  EXPECT_LT(q.perplexity(), 60.0);
}

}  // namespace
}  // namespace capkv::llm::testing
