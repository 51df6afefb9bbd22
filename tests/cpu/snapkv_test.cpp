// SnapKV against the float64 reference (explicit causal softmax per window query, explicit pooling
// loops), for the paper and kvpress presets, with GQA groups of 1, 3 and 4.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"
#include "support/reference.hpp"

namespace capkv_test {
namespace {

enum class Structure { kRandom, kAttentionSinks, kHeavyHitters, kDuplicates, kNearCollinear };

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
    case Structure::kNearCollinear:
      return "NearCollinear";
  }
  return "?";
}

struct Shape {
  const char* name;
  LayerShape layer;
};

// m >= 64 wherever n >= 64, since the kvpress window is 64 queries; a cache shorter than both
// windows; a single token; a group of five.
const Shape kShapes[] = {
    {"N100G1", {.n = 100, .kv_heads = 2, .group = 1, .dim = 16}},
    {"N90G3", {.n = 90, .kv_heads = 2, .group = 3, .dim = 8, .queries = 70}},
    {"N160G4", {.n = 160, .kv_heads = 1, .group = 4, .dim = 32, .queries = 64}},
    {"N20ShortG4", {.n = 20, .kv_heads = 2, .group = 4, .dim = 8}},
    {"N1G3", {.n = 1, .kv_heads = 2, .group = 3, .dim = 8}},
    {"N300G2", {.n = 300, .kv_heads = 2, .group = 2, .dim = 16, .queries = 80}},
    // An odd group of five query heads over one KV head.
    {"N150G5", {.n = 150, .kv_heads = 1, .group = 5, .dim = 16, .queries = 64}},
};

// Structured tokens inside the prefix the window votes on.
std::vector<std::int64_t> special_tokens(std::int64_t n) {
  if (n < 100) return n >= 16 ? std::vector<std::int64_t>{3, n / 5} : std::vector<std::int64_t>{};
  return {5, n / 6, n / 3};
}

// Sinks and heavy hitters need queries that agree on a direction (as trained queries do);
// otherwise a key boosted along their mean is as often strongly avoided as attended.
Layer make_layer(const LayerShape& shape, Structure s, std::uint64_t seed) {
  std::vector<Eigen::VectorXd> dirs;
  Layer l = s == Structure::kAttentionSinks || s == Structure::kHeavyHitters
                ? focused_layer(shape, seed, 3.0, 1.0, &dirs)
                : random_layer(shape, seed);
  Rng rng(seed + 1);
  for (std::int64_t t : special_tokens(l.n())) {
    switch (s) {
      case Structure::kRandom:
        break;
      case Structure::kAttentionSinks:
        for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) boost_along(l, t, kv, dirs[kv], 12.0);
        break;
      case Structure::kHeavyHitters:
        for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) boost_along(l, t, kv, dirs[kv], 3.0);
        break;
      case Structure::kDuplicates:
        duplicate_token(l, t, t + 1);
        break;
      case Structure::kNearCollinear:
        make_near_collinear(l, t, t + 3, 1e-3, rng);
        break;
    }
  }
  return l;
}

using Param = std::tuple<bool, int, Structure>;  // kvpress preset?, shape, structure

class SnapKVScores : public ::testing::TestWithParam<Param> {};

TEST_P(SnapKVScores, MatchTheFloat64ReferenceAndSelectTheSameTokens) {
  const auto [kvpress, shape_index, structure] = GetParam();
  const Shape& shape = kShapes[shape_index];
  const Layer l = make_layer(shape.layer, structure, 40 + shape_index);
  const capkv::SnapKV policy = kvpress ? capkv::SnapKV::kvpress() : capkv::SnapKV::paper();
  const std::int64_t n = l.n();
  // The window is protected; past it, keep a third of the prefix.
  const std::int64_t budget =
      n <= policy.config.window ? n : policy.config.window + (n - policy.config.window) / 3;

  const Eigen::MatrixXd want = ref::snapkv(l, policy.config);
  const Eigen::MatrixXd tol = relative_tolerance(want, ref::attention_rel_tolerance(l), 1e-35);
  const capkv::Scores per_head =
      capkv::cpu::Scorer<capkv::SnapKV>::score(policy, l.inputs(), budget);
  ASSERT_EQ(per_head.granularity, capkv::Scores::Granularity::kQueryHead);
  EXPECT_TRUE(ScoresNear(per_head.values, want, tol));

  const capkv::Selection sel =
      capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget), {.return_scores = true});
  const Eigen::MatrixXd want_kv = ref::gqa_mean(want, l.kv_heads());
  const Eigen::MatrixXd tol_kv = ref::gqa_mean(tol, l.kv_heads());
  EXPECT_TRUE(ScoresNear(sel.scores, want_kv, tol_kv));
  EXPECT_TRUE(SelectionAgrees(sel, want_kv, tol_kv, policy.protection(n, budget), budget));

  // The last `window` tokens are always kept; a token every query attends to is kept too.
  for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
    for (std::int64_t i = std::max<std::int64_t>(0, n - policy.config.window); i < n; ++i) {
      EXPECT_TRUE(std::ranges::binary_search(sel.head(h), i));
    }
    if (structure != Structure::kAttentionSinks) continue;
    for (std::int64_t t : special_tokens(n)) {
      EXPECT_TRUE(std::ranges::binary_search(sel.head(h), t)) << "head " << h << " sink " << t;
    }
  }
}

// Every preset, shape and structure, except structures on caches too short to hold them.
std::vector<Param> all_cases() {
  std::vector<Param> out;
  for (bool kvpress : {false, true}) {
    for (int shape = 0; shape < static_cast<int>(std::size(kShapes)); ++shape) {
      for (Structure s : {Structure::kRandom, Structure::kAttentionSinks, Structure::kHeavyHitters,
                          Structure::kDuplicates, Structure::kNearCollinear}) {
        if (s != Structure::kRandom && special_tokens(kShapes[shape].layer.n).empty()) continue;
        out.emplace_back(kvpress, shape, s);
      }
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(BothPresets, SnapKVScores, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(std::get<0>(info.param) ? "Kvpress_" : "Paper_") +
                                  kShapes[std::get<1>(info.param)].name + "_" +
                                  name_of(std::get<2>(info.param));
                         });

// Four heavy hitters of clearly different strengths, each spreading its vote over a pooling
// kernel's worth of neighbours: with room for exactly the two strongest neighbourhoods the cut
// falls between clearly different plateaus, and the selection must be the reference's exactly.
TEST(SnapKV, WellSeparatedHeavyHittersGiveExactlyTheReferenceSelection) {
  for (bool kvpress : {false, true}) {
    const capkv::SnapKV policy = kvpress ? capkv::SnapKV::kvpress() : capkv::SnapKV::paper();
    std::vector<Eigen::VectorXd> dirs;
    Layer l = focused_layer({.n = 160, .kv_heads = 2, .group = 3, .dim = 16}, 7, 4.0, 0.5, &dirs);
    const std::int64_t strengths[] = {2, 4, 6, 8};
    const std::int64_t tokens[] = {10, 30, 50, 70};
    for (std::int64_t kv = 0; kv < 2; ++kv) {
      for (int k = 0; k < 4; ++k) boost_along(l, tokens[k], kv, dirs[kv], strengths[k]);
    }
    const std::int64_t budget = policy.config.window + 2 * policy.config.kernel;
    const capkv::Selection sel = capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget));
    const Eigen::MatrixXd want = ref::gqa_mean(ref::snapkv(l, policy.config), 2);
    const Eigen::MatrixXd tol = relative_tolerance(want, ref::attention_rel_tolerance(l), 1e-35);
    std::int64_t undecided = -1;
    EXPECT_TRUE(
        SelectionAgrees(sel, want, tol, policy.protection(l.n(), budget), budget, &undecided));
    EXPECT_EQ(undecided, 0) << "the construction should separate the cut";
    for (std::int64_t h = 0; h < 2; ++h) {
      const auto got = as_vector(sel.head(h));
      EXPECT_EQ(got, ref::top_b(want.row(h).transpose(), policy.protection(l.n(), budget), budget));
      // The two strongest heavy hitters and their neighbourhoods are what is kept of the prefix.
      for (std::int64_t t : {50, 70}) {
        for (std::int64_t i = t - policy.config.kernel / 2; i <= t + policy.config.kernel / 2;
             ++i) {
          EXPECT_TRUE(std::ranges::binary_search(got, i))
              << "kvpress " << kvpress << " token " << i;
        }
      }
    }
  }
}

// With the whole cache inside the window there is no prefix: every score is 0 and everything is
// protected, so the budget must cover the cache.
TEST(SnapKV, CacheShorterThanTheWindowIsKeptWhole) {
  const Layer l = random_layer({.n = 20, .kv_heads = 2, .group = 3, .dim = 8}, 3);
  const capkv::Selection sel = capkv::select(capkv::SnapKV::paper(), l.inputs(),
                                             capkv::Budget::tokens(20), {.return_scores = true});
  EXPECT_EQ(sel.scores.cwiseAbs().maxCoeff(), 0.0f);
  for (std::int64_t h = 0; h < 2; ++h) EXPECT_EQ(sel.kept(h), 20);
}

}  // namespace
}  // namespace capkv_test
