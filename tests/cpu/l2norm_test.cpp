// L2-norm (Knorm): s_i = -||k_i|| against float64 norms, the ties rule on duplicated keys, and the
// paper preset's rules (layers 0 and 1 whole, a minimum length, ceil for fractions).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"
#include "support/reference.hpp"

namespace capkv_test {
namespace {

// ||k|| in fp32 is off by at most (d/2 + 2) u relative; twice that for the constants.
Eigen::MatrixXd norm_tolerance(const Eigen::MatrixXd& want, std::int64_t d) {
  return relative_tolerance(want, (d + 4.0) * ref::kU32, 1e-30);
}

TEST(L2Norm, ScoresAreMinusTheKeyNormsAndTheLowestNormsAreKept) {
  for (std::int64_t d : {1, 8, 64}) {
    for (std::int64_t n : {1, 7, 130}) {
      Layer l = random_layer({.n = n, .kv_heads = 3, .group = 1, .dim = d}, 10 * d + n);
      // Scaled rows spread the norms over three orders of magnitude.
      for (std::int64_t t = 0; t < n; ++t) {
        for (std::int64_t h = 0; h < 3; ++h) {
          l.keys.set_row(t, h, l.keys.row(t, h) * std::pow(10.0, (t * 7 + h * 3) % 13 / 4.0 - 1.5));
        }
      }
      const capkv::L2Norm policy;
      const std::int64_t budget = (n + 1) / 2;
      const Eigen::MatrixXd want = ref::l2norm(l);
      const Eigen::MatrixXd tol = norm_tolerance(want, d);
      const capkv::Selection sel =
          capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget), {.return_scores = true});
      EXPECT_TRUE(ScoresNear(sel.scores, want, tol)) << "d " << d << " n " << n;
      std::int64_t undecided = -1;
      EXPECT_TRUE(SelectionAgrees(sel, want, tol, {}, budget, &undecided));
      EXPECT_EQ(undecided, 0) << "distinct norms must give an exact selection";
    }
  }
}

// Duplicated keys have bit-identical norms, so the shared rule decides: the more recent is kept.
TEST(L2Norm, EqualNormsKeepTheMoreRecentToken) {
  Layer l = random_layer({.n = 12, .kv_heads = 2, .group = 1, .dim = 8}, 4);
  for (std::int64_t t = 0; t < 12; ++t) {
    for (std::int64_t h = 0; h < 2; ++h)
      l.keys.set_row(t, h, l.keys.row(t, h).normalized() * (1.0 + t));
  }
  // Token 9 becomes a copy of token 2 (norm 3); tokens 0 and 1 have the lowest norms (1 and 2).
  duplicate_token(l, 2, 9);
  // Budget 3: tokens 0, 1, and one of the tied {2, 9}: the more recent, 9.
  const capkv::Selection sel = capkv::select(capkv::L2Norm(), l.inputs(), capkv::Budget::tokens(3));
  for (std::int64_t h = 0; h < 2; ++h) {
    EXPECT_EQ(as_vector(sel.head(h)), (std::vector<std::int32_t>{0, 1, 9}));
  }
}

// Sinks and a window, when configured, are kept on top of the lowest norms.
TEST(L2Norm, ConfiguredSinksAndWindowAreProtected) {
  const Layer l = random_layer({.n = 40, .kv_heads = 2, .group = 1, .dim = 8}, 6);
  const capkv::L2Norm policy(capkv::L2Norm::Config{.sinks = 2, .window = 3});
  const Eigen::MatrixXd want = ref::l2norm(l);
  const capkv::Selection sel = capkv::select(policy, l.inputs(), capkv::Budget::tokens(12));
  EXPECT_TRUE(SelectionAgrees(sel, want, norm_tolerance(want, 8), {2, 3}, 12));
}

TEST(L2Norm, PaperPresetKeepsTheFirstTwoLayersWhole) {
  Layer l = random_layer({.n = 600, .kv_heads = 2, .group = 1, .dim = 8}, 7);
  const capkv::L2Norm paper = capkv::L2Norm::paper();
  for (std::int64_t layer : {0, 1, 2, 5}) {
    l.layer = layer;
    const capkv::Selection sel =
        capkv::select(paper, l.inputs(), capkv::Budget::keep_fraction(0.25));
    EXPECT_EQ(sel.kept(0), layer < 2 ? 600 : 150) << "layer " << layer;
  }
}

TEST(L2Norm, PaperPresetCompressesOnlyFromItsMinimumLength) {
  const capkv::L2Norm paper = capkv::L2Norm::paper();
  for (std::int64_t n : {511, 512}) {
    Layer l = random_layer({.n = n, .kv_heads = 1, .group = 1, .dim = 4}, 8);
    l.layer = 3;
    const capkv::Selection sel =
        capkv::select(paper, l.inputs(), capkv::Budget::keep_fraction(0.5));
    EXPECT_EQ(sel.kept(0), n < paper.config.min_length ? n : n / 2) << "n " << n;
  }
}

// 0.3 * 601 = 180.3 tokens: the paper keeps 181 (ceil), kvpress 180 (floor); with the same scores
// the paper's selection is the kvpress one plus the next-best token.
TEST(L2Norm, PaperPresetRoundsFractionsUp) {
  Layer l = random_layer({.n = 601, .kv_heads = 2, .group = 1, .dim = 8}, 9);
  l.layer = 4;
  const auto paper =
      capkv::select(capkv::L2Norm::paper(), l.inputs(), capkv::Budget::keep_fraction(0.3));
  const auto kvpress =
      capkv::select(capkv::L2Norm::kvpress(), l.inputs(), capkv::Budget::keep_fraction(0.3));
  const auto removed =
      capkv::select(capkv::L2Norm::paper(), l.inputs(), capkv::Budget::compression_ratio(0.7));
  const Eigen::MatrixXd want = ref::l2norm(l);
  for (std::int64_t h = 0; h < 2; ++h) {
    EXPECT_EQ(paper.kept(h), 181);
    EXPECT_EQ(kvpress.kept(h), 180);
    EXPECT_EQ(removed.kept(h), 181);  // the same budget spelled as the fraction removed
    EXPECT_TRUE(std::ranges::includes(paper.head(h), kvpress.head(h)));
    EXPECT_EQ(as_vector(paper.head(h)), ref::top_b(want.row(h).transpose(), {}, 181));
  }
}

}  // namespace
}  // namespace capkv_test
