#include <gtest/gtest.h>

#include <numeric>

#include "capkv/core/budget.hpp"
#include "capkv/core/layer_budgets.hpp"

namespace capkv {
namespace {

TEST(Budget, ThreeSpellingsMeanWhatTheySay) {
  EXPECT_EQ(Budget::tokens(100).resolve(1000), 100);
  EXPECT_EQ(Budget::keep_fraction(0.25).resolve(1000), 250);
  // kvpress: compression_ratio is the fraction removed; keep floor(n * (1 - r)).
  EXPECT_EQ(Budget::compression_ratio(0.25).resolve(1000), 750);
  EXPECT_EQ(Budget::compression_ratio(0.3).resolve(1001), 700);  // floor(700.7)
  EXPECT_EQ(Budget::keep_fraction(0.3).rounded_up().resolve(1001), 301);  // ceil(300.3)
}

TEST(Budget, RepresentationErrorDoesNotLoseAToken) {
  // 0.1 * 30 is 3.0000000000000004 and 0.7 * 10 is 7.000000000000001 in binary; both are exact
  // budgets and neither rounding mode may move them.
  EXPECT_EQ(Budget::keep_fraction(0.1).resolve(30), 3);
  EXPECT_EQ(Budget::keep_fraction(0.1).rounded_up().resolve(30), 3);
  EXPECT_EQ(Budget::keep_fraction(0.7).rounded_up().resolve(10), 7);
  EXPECT_EQ(Budget::compression_ratio(0.75).resolve(1024), 256);
}

TEST(Budget, NeverMoreThanTheCache) {
  EXPECT_EQ(Budget::tokens(5000).resolve(1000), 1000);
  EXPECT_EQ(Budget::keep_fraction(1.0).resolve(7), 7);
  EXPECT_EQ(Budget::compression_ratio(0.0).resolve(7), 7);
  EXPECT_EQ(Budget::compression_ratio(1.0).resolve(7), 0);
}

TEST(Budget, RejectsImpossibleValuesNamingTheBudget) {
  for (auto make : {+[] { Budget::tokens(-1); }, +[] { Budget::keep_fraction(1.5); },
                    +[] { Budget::keep_fraction(-0.1); }, +[] { Budget::compression_ratio(2.0); }}) {
    try {
      make();
      FAIL() << "accepted an impossible budget";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "budget");
    }
  }
}

TEST(PyramidBudgets, LinearDecreasingWithTheUniformMean) {
  for (std::int64_t layers : {2, 7, 30}) {
    for (std::int64_t mean : {0, 1, 64, 257}) {
      const auto b = pyramid_layer_budgets(layers, mean);
      ASSERT_EQ(static_cast<std::int64_t>(b.size()), layers);
      EXPECT_EQ(std::accumulate(b.begin(), b.end(), std::int64_t{0}), layers * mean);
      for (std::size_t l = 1; l < b.size(); ++l) EXPECT_LE(b[l], b[l - 1]);
      // The ends are mean/beta and 2*mean - mean/beta, up to one token of rounding.
      EXPECT_NEAR(static_cast<double>(b.back()), mean / 20.0, 1.0);
      EXPECT_NEAR(static_cast<double>(b.front()), 2.0 * mean - mean / 20.0, 1.0);
      // Consecutive steps differ by at most one token from the exact slope.
      const double slope = (2.0 * mean - 2.0 * mean / 20.0) / static_cast<double>(layers - 1);
      for (std::size_t l = 1; l < b.size(); ++l) EXPECT_NEAR(b[l - 1] - b[l], slope, 1.0 + 1e-9);
    }
  }
  EXPECT_EQ(pyramid_layer_budgets(1, 10), std::vector<std::int64_t>{10});
  EXPECT_THROW(pyramid_layer_budgets(0, 10), Error);
  EXPECT_THROW(pyramid_layer_budgets(4, 10, 0.5), Error);
}

}  // namespace
}  // namespace capkv
