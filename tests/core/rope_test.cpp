#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "capkv/core/rope.hpp"
#include "capkv/policies/streaming_llm.hpp"

namespace capkv {
namespace {

std::vector<double> random_vector(std::int64_t d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> x(d);
  for (auto& v : x) v = normal(rng);
  return x;
}

// RoPE written the obvious way, as the d x d block-diagonal matrix applied to x.
std::vector<double> reference_rotate(const std::vector<double>& x, double p, double theta, RopeLayout layout) {
  const auto d = static_cast<std::int64_t>(x.size());
  std::vector<double> y(x.size());
  for (std::int64_t j = 0; j < d / 2; ++j) {
    const double angle = p / std::pow(theta, 2.0 * j / d);
    const std::int64_t a = layout == RopeLayout::kHalf ? j : 2 * j;
    const std::int64_t b = layout == RopeLayout::kHalf ? j + d / 2 : 2 * j + 1;
    y[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
    y[b] = x[a] * std::sin(angle) + x[b] * std::cos(angle);
  }
  return y;
}

class RopeLayouts : public testing::TestWithParam<RopeLayout> {};

TEST_P(RopeLayouts, RotateMatchesTheBlockDiagonalMatrix) {
  const Rope rope{100000.0, GetParam()};
  for (double p : {0.0, 1.0, 17.0, 4095.0, 131071.0}) {
    auto x = random_vector(64, 3);
    const auto want = reference_rotate(x, p, rope.theta, rope.layout);
    rope.rotate(x.data(), 64, p);
    // Angles of 1e5 radians carry ~1e-11 of rounding in either evaluation order.
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], want[i], 1e-15 * (1.0 + p));
  }
}

TEST_P(RopeLayouts, AveragedRotationIsTheMeanOfRotations) {
  const Rope rope{10000.0, GetParam()};
  const auto x = random_vector(32, 5);
  std::vector<double> mean(32, 0.0);
  const std::int64_t first = 1000, count = 512;
  for (std::int64_t p = first; p < first + count; ++p) {
    const auto y = reference_rotate(x, static_cast<double>(p), rope.theta, rope.layout);
    for (std::size_t i = 0; i < y.size(); ++i) mean[i] += y[i] / count;
  }
  auto got = x;
  rope.rotate_averaged(got.data(), 32, first, count);
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], mean[i], 1e-12);
}

TEST_P(RopeLayouts, RerotationEqualsRotatingThePreRopeKeyAtTheNewPosition) {
  const Rope rope{10000.0, GetParam()};
  const auto pre = random_vector(64, 8);
  for (auto [from, to] : {std::pair{100.0, 7.0}, std::pair{5.0, 5000.0}, std::pair{3.0, 3.0}}) {
    auto key = reference_rotate(pre, from, rope.theta, rope.layout);
    rope.rotate(key.data(), 64, to - from);
    const auto want = reference_rotate(pre, to, rope.theta, rope.layout);
    for (std::size_t i = 0; i < key.size(); ++i) EXPECT_NEAR(key[i], want[i], 1e-9);
  }
}

TEST_P(RopeLayouts, RerotateKeptKeysMakesPositionsContiguous) {
  const Rope rope{10000.0, GetParam()};
  const std::int64_t heads = 2, d = 8;
  Selection sel;
  sel.n_tokens = 50;
  sel.indices = {0, 1, 30, 49, 2, 3, 40, 41};
  sel.offsets = {0, 4, 8};
  std::vector<float> compacted(4 * heads * d);
  std::vector<std::vector<double>> pre;
  const MutableTensorView view(compacted.data(), DType::kF32, Layout::kTokensHeadsDim, 4, heads, d);
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < 4; ++j) {
      pre.push_back(random_vector(d, static_cast<unsigned>(10 * h + j)));
      const auto cached = reference_rotate(pre.back(), sel.head(h)[j], rope.theta, rope.layout);
      for (std::int64_t i = 0; i < d; ++i) view.store(j, h, i, static_cast<float>(cached[i]));
    }
  rerotate_kept_keys(view, sel, rope);
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < 4; ++j) {
      const auto want = reference_rotate(pre[h * 4 + j], static_cast<double>(j), rope.theta, rope.layout);
      for (std::int64_t i = 0; i < d; ++i) EXPECT_NEAR(view.at(j, h, i), want[i], 1e-5);
    }
}

INSTANTIATE_TEST_SUITE_P(Both, RopeLayouts, testing::Values(RopeLayout::kHalf, RopeLayout::kInterleaved));

TEST(Rope, OddHeadDimIsAnError) {
  std::vector<float> x(5);
  EXPECT_THROW(Rope{}.rotate(x.data(), 5, 1.0), Error);
}

}  // namespace
}  // namespace capkv
