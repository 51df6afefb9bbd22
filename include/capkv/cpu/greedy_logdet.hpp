#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <vector>

#include "capkv/core/error.hpp"
#include "capkv/core/protection.hpp"
#include "capkv/cpu/head_matrix.hpp"

namespace capkv::cpu {

// The D-optimal greedy: repeatedly add the candidate with the largest exact marginal gain
//   sum_h log(1 + (w_hi + eps) u_i^T A_h^-1 u_i)
// of the group's objective sum_h logdet(A_h), A_h = ridge * I + sum_{picked} (w_h + eps) u u^T.
// Each A_h is kept as a Cholesky factor updated by rank one per pick, and q_hi = u_i^T A_h^-1 u_i
// for every candidate by the Sherman-Morrison downdate, so a pick costs O(g (n d + d^2)).
// Returns one row of scores: picks - rank for the picked tokens (the first pick scores highest),
// 0 for the rest, so the shared top-B selection keeps exactly the greedy set.
inline Eigen::RowVectorXf greedy_logdet_scores(const ConstRowMap& u, const RowMatrixXf& weights,
                                               const Protection& protection, std::int64_t picks,
                                               double eps, double ridge) {
  const std::int64_t n = u.rows();
  const std::int64_t d = u.cols();
  const std::int64_t g = weights.rows();
  Eigen::RowVectorXf scores = Eigen::RowVectorXf::Zero(n);
  const Eigen::MatrixXd ud = u.cast<double>();
  const Eigen::MatrixXd wd = weights.cast<double>().array() + eps;  // [g, n]

  std::vector<char> available(static_cast<std::size_t>(n));
  std::int64_t n_available = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    available[i] = !protection.contains(i, n);
    n_available += available[i];
  }
  picks = std::min(picks, n_available);

  const Eigen::VectorXd norms = ud.rowwise().squaredNorm();
  Eigen::MatrixXd q(g, n);  // u_i^T A_h^-1 u_i
  std::vector<Eigen::LLT<Eigen::MatrixXd>> factors;
  for (std::int64_t h = 0; h < g; ++h) {
    q.row(h) = norms.transpose() / ridge;
    factors.emplace_back(ridge * Eigen::MatrixXd::Identity(d, d));
  }
  for (std::int64_t step = 0; step < picks; ++step) {
    std::int64_t best = -1;
    double best_gain = -INFINITY;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!available[i]) continue;
      double gain = 0.0;
      for (std::int64_t h = 0; h < g; ++h) gain += std::log1p(wd(h, i) * q(h, i));
      if (gain >= best_gain) {  // >= : ties go to the more recent token; NaN never wins
        best_gain = gain;
        best = i;
      }
    }
    require(best >= 0, "values", "the greedy log-det gains are not finite (overflowing inputs)");
    const Eigen::VectorXd ub = ud.row(best).transpose();
    for (std::int64_t h = 0; h < g; ++h) {
      const double w = wd(h, best);
      const Eigen::VectorXd z = factors[h].solve(ub);
      const Eigen::VectorXd c = ud * z;
      q.row(h).array() -= w * c.array().square().transpose() / (1.0 + w * q(h, best));
      // u^T A^-1 u >= 0 exactly; the downdate can cancel below it at extreme scales.
      q.row(h) = q.row(h).cwiseMax(0.0);
      factors[h].rankUpdate(ub, w);
    }
    available[best] = 0;
    scores[best] = static_cast<float>(picks - step);
  }
  return scores;
}

}  // namespace capkv::cpu
