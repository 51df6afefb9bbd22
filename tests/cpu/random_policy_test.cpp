// RandomPolicy: reproducible per (seed, layer), independent across layers and seeds, uniform, and
// under the same protection rules as every policy. The statistical checks use fixed seeds, so they
// are deterministic; their bounds sit at several standard deviations so that they would only fail
// for a generator that is actually biased.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"

namespace capkv_test {
namespace {

capkv::Selection draw(std::uint64_t seed, std::int64_t layer, const Layer& l, std::int64_t budget,
                      std::int64_t sinks = 0, std::int64_t window = 0) {
  Layer copy = l;
  copy.layer = layer;
  const capkv::RandomPolicy policy({.seed = seed, .sinks = sinks, .window = window});
  return capkv::select(policy, copy.inputs(), capkv::Budget::tokens(budget),
                       {.return_scores = true});
}

TEST(RandomPolicy, SameSeedAndLayerGiveTheSameDraw) {
  const Layer a = random_layer({.n = 64, .kv_heads = 3, .group = 1, .dim = 8}, 1);
  const Layer b = random_layer({.n = 64, .kv_heads = 3, .group = 1, .dim = 8}, 2);  // other data
  const capkv::Selection first = draw(42, 5, a, 16);
  const capkv::Selection again = draw(42, 5, a, 16);
  const capkv::Selection other_data = draw(42, 5, b, 16);
  EXPECT_EQ(first.indices, again.indices);
  EXPECT_EQ(first.scores, again.scores);
  EXPECT_EQ(first.scores, other_data.scores);  // the scores read no tensor
}

TEST(RandomPolicy, DifferentLayersAndSeedsDrawDifferently) {
  const Layer l = random_layer({.n = 64, .kv_heads = 3, .group = 1, .dim = 8}, 1);
  const capkv::Selection base = draw(42, 5, l, 16);
  for (const capkv::Selection& other :
       {draw(42, 6, l, 16), draw(43, 5, l, 16), draw(0, 5, l, 16)}) {
    EXPECT_NE(base.indices, other.indices);
    // Not a shifted or shared stream either: scores agree nowhere.
    std::int64_t equal = 0;
    for (std::int64_t h = 0; h < 3; ++h) {
      for (std::int64_t i = 0; i < 64; ++i) equal += base.scores(h, i) == other.scores(h, i);
    }
    EXPECT_EQ(equal, 0);
  }
  // The KV heads of one layer draw independently too.
  EXPECT_NE(as_vector(base.head(0)), as_vector(base.head(1)));
}

// Scores: uniform on [0, 1). 20 bins over 3 x 4000 draws: chi-square with 19 degrees of freedom
// has its 0.1% tail at 43.8.
TEST(RandomPolicy, ScoresAreUniformOnTheUnitInterval) {
  const Layer l = random_layer({.n = 4000, .kv_heads = 3, .group = 1, .dim = 1}, 3);
  const capkv::Selection sel = draw(7, 0, l, 10);
  std::vector<double> bins(20, 0.0);
  double sum = 0.0;
  for (float s : sel.scores.reshaped()) {
    ASSERT_GE(s, 0.0f);
    ASSERT_LT(s, 1.0f);
    bins[static_cast<std::size_t>(s * 20)] += 1.0;
    sum += s;
  }
  const double total = static_cast<double>(sel.scores.size());
  const double expected = total / 20.0;
  double chi2 = 0.0;
  for (double b : bins) chi2 += (b - expected) * (b - expected) / expected;
  EXPECT_LT(chi2, 43.8);
  EXPECT_NEAR(sum / total, 0.5, 5 * std::sqrt(1.0 / 12.0 / total));
}

// Every unprotected token is kept equally often across seeds, and protected ones always: 600
// seeds x 2 heads, 4 free slots among 20 candidates, so each is kept with probability 1/5. A
// chi-square over the 20 candidates (19 degrees of freedom, 0.1% tail 43.8) and a per-token bound
// of 5 standard deviations.
TEST(RandomPolicy, EveryCandidateIsEquallyLikelyToBeKept) {
  const Layer l = random_layer({.n = 24, .kv_heads = 2, .group = 1, .dim = 4}, 4);
  std::vector<double> kept(24, 0.0);
  const std::int64_t seeds = 600;
  for (std::uint64_t seed = 0; seed < seeds; ++seed) {
    const capkv::Selection sel = draw(seed, 3, l, 8, /*sinks=*/2, /*window=*/2);
    for (std::int32_t i : sel.indices) kept[i] += 1.0;
  }
  const double trials = 2.0 * seeds, p = 4.0 / 20.0;
  for (std::int64_t i : {0, 1, 22, 23}) EXPECT_EQ(kept[i], trials) << "protected token " << i;
  double chi2 = 0.0;
  for (std::int64_t i = 2; i < 22; ++i) {
    EXPECT_NEAR(kept[i], trials * p, 5 * std::sqrt(trials * p * (1 - p))) << "token " << i;
    chi2 += (kept[i] - trials * p) * (kept[i] - trials * p) / (trials * p);
  }
  EXPECT_LT(chi2, 43.8);
}

TEST(RandomPolicy, RefusesABudgetBelowItsProtection) {
  const Layer l = random_layer({.n = 24, .kv_heads = 2, .group = 1, .dim = 4}, 4);
  try {
    draw(1, 0, l, 3, 2, 2);
    ADD_FAILURE() << "no error";
  } catch (const capkv::Error& e) {
    EXPECT_EQ(e.argument(), "budget");
  }
}

}  // namespace
}  // namespace capkv_test
