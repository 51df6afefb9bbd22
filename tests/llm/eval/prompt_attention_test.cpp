#include "eval/prompt_attention.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace capkv::llm::eval {
namespace {

capkv::Selection keep(std::int64_t n, std::vector<std::vector<std::int32_t>> heads) {
  capkv::Selection s;
  s.n_tokens = n;
  s.offsets = {0};
  for (const auto& h : heads) {
    s.indices.insert(s.indices.end(), h.begin(), h.end());
    s.offsets.push_back(static_cast<std::int64_t>(s.indices.size()));
  }
  return s;
}

// One KV head, d = 2: keys 0, e1, e2 and a query whose scaled scores are (0, ln 2, ln 4), so the
// attention is (1, 2, 4) / 7; values e1, e2, e1 + e2.
struct HandCache {
  RowMatrixXf keys{{0.0f, 0.0f}, {1.0f, 0.0f}, {0.0f, 1.0f}};
  RowMatrixXf values{{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 1.0f}};
  RowMatrixXf queries;
  HandCache(std::int64_t query_heads = 1) : queries(1, 2 * query_heads) {
    const float s = static_cast<float>(std::sqrt(2.0));
    for (std::int64_t h = 0; h < query_heads; ++h) {
      queries(0, 2 * h) = s * static_cast<float>(std::log(2.0));
      queries(0, 2 * h + 1) = s * static_cast<float>(std::log(4.0));
    }
  }
  PromptAttention attention() const {
    const std::vector<ConstRowMap> k{ConstRowMap(keys.data(), 3, 2)};
    const std::vector<ConstRowMap> v{ConstRowMap(values.data(), 3, 2)};
    return PromptAttention(queries, k, v);
  }
};

TEST(PromptAttention, SoftmaxOverThePrompt) {
  const HandCache cache;
  const PromptAttention a = cache.attention();
  const RowMatrixXf& p = a.probabilities(0);
  EXPECT_NEAR(p(0, 0), 1.0 / 7.0, 1e-6);
  EXPECT_NEAR(p(0, 1), 2.0 / 7.0, 1e-6);
  EXPECT_NEAR(p(0, 2), 4.0 / 7.0, 1e-6);
}

TEST(PromptAttention, RecallAndOutputErrorOfAHandSelection) {
  const HandCache cache;
  const auto f = cache.attention().fidelity(keep(3, {{0, 2}}));
  // Kept mass 5/7. o_full = (5, 6)/7; o_kept = ((1, 0) + 4 (1, 1)) / 5 = (1, 4/5);
  // |o_full - o_kept| = sqrt(104)/35, |o_full| = sqrt(61)/7.
  EXPECT_NEAR(f.recall, 5.0 / 7.0, 1e-6);
  EXPECT_NEAR(f.output_error, std::sqrt(104.0) / (5.0 * std::sqrt(61.0)), 1e-6);
}

TEST(PromptAttention, KeepingEverythingIsExact) {
  const HandCache cache;
  const auto f = cache.attention().fidelity(keep(3, {{0, 1, 2}}));
  EXPECT_NEAR(f.recall, 1.0, 1e-6);
  EXPECT_NEAR(f.output_error, 0.0, 1e-6);
}

TEST(PromptAttention, ReceivedMassSumsTheGroupsQueryHeads) {
  const HandCache cache(/*query_heads=*/2);
  const PromptAttention a = cache.attention();
  ASSERT_EQ(a.n_query_heads(), 2);
  const Eigen::VectorXd mass = a.received_mass(0);
  EXPECT_NEAR(mass[0], 2.0 / 7.0, 1e-6);
  EXPECT_NEAR(mass[1], 4.0 / 7.0, 1e-6);
  EXPECT_NEAR(mass[2], 8.0 / 7.0, 1e-6);
}

TEST(PromptAttention, RejectsASelectionOfAnotherCache) {
  const HandCache cache;
  EXPECT_THROW(cache.attention().fidelity(keep(4, {{0}})), std::invalid_argument);
}

}  // namespace
}  // namespace capkv::llm::eval
