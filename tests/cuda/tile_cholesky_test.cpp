// The shared Cholesky and triangular inverse (include/capkv/device/tile_cholesky.hpp) run on the
// CPU as a one-worker team, against Eigen's double LLT and explicit inverses. The CUDA kernel runs
// the same functions with a whole block; tests/cuda/kernels_test.cu checks that side on a device.

#include "capkv/device/tile_cholesky.hpp"

#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/LU>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "thread_team.hpp"

namespace {

using Eigen::MatrixXd;
using RowMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// ridge * I + sum_i w_i u_i u_i^T: the shape of CapKV's capacity matrix, with a spread of weights
// and a few nearly parallel u so the matrix is not trivially conditioned.
MatrixXd capacity_like(int d, int n, std::uint64_t seed, double ridge = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  MatrixXd a = ridge * MatrixXd::Identity(d, d);
  Eigen::VectorXd base(d);
  for (int j = 0; j < d; ++j) base[j] = normal(rng);
  for (int i = 0; i < n; ++i) {
    Eigen::VectorXd u(d);
    for (int j = 0; j < d; ++j) u[j] = normal(rng) + (i % 3 == 0 ? 4.0 * base[j] : 0.0);
    a += std::exp(-5.0 * uniform(rng)) * u * u.transpose();
  }
  return a;
}

// A row-major buffer with leading dimension ld > d and a sentinel everywhere the routine must not
// write (the strict upper triangle and the padding columns).
struct Padded {
  int d;
  int ld;
  std::vector<double> data;
  static constexpr double kSentinel = 12345.25;

  Padded(const MatrixXd& m, int pad) : d(static_cast<int>(m.rows())), ld(d + pad) {
    data.assign(static_cast<std::size_t>(d) * ld, kSentinel);
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j <= i; ++j) data[i * ld + j] = m(i, j);
    }
  }
  MatrixXd lower() const {
    MatrixXd l = MatrixXd::Zero(d, d);
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j <= i; ++j) l(i, j) = data[i * ld + j];
    }
    return l;
  }
  bool untouched_outside_lower() const {
    for (int i = 0; i < d; ++i) {
      for (int j = i + 1; j < ld; ++j) {
        if (data[i * ld + j] != kSentinel) return false;
      }
    }
    return true;
  }
};

class TileCholesky : public ::testing::TestWithParam<int> {};

TEST_P(TileCholesky, FactorMatchesEigenAndInverseIsTheInverse) {
  const int d = GetParam();
  const MatrixXd a = capacity_like(d, 3 * d + 5, 1000 + d);
  Padded buffer(a, 3);
  const capkv::device::SerialTeam team;
  ASSERT_EQ(capkv::device::cholesky_lower(buffer.data.data(), buffer.ld, d, team), 0);
  EXPECT_TRUE(buffer.untouched_outside_lower());

  const Eigen::LLT<MatrixXd> llt(a);
  ASSERT_EQ(llt.info(), Eigen::Success);
  const MatrixXd l_want = llt.matrixL();
  const MatrixXd l_got = buffer.lower();
  // Backward-stable factorisation: errors relative to sqrt of the diagonal, scaled by d.
  const double scale = std::sqrt(a.diagonal().maxCoeff());
  EXPECT_LE((l_got - l_want).cwiseAbs().maxCoeff(), 1e-12 * d * scale);

  capkv::device::invert_lower(buffer.data.data(), buffer.ld, d, team);
  EXPECT_TRUE(buffer.untouched_outside_lower());
  const MatrixXd l_inv = buffer.lower();
  const MatrixXd identity = l_inv * l_want;
  EXPECT_LE((identity - MatrixXd::Identity(d, d)).cwiseAbs().maxCoeff(), 1e-10 * d);
  // And the quantity CapKV needs: u^T A^-1 u = ||L^-1 u||^2.
  Eigen::VectorXd u = Eigen::VectorXd::LinSpaced(d, -1.0, 2.0);
  const double want = u.dot(llt.solve(u));
  EXPECT_NEAR((l_inv * u).squaredNorm(), want, 1e-11 * std::abs(want) * d);
}

TEST_P(TileCholesky, SinglePrecisionStaysClose) {
  const int d = GetParam();
  const MatrixXd a = capacity_like(d, 2 * d, 7 + d);
  std::vector<float> buffer(static_cast<std::size_t>(d) * d);
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) buffer[i * d + j] = static_cast<float>(a(i, j));
  }
  const capkv::device::SerialTeam team;
  ASSERT_EQ(capkv::device::cholesky_lower(buffer.data(), d, d, team), 0);
  capkv::device::invert_lower(buffer.data(), d, d, team);
  MatrixXd l_inv = MatrixXd::Zero(d, d);
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j <= i; ++j) l_inv(i, j) = buffer[i * d + j];
  }
  const MatrixXd want = a.inverse();
  const MatrixXd got = l_inv.transpose() * l_inv;
  EXPECT_LE((got - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff(), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Sizes, TileCholesky, ::testing::Values(1, 2, 3, 7, 16, 64, 100, 128, 256),
                         [](const auto& info) {
                           std::ostringstream name;  // not "d" + to_string: GCC 12 -Wrestrict
                           name << "d" << info.param;
                           return name.str();
                         });

TEST(TileCholeskyErrors, ReportsTheFirstBadPivotLikeLapack) {
  const capkv::device::SerialTeam team;
  // Pivot 3 of this matrix is 0 after elimination: rows 0..2 are fine, row 3 repeats row 2's.
  MatrixXd a = capacity_like(5, 9, 3);
  a.row(3) = a.row(2);
  a.col(3) = a.col(2);
  std::vector<double> buffer(a.data(), a.data() + 25);  // symmetric, so column-major is fine
  EXPECT_EQ(capkv::device::cholesky_lower(buffer.data(), 5, 5, team), 4);

  std::vector<double> negative{-1.0};
  EXPECT_EQ(capkv::device::cholesky_lower(negative.data(), 1, 1, team), 1);
  std::vector<double> nan{1.0, 0.0, 0.0, std::numeric_limits<double>::quiet_NaN()};
  EXPECT_EQ(capkv::device::cholesky_lower(nan.data(), 2, 2, team), 2);
  std::vector<double> inf{std::numeric_limits<double>::infinity()};
  EXPECT_EQ(capkv::device::cholesky_lower(inf.data(), 1, 1, team), 1);
}

using capkv_cuda_test::run_team;
using capkv_cuda_test::ThreadTeam;

TEST(TileCholeskyTeams, ThreadedTeamsAgreeWithOneWorker) {
  for (int d : {1, 6, 33, 64}) {
    const MatrixXd a = capacity_like(d, 2 * d + 1, 99 + d);
    Padded serial(a, 1);
    const capkv::device::SerialTeam one;
    ASSERT_EQ(capkv::device::cholesky_lower(serial.data.data(), serial.ld, d, one), 0);
    capkv::device::invert_lower(serial.data.data(), serial.ld, d, one);
    for (int workers : {2, 3, 7}) {
      Padded parallel(a, 1);
      std::vector<int> info(static_cast<std::size_t>(workers), -1);
      run_team(workers, [&](const ThreadTeam& team) {
        info[team.rank()] =
            capkv::device::cholesky_lower(parallel.data.data(), parallel.ld, d, team);
        capkv::device::invert_lower(parallel.data.data(), parallel.ld, d, team);
      });
      for (int r = 0; r < workers; ++r) EXPECT_EQ(info[r], 0);
      // The same operations in the same order per element: bitwise equal, not merely close.
      EXPECT_EQ(parallel.data, serial.data) << "d " << d << ", " << workers << " workers";
    }
  }
}

TEST(TileCholeskyTeams, WarpShapedTeamsSplitColumnsToo) {
  // Sizes that are multiples of 32 take the block's path: rows per warp, columns per lane.
  for (int d : {40, 70}) {
    const MatrixXd a = capacity_like(d, 2 * d, 3 * d);
    Padded serial(a, 2);
    const capkv::device::SerialTeam one;
    ASSERT_EQ(capkv::device::cholesky_lower(serial.data.data(), serial.ld, d, one), 0);
    capkv::device::invert_lower(serial.data.data(), serial.ld, d, one);
    for (int workers : {32, 64}) {
      Padded parallel(a, 2);
      run_team(workers, [&](const ThreadTeam& team) {
        capkv::device::cholesky_lower(parallel.data.data(), parallel.ld, d, team);
        capkv::device::invert_lower(parallel.data.data(), parallel.ld, d, team);
      });
      EXPECT_EQ(parallel.data, serial.data) << "d " << d << ", " << workers << " workers";
    }
  }
}

TEST(TileCholeskyTeams, EveryWorkerSeesTheSameFailure) {
  MatrixXd a = capacity_like(9, 20, 5);
  a(6, 6) = -50.0;
  for (int workers : {2, 5}) {
    Padded buffer(a, 0);
    std::vector<int> info(static_cast<std::size_t>(workers), -1);
    run_team(workers, [&](const ThreadTeam& team) {
      info[team.rank()] = capkv::device::cholesky_lower(buffer.data.data(), buffer.ld, 9, team);
    });
    const Padded reference_buffer(a, 0);
    std::vector<double> copy = reference_buffer.data;
    const int want = capkv::device::cholesky_lower(copy.data(), 9, 9, capkv::device::SerialTeam{});
    EXPECT_GT(want, 0);
    for (int r = 0; r < workers; ++r) EXPECT_EQ(info[r], want);
  }
}

}  // namespace
