// CapKV scores and selections against the float64 reference of SPEC.md, for every preset, on random
// and structured caches, with GQA groups of 1, 3 and 4.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/capkv_presets.hpp"
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

// g in {1, 3, 4}; a cache shorter than the observation window; a single token; one longer than a
// leverage block (256 tokens) so the blocked Gram is summed across blocks.
const Shape kShapes[] = {
    {"N64G1", {.n = 64, .kv_heads = 2, .group = 1, .dim = 16}},
    {"N48G3", {.n = 48, .kv_heads = 2, .group = 3, .dim = 8, .queries = 20}},
    {"N96G4", {.n = 96, .kv_heads = 1, .group = 4, .dim = 32, .queries = 40}},
    {"N20ShortG4", {.n = 20, .kv_heads = 2, .group = 4, .dim = 8}},
    {"N1G3", {.n = 1, .kv_heads = 2, .group = 3, .dim = 8}},
    {"N300G4", {.n = 300, .kv_heads = 2, .group = 4, .dim = 16, .queries = 64}},
};

// Tokens given structure: well inside the candidates (past the 4 sinks).
std::vector<std::int64_t> special_tokens(std::int64_t n) {
  if (n < 16) return {};
  return {n / 4, n / 2, 3 * n / 4};
}

// The direction of KV head kv's anchors (averaged over its group): what a key must point along to
// get a large relevance under this preset.
Eigen::VectorXd anchor_direction(const Layer& l, CapKVPreset preset, std::int64_t kv) {
  if (preset == CapKVPreset::kKeyLeverage) return group_query_direction(l, kv);
  const capkv::CapKV policy = make_capkv(preset);
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(l.dim());
  for (std::int64_t j = 0; j < l.group(); ++j) {
    sum += ref::capkv_anchor(l, policy.config, kv * l.group() + j).normalized();
  }
  return sum.normalized();
}

void boost_special(Layer& l, CapKVPreset preset, double strength) {
  for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) {
    const Eigen::VectorXd direction = anchor_direction(l, preset, kv);
    for (std::int64_t t : special_tokens(l.n())) boost_along(l, t, kv, direction, strength);
  }
}

Layer make_layer(const LayerShape& shape, Structure s, CapKVPreset preset, std::uint64_t seed) {
  Layer l = random_layer(shape, seed);
  prepare_for(preset, l);
  Rng rng(seed + 1000);
  const auto special = special_tokens(l.n());
  switch (s) {
    case Structure::kRandom:
      break;
    case Structure::kAttentionSinks:
      boost_special(l, preset, 12.0);
      break;
    case Structure::kHeavyHitters:
      boost_special(l, preset, 3.0);
      break;
    case Structure::kDuplicates:
      for (std::int64_t t : special) duplicate_token(l, t, t + 1);
      break;
    case Structure::kNearCollinear:
      for (std::int64_t t : special) make_near_collinear(l, t, t + 2, 1e-3, rng);
      break;
  }
  return l;
}

using Param = std::tuple<CapKVPreset, int, Structure>;

class CapKVScores : public ::testing::TestWithParam<Param> {};

TEST_P(CapKVScores, MatchTheFloat64ReferenceAndSelectTheSameTokens) {
  const auto [preset, shape_index, structure] = GetParam();
  const Shape& shape = kShapes[shape_index];
  const Layer l = make_layer(shape.layer, structure, preset, 17 + shape_index);
  const capkv::CapKV policy = make_capkv(preset);
  const capkv::LayerInputs in = l.inputs();

  const ref::CapKVReference want = ref::capkv(l, policy.config);
  const Eigen::MatrixXd tol = ref::capkv_tolerance(l, policy.config, want);

  // Per query head, straight from the scorer.
  const std::int64_t n = l.n();
  const std::int64_t budget = n == 1 ? 1 : n / 4 + policy.config.sinks;
  const capkv::Scores per_head = capkv::cpu::Scorer<capkv::CapKV>::score(policy, in, budget);
  ASSERT_EQ(per_head.granularity, capkv::Scores::Granularity::kQueryHead);
  EXPECT_TRUE(ScoresNear(per_head.values, want.scores, tol));

  // Per KV head through select(), and the tokens it keeps.
  const capkv::Selection sel =
      capkv::select(policy, in, capkv::Budget::tokens(budget), {.return_scores = true});
  const Eigen::MatrixXd want_kv = ref::gqa_mean(want.scores, l.kv_heads());
  const Eigen::MatrixXd tol_kv = ref::gqa_mean(tol, l.kv_heads());
  EXPECT_TRUE(ScoresNear(sel.scores, want_kv, tol_kv));
  EXPECT_TRUE(SelectionAgrees(sel, want_kv, tol_kv, policy.protection(n, budget), budget));

  if (structure == Structure::kAttentionSinks) {
    // Tokens every query attends to carry the most relevance (and, for key leverage, by far the
    // largest keys): they must survive in every head.
    for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
      for (std::int64_t t : special_tokens(n)) {
        EXPECT_TRUE(std::ranges::binary_search(sel.head(h), t)) << "head " << h << " token " << t;
      }
    }
  }
}

// Every preset, shape and structure, except structures on caches too short to hold them.
std::vector<Param> all_cases() {
  std::vector<Param> out;
  for (CapKVPreset preset : {CapKVPreset::kDefault, CapKVPreset::kPaper, CapKVPreset::kKvpress,
                             CapKVPreset::kKeyLeverage}) {
    for (int shape = 0; shape < static_cast<int>(std::size(kShapes)); ++shape) {
      for (Structure s : {Structure::kRandom, Structure::kAttentionSinks, Structure::kHeavyHitters,
                          Structure::kDuplicates, Structure::kNearCollinear}) {
        if (s != Structure::kRandom && special_tokens(kShapes[shape].layer.n).empty()) continue;
        out.emplace_back(preset, shape, s);
      }
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllPresets, CapKVScores, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return name_of(std::get<0>(info.param)) + "_" +
                                  kShapes[std::get<1>(info.param)].name + "_" +
                                  name_of(std::get<2>(info.param));
                         });

// Well-separated relevance must give exactly the reference's selection, not merely a compatible
// one.
TEST(CapKVScores, WellSeparatedRelevanceGivesExactlyTheReferenceSelection) {
  for (CapKVPreset preset : {CapKVPreset::kDefault, CapKVPreset::kPaper, CapKVPreset::kKvpress}) {
    Layer l = random_layer({.n = 80, .kv_heads = 2, .group = 3, .dim = 16}, 5);
    correlate_group_queries(l, 0.3);
    prepare_for(preset, l);
    // Ten tokens point along the anchor (cosine about 0.95, against about 0.25 for the others):
    // their relevance is e^3 or more above the rest, which no leverage factor can undo.
    for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) {
      const Eigen::VectorXd direction = anchor_direction(l, preset, kv);
      for (std::int64_t t = 6; t < 76; t += 7) boost_along(l, t, kv, direction, 12.0);
    }
    const capkv::CapKV policy = make_capkv(preset);
    const std::int64_t budget = 4 + 10;
    const capkv::Selection sel = capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget));
    const ref::CapKVReference want = ref::capkv(l, policy.config);
    const Eigen::MatrixXd want_kv = ref::gqa_mean(want.scores, l.kv_heads());
    const Eigen::MatrixXd tol_kv =
        ref::gqa_mean(ref::capkv_tolerance(l, policy.config, want), l.kv_heads());
    std::int64_t undecided = -1;
    EXPECT_TRUE(
        SelectionAgrees(sel, want_kv, tol_kv, policy.protection(l.n(), budget), budget, &undecided))
        << name_of(preset);
    EXPECT_EQ(undecided, 0) << name_of(preset) << ": the construction should separate the cut";
    for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
      EXPECT_EQ(as_vector(sel.head(h)),
                ref::top_b(want_kv.row(h).transpose(), policy.protection(l.n(), budget), budget))
          << name_of(preset) << " head " << h;
    }
  }
}

// The GQA reduction options map the per-query-head reference the same way.
TEST(CapKVScores, MaxAndSumGqaReductionsMatchTheReference) {
  const Layer l = random_layer({.n = 50, .kv_heads = 2, .group = 3, .dim = 8}, 9);
  const capkv::CapKV policy;
  const ref::CapKVReference want = ref::capkv(l, policy.config);
  const Eigen::MatrixXd tol = ref::capkv_tolerance(l, policy.config, want);
  Eigen::MatrixXd want_max(2, l.n()), want_sum(2, l.n()), tol_max(2, l.n()), tol_sum(2, l.n());
  for (std::int64_t h = 0; h < 2; ++h) {
    want_max.row(h) = want.scores.middleRows(3 * h, 3).colwise().maxCoeff();
    want_sum.row(h) = want.scores.middleRows(3 * h, 3).colwise().sum();
    tol_max.row(h) = tol.middleRows(3 * h, 3).colwise().maxCoeff();
    tol_sum.row(h) = tol.middleRows(3 * h, 3).colwise().sum();
  }
  const auto max_sel = capkv::select(policy, l.inputs(), capkv::Budget::tokens(20),
                                     {.gqa = capkv::GqaReduction::kMax, .return_scores = true});
  const auto sum_sel = capkv::select(policy, l.inputs(), capkv::Budget::tokens(20),
                                     {.gqa = capkv::GqaReduction::kSum, .return_scores = true});
  EXPECT_TRUE(ScoresNear(max_sel.scores, want_max, tol_max));
  EXPECT_TRUE(ScoresNear(sum_sel.scores, want_sum, tol_sum));
  EXPECT_TRUE(SelectionAgrees(max_sel, want_max, tol_max, policy.protection(l.n(), 20), 20));
  EXPECT_TRUE(SelectionAgrees(sum_sel, want_sum, tol_sum, policy.protection(l.n(), 20), 20));
}

// The kvpress preset needs only the pre-RoPE queries (needs().queries is false): the group size
// must come from them, or each KV head would read one wrong query head instead of its group of g.
TEST(CapKVScores, KvpressWithOnlyPreRopeQueriesUsesTheWholeGqaGroup) {
  Layer l = random_layer({.n = 60, .kv_heads = 2, .group = 3, .dim = 16}, 31);
  apply_rope_to_queries(l, capkv::Rope{10000.0, capkv::RopeLayout::kHalf});
  l.queries = HostTensor();  // the preset does not need them
  const capkv::CapKV policy = capkv::CapKV::kvpress();
  ASSERT_FALSE(policy.needs().queries);
  const ref::CapKVReference want = ref::capkv(l, policy.config);
  const Eigen::MatrixXd want_kv = ref::gqa_mean(want.scores, l.kv_heads());
  const Eigen::MatrixXd tol_kv =
      ref::gqa_mean(ref::capkv_tolerance(l, policy.config, want), l.kv_heads());
  const capkv::Selection sel =
      capkv::select(policy, l.inputs(), capkv::Budget::tokens(20), {.return_scores = true});
  EXPECT_TRUE(ScoresNear(sel.scores, want_kv, tol_kv));
}

}  // namespace
}  // namespace capkv_test
