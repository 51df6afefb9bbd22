// The blocked, threaded CapKV kernel (capkv/cpu/weighted_leverage.hpp) on its own: the same bits
// whatever the thread count's scheduling (per-thread Grams are summed in thread order), the same
// scores with one thread or several, and a single block, which runs without a thread team, against
// the float64 definition.

#include "capkv/cpu/weighted_leverage.hpp"

#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using capkv::cpu::RowMatrixXf;

struct Problem {
  RowMatrixXf u;
  RowMatrixXf weights;
};

Problem random_problem(std::int64_t n, std::int64_t d, std::int64_t g, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  Problem p{RowMatrixXf(n, d), RowMatrixXf(g, n)};
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t k = 0; k < d; ++k) p.u(i, k) = normal(rng);
  }
  for (std::int64_t h = 0; h < g; ++h) {
    for (std::int64_t i = 0; i < n; ++i) p.weights(h, i) = std::exp(-6.0f * unit(rng));
  }
  return p;
}

RowMatrixXf scores_of(const Problem& p, std::int64_t begin) {
  const capkv::cpu::ConstRowMap u(p.u.data(), p.u.rows(), p.u.cols(),
                                  Eigen::OuterStride<>(p.u.cols()));
  return capkv::cpu::weighted_leverage(u, p.weights, begin, 1e-6, 1.0);
}

// s_hi = w_hi u_i^T (I + sum_j (w_hj + eps) u_j u_j^T)^-1 u_i, in double, the obvious way.
double reference_score(const Problem& p, std::int64_t h, std::int64_t i, std::int64_t begin) {
  const std::int64_t d = p.u.cols();
  Eigen::MatrixXd a = Eigen::MatrixXd::Identity(d, d);
  for (std::int64_t j = begin; j < p.u.rows(); ++j) {
    const Eigen::VectorXd uj = p.u.row(j).cast<double>().transpose();
    a += (static_cast<double>(p.weights(h, j)) + 1e-6) * uj * uj.transpose();
  }
  const Eigen::VectorXd ui = p.u.row(i).cast<double>().transpose();
  return static_cast<double>(p.weights(h, i)) * ui.dot(a.ldlt().solve(ui));
}

TEST(WeightedLeverage, SameBitsOnEveryRunWithMoreThreadsThanCores) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP: there is one thread and nothing to reorder";
#else
  const Problem p = random_problem(5000, 64, 2, 1);
  const int before = omp_get_max_threads();
  omp_set_num_threads(5);  // five partial Grams: a reduction in finishing order would vary
  const RowMatrixXf first = scores_of(p, 4);
  for (int run = 0; run < 6; ++run) {
    const RowMatrixXf again = scores_of(p, 4);
    ASSERT_EQ(0, std::memcmp(first.data(), again.data(), sizeof(float) * first.size()))
        << "run " << run;
  }
  omp_set_num_threads(before);
#endif
}

TEST(WeightedLeverage, OneThreadAndManyAgreeWithinTheFp32Bound) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP";
#else
  const Problem p = random_problem(3000, 32, 3, 2);
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const RowMatrixXf serial = scores_of(p, 0);
  omp_set_num_threads(4);
  const RowMatrixXf threaded = scores_of(p, 0);
  omp_set_num_threads(before);
  for (std::int64_t h = 0; h < p.weights.rows(); ++h) {
    for (std::int64_t i = 0; i < p.u.rows(); ++i) {
      ASSERT_NEAR(serial(h, i), threaded(h, i), 1e-4 * std::abs(serial(h, i)) + 1e-7)
          << "head " << h << " token " << i;
    }
  }
#endif
}

TEST(WeightedLeverage, ASingleBlockMatchesTheFloat64Definition) {
  const std::int64_t begin = 3;
  const Problem p = random_problem(capkv::cpu::kLeverageBlock - 7, 16, 2, 3);
  const RowMatrixXf got = scores_of(p, begin);
  for (std::int64_t h = 0; h < p.weights.rows(); ++h) {
    for (std::int64_t i = 0; i < p.u.rows(); ++i) {
      if (i < begin) {
        ASSERT_EQ(got(h, i), 0.0f);
        continue;
      }
      const double want = reference_score(p, h, i, begin);
      ASSERT_NEAR(got(h, i), want, 1e-4 * want + 1e-7) << "head " << h << " token " << i;
    }
  }
}

}  // namespace
