// The shared top-B digit logic (include/capkv/device/radix_select.hpp) on the CPU: the key order is
// ranks_before's order, and a radix select assembled from the shared pieces exactly as the CUDA
// kernel assembles them picks the same tokens as capkv::select_from_scores, ties included.

#include "capkv/device/radix_select.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "capkv/core/select.hpp"

namespace {

namespace dev = capkv::device;

std::vector<float> interesting_floats() {
  const float inf = std::numeric_limits<float>::infinity();
  return {-inf,
          -3.0e38f,
          -1.0f,
          -1.0e-30f,
          -std::numeric_limits<float>::denorm_min(),
          -0.0f,
          0.0f,
          std::numeric_limits<float>::denorm_min(),
          1.0e-38f,
          0.5f,
          1.0f,
          1.0000001f,
          3.0e38f,
          inf};
}

TEST(RadixKey, OrderKeyIsMonotoneAndTiesZeros) {
  const auto v = interesting_floats();
  for (float a : v) {
    for (float b : v) {
      EXPECT_EQ(a > b, dev::order_key(a) > dev::order_key(b)) << a << " vs " << b;
      EXPECT_EQ(a == b, dev::order_key(a) == dev::order_key(b)) << a << " vs " << b;
    }
    if (a != 0.0f) {
      EXPECT_EQ(dev::from_order_key(dev::order_key(a)), a);
    }
  }
  EXPECT_EQ(dev::order_key(-0.0f), dev::order_key(0.0f));
}

TEST(RadixKey, SelectionKeyIsRanksBefore) {
  const auto v = interesting_floats();
  const std::int32_t indices[] = {0, 1, 2, 77, 1 << 20, std::numeric_limits<std::int32_t>::max()};
  for (float a : v) {
    for (float b : v) {
      for (auto i : indices) {
        for (auto j : indices) {
          if (i == j) continue;
          EXPECT_EQ(capkv::ranks_before(a, i, b, j),
                    dev::selection_key(a, i) > dev::selection_key(b, j));
        }
      }
    }
  }
}

TEST(RadixKey, DigitsReassembleTheKey) {
  const std::uint64_t key = 0x0123456789abcdefull;
  std::uint64_t rebuilt = 0;
  for (int p = 0; p < dev::kRadixPasses; ++p) {
    rebuilt = (rebuilt << dev::kRadixBits) | static_cast<std::uint64_t>(dev::radix_digit(key, p));
    EXPECT_TRUE(dev::radix_in_play(key, rebuilt >> dev::kRadixBits, p));
    EXPECT_FALSE(p > 0 && dev::radix_in_play(key, (rebuilt >> dev::kRadixBits) ^ 1u, p));
  }
  EXPECT_EQ(rebuilt, key);
}

TEST(RadixBucket, FindsTheBucketOfTheKthLargest) {
  std::vector<std::uint32_t> hist(dev::kRadixBuckets, 0);
  hist[255] = 2;
  hist[200] = 3;
  hist[7] = 1;
  hist[0] = 4;
  struct Case {
    std::uint32_t k;
    int bucket;
    std::uint32_t rank;
  };
  for (const Case& c : {Case{1, 255, 1}, Case{2, 255, 2}, Case{3, 200, 1}, Case{5, 200, 3},
                        Case{6, 7, 1}, Case{7, 0, 1}, Case{10, 0, 4}}) {
    const auto found = dev::find_kth_bucket(hist.data(), c.k);
    EXPECT_EQ(found.bucket, c.bucket) << "k " << c.k;
    EXPECT_EQ(found.rank, c.rank) << "k " << c.k;
    EXPECT_EQ(found.count, hist[c.bucket]);
    // The parallel form: exactly one bucket claims the k-th.
    int claims = 0;
    std::uint32_t above = 0;
    for (int b = dev::kRadixBuckets - 1; b >= 0; --b) {
      if (dev::holds_kth(above, hist[b], c.k)) {
        ++claims;
        EXPECT_EQ(b, c.bucket);
      }
      above += hist[b];
    }
    EXPECT_EQ(claims, 1);
  }
}

// The kernel's algorithm on the host: plan, up to eight histogram passes over the candidates still
// in play, then the write pass in ascending token order.
std::vector<std::int32_t> radix_top_b(const std::vector<float>& scores, std::int64_t budget,
                                      const dev::ProtectedRange& protection,
                                      int* passes = nullptr) {
  const auto n = static_cast<std::int64_t>(scores.size());
  const dev::TopBPlan plan = dev::plan_top_b(n, budget, protection);
  dev::Threshold threshold = plan.trivial;
  int used = 0;
  if (plan.needs_search) {
    std::uint64_t prefix = 0;
    auto k = static_cast<std::uint32_t>(plan.free_slots);
    for (int pass = 0; pass < dev::kRadixPasses; ++pass) {
      std::vector<std::uint32_t> hist(dev::kRadixBuckets, 0);
      for (std::int64_t i = 0; i < n; ++i) {
        if (protection.contains(i, n)) continue;
        const std::uint64_t key = dev::selection_key(scores[i], static_cast<std::int32_t>(i));
        if (dev::radix_in_play(key, prefix, pass)) ++hist[dev::radix_digit(key, pass)];
      }
      ++used;
      if (dev::radix_step(dev::find_kth_bucket(hist.data(), k), pass, prefix, k, threshold)) break;
    }
  }
  if (passes) *passes = used;
  std::vector<std::int32_t> kept;
  for (std::int64_t i = 0; i < n; ++i) {
    if (dev::keeps_token(i, n, scores[i], protection, threshold))
      kept.push_back(static_cast<std::int32_t>(i));
  }
  return kept;
}

std::vector<std::int32_t> library_top_b(const std::vector<float>& scores, std::int64_t budget,
                                        const dev::ProtectedRange& protection) {
  capkv::ScoreMatrix m(1, static_cast<Eigen::Index>(scores.size()));
  for (std::size_t i = 0; i < scores.size(); ++i) m(0, static_cast<Eigen::Index>(i)) = scores[i];
  const capkv::Selection sel = capkv::select_from_scores(m, {protection.sinks, protection.window},
                                                         budget, capkv::HeadBudgets::uniform());
  const auto head = sel.head(0);
  return {head.begin(), head.end()};
}

enum class Kind { kGaussian, kFewValues, kAllEqual, kSignedZeros, kHugeRange };

std::vector<float> make_scores(Kind kind, std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> few(0, 3);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (auto& x : s) {
    switch (kind) {
      case Kind::kGaussian:
        x = normal(rng);
        break;
      case Kind::kFewValues:
        x = 0.25f * static_cast<float>(few(rng));
        break;
      case Kind::kAllEqual:
        x = 1.5f;
        break;
      case Kind::kSignedZeros:
        x = few(rng) % 2 ? 0.0f : -0.0f;
        break;
      case Kind::kHugeRange:
        x = std::ldexp(normal(rng), few(rng) * 40 - 60);
        break;
    }
  }
  return s;
}

TEST(RadixTopB, MatchesSelectFromScores) {
  const Kind kinds[] = {Kind::kGaussian, Kind::kFewValues, Kind::kAllEqual, Kind::kSignedZeros,
                        Kind::kHugeRange};
  const dev::ProtectedRange protections[] = {{0, 0}, {4, 0}, {0, 7}, {4, 16}, {3, 3}};
  int cases = 0;
  for (Kind kind : kinds) {
    for (std::int64_t n : {1, 2, 5, 37, 256, 1000, 4099}) {
      for (const auto& protection : protections) {
        const std::int64_t protected_count = protection.count(n);
        for (std::int64_t budget : {std::int64_t{0}, protected_count, protected_count + 1, n / 3,
                                    n / 2, n - 1, n, n + 5}) {
          if (budget < protected_count && budget < n) continue;  // refused before selection
          const auto scores = make_scores(kind, n, static_cast<std::uint64_t>(n * 31 + budget));
          ASSERT_EQ(radix_top_b(scores, budget, protection),
                    library_top_b(scores, budget, protection))
              << "kind " << static_cast<int>(kind) << " n " << n << " budget " << budget
              << " sinks " << protection.sinks << " window " << protection.window;
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 500);
}

TEST(RadixTopB, DistinctScoresNeedOnlyTheScoreDigits) {
  // With all scores distinct the index digits are never consulted: the search ends by the fourth
  // pass, usually sooner once a bucket holds exactly what is still needed.
  const auto scores = make_scores(Kind::kGaussian, 5000, 11);
  int passes = 0;
  radix_top_b(scores, 1234, {}, &passes);
  EXPECT_LE(passes, 4);
  // All equal: the score digits leave everything in play and the index digits decide.
  const auto flat = make_scores(Kind::kAllEqual, 5000, 11);
  const auto kept = radix_top_b(flat, 1234, {}, &passes);
  EXPECT_GT(passes, 4);
  ASSERT_EQ(kept.size(), 1234u);
  EXPECT_EQ(kept.front(), 5000 - 1234);  // ties go to the most recent tokens
}

TEST(RadixTopB, PlanCoversTheEdges) {
  const dev::ProtectedRange p{4, 2};
  EXPECT_EQ(dev::plan_top_b(3, 2, p).trivial.mode, dev::ThresholdMode::kKeepNone);  // protects 3
  EXPECT_EQ(dev::plan_top_b(3, 3, p).trivial.mode, dev::ThresholdMode::kKeepAll);
  EXPECT_EQ(dev::plan_top_b(10, 6, p).trivial.mode, dev::ThresholdMode::kKeepNone);
  EXPECT_TRUE(dev::plan_top_b(10, 7, p).needs_search);
  EXPECT_EQ(dev::plan_top_b(10, 7, p).free_slots, 1);
  EXPECT_EQ(dev::plan_top_b(0, 0, p).candidates, 0);
}

}  // namespace
