// Bad input through every policy: a NaN or an infinity in a tensor the policy reads is a
// capkv::Error naming that tensor; query heads that are not a multiple of the KV heads, too few
// queries for SnapKV's window, and a budget below the protected set are errors naming the
// argument. In every case the caller's buffers are left exactly as they were.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/capkv_presets.hpp"
#include "support/random_cache.hpp"

namespace capkv_test {
namespace {

// The argument named by the capkv::Error `f` throws, or a marker when it throws nothing.
template <class F>
std::string error_argument(F&& f) {
  try {
    f();
  } catch (const capkv::Error& e) {
    return e.argument();
  }
  return "(no error)";
}

using Select = std::function<capkv::Selection(const capkv::LayerInputs&, std::int64_t budget)>;

template <class P>
Select selector(P policy) {
  return [policy](const capkv::LayerInputs& in, std::int64_t budget) {
    return capkv::select(policy, in, capkv::Budget::tokens(budget));
  };
}

// One policy, the tensors it reads and which of their token rows it reads.
struct Target {
  std::string tensor;              // "keys", "values", "queries", "queries_pre_rope"
  std::vector<std::int64_t> rows;  // rows to poison, one at a time
};

struct PolicyCase {
  std::string name;
  Select select;
  bool pre_rope;  // the layer carries pre-RoPE queries and RoPE (CapKV kvpress)
  std::vector<Target> reads;
};

void PrintTo(const PolicyCase& c, std::ostream* os) { *os << c.name; }

// n = 100 tokens, m = 100 queries. Observation-window policies read the last rows; prompt-mean and
// H2O read all; the kvpress anchor reads the rows after the 4 sinks.
constexpr std::int64_t kN = 100;
constexpr std::int64_t kBudget = 70;  // above every policy's protected set (SnapKV kvpress: 64)

std::vector<PolicyCase> cases() {
  const std::vector<std::int64_t> all_rows{0, 3, 50, 99};
  const std::vector<std::int64_t> last_rows{99, 90};
  return {
      {"CapKV",
       selector(capkv::CapKV()),
       false,
       {{"keys", all_rows}, {"values", all_rows}, {"queries", last_rows}}},
      {"CapKVPaper",
       selector(capkv::CapKV::paper()),
       false,
       {{"keys", all_rows}, {"values", all_rows}, {"queries", all_rows}}},
      {"CapKVKvpress",
       selector(capkv::CapKV::kvpress()),
       true,
       {{"keys", all_rows}, {"values", all_rows}, {"queries_pre_rope", {4, 50, 99}}}},
      {"CapKVKeyLeverage", selector(capkv::CapKV::key_leverage()), false, {{"keys", all_rows}}},
      {"CapKVGreedy",
       selector(capkv::CapKV().greedy()),
       false,
       {{"keys", all_rows}, {"values", all_rows}, {"queries", last_rows}}},
      {"SnapKVPaper",
       selector(capkv::SnapKV::paper()),
       false,
       {{"keys", all_rows}, {"queries", last_rows}}},
      {"SnapKVKvpress",
       selector(capkv::SnapKV::kvpress()),
       false,
       {{"keys", all_rows}, {"queries", last_rows}}},
      {"H2OPaper",
       selector(capkv::H2O::paper()),
       false,
       {{"keys", all_rows}, {"queries", all_rows}}},
      {"H2OKvpress",
       selector(capkv::H2O::kvpress()),
       false,
       {{"keys", all_rows}, {"queries", all_rows}}},
      {"L2Norm", selector(capkv::L2Norm()), false, {{"keys", all_rows}}},
      {"StreamingLLM", selector(capkv::StreamingLLM()), false, {{"keys", all_rows}}},
      {"Random", selector(capkv::RandomPolicy()), false, {{"keys", all_rows}}},
  };
}

Layer base_layer(bool pre_rope, std::int64_t q_heads_per_kv = 2) {
  Layer l = random_layer({.n = kN, .kv_heads = 2, .group = q_heads_per_kv, .dim = 8}, 21);
  if (pre_rope) apply_rope_to_queries(l, capkv::Rope{});
  return l;
}

std::vector<std::vector<unsigned char>> snapshot(const StoredLayer& l) {
  std::vector<std::vector<unsigned char>> out{l.keys.bytes()};
  for (const auto* t : {&l.values, &l.queries, &l.queries_pre_rope}) {
    if (*t) out.push_back((*t)->bytes());
  }
  return out;
}

class BadInput : public ::testing::TestWithParam<PolicyCase> {};

// Every read tensor, a few rows, NaN and both infinities, in fp32, fp16 and bf16 storage.
TEST_P(BadInput, NonFiniteValuesAreReportedWithTheTensorName) {
  const PolicyCase& c = GetParam();
  const float poisons[] = {std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity()};
  const capkv::DType dtypes[] = {capkv::DType::kF32, capkv::DType::kF16, capkv::DType::kBF16};
  const Layer clean = base_layer(c.pre_rope);
  ASSERT_NO_THROW(c.select(clean.inputs(), kBudget));  // the clean layer is fine
  for (const Target& target : c.reads) {
    for (std::int64_t row : target.rows) {
      for (float poison : poisons) {
        for (capkv::DType dtype : dtypes) {
          SCOPED_TRACE(target.tensor + " row " + std::to_string(row) + " value " +
                       std::to_string(poison) + " " + std::string(capkv::name_of(dtype)));
          StoredLayer stored(clean, {.dtype = dtype});
          StoredTensor& t = target.tensor == "keys"      ? stored.keys
                            : target.tensor == "values"  ? *stored.values
                            : target.tensor == "queries" ? *stored.queries
                                                         : *stored.queries_pre_rope;
          t.set(row, 1, 3, poison);  // head 1, element 3
          const auto before = snapshot(stored);
          EXPECT_EQ(error_argument([&] { c.select(stored.inputs(), kBudget); }), target.tensor);
          EXPECT_EQ(before, snapshot(stored))
              << "a failed call must not write the caller's buffers";
        }
      }
    }
  }
}

// Hq = 3 query heads over Hkv = 2 KV heads cannot be grouped.
TEST_P(BadInput, QueryHeadsNotAMultipleOfKvHeads) {
  const PolicyCase& c = GetParam();
  Layer l = base_layer(c.pre_rope);
  Rng rng(5);
  l.queries = random_tensor(l.m(), 3, l.dim(), rng);
  if (c.pre_rope) l.queries_pre_rope = random_tensor(l.m(), 3, l.dim(), rng);
  // The post-RoPE queries are validated whenever they are given, needed or not.
  EXPECT_EQ(error_argument([&] { c.select(l.inputs(), kBudget); }), "queries");
  if (c.pre_rope) {
    l.queries = HostTensor();  // only what the preset needs
    EXPECT_EQ(error_argument([&] { c.select(l.inputs(), kBudget); }), "queries_pre_rope");
  }
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, BadInput, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<PolicyCase>& info) {
                           return info.param.name;
                         });

TEST(BadInput, SnapKVNeedsAsManyQueriesAsItsWindow) {
  for (const capkv::SnapKV& policy : {capkv::SnapKV::paper(), capkv::SnapKV::kvpress()}) {
    const std::int64_t w = policy.config.window;
    for (std::int64_t m : {w - 1, w}) {
      const Layer l =
          random_layer({.n = 100, .kv_heads = 2, .group = 2, .dim = 8, .queries = m}, 3);
      const std::string got =
          error_argument([&] { capkv::select(policy, l.inputs(), capkv::Budget::tokens(w + 10)); });
      EXPECT_EQ(got, m < w ? "queries" : "(no error)") << "window " << w << " m " << m;
    }
  }
}

TEST(BadInput, SnapKVAndH2ONeedQueries) {
  Layer l = random_layer({.n = 50, .kv_heads = 2, .group = 2, .dim = 8}, 3);
  l.queries = HostTensor();
  EXPECT_EQ(error_argument(
                [&] { capkv::select(capkv::SnapKV(), l.inputs(), capkv::Budget::tokens(40)); }),
            "queries");
  EXPECT_EQ(
      error_argument([&] { capkv::select(capkv::H2O(), l.inputs(), capkv::Budget::tokens(40)); }),
      "queries");
  EXPECT_EQ(
      error_argument([&] { capkv::select(capkv::CapKV(), l.inputs(), capkv::Budget::tokens(40)); }),
      "queries");
}

// The kvpress anchor needs the pre-RoPE queries and the RoPE parameters, and RoPE an even head_dim.
TEST(BadInput, CapKVKvpressNeedsPreRopeQueriesAndRope) {
  Layer l = random_layer({.n = 30, .kv_heads = 2, .group = 2, .dim = 8}, 3);
  apply_rope_to_queries(l, capkv::Rope{});
  const auto run = [&](const Layer& x) {
    return error_argument(
        [&] { capkv::select(capkv::CapKV::kvpress(), x.inputs(), capkv::Budget::tokens(10)); });
  };
  EXPECT_EQ(run(l), "(no error)");
  Layer no_rope = l;
  no_rope.rope.reset();
  EXPECT_EQ(run(no_rope), "rope");
  Layer no_pre = l;
  no_pre.queries_pre_rope = HostTensor();
  EXPECT_EQ(run(no_pre), "queries_pre_rope");
  // Post- and pre-RoPE queries given together must have the same heads (here 4 and 2).
  Layer mismatched = l;
  mismatched.queries_pre_rope =
      random_layer({.n = 30, .kv_heads = 2, .group = 1, .dim = 8}, 4).queries;
  EXPECT_EQ(run(mismatched), "queries_pre_rope");
  Layer odd = random_layer({.n = 30, .kv_heads = 2, .group = 2, .dim = 7}, 3);
  odd.queries_pre_rope = odd.queries;
  odd.rope = capkv::Rope{};
  EXPECT_EQ(run(odd), "keys");
}

// Configurations that cannot be computed are refused by name rather than producing garbage.
TEST(BadInput, InvalidConfigurations) {
  const Layer l = random_layer({.n = 5, .kv_heads = 1, .group = 1, .dim = 8}, 3);
  // Key leverage without a ridge over fewer keys than dimensions: K^T K is singular.
  EXPECT_EQ(error_argument([&] {
              capkv::CapKV p = capkv::CapKV::key_leverage(0.0);
              p.config.eps = 0.0;
              p.config.sinks = 0;
              capkv::select(p, l.inputs(), capkv::Budget::tokens(2));
            }),
            "ridge");
  const Layer long_layer = random_layer({.n = 60, .kv_heads = 1, .group = 1, .dim = 8}, 3);
  EXPECT_EQ(error_argument([&] {
              capkv::select(capkv::SnapKV(capkv::SnapKV::Config{.window = 8, .kernel = 4}),
                            long_layer.inputs(), capkv::Budget::tokens(20));
            }),
            "kernel");
  EXPECT_EQ(error_argument([&] {
              capkv::select(capkv::SnapKV(capkv::SnapKV::Config{.window = 0}), long_layer.inputs(),
                            capkv::Budget::tokens(20));
            }),
            "window");
}

// H2O's prefill reads one query per prompt position; more queries than cached tokens is an error.
TEST(BadInput, H2OQueriesCannotOutnumberTheCache) {
  const Layer l = random_layer({.n = 10, .kv_heads = 1, .group = 1, .dim = 8, .queries = 11}, 3);
  EXPECT_EQ(
      error_argument([&] { capkv::select(capkv::H2O(), l.inputs(), capkv::Budget::tokens(5)); }),
      "queries");
}

// The protected set of each policy, at n = 100: one below it is an error naming the budget, exactly
// it is fine and keeps exactly the protected tokens.
TEST(BadInput, BudgetBelowTheProtectedSet) {
  Layer l = random_layer({.n = 100, .kv_heads = 2, .group = 2, .dim = 8}, 4);
  apply_rope_to_queries(l, capkv::Rope{});
  struct Case {
    std::string name;
    Select select;
    std::int64_t protected_count;
  };
  const std::vector<Case> policies = {
      {"CapKV", selector(capkv::CapKV()), 4},
      {"CapKVKvpress", selector(capkv::CapKV::kvpress()), 4},
      {"CapKVGreedy", selector(capkv::CapKV().greedy()), 4},
      {"CapKVWindow", selector(capkv::CapKV(capkv::CapKV::Config{.recent_window = 6})), 10},
      {"SnapKVPaper", selector(capkv::SnapKV::paper()), 32},
      {"SnapKVKvpress", selector(capkv::SnapKV::kvpress()), 64},
      {"L2Norm", selector(capkv::L2Norm(capkv::L2Norm::Config{.sinks = 2, .window = 3})), 5},
      {"StreamingLLM", selector(capkv::StreamingLLM()), 4},
      {"Random", selector(capkv::RandomPolicy({.seed = 1, .sinks = 1, .window = 4})), 5},
  };
  for (const Case& c : policies) {
    const std::vector<float> keys_before = l.keys.data;
    EXPECT_EQ(error_argument([&] { c.select(l.inputs(), c.protected_count - 1); }), "budget")
        << c.name;
    EXPECT_EQ(keys_before, l.keys.data);
    capkv::Selection sel;
    ASSERT_NO_THROW(sel = c.select(l.inputs(), c.protected_count)) << c.name;
    EXPECT_EQ(sel.kept(0), c.protected_count) << c.name;
  }
  // H2O's window is carved out of the budget, so no budget is below it; 1 keeps the last token.
  const capkv::Selection h2o = capkv::select(capkv::H2O(), l.inputs(), capkv::Budget::tokens(1));
  for (std::int64_t h = 0; h < 2; ++h) {
    ASSERT_EQ(h2o.kept(h), 1);
    EXPECT_EQ(h2o.head(h)[0], 99);
  }
}

TEST(BadInput, EmptyCacheWithANonzeroBudget) {
  const HostTensor empty(0, 2, 8);
  capkv::LayerInputs in;
  in.keys = empty.view();
  for (const Select& select : {selector(capkv::L2Norm()), selector(capkv::StreamingLLM()),
                               selector(capkv::RandomPolicy())}) {
    EXPECT_EQ(error_argument([&] { select(in, 3); }), "budget");
    const capkv::Selection sel = select(in, 0);  // nothing to keep, nothing asked: fine
    EXPECT_EQ(sel.total_kept(), 0);
  }
}

}  // namespace
}  // namespace capkv_test
