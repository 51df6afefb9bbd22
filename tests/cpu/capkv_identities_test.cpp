// The identities SPEC.md says CapKV's scores satisfy (with eps = 0 and ridge 1), checked on the
// library's fp32 scores against quantities built independently in float64:
//   0 <= s_i < 1,   sum_i s_i = tr(I - A^-1) <= d,   -log(1 - s_i) = logdet A - logdet A_{-i},
// so ranking by s is ranking by the leave-one-out log-det loss; and the key basis with uniform
// weights is plain ridge leverage diag(K (K^T K + lambda I)^-1 K^T).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/capkv_presets.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"
#include "support/reference.hpp"

namespace capkv_test {
namespace {

struct Instance {
  Layer layer;
  capkv::CapKV policy;
};

// Random instances over the presets and GQA groups, all with eps = 0 so the identities are exact.
std::vector<Instance> instances() {
  std::vector<Instance> out;
  std::uint64_t seed = 100;
  for (CapKVPreset preset : {CapKVPreset::kDefault, CapKVPreset::kPaper, CapKVPreset::kKvpress,
                             CapKVPreset::kKeyLeverage}) {
    for (std::int64_t g : {1, 3}) {
      for (std::int64_t n : {12, 40, 90}) {
        Layer l = random_layer({.n = n, .kv_heads = 2, .group = g, .dim = 8}, seed++);
        prepare_for(preset, l);
        capkv::CapKV policy = make_capkv(preset);
        policy.config.eps = 0.0;
        policy.config.ridge = 1.0;
        out.push_back({std::move(l), policy});
      }
    }
  }
  return out;
}

TEST(CapKVIdentities, ScoresLieInZeroOneAndSumToTheTraceOfIMinusAInverse) {
  for (const Instance& x : instances()) {
    const Layer& l = x.layer;
    const ref::CapKVReference want = ref::capkv(l, x.policy.config);
    const Eigen::MatrixXd tol = ref::capkv_tolerance(l, x.policy.config, want);
    const capkv::Scores got = capkv::cpu::Scorer<capkv::CapKV>::score(x.policy, l.inputs(), l.n());
    ASSERT_EQ(got.values.rows(), l.query_heads());
    for (std::int64_t h = 0; h < l.query_heads(); ++h) {
      double sum = 0.0, sum_tol = 0.0;
      for (std::int64_t i = 0; i < l.n(); ++i) {
        EXPECT_GE(got.values(h, i), 0.0f) << "head " << h << " token " << i;
        EXPECT_LT(got.values(h, i), 1.0f) << "head " << h << " token " << i;
        sum += got.values(h, i);
        sum_tol += tol(h, i);
      }
      // A built in double from the reference weights; its trace identity is independent of how
      // the library factors it.
      const Eigen::MatrixXd& a = want.capacity[h];
      const double trace = (Eigen::MatrixXd::Identity(a.rows(), a.cols()) - a.inverse()).trace();
      EXPECT_NEAR(sum, trace, sum_tol) << x.policy.name() << " head " << h;
      EXPECT_LE(trace, static_cast<double>(a.rows()));
    }
  }
}

// -log(1 - s_i) is the log-det lost by dropping token i: logdet A - logdet(A - w_i u_i u_i^T).
// The identity is checked in double on the reference, then the library's fp32 ranking is checked
// against the ranking by the loss itself.
TEST(CapKVIdentities, RankingByScoreIsRankingByLeaveOneOutLogDetLoss) {
  std::int64_t fully_ordered = 0, total = 0;
  for (const Instance& x : instances()) {
    const Layer& l = x.layer;
    const ref::CapKVReference want = ref::capkv(l, x.policy.config);
    const Eigen::MatrixXd tol = ref::capkv_tolerance(l, x.policy.config, want);
    const capkv::Scores got = capkv::cpu::Scorer<capkv::CapKV>::score(x.policy, l.inputs(), l.n());
    const std::int64_t g = l.group();
    for (std::int64_t h = 0; h < l.query_heads(); ++h) {
      const Eigen::MatrixXd& a = want.capacity[h];
      const Eigen::MatrixXd u = x.policy.config.basis == capkv::CapKV::Basis::kValues
                                    ? l.values.head(h / g)
                                    : l.keys.head(h / g);
      const double logdet_a = ref::logdet(a);
      std::vector<std::int64_t> candidates;
      Eigen::VectorXd loss = Eigen::VectorXd::Zero(l.n());
      for (std::int64_t i = want.begin; i < l.n(); ++i) {
        const Eigen::MatrixXd a_minus_i = a - want.weights(h, i) * u.row(i).transpose() * u.row(i);
        loss[i] = logdet_a - ref::logdet(a_minus_i);
        EXPECT_NEAR(-std::log1p(-want.scores(h, i)), loss[i], 1e-9 * (1.0 + loss[i]));
        candidates.push_back(i);
      }
      // Pairs whose scores are separated beyond the fp32 tolerance must be ordered as the losses.
      for (std::int64_t i : candidates) {
        for (std::int64_t j : candidates) {
          if (std::abs(want.scores(h, i) - want.scores(h, j)) <= tol(h, i) + tol(h, j)) continue;
          EXPECT_EQ(got.values(h, i) > got.values(h, j), loss[i] > loss[j])
              << x.policy.name() << " head " << h << " tokens " << i << ", " << j;
        }
      }
      // Where every gap is resolved, the two orders are identical as sequences.
      auto by = [&](auto key) {
        std::vector<std::int64_t> order = candidates;
        std::stable_sort(order.begin(), order.end(),
                         [&](std::int64_t p, std::int64_t q) { return key(p) > key(q); });
        return order;
      };
      const auto loss_order = by([&](std::int64_t i) { return loss[i]; });
      bool resolved = true;
      for (std::size_t k = 1; k < loss_order.size(); ++k) {
        const std::int64_t p = loss_order[k - 1], q = loss_order[k];
        resolved &= want.scores(h, p) - want.scores(h, q) > tol(h, p) + tol(h, q);
      }
      ++total;
      if (!resolved) continue;
      ++fully_ordered;
      EXPECT_EQ(by([&](std::int64_t i) { return got.values(h, i); }), loss_order);
    }
  }
  // The exact sequence comparison must actually have run on most heads.
  EXPECT_GT(fully_ordered, total / 2) << fully_ordered << " of " << total;
}

// With g = 1 the KV-head scores are the query head's, so select() keeps the top-B tokens by the
// leave-one-out log-det loss.
TEST(CapKVIdentities, SelectionKeepsTheLargestLeaveOneOutLosses) {
  for (std::uint64_t seed = 0; seed < 6; ++seed) {
    const Layer l = random_layer({.n = 60, .kv_heads = 2, .group = 1, .dim = 8}, 500 + seed);
    capkv::CapKV policy;
    policy.config.eps = 0.0;
    const ref::CapKVReference want = ref::capkv(l, policy.config);
    const Eigen::MatrixXd tol = ref::capkv_tolerance(l, policy.config, want);
    Eigen::MatrixXd loss = Eigen::MatrixXd::Zero(2, l.n());
    Eigen::MatrixXd loss_tol = Eigen::MatrixXd::Zero(2, l.n());
    for (std::int64_t h = 0; h < 2; ++h) {
      const Eigen::MatrixXd u = l.values.head(h);
      for (std::int64_t i = want.begin; i < l.n(); ++i) {
        loss(h, i) =
            ref::logdet(want.capacity[h]) -
            ref::logdet(want.capacity[h] - want.weights(h, i) * u.row(i).transpose() * u.row(i));
        loss_tol(h, i) = tol(h, i) / (1.0 - want.scores(h, i));  // d(-log(1 - s)) = ds / (1 - s)
      }
    }
    const capkv::Selection sel = capkv::select(policy, l.inputs(), capkv::Budget::tokens(20));
    EXPECT_TRUE(SelectionAgrees(sel, loss, loss_tol, policy.protection(l.n(), 20), 20));
  }
}

// diag(K (K^T K + lambda I)^-1 K^T) over the candidate keys, in double, as the hat matrix of ridge
// regression; the sinks are outside the candidates and score 0.
Eigen::VectorXd ridge_leverage(const Eigen::MatrixXd& keys, std::int64_t begin, double lambda) {
  const std::int64_t n = keys.rows();
  Eigen::VectorXd out = Eigen::VectorXd::Zero(n);
  if (begin >= n) return out;
  const Eigen::MatrixXd k = keys.bottomRows(n - begin);
  const Eigen::MatrixXd gram =
      k.transpose() * k + lambda * Eigen::MatrixXd::Identity(k.cols(), k.cols());
  const Eigen::MatrixXd hat = k * gram.inverse() * k.transpose();
  out.tail(n - begin) = hat.diagonal();
  return out;
}

TEST(CapKVIdentities, KeyBasisIsRidgeLeverageOfTheKeys) {
  for (double lambda : {0.5, 1.0, 4.0}) {
    for (std::int64_t sinks : {0, 4}) {
      const Layer l = random_layer({.n = 70, .kv_heads = 3, .group = 1, .dim = 16},
                                   static_cast<std::uint64_t>(lambda * 10 + sinks));
      capkv::CapKV policy = capkv::CapKV::key_leverage(lambda);
      policy.config.eps = 0.0;
      policy.config.sinks = sinks;
      ASSERT_FALSE(policy.needs().values);
      ASSERT_FALSE(policy.needs().queries);
      capkv::LayerInputs in;  // keys only: the key basis with uniform weights reads nothing else
      in.keys = l.keys.view();
      const capkv::Selection sel =
          capkv::select(policy, in, capkv::Budget::tokens(30), {.return_scores = true});
      const ref::CapKVReference want = ref::capkv(l, policy.config);
      const Eigen::MatrixXd tol = ref::capkv_tolerance(l, policy.config, want);
      Eigen::MatrixXd leverage(l.kv_heads(), l.n());
      for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
        leverage.row(h) = ridge_leverage(l.keys.head(h), sinks, lambda).transpose();
        // The hat-matrix form and the capacity-matrix form are the same number in double.
        EXPECT_LT((leverage.row(h) - want.scores.row(h)).cwiseAbs().maxCoeff(), 1e-10);
      }
      EXPECT_TRUE(ScoresNear(sel.scores, leverage, tol)) << "lambda " << lambda;
      EXPECT_TRUE(SelectionAgrees(sel, leverage, tol, policy.protection(l.n(), 30), 30));
    }
  }
}

}  // namespace
}  // namespace capkv_test
