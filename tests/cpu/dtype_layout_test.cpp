// The same selection from every dtype (fp32, fp16, bf16), packed layout (tokens-heads-dim,
// heads-tokens-dim) and stride (packed, padded token rows, a non-unit dim stride), on inputs whose
// scores are well separated by construction. Storage the views do not address holds NaN, so a read
// outside a view would surface as a bad-input error.
//
// Scores: fp32 storage gives the fp32 scores up to rounding order. fp16/bf16 storage changes the
// inputs by a relative u_h (2^-11 for fp16, 2^-8 for bf16), and the scores must then be
//  - within the fp32 tolerance of the float64 reference on the *rounded* inputs (the conversion
//    itself adds nothing), and
//  - within a documented tolerance of the fp32 scores, per policy:
//      L2Norm:        u_h ||k|| (a norm moves by at most the elements' relative error);
//      SnapKV, H2O:   8 u_h L |s|, L = max |q|.|k| / sqrt(d): each logit moves by at most
//                     2 u_h L, a probability by at most twice that relative (exponent and sum),
//                     and sums and pooling keep relative bounds; doubled for the constants;
//      CapKV:         2 |s(rounded) - s(fp32)| computed in float64: tau = 5 amplifies the
//                     relevance error, which depends on the data more than a simple bound shows;
//      StreamingLLM, Random: exact (they read no values).
//    plus the fp32 tolerances of both runs.

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/capkv_presets.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"
#include "support/reference.hpp"

namespace capkv_test {
namespace {

using Eigen::MatrixXd;

double unit_roundoff(capkv::DType t) {
  switch (t) {
    case capkv::DType::kF32:
      return ref::kU32;
    case capkv::DType::kF16:
      return 0x1.0p-11;
    case capkv::DType::kBF16:
      return 0x1.0p-8;
  }
  return 0.0;
}

Layer rounded_layer(const Layer& l, capkv::DType t) {
  Layer r = l;
  r.keys = rounded(l.keys, t);
  if (!l.values.empty()) r.values = rounded(l.values, t);
  if (!l.queries.empty()) r.queries = rounded(l.queries, t);
  if (!l.queries_pre_rope.empty()) r.queries_pre_rope = rounded(l.queries_pre_rope, t);
  return r;
}

// Float64 reference KV-head scores and their fp32 tolerance.
struct Reference {
  MatrixXd scores;
  MatrixXd tol;
};

struct PolicyCase {
  std::string name;
  std::function<Layer()> make;  // well-separated input
  std::function<capkv::Selection(const capkv::LayerInputs&)> select;
  std::function<Reference(const Layer&)> reference;
  enum class Bound { kNorm, kAttention, kComputed, kExact } bound;
  std::int64_t budget;
  capkv::Protection protection;
};

template <class P>
std::function<capkv::Selection(const capkv::LayerInputs&)> selector(P policy, std::int64_t budget) {
  return [policy, budget](const capkv::LayerInputs& in) {
    return capkv::select(policy, in, capkv::Budget::tokens(budget), {.return_scores = true});
  };
}

// Ten tokens along their group's anchor (cosine about 0.95 against about 0.25): relevance at
// least e^3 above the rest, budget = sinks + 10.
Layer capkv_layer(CapKVPreset preset) {
  Layer l = random_layer({.n = 80, .kv_heads = 2, .group = 3, .dim = 16}, 5);
  correlate_group_queries(l, 0.3);
  prepare_for(preset, l);
  const capkv::CapKV policy = make_capkv(preset);
  for (std::int64_t kv = 0; kv < 2; ++kv) {
    Eigen::VectorXd dir = Eigen::VectorXd::Zero(16);
    for (std::int64_t j = 0; j < 3; ++j)
      dir += ref::capkv_anchor(l, policy.config, kv * 3 + j).normalized();
    for (std::int64_t t = 6; t < 76; t += 7) boost_along(l, t, kv, dir.normalized(), 12.0);
  }
  return l;
}

PolicyCase capkv_case(CapKVPreset preset) {
  const capkv::CapKV policy = make_capkv(preset);
  return {"CapKV" + name_of(preset),
          [preset] { return capkv_layer(preset); },
          selector(policy, 14),
          [policy](const Layer& l) {
            const ref::CapKVReference r = ref::capkv(l, policy.config);
            return Reference{
                ref::gqa_mean(r.scores, l.kv_heads()),
                ref::gqa_mean(ref::capkv_tolerance(l, policy.config, r), l.kv_heads())};
          },
          PolicyCase::Bound::kComputed,
          14,
          policy.protection(80, 14)};
}

// Heavy hitters of distinct strengths on queries that agree on a direction.
Layer attention_layer(std::int64_t n, std::int64_t first, std::int64_t step, std::int64_t last) {
  std::vector<Eigen::VectorXd> dirs;
  Layer l = focused_layer({.n = n, .kv_heads = 2, .group = 3, .dim = 16}, 12, 4.0, 0.5, &dirs);
  for (std::int64_t kv = 0; kv < 2; ++kv) {
    for (std::int64_t t = first; t < last; t += step)
      boost_along(l, t, kv, dirs[kv], 1.0 + 0.1 * t);
  }
  return l;
}

PolicyCase snapkv_case() {
  const capkv::SnapKV policy = capkv::SnapKV::paper();
  const std::int64_t budget = policy.config.window + 2 * policy.config.kernel;
  return {"SnapKV",
          [] { return attention_layer(160, 10, 20, 80); },
          selector(policy, budget),
          [policy](const Layer& l) {
            const MatrixXd s = ref::gqa_mean(ref::snapkv(l, policy.config), l.kv_heads());
            return Reference{s, relative_tolerance(s, ref::attention_rel_tolerance(l), 1e-35)};
          },
          PolicyCase::Bound::kAttention,
          budget,
          policy.protection(160, budget)};
}

PolicyCase h2o_case() {
  const capkv::H2O policy = capkv::H2O::paper();
  return {"H2O",
          [] { return attention_layer(90, 5, 6, 60); },
          selector(policy, 20),
          [policy](const Layer& l) {
            const MatrixXd s = ref::h2o(l, policy.config);
            return Reference{s, relative_tolerance(s, ref::attention_rel_tolerance(l), 1e-35)};
          },
          PolicyCase::Bound::kAttention,
          20,
          policy.protection(90, 20)};
}

// Norms 1 + 0.1 k for a permutation k of the tokens: neighbours differ by at least 1.4%.
Layer distinct_norms_layer() {
  Layer l = random_layer({.n = 60, .kv_heads = 2, .group = 1, .dim = 16}, 13);
  for (std::int64_t t = 0; t < 60; ++t) {
    for (std::int64_t h = 0; h < 2; ++h) {
      l.keys.set_row(t, h, l.keys.row(t, h).normalized() * (1.0 + 0.1 * ((t * 37 + h * 11) % 60)));
    }
  }
  return l;
}

PolicyCase l2norm_case() {
  return {"L2Norm",
          distinct_norms_layer,
          selector(capkv::L2Norm(), 20),
          [](const Layer& l) {
            const MatrixXd s = ref::l2norm(l);
            return Reference{s, relative_tolerance(s, (l.dim() + 4.0) * ref::kU32, 1e-30)};
          },
          PolicyCase::Bound::kNorm,
          20,
          {}};
}

PolicyCase streaming_case() {
  return {"StreamingLLM",
          [] { return random_layer({.n = 50, .kv_heads = 2, .group = 1, .dim = 8}, 14); },
          selector(capkv::StreamingLLM(), 12),
          [](const Layer& l) {
            MatrixXd s(l.kv_heads(), l.n());
            for (std::int64_t i = 0; i < l.n(); ++i) s.col(i).setConstant(static_cast<double>(i));
            return Reference{s, MatrixXd::Zero(l.kv_heads(), l.n())};
          },
          PolicyCase::Bound::kExact,
          12,
          capkv::StreamingLLM().protection(50, 12)};
}

PolicyCase random_case() {
  const capkv::RandomPolicy policy({.seed = 3});
  return {"Random",
          [] { return random_layer({.n = 50, .kv_heads = 2, .group = 1, .dim = 8}, 15); },
          selector(policy, 12),
          nullptr,  // scores compared with the fp32 run only
          PolicyCase::Bound::kExact,
          12,
          {}};
}

struct Variant {
  const char* name;
  StorageSpec spec;
};

std::vector<Variant> variants() {
  std::vector<Variant> out;
  static const char* names[3][2][3] = {{{"F32_THD", "F32_THD_Padded", "F32_THD_DimStride"},
                                        {"F32_HTD", "F32_HTD_Padded", "F32_HTD_DimStride"}},
                                       {{"F16_THD", "F16_THD_Padded", "F16_THD_DimStride"},
                                        {"F16_HTD", "F16_HTD_Padded", "F16_HTD_DimStride"}},
                                       {{"BF16_THD", "BF16_THD_Padded", "BF16_THD_DimStride"},
                                        {"BF16_HTD", "BF16_HTD_Padded", "BF16_HTD_DimStride"}}};
  const capkv::DType dtypes[] = {capkv::DType::kF32, capkv::DType::kF16, capkv::DType::kBF16};
  const capkv::Layout layouts[] = {capkv::Layout::kTokensHeadsDim, capkv::Layout::kHeadsTokensDim};
  for (int t = 0; t < 3; ++t) {
    for (int o = 0; o < 2; ++o) {
      out.push_back({names[t][o][0], {dtypes[t], layouts[o], 0, 1}});
      out.push_back({names[t][o][1], {dtypes[t], layouts[o], 5, 1}});
      out.push_back({names[t][o][2], {dtypes[t], layouts[o], 3, 2}});
    }
  }
  return out;
}

class DTypeLayout : public ::testing::TestWithParam<std::function<PolicyCase()>> {};

TEST_P(DTypeLayout, EveryStorageGivesTheSameSelection) {
  const PolicyCase c = GetParam()();
  const Layer l = c.make();
  const capkv::Selection base = c.select(l.inputs());  // fp32, packed, through HostTensor views

  // The input really is well separated: the fp32 selection is the reference's, with no token
  // near the cut.
  std::optional<Reference> want;
  if (c.reference) {
    want = c.reference(l);
    std::int64_t undecided = -1;
    ASSERT_TRUE(SelectionAgrees(base, want->scores, want->tol, c.protection, c.budget, &undecided));
    ASSERT_EQ(undecided, 0) << c.name << ": the construction should separate the cut";
    ASSERT_TRUE(ScoresNear(base.scores, want->scores, want->tol));
  }

  for (const Variant& v : variants()) {
    SCOPED_TRACE(c.name + " " + v.name);
    StoredLayer stored(l, v.spec);
    const capkv::Selection sel = c.select(stored.inputs());
    EXPECT_EQ(sel.offsets, base.offsets);
    EXPECT_EQ(sel.indices, base.indices);
    if (c.bound == PolicyCase::Bound::kExact) {
      EXPECT_EQ(sel.scores, base.scores);
      continue;
    }
    if (v.spec.dtype == capkv::DType::kF32) {
      // Same numbers, possibly through a copy instead of a mapped view: fp32 tolerance.
      EXPECT_TRUE(ScoresNear(sel.scores, base.scores.cast<double>(), 2 * want->tol));
      continue;
    }
    // Half precision: exact math on the rounded inputs, to fp32 tolerance...
    const Layer r = rounded_layer(l, v.spec.dtype);
    const Reference want_rounded = c.reference(r);
    EXPECT_TRUE(ScoresNear(sel.scores, want_rounded.scores, want_rounded.tol));
    // ...and within the documented distance of the fp32 scores.
    const double uh = unit_roundoff(v.spec.dtype);
    MatrixXd bound = want->tol + want_rounded.tol;
    switch (c.bound) {
      case PolicyCase::Bound::kNorm:
        bound += want->scores.cwiseAbs() * uh;
        break;
      case PolicyCase::Bound::kAttention:
        bound += want->scores.cwiseAbs() * (8.0 * uh * ref::max_abs_logit(l));
        break;
      case PolicyCase::Bound::kComputed:
        bound += 2.0 * (want_rounded.scores - want->scores).cwiseAbs();
        break;
      case PolicyCase::Bound::kExact:
        break;
    }
    EXPECT_TRUE(ScoresNear(sel.scores, base.scores.cast<double>(), bound));
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, DTypeLayout,
                         ::testing::Values([] { return capkv_case(CapKVPreset::kDefault); },
                                           [] { return capkv_case(CapKVPreset::kKvpress); },
                                           snapkv_case, h2o_case, l2norm_case, streaming_case,
                                           random_case),
                         [](const ::testing::TestParamInfo<std::function<PolicyCase()>>& info) {
                           return info.param().name;
                         });

}  // namespace
}  // namespace capkv_test
