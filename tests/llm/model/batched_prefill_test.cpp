// Sanity (d): a batched prefill computes what token-by-token decoding computes. The two take
// different code paths (GEMM vs GEMV, one causal mask over a batch vs a cache that grows), so they
// agree only to fp32 rounding; a masking or position bug shows up as differences of whole units.

#include <gtest/gtest.h>

#include <iostream>
#include <vector>

#include "model_fixture.hpp"
#include "test_texts.hpp"

namespace capkv::llm::testing {
namespace {

// Logits are O(10); fp32 rounding through 30 layers moves them by about 1e-4.
constexpr float kTolerance = 2e-3f;

class BatchedPrefillTest : public ModelTest {
 protected:
  std::vector<TokenId> prose(std::size_t count) const {
    const auto text = read_text(prose_path());
    std::vector<TokenId> tokens = text ? tokenizer().encode(*text) : std::vector<TokenId>{};
    if (tokens.size() < count) ADD_FAILURE() << "prose.txt has fewer than " << count << " tokens";
    tokens.resize(count);
    return tokens;
  }
};

TEST_F(BatchedPrefillTest, ShortPromptMatchesTokenByToken) {
  const std::vector<TokenId> tokens = prose(16);
  KvCache cache = model().make_cache(16);
  const RowMatrixXf batched = model().forward(tokens, cache, Logits::kAll);
  KvCache stepped_cache = model().make_cache(16);
  RowMatrixXf stepped(16, model().config().vocab);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    stepped.row(static_cast<Eigen::Index>(i)) =
        model().forward(std::span(tokens).subspan(i, 1), stepped_cache).row(0);
  }
  const float diff = (batched - stepped).cwiseAbs().maxCoeff();
  std::cout << "[ measured ] max |batched - token by token| over 16 tokens: " << diff << "\n";
  EXPECT_LT(diff, kTolerance);
  EXPECT_EQ(cache.next_position, 16);
}

// One 270-token batch (crossing the attention's 256-query chunk) against the same tokens fed as
// prefills of 150 and 100 (the second one growing the cache) and then 20 single-token steps: same
// logits for the last 21 positions, same cache.
TEST_F(BatchedPrefillTest, ChunkedPrefillAndDecodingMatchOneBatch) {
  const std::vector<TokenId> tokens = prose(270);
  const std::span<const TokenId> all(tokens);
  KvCache whole = model().make_cache(270);
  const RowMatrixXf batched = model().forward(all, whole, Logits::kAll);

  KvCache chunked = model().make_cache(160);
  model().forward(all.first(150), chunked);
  RowMatrixXf stepped(21, model().config().vocab);
  stepped.row(0) = model().forward(all.subspan(150, 100), chunked).row(0);
  for (std::int64_t i = 250; i < 270; ++i) {
    stepped.row(i - 249) = model().forward(all.subspan(i, 1), chunked).row(0);
  }
  const float diff = (batched.bottomRows(21) - stepped).cwiseAbs().maxCoeff();
  std::cout << "[ measured ] max |one batch - chunked and decoded| over the last 21 of 270: "
            << diff << "\n";
  EXPECT_LT(diff, kTolerance);

  ASSERT_EQ(chunked.tokens(), 270);
  for (const std::int64_t l : {0, 29}) {
    const LayerCache& a = whole.layers[l];
    const LayerCache& b = chunked.layers[l];
    for (std::int64_t h = 0; h < a.n_kv_heads(); ++h) {
      ASSERT_EQ(b.size(h), 270);
      EXPECT_LT((a.keys(h) - b.keys(h)).cwiseAbs().maxCoeff(), 1e-3f) << "layer " << l;
      EXPECT_LT((a.values(h) - b.values(h)).cwiseAbs().maxCoeff(), 1e-3f) << "layer " << l;
      EXPECT_EQ(b.positions(h).front(), 0);
      EXPECT_EQ(b.positions(h).back(), 269);
    }
  }
}

}  // namespace
}  // namespace capkv::llm::testing
