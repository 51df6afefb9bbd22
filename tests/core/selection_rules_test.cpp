#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "capkv/core/head_budgets.hpp"
#include "capkv/core/select.hpp"

namespace capkv {
namespace {

ScoreMatrix random_scores(std::int64_t heads, std::int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  ScoreMatrix s(heads, n);
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < n; ++i) s(h, i) = normal(rng);
  return s;
}

// The obvious reference: sort every unprotected token by (score desc, index desc) and take the
// first budget - protected.
std::vector<std::int32_t> reference_top_b(const float* scores, std::int64_t n, const Protection& p,
                                          std::int64_t budget) {
  if (budget >= n) {
    std::vector<std::int32_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    return all;
  }
  std::vector<std::int32_t> order;
  std::set<std::int32_t> kept;
  for (std::int32_t i = 0; i < n; ++i)
    (p.contains(i, n) ? kept.insert(i), void() : order.push_back(i));
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : a > b;
  });
  for (std::int64_t k = 0; k < budget - p.count(n); ++k) kept.insert(order[k]);
  return {kept.begin(), kept.end()};
}

TEST(SelectFromScores, MatchesTheSortingReferenceAndItsRules) {
  for (unsigned seed = 0; seed < 30; ++seed) {
    const std::int64_t n = 1 + seed * 7;
    const ScoreMatrix s = random_scores(3, n, seed);
    const Protection p{seed % 5, seed % 3 * 2};
    for (std::int64_t budget : {p.count(n), p.count(n) + 1, n / 2 + p.count(n), n, n + 3}) {
      if (budget > n && budget != n + 3) continue;
      const Selection sel = select_from_scores(s, p, budget, HeadBudgets::uniform());
      ASSERT_EQ(sel.n_kv_heads(), 3);
      for (std::int64_t h = 0; h < 3; ++h) {
        const auto got = sel.head(h);
        const auto want = reference_top_b(s.row(h).data(), n, p, budget);
        ASSERT_EQ(std::vector<std::int32_t>(got.begin(), got.end()), want) << "seed " << seed;
        EXPECT_EQ(sel.kept(h), std::min(budget, n));  // exact counts
        EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
        for (std::int64_t i = 0; i < n; ++i) {  // protected tokens are always there
          if (p.contains(i, n)) {
            EXPECT_TRUE(std::binary_search(got.begin(), got.end(), i));
          }
        }
      }
    }
  }
}

TEST(SelectFromScores, TiesGoToTheMoreRecentToken) {
  ScoreMatrix s(1, 8);
  s << 1, 5, 5, 1, 5, 1, 1, 0;
  // Two of the three 5s fit: the later ones, 2 and 4.
  Selection sel = select_from_scores(s, {}, 2, HeadBudgets::uniform());
  EXPECT_EQ(std::vector<std::int32_t>(sel.head(0).begin(), sel.head(0).end()),
            (std::vector<std::int32_t>{2, 4}));
  // All equal: the most recent B.
  s.setConstant(3.0f);
  sel = select_from_scores(s, {}, 3, HeadBudgets::uniform());
  EXPECT_EQ(std::vector<std::int32_t>(sel.head(0).begin(), sel.head(0).end()),
            (std::vector<std::int32_t>{5, 6, 7}));
}

TEST(SelectFromScores, BudgetBelowTheProtectedSetIsAnError) {
  const ScoreMatrix s = random_scores(2, 20, 1);
  try {
    select_from_scores(s, Protection{4, 8}, 11, HeadBudgets::uniform());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "budget");
  }
  // ... unless the budget keeps everything anyway.
  EXPECT_EQ(select_from_scores(s, Protection{4, 30}, 20, HeadBudgets::uniform()).total_kept(), 40);
}

TEST(SelectFromScores, NanOrInfScoresAreAnError) {
  ScoreMatrix s = random_scores(2, 10, 2);
  s(1, 3) = NAN;
  EXPECT_THROW(select_from_scores(s, {}, 5, HeadBudgets::uniform()), Error);
  s(1, 3) = INFINITY;
  EXPECT_THROW(select_from_scores(s, {}, 5, HeadBudgets::uniform()), Error);
}

TEST(GqaReduction, MeanMaxSumOverEachGroup) {
  ScoreMatrix q(4, 3);
  q << 1, 2, 3,  //
      3, 0, 5,   //
      -1, 7, 2,  //
      5, 1, 0;
  const ScoreMatrix mean = reduce_gqa(q, 2, GqaReduction::kMean);
  const ScoreMatrix max = reduce_gqa(q, 2, GqaReduction::kMax);
  const ScoreMatrix sum = reduce_gqa(q, 2, GqaReduction::kSum);
  EXPECT_EQ(mean.row(0), (Eigen::RowVector3f(2, 1, 4)));
  EXPECT_EQ(mean.row(1), (Eigen::RowVector3f(2, 4, 1)));
  EXPECT_EQ(max.row(0), (Eigen::RowVector3f(3, 2, 5)));
  EXPECT_EQ(max.row(1), (Eigen::RowVector3f(5, 7, 2)));
  EXPECT_EQ(sum.row(1), (Eigen::RowVector3f(4, 8, 2)));
  EXPECT_EQ(reduce_gqa(q, 4, GqaReduction::kMean), q);
  EXPECT_THROW(reduce_gqa(q, 3, GqaReduction::kMean), Error);
}

TEST(AdaptiveHeadBudgets, LayerTotalIsKeptAndEveryHeadGetsItsFloor) {
  for (unsigned seed = 0; seed < 20; ++seed) {
    const std::int64_t heads = 4, n = 200, budget = 40;
    ScoreMatrix s = random_scores(heads, n, seed);
    s.row(seed % heads).array() += 3.0f;  // one head has all the best scores
    const Protection p{2, 3};
    const Selection sel = select_from_scores(s, p, budget, HeadBudgets::adaptive(0.2));
    EXPECT_EQ(sel.total_kept(), heads * budget);
    for (std::int64_t h = 0; h < heads; ++h) {
      EXPECT_GE(sel.kept(h), static_cast<std::int64_t>(0.2 * budget));
      const auto idx = sel.head(h);
      EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
      for (std::int64_t i = 0; i < n; ++i)
        if (p.contains(i, n)) {
          EXPECT_TRUE(std::binary_search(idx.begin(), idx.end(), i));
        }
    }
    EXPECT_GT(sel.kept(seed % heads), budget);  // the strong head took more than its share

    // Reference: the floor per head, then the global best of the rest.
    std::vector<std::tuple<float, std::int32_t, std::int32_t>> rest;
    std::vector<std::int64_t> counts(heads, 0);
    const std::int64_t floor = std::max<std::int64_t>(p.count(n), 0.2 * budget);
    for (std::int64_t h = 0; h < heads; ++h) {
      const auto guaranteed = reference_top_b(s.row(h).data(), n, p, floor);
      counts[h] = floor;
      for (std::int32_t i = 0; i < n; ++i)
        if (!std::binary_search(guaranteed.begin(), guaranteed.end(), i))
          rest.emplace_back(s(h, i), i, h);
    }
    std::sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) {
      return std::get<0>(a) != std::get<0>(b) ? std::get<0>(a) > std::get<0>(b)
                                              : std::get<1>(a) > std::get<1>(b);
    });
    for (std::int64_t k = 0; k < heads * (budget - floor); ++k) ++counts[std::get<2>(rest[k])];
    for (std::int64_t h = 0; h < heads; ++h) EXPECT_EQ(sel.kept(h), counts[h]) << "seed " << seed;
  }
}

TEST(AdaptiveHeadBudgets, AlphaOneIsUniform) {
  const ScoreMatrix s = random_scores(3, 50, 9);
  const Selection a = select_from_scores(s, {}, 10, HeadBudgets::adaptive(1.0));
  const Selection u = select_from_scores(s, {}, 10, HeadBudgets::uniform());
  EXPECT_EQ(a.indices, u.indices);
  EXPECT_EQ(a.offsets, u.offsets);
}

}  // namespace
}  // namespace capkv
