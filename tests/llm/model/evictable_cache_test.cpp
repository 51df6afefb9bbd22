// Sanity (e): the cache the policies evict from. Retaining everything changes nothing; retaining a
// subset leaves exactly the kept tokens (rows, positions) in each head, and the next forward pass
// computes what a cache holding only those tokens computes; per-head eviction (head-adaptive
// budgets, H2O's erase) keeps heads independent.

#include <gtest/gtest.h>

#include <capkv/core/error.hpp>
#include <capkv/core/selection.hpp>
#include <functional>
#include <vector>

#include "model_fixture.hpp"
#include "test_texts.hpp"

namespace capkv::llm::testing {
namespace {

constexpr std::int64_t kPromptTokens = 40;

class EvictableCacheTest : public ModelTest {
 protected:
  void SetUp() override {
    ModelTest::SetUp();
    if (IsSkipped()) return;
    const auto text = read_text(prose_path());
    ASSERT_TRUE(text);
    tokens_ = tokenizer().encode(*text);
    ASSERT_GT(static_cast<std::int64_t>(tokens_.size()), kPromptTokens);
    tokens_.resize(kPromptTokens + 1);
  }

  std::span<const TokenId> prompt() const { return std::span(tokens_).first(kPromptTokens); }
  std::span<const TokenId> next_token() const { return std::span(tokens_).subspan(kPromptTokens); }

  KvCache prefilled() const {
    KvCache cache = model().make_cache(kPromptTokens + 8);
    model().forward(prompt(), cache);
    return cache;
  }

  std::vector<TokenId> tokens_;
};

// Per KV head, the token indices `keep(head, i)` accepts, in ascending order.
capkv::Selection make_selection(std::int64_t n_heads, std::int64_t n,
                                const std::function<bool(std::int64_t, std::int64_t)>& keep) {
  capkv::Selection sel;
  sel.n_tokens = n;
  for (std::int64_t h = 0; h < n_heads; ++h) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (keep(h, i)) sel.indices.push_back(static_cast<std::int32_t>(i));
    }
    sel.offsets.push_back(static_cast<std::int64_t>(sel.indices.size()));
  }
  return sel;
}

TEST_F(EvictableCacheTest, RetainingEverythingLeavesLogitsUnchanged) {
  KvCache full = prefilled();
  KvCache retained = full;
  const capkv::Selection all = make_selection(model().config().n_kv_heads, kPromptTokens,
                                              [](std::int64_t, std::int64_t) { return true; });
  for (LayerCache& layer : retained.layers) layer.retain(all);
  ASSERT_EQ(retained.tokens(), kPromptTokens);
  const RowMatrixXf a = model().forward(next_token(), full);
  const RowMatrixXf b = model().forward(next_token(), retained);
  EXPECT_LT((a - b).cwiseAbs().maxCoeff(), 1e-6f);
}

// Keeps the 4 sinks, every third token and the last 8 in every layer and head, then checks the
// next token's logits against a cache built from scratch out of just those rows and positions.
TEST_F(EvictableCacheTest, RetainedSubsetActsLikeACacheOfOnlyThoseTokens) {
  const auto keep = [](std::int64_t, std::int64_t i) {
    return i < 4 || i % 3 == 0 || i >= kPromptTokens - 8;
  };
  const std::int64_t kv_heads = model().config().n_kv_heads;
  const std::int64_t d = model().config().head_dim;
  const capkv::Selection sel = make_selection(kv_heads, kPromptTokens, keep);
  const std::int64_t kept = sel.kept(0);

  KvCache full = prefilled();
  KvCache retained = full;
  KvCache rebuilt = model().make_cache(kept + 1);
  rebuilt.next_position = full.next_position;
  for (std::size_t l = 0; l < full.layers.size(); ++l) {
    retained.layers[l].retain(sel);
    RowMatrixXf k(kept, kv_heads * d), v(kept, kv_heads * d);
    std::vector<std::int64_t> positions;
    for (std::int64_t j = 0; j < kept; ++j) {
      const std::int32_t i = sel.head(0)[j];
      positions.push_back(full.layers[l].positions(0)[i]);
      for (std::int64_t h = 0; h < kv_heads; ++h) {
        k.row(j).segment(h * d, d) = full.layers[l].keys(h).row(i);
        v.row(j).segment(h * d, d) = full.layers[l].values(h).row(i);
      }
    }
    rebuilt.layers[l].append(k, v, positions);
  }
  ASSERT_EQ(retained.tokens(), kept);

  const RowMatrixXf with_all = model().forward(next_token(), full);
  const RowMatrixXf with_kept = model().forward(next_token(), retained);
  const RowMatrixXf reference = model().forward(next_token(), rebuilt);
  EXPECT_LT((with_kept - reference).cwiseAbs().maxCoeff(), 1e-5f);
  // Evicting over half the prompt must change the prediction, or the test proves nothing.
  EXPECT_GT((with_kept - with_all).cwiseAbs().maxCoeff(), 1e-2f);
  // The new token went in after the kept ones, at the prompt's next position.
  EXPECT_EQ(retained.tokens(), kept + 1);
  EXPECT_EQ(retained.layers[7].positions(2).back(), kPromptTokens);
}

// Each head keeps its own subset (different counts), then H2O-style single-token erases; every
// head must hold exactly its survivors, and decoding must go on over the ragged cache.
TEST_F(EvictableCacheTest, PerHeadRetainAndEraseKeepHeadsIndependent) {
  const std::int64_t kv_heads = model().config().n_kv_heads;
  const auto keep = [](std::int64_t h, std::int64_t i) { return i == 0 || i % (h + 2) == 1; };
  const capkv::Selection sel = make_selection(kv_heads, kPromptTokens, keep);
  ASSERT_FALSE(sel.uniform());

  const KvCache full = prefilled();
  KvCache cache = full;
  for (LayerCache& layer : cache.layers) layer.retain(sel);
  const std::int64_t erased_head = 1, erased_slot = 2;
  for (LayerCache& layer : cache.layers) layer.erase(erased_head, erased_slot);

  for (std::size_t l = 0; l < cache.layers.size(); ++l) {
    const LayerCache& before = full.layers[l];
    const LayerCache& after = cache.layers[l];
    for (std::int64_t h = 0; h < kv_heads; ++h) {
      std::vector<std::int32_t> survivors(sel.head(h).begin(), sel.head(h).end());
      if (h == erased_head) survivors.erase(survivors.begin() + erased_slot);
      ASSERT_EQ(after.size(h), static_cast<std::int64_t>(survivors.size()));
      for (std::size_t j = 0; j < survivors.size(); ++j) {
        const auto i = survivors[j];
        const auto row = static_cast<Eigen::Index>(j);
        ASSERT_EQ(after.positions(h)[j], before.positions(h)[i]) << "layer " << l << " head " << h;
        ASSERT_EQ(after.keys(h).row(row), before.keys(h).row(i)) << "layer " << l << " head " << h;
        ASSERT_EQ(after.values(h).row(row), before.values(h).row(i))
            << "layer " << l << " head " << h;
      }
    }
  }
  // The policies' dense views need equal counts; a ragged layer must refuse, not misread.
  EXPECT_THROW(cache.layers[0].keys_view(), capkv::Error);

  const RowMatrixXf logits = model().forward(next_token(), cache);
  EXPECT_TRUE(logits.allFinite());
  for (std::int64_t h = 0; h < kv_heads; ++h) {
    const std::int64_t expected = sel.kept(h) - (h == erased_head ? 1 : 0) + 1;
    EXPECT_EQ(cache.layers[29].size(h), expected);
    EXPECT_EQ(cache.layers[29].positions(h).back(), kPromptTokens);
  }
  EXPECT_LT(cache.bytes_held(), full.bytes_held());
}

}  // namespace
}  // namespace capkv::llm::testing
