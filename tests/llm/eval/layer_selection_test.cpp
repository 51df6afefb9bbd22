#include "eval/layer_selection.hpp"

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <vector>

#include "eval/policy_set.hpp"

namespace capkv::llm::eval {
namespace {

// A random layer: keys, values, post- and pre-RoPE queries as packed [n, heads, d] fp32 buffers.
struct RandomLayer {
  static constexpr std::int64_t n = 256, kv_heads = 3, q_heads = 9, d = 16;
  std::vector<float> keys, values, queries, queries_pre;
  RandomLayer() {
    std::srand(7);
    auto fill = [](std::vector<float>& v, std::int64_t size) {
      const Eigen::VectorXf r = Eigen::VectorXf::Random(size);
      v.assign(r.data(), r.data() + size);
    };
    fill(keys, n * kv_heads * d);
    fill(values, n * kv_heads * d);
    fill(queries, n * q_heads * d);
    fill(queries_pre, n * q_heads * d);
  }
  capkv::LayerInputs inputs() const {
    using capkv::DType;
    using capkv::Layout;
    capkv::LayerInputs in;
    in.keys = capkv::TensorView(keys.data(), DType::kF32, Layout::kTokensHeadsDim, n, kv_heads, d);
    in.values =
        capkv::TensorView(values.data(), DType::kF32, Layout::kTokensHeadsDim, n, kv_heads, d);
    in.queries =
        capkv::TensorView(queries.data(), DType::kF32, Layout::kTokensHeadsDim, n, q_heads, d);
    in.queries_pre_rope =
        capkv::TensorView(queries_pre.data(), DType::kF32, Layout::kTokensHeadsDim, n, q_heads, d);
    in.rope = capkv::Rope{100000.0, capkv::RopeLayout::kHalf};
    in.layer = 3;
    return in;
  }
};

// Scoring once and selecting every budget from the same scores must give exactly what
// capkv::select gives at each budget, for every evaluated policy.
TEST(SelectAtBudgets, EqualsSelectAtEveryBudgetForEveryPolicy) {
  const RandomLayer layer;
  const capkv::LayerInputs in = layer.inputs();
  const std::vector<capkv::Budget> budgets{capkv::Budget::keep_fraction(0.25),
                                           capkv::Budget::keep_fraction(0.5),
                                           capkv::Budget::keep_fraction(0.75)};
  for (const PolicyEntry& entry : make_policies("all", 11)) {
    const LayerSelections got = select_at_budgets(entry.policy, in, budgets);
    ASSERT_EQ(got.by_budget.size(), budgets.size());
    EXPECT_EQ(got.scores.rows(), RandomLayer::kv_heads) << entry.name;
    EXPECT_EQ(got.scores.cols(), RandomLayer::n) << entry.name;
    for (std::size_t b = 0; b < budgets.size(); ++b) {
      const capkv::Selection want =
          std::visit([&](const auto& p) { return capkv::select(p, in, budgets[b]); }, entry.policy);
      EXPECT_EQ(got.by_budget[b].indices, want.indices) << entry.name << " budget " << b;
      EXPECT_EQ(got.by_budget[b].offsets, want.offsets) << entry.name << " budget " << b;
    }
  }
}

TEST(PolicySet, ParsesNamesCaseInsensitivelyInTableOrder) {
  const auto set = make_policies("random, h2o,CAPKV", 0);
  ASSERT_EQ(set.size(), 3u);
  EXPECT_EQ(set[0].name, "CapKV");
  EXPECT_EQ(set[1].name, "H2O");
  EXPECT_EQ(set[2].name, "Random");
  EXPECT_EQ(make_policies("all", 0).size(), all_policy_names().size());
  EXPECT_THROW(make_policies("CapKV,TOVA", 0), std::invalid_argument);
}

TEST(PolicySet, RandomProtectsStreamingLLMsSinks) {
  const auto set = make_policies("Random,StreamingLLM", 0);
  const auto& random = std::get<capkv::RandomPolicy>(set[1].policy);
  const auto& streaming = std::get<capkv::StreamingLLM>(set[0].policy);
  EXPECT_EQ(random.config.sinks, streaming.config.sinks);
}

TEST(PolicySet, CapturesAllQueriesOnlyForH2O) {
  EXPECT_EQ(capture_needs(make_policies("CapKV,SnapKV", 0)).post_rope_rows, 64);
  EXPECT_FALSE(capture_needs(make_policies("CapKV,SnapKV", 0)).pre_rope);
  EXPECT_TRUE(capture_needs(make_policies("CapKV-kvpress", 0)).pre_rope);
  EXPECT_EQ(capture_needs(make_policies("H2O", 0)).post_rope_rows,
            std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(capture_needs(make_policies("L2Norm,StreamingLLM,Random", 0)).post_rope_rows, 0);
}

}  // namespace
}  // namespace capkv::llm::eval
