// H2O's prefill scores (accumulated causal attention of every prompt query, summed over the GQA
// group) against the float64 reference, for the paper preset (50/50 heavy hitters and recent
// window) and the kvpress one (ObservedAttention: normalised by exposure, no window).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"
#include "support/reference.hpp"

namespace capkv_test {
namespace {

enum class Structure { kRandom, kAttentionSinks, kHeavyHitters, kDuplicates };

std::string name_of(Structure s) {
  switch (s) {
    case Structure::kRandom:
      return "Random";
    case Structure::kAttentionSinks:
      return "AttentionSinks";
    case Structure::kHeavyHitters:
      return "HeavyHitters";
    case Structure::kDuplicates:
      return "Duplicates";
  }
  return "?";
}

struct Shape {
  const char* name;
  LayerShape layer;
};

// Queries for every prompt token, or only for the last m; one token; GQA groups 1, 3 and 4.
const Shape kShapes[] = {
    {"N80G1", {.n = 80, .kv_heads = 2, .group = 1, .dim = 16}},
    {"N60G3M25", {.n = 60, .kv_heads = 2, .group = 3, .dim = 8, .queries = 25}},
    {"N120G4", {.n = 120, .kv_heads = 1, .group = 4, .dim = 32}},
    {"N1G3", {.n = 1, .kv_heads = 2, .group = 3, .dim = 8}},
};

std::vector<std::int64_t> special_tokens(std::int64_t n) {
  if (n < 16) return {};
  return {2, n / 3, n / 2};
}

Layer make_layer(const LayerShape& shape, Structure s, std::uint64_t seed) {
  std::vector<Eigen::VectorXd> dirs;
  Layer l = s == Structure::kAttentionSinks || s == Structure::kHeavyHitters
                ? focused_layer(shape, seed, 3.0, 1.0, &dirs)
                : random_layer(shape, seed);
  for (std::int64_t t : special_tokens(l.n())) {
    for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) {
      if (s == Structure::kAttentionSinks) boost_along(l, t, kv, dirs[kv], 12.0);
      if (s == Structure::kHeavyHitters) boost_along(l, t, kv, dirs[kv], 3.0);
    }
    if (s == Structure::kDuplicates) duplicate_token(l, t, t + 1);
  }
  return l;
}

using Param = std::tuple<bool, int, Structure>;  // kvpress preset?, shape, structure

class H2OPrefill : public ::testing::TestWithParam<Param> {};

TEST_P(H2OPrefill, AccumulatedAttentionMatchesTheFloat64Reference) {
  const auto [kvpress, shape_index, structure] = GetParam();
  const Layer l = make_layer(kShapes[shape_index].layer, structure, 60 + shape_index);
  const capkv::H2O policy = kvpress ? capkv::H2O::kvpress() : capkv::H2O::paper();
  const std::int64_t n = l.n();
  const std::int64_t budget = std::max<std::int64_t>(1, n / 4);

  const Eigen::MatrixXd want = ref::h2o(l, policy.config);
  const Eigen::MatrixXd tol = relative_tolerance(want, ref::attention_rel_tolerance(l), 1e-35);
  const capkv::Scores scores = capkv::cpu::Scorer<capkv::H2O>::score(policy, l.inputs(), budget);
  ASSERT_EQ(scores.granularity, capkv::Scores::Granularity::kKvHead);
  EXPECT_TRUE(ScoresNear(scores.values, want, tol));

  const capkv::Selection sel =
      capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget), {.return_scores = true});
  EXPECT_TRUE(ScoresNear(sel.scores, want, tol));
  const capkv::Protection protection = policy.protection(n, budget);
  EXPECT_TRUE(SelectionAgrees(sel, want, tol, protection, budget));

  // Paper: the budget splits into floor(B/2) heavy hitters and the ceil(B/2) most recent tokens.
  // kvpress: no window at all.
  EXPECT_EQ(protection.window, kvpress ? 0 : budget - budget / 2);
  EXPECT_EQ(protection.sinks, 0);
  for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
    for (std::int64_t i = n - protection.window; i < n; ++i) {
      EXPECT_TRUE(std::ranges::binary_search(sel.head(h), i));
    }
    // Sinks draw attention from every query; unnormalised they carry the most mass. (Normalised by
    // exposure, a late token seen by few queries can outscore them, so only the paper preset.)
    if (structure != Structure::kAttentionSinks || kvpress) continue;
    for (std::int64_t t : special_tokens(n)) {
      EXPECT_TRUE(std::ranges::binary_search(sel.head(h), t)) << "sink " << t;
    }
  }
}

std::vector<Param> all_cases() {
  std::vector<Param> out;
  for (bool kvpress : {false, true}) {
    for (int shape = 0; shape < static_cast<int>(std::size(kShapes)); ++shape) {
      for (Structure s : {Structure::kRandom, Structure::kAttentionSinks, Structure::kHeavyHitters,
                          Structure::kDuplicates}) {
        if (s != Structure::kRandom && special_tokens(kShapes[shape].layer.n).empty()) continue;
        out.emplace_back(kvpress, shape, s);
      }
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(BothPresets, H2OPrefill, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(std::get<0>(info.param) ? "Kvpress_" : "Paper_") +
                                  kShapes[std::get<1>(info.param)].name + "_" +
                                  name_of(std::get<2>(info.param));
                         });

// Row r of a full causal prompt sees r + 1 tokens, so every query's probabilities sum to 1 and the
// accumulators of a KV head sum to g * m; normalised by exposure, token i's is its mean attention.
TEST(H2OPrefill, AccumulatorsConserveTheAttentionMass) {
  const Layer l = random_layer({.n = 50, .kv_heads = 2, .group = 3, .dim = 8}, 8);
  const capkv::Scores paper =
      capkv::cpu::Scorer<capkv::H2O>::score(capkv::H2O::paper(), l.inputs(), 10);
  for (std::int64_t h = 0; h < 2; ++h) {
    EXPECT_NEAR(paper.values.row(h).cast<double>().sum(), 3.0 * 50, 1e-3);
  }
  // The first token is seen by every query, the last by one: its normalised accumulator is the
  // last query row's attention on it, summed over the group.
  const capkv::Scores kvpress =
      capkv::cpu::Scorer<capkv::H2O>::score(capkv::H2O::kvpress(), l.inputs(), 10);
  for (std::int64_t h = 0; h < 2; ++h) {
    EXPECT_NEAR(kvpress.values(h, 0), paper.values(h, 0) / 50.0, 1e-6);
    EXPECT_NEAR(kvpress.values(h, 49), paper.values(h, 49), 1e-6);
  }
}

// Heavy hitters of distinct strengths: the cut between the floor(B/2) heavy slots is well
// separated, so the selection is exactly the reference's.
TEST(H2OPrefill, WellSeparatedHeavyHittersGiveExactlyTheReferenceSelection) {
  std::vector<Eigen::VectorXd> dirs;
  Layer l = focused_layer({.n = 90, .kv_heads = 2, .group = 3, .dim = 16}, 12, 4.0, 0.5, &dirs);
  for (std::int64_t kv = 0; kv < 2; ++kv) {
    for (std::int64_t t = 5; t < 60; t += 6) boost_along(l, t, kv, dirs[kv], 1.0 + 0.1 * t);
  }
  for (const capkv::H2O& policy : {capkv::H2O::paper(), capkv::H2O::kvpress()}) {
    const std::int64_t budget = 20;
    const capkv::Selection sel = capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget));
    const Eigen::MatrixXd want = ref::h2o(l, policy.config);
    const Eigen::MatrixXd tol = relative_tolerance(want, ref::attention_rel_tolerance(l), 1e-35);
    std::int64_t undecided = -1;
    const capkv::Protection protection = policy.protection(l.n(), budget);
    EXPECT_TRUE(SelectionAgrees(sel, want, tol, protection, budget, &undecided));
    EXPECT_EQ(undecided, 0);
    for (std::int64_t h = 0; h < 2; ++h) {
      EXPECT_EQ(as_vector(sel.head(h)), ref::top_b(want.row(h).transpose(), protection, budget));
    }
  }
}

}  // namespace
}  // namespace capkv_test
