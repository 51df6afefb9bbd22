#include "eval/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace capkv::llm::eval {
namespace {

TEST(KlDivergence, MatchesAHandComputation) {
  // p = softmax(0, ln 2) = (1/3, 2/3), q = softmax(0, 0) = (1/2, 1/2).
  const std::vector<float> full{0.0f, static_cast<float>(std::log(2.0))};
  const std::vector<float> compressed{0.0f, 0.0f};
  const double want =
      (1.0 / 3.0) * std::log((1.0 / 3.0) / 0.5) + (2.0 / 3.0) * std::log((2.0 / 3.0) / 0.5);
  EXPECT_NEAR(kl_divergence(full, compressed), want, 1e-7);  // ln 2 rounded to fp32
}

TEST(KlDivergence, IsZeroForEqualRowsAndShiftInvariant) {
  const std::vector<float> a{1.0f, -2.0f, 0.5f, 3.0f};
  std::vector<float> shifted = a;
  for (float& x : shifted) x += 1000.0f;  // large logits must not overflow the double softmax
  EXPECT_EQ(kl_divergence(a, a), 0.0);
  EXPECT_NEAR(kl_divergence(a, shifted), 0.0, 1e-9);
}

TEST(KlDivergence, KeepsSmallDifferencesThatFp32WouldLose) {
  std::vector<float> p(49152, 0.0f), q(49152, 0.0f);
  p[0] = 10.0f;
  q[0] = 10.0f + 1e-3f;
  const double kl = kl_divergence(p, q);
  EXPECT_GT(kl, 0.0);
  EXPECT_LT(kl, 1e-6);
}

TEST(NegativeLogLikelihood, IsMinusLogSoftmax) {
  const std::vector<float> logits{0.0f, static_cast<float>(std::log(3.0))};  // (1/4, 3/4)
  EXPECT_NEAR(negative_log_likelihood(logits, 1), -std::log(0.75), 1e-7);
  EXPECT_NEAR(negative_log_likelihood(logits, 0), std::log(4.0), 1e-7);
  EXPECT_THROW(negative_log_likelihood(logits, 2), std::out_of_range);
}

TEST(Argmax, TakesTheFirstOfEqualMaxima) {
  EXPECT_EQ(argmax(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}), 1);
}

TEST(Percentile, InterpolatesLinearlyLikeNumpy) {
  const std::vector<double> v{4.0, 1.0, 3.0, 2.0};
  EXPECT_DOUBLE_EQ(percentile(v, 50.0), 2.5);
  EXPECT_DOUBLE_EQ(percentile(v, 99.0), 3.97);  // numpy.percentile([1, 2, 3, 4], 99)
  EXPECT_DOUBLE_EQ(percentile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 100.0), 4.0);
  EXPECT_DOUBLE_EQ(median({5.0, 1.0, 3.0}), 3.0);
  EXPECT_TRUE(std::isnan(percentile({}, 50.0)));
}

TEST(Summarize, SkipsNanAndUsesTheSampleDeviation) {
  const std::vector<double> v{1.0, std::numeric_limits<double>::quiet_NaN(), 3.0};
  const Summary s = summarize(v);
  EXPECT_EQ(s.count, 2);
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.std, std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(s.min, 1.0);
  EXPECT_DOUBLE_EQ(s.max, 3.0);
  EXPECT_EQ(summarize(std::vector<double>{7.0}).std, 0.0);
}

TEST(AverageRanks, TiesShareTheMeanRank) {
  const std::vector<double> ranks = average_ranks(std::vector<double>{10.0, 20.0, 20.0, 5.0, 20.0});
  EXPECT_EQ(ranks, (std::vector<double>{2.0, 4.0, 4.0, 1.0, 4.0}));
}

TEST(Spearman, MatchesAHandExampleWithTies) {
  // Ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): rho = 4.5 / sqrt(4.5 * 5) (= scipy.stats.spearmanr).
  const double rho = spearman(std::vector<double>{1, 2, 2, 3}, std::vector<double>{1, 3, 2, 4});
  EXPECT_NEAR(rho, 4.5 / std::sqrt(22.5), 1e-12);
  EXPECT_NEAR(rho, 0.9486832980505138, 1e-12);
}

TEST(Spearman, IsOneForMonotoneAndNanForConstant) {
  EXPECT_NEAR(spearman(std::vector<double>{1, 2, 3}, std::vector<double>{10, 100, 1000}), 1.0,
              1e-12);
  EXPECT_NEAR(spearman(std::vector<double>{1, 2, 3}, std::vector<double>{3, 2, 1}), -1.0, 1e-12);
  EXPECT_TRUE(std::isnan(spearman(std::vector<double>{1, 1, 1}, std::vector<double>{1, 2, 3})));
}

TEST(CompareContinuations, CountsAgreementAndThePerplexityRatio) {
  RowMatrixXf full(2, 2), compressed(2, 2);
  full << 0.0f, 1.0f, 2.0f, 0.0f;
  compressed << 0.0f, 1.0f, 0.0f, 2.0f;  // same first row, argmax flipped in the second
  const std::vector<TokenId> targets{1, 0};
  const ContinuationComparison c = compare_continuations(full, compressed, targets);
  EXPECT_DOUBLE_EQ(c.top1, 0.5);
  EXPECT_EQ(c.kl[0], 0.0);
  EXPECT_GT(c.kl[1], 0.0);
  EXPECT_NEAR(c.kl_mean, c.kl[1] / 2.0, 1e-15);
  const double nll_full = (negative_log_likelihood(std::vector<float>{0, 1}, 1) +
                           negative_log_likelihood(std::vector<float>{2, 0}, 0)) /
                          2.0;
  const double nll_comp = (negative_log_likelihood(std::vector<float>{0, 1}, 1) +
                           negative_log_likelihood(std::vector<float>{0, 2}, 0)) /
                          2.0;
  EXPECT_NEAR(c.ppl_ratio, std::exp(nll_comp - nll_full), 1e-12);
}

}  // namespace
}  // namespace capkv::llm::eval
