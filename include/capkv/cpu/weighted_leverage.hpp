#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "capkv/core/error.hpp"
#include "capkv/cpu/head_matrix.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace capkv::cpu {

// Tokens per block: 256 rows of up to 256 floats stay in L2 with the d x d Gram beside them.
inline constexpr std::int64_t kLeverageBlock = 256;

// For each of the g rows of `weights` (one query head of a KV group, all sharing the basis U):
//   A_h = ridge * I + sum_{i >= begin} (w_hi + eps) u_i u_i^T
//   s_hi = w_hi * u_i^T A_h^-1 u_i = w_hi * ||L_h^-1 u_i||^2        (A_h = L_h L_h^T)
// Scores of tokens before `begin` are left at 0.
//
// Both passes are GEMMs over token blocks split across threads: each block of U is read once for
// all g heads. The Gram is 2 n d^2 flops per head, the leverage product another 2 n d^2; the d x d
// Cholesky and inverse run in double, off the hot path, so the scores' accuracy is that of the
// fp32 GEMMs.
inline RowMatrixXf weighted_leverage(const ConstRowMap& u, const RowMatrixXf& weights,
                                     std::int64_t begin, double eps, double ridge) {
  const std::int64_t n = u.rows();
  const std::int64_t d = u.cols();
  const std::int64_t g = weights.rows();
  RowMatrixXf scores = RowMatrixXf::Zero(g, n);
  if (begin >= n) return scores;
  const std::int64_t blocks = (n - begin + kLeverageBlock - 1) / kLeverageBlock;
  const auto block_rows = [&](std::int64_t b) {
    const std::int64_t r0 = begin + b * kLeverageBlock;
    return std::pair{r0, std::min(kLeverageBlock, n - r0)};
  };

  // Pass 1: per-thread partial Grams, summed at the end in thread order, so the scores are the
  // same bits on every run with the same thread count. One block needs no thread team: opening
  // one costs more than the block on a busy machine.
#ifdef _OPENMP
  const int threads = blocks > 1 ? omp_get_max_threads() : 1;
#else
  const int threads = 1;
#endif
  std::vector<std::vector<Eigen::MatrixXf>> partial(
      static_cast<std::size_t>(threads),
      std::vector<Eigen::MatrixXf>(static_cast<std::size_t>(g), Eigen::MatrixXf::Zero(d, d)));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#ifdef _OPENMP
    std::vector<Eigen::MatrixXf>& local = partial[static_cast<std::size_t>(omp_get_thread_num())];
#else
    std::vector<Eigen::MatrixXf>& local = partial[0];
#endif
    RowMatrixXf scaled(kLeverageBlock, d);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b) {
      const auto [r0, len] = block_rows(b);
      const auto ub = u.middleRows(r0, len);
      for (std::int64_t h = 0; h < g; ++h) {
        const auto root_w = (weights.row(h).segment(r0, len).array() + static_cast<float>(eps)).sqrt();
        scaled.topRows(len) = root_w.matrix().transpose().asDiagonal() * ub;
        local[h].noalias() += scaled.topRows(len).transpose() * scaled.topRows(len);
      }
    }
  }
  std::vector<Eigen::MatrixXf>& grams = partial[0];
  for (std::size_t t = 1; t < partial.size(); ++t) {
    for (std::int64_t h = 0; h < g; ++h) grams[h] += partial[t][h];
  }

  // L^-1 per head, in double: A >= ridge * I is SPD whenever ridge > 0.
  std::vector<Eigen::MatrixXf> inverse_factor_t(static_cast<std::size_t>(g));
  for (std::int64_t h = 0; h < g; ++h) {
    Eigen::MatrixXd a = grams[h].cast<double>();
    a.diagonal().array() += ridge;
    Eigen::LLT<Eigen::MatrixXd> llt(a);
    require(llt.info() == Eigen::Success, "ridge",
            "the capacity matrix is not positive definite; use a positive ridge");
    const Eigen::MatrixXd l_inv =
        llt.matrixL().solve(Eigen::MatrixXd::Identity(d, d));
    inverse_factor_t[h] = l_inv.transpose().cast<float>();
  }

  // Pass 2: s = w * ||u L^-T||^2 row by row (each block's scores are its own: no reduction).
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    RowMatrixXf projected(kLeverageBlock, d);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b) {
      const auto [r0, len] = block_rows(b);
      const auto ub = u.middleRows(r0, len);
      for (std::int64_t h = 0; h < g; ++h) {
        projected.topRows(len).noalias() = ub * inverse_factor_t[h];
        scores.row(h).segment(r0, len) = weights.row(h).segment(r0, len).array() *
                                         projected.topRows(len).rowwise().squaredNorm().transpose().array();
      }
    }
  }
  return scores;
}

}  // namespace capkv::cpu
