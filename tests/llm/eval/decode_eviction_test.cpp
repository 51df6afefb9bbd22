#include "eval/decode_eviction.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace capkv::llm::eval {
namespace {

// Drives an eviction observer the way LlamaModel::forward does for one layer: on_layer sees the
// cache before the step's K/V are appended.
struct OneLayerSteps {
  LayerCache cache{/*n_kv_heads=*/1, /*head_dim=*/2, /*capacity=*/32};
  std::int64_t next = 0;

  void append(std::int64_t count) {
    for (std::int64_t i = 0; i < count; ++i) append_one(nullptr);
  }
  void append_one(ForwardObserver* observer) {
    RowMatrixXf q{{1.0f, static_cast<float>(next)}};
    RowMatrixXf k{{static_cast<float>(next), 1.0f}};
    RowMatrixXf v = k;
    const std::vector<std::int64_t> pos{next};
    if (observer) observer->on_layer({0, pos, q, q, k, k, v}, cache);
    cache.append(k, v, pos);
    ++next;
  }
  std::vector<std::int64_t> positions() const {
    const auto p = cache.positions(0);
    return {p.begin(), p.end()};
  }
};

TEST(StreamingDecodeEviction, KeepsTheSinksAndTheMostRecent) {
  OneLayerSteps steps;
  steps.append(5);  // the prompt, already at the budget
  StreamingDecodeEviction eviction(/*n_layers=*/1, /*budget=*/5, /*sinks=*/2);
  steps.append_one(&eviction);  // attends over 6, marks slot 2 (position 2)
  EXPECT_EQ(steps.positions(), (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5}));
  steps.append_one(&eviction);
  EXPECT_EQ(steps.positions(), (std::vector<std::int64_t>{0, 1, 3, 4, 5, 6}));
  steps.append_one(&eviction);
  EXPECT_EQ(steps.positions(), (std::vector<std::int64_t>{0, 1, 4, 5, 6, 7}));
}

TEST(StepAttention, IsTheSoftmaxOverTheCacheThenTheNewKey) {
  OneLayerSteps steps;
  steps.append(2);  // keys (0, 1), (1, 1)
  RowMatrixXf q{{1.0f, 0.0f}};
  RowMatrixXf k{{2.0f, 1.0f}};
  const std::vector<std::int64_t> pos{2};
  const LayerActivations a{0, pos, q, q, k, k, k};
  const RowMatrixXf p = step_attention(a, steps.cache, /*group=*/1);
  ASSERT_EQ(p.rows(), 1);
  ASSERT_EQ(p.cols(), 3);
  // Scores q.k / sqrt(2) = (0, 1, 2) / sqrt(2).
  const double s = 1.0 / std::sqrt(2.0);
  const double z = 1.0 + std::exp(s) + std::exp(2 * s);
  EXPECT_NEAR(p(0, 0), 1.0 / z, 1e-6);
  EXPECT_NEAR(p(0, 1), std::exp(s) / z, 1e-6);
  EXPECT_NEAR(p(0, 2), std::exp(2 * s) / z, 1e-6);
}

TEST(H2ODecodeEviction, EvictsTheLowestAccumulatorOutsideTheRecentWindow) {
  OneLayerSteps steps;
  steps.append(6);
  // Prefill H2O on the 6-token prompt with budget 4 (2 heavy hitters + 2 recent), then retain.
  std::vector<float> queries;
  for (std::int64_t t = 0; t < 6; ++t) {
    queries.push_back(1.0f);
    queries.push_back(static_cast<float>(t));
  }
  capkv::LayerInputs in;
  in.keys = steps.cache.keys_view();
  in.values = steps.cache.values_view();
  in.queries = capkv::TensorView(queries.data(), capkv::DType::kF32, capkv::Layout::kTokensHeadsDim,
                                 6, 1, 2);
  capkv::cpu::H2OState state(capkv::H2O::paper(), 4);
  steps.cache.retain(state.prefill(in));
  H2ODecodeEviction eviction(std::vector<capkv::cpu::H2OState>{state});
  // A second state fed by hand with the attention the model would compute: after every step the
  // cache must hold exactly the mirror's tokens plus the step's own (evicted at the next step).
  capkv::cpu::H2OState mirror = state;
  for (int step = 0; step < 6; ++step) {
    const std::int64_t pos = steps.next;
    const auto held = mirror.positions(0);
    std::vector<std::int64_t> expected(held.begin(), held.end());
    RowMatrixXf rows(1, static_cast<Eigen::Index>(expected.size() + 1));
    for (std::size_t j = 0; j < expected.size(); ++j) {  // q = (1, pos), k_p = (p, 1)
      rows(0, static_cast<Eigen::Index>(j)) =
          static_cast<float>(expected[j] + pos) / std::sqrt(2.0f);
    }
    rows(0, static_cast<Eigen::Index>(expected.size())) =
        static_cast<float>(2 * pos) / std::sqrt(2.0f);
    rows = (rows.array() - rows.maxCoeff()).exp();
    rows /= rows.sum();
    expected.push_back(pos);

    steps.append_one(&eviction);
    EXPECT_EQ(steps.positions(), expected) << "step " << step;
    mirror.observe(rows);
  }
}

}  // namespace
}  // namespace capkv::llm::eval
