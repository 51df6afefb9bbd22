#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "capkv/capkv.hpp"

namespace capkv {
namespace {

// select() refuses bad layer inputs before scoring, naming the argument. Policy-specific bad input
// (NaN in the tensors a policy reads, too few window queries) is tested with each policy.
class SelectBadInput : public testing::Test {
 protected:
  static constexpr std::int64_t n = 12, heads = 2, d = 4;
  std::vector<float> keys = std::vector<float>(n * heads * d, 0.5f);
  std::vector<float> values = std::vector<float>(n * heads * d, 0.25f);
  std::vector<float> queries = std::vector<float>(3 * 6 * d, 0.1f);

  LayerInputs inputs() {
    LayerInputs in;
    in.keys = {keys.data(), DType::kF32, Layout::kTokensHeadsDim, n, heads, d};
    in.values = {values.data(), DType::kF32, Layout::kTokensHeadsDim, n, heads, d};
    in.queries = TensorView(queries.data(), DType::kF32, Layout::kTokensHeadsDim, 3, 6, d);
    return in;
  }

  template <class Call>
  static void expect_error(Call call, const std::string& argument) {
    try {
      call();
      FAIL() << "expected an error naming " << argument;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
  }
};

TEST_F(SelectBadInput, EmptyCacheWithANonzeroBudget) {
  LayerInputs in = inputs();
  in.keys = {nullptr, DType::kF32, Layout::kTokensHeadsDim, 0, heads, d};
  in.values = in.keys;
  expect_error([&] { select(L2Norm{}, in, Budget::tokens(3)); }, "budget");
  expect_error([&] { select(L2Norm{}, in, Budget::keep_fraction(0.5)); }, "budget");
  const Selection empty = select(L2Norm{}, in, Budget::tokens(0));
  EXPECT_EQ(empty.total_kept(), 0);
  EXPECT_EQ(empty.n_kv_heads(), heads);
}

TEST_F(SelectBadInput, BudgetBelowTheProtectedSet) {
  expect_error([&] { select(StreamingLLM{}, inputs(), Budget::tokens(3)); }, "budget");
  expect_error([&] { select(SnapKV::paper(), inputs(), Budget::tokens(5)); }, "budget");
}

TEST_F(SelectBadInput, QueryHeadsNotAMultipleOfKvHeads) {
  LayerInputs in = inputs();
  in.queries = TensorView(queries.data(), DType::kF32, Layout::kTokensHeadsDim, 3, 5, d);
  expect_error([&] { select(CapKV{}, in, Budget::tokens(6)); }, "queries");
}

TEST_F(SelectBadInput, ShapesThatDoNotFit) {
  LayerInputs in = inputs();
  in.values = {values.data(), DType::kF32, Layout::kTokensHeadsDim, n - 1, heads, d};
  expect_error([&] { select(CapKV{}, in, Budget::tokens(6)); }, "values");
  in = inputs();
  in.queries = TensorView(queries.data(), DType::kF32, Layout::kTokensHeadsDim, 3, 6, d).with_extent(10);
  expect_error([&] { select(CapKV{}, in, Budget::tokens(6)); }, "queries");
  in = inputs();
  in.keys = TensorView(keys.data(), DType::kF32, n, heads, d, Strides{4, 4, 1});
  expect_error([&] { select(L2Norm{}, in, Budget::tokens(6)); }, "keys");
  in = inputs();
  in.queries.reset();
  expect_error([&] { select(H2O{}, in, Budget::tokens(6)); }, "queries");
  expect_error([&] { select(CapKV::kvpress(), inputs(), Budget::tokens(6)); }, "queries_pre_rope");
}

TEST_F(SelectBadInput, NanInKeysForEveryPolicyEvenPositionalOnes) {
  keys[5 * heads * d + d + 2] = NAN;  // token 5, head 1
  expect_error([&] { select(StreamingLLM{}, inputs(), Budget::tokens(6)); }, "keys");
  expect_error([&] { select(RandomPolicy{}, inputs(), Budget::tokens(6)); }, "keys");
  expect_error([&] { select(L2Norm{}, inputs(), Budget::tokens(6)); }, "keys");
  expect_error([&] { select(CapKV{}, inputs(), Budget::tokens(6)); }, "keys");
}

}  // namespace
}  // namespace capkv
