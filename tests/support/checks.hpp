#pragma once

// GoogleTest assertions shared by the policy tests: scores against a float64 reference within a
// per-entry tolerance, and a selection against reference scores that are only known to within
// that tolerance.

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <span>
#include <sstream>
#include <vector>

#include "capkv/capkv.hpp"

namespace capkv_test {

inline ::testing::AssertionResult ScoresNear(const capkv::ScoreMatrix& got,
                                             const Eigen::MatrixXd& want,
                                             const Eigen::MatrixXd& tol) {
  if (got.rows() != want.rows() || got.cols() != want.cols()) {
    return ::testing::AssertionFailure() << "shape " << got.rows() << "x" << got.cols() << ", want "
                                         << want.rows() << "x" << want.cols();
  }
  std::ostringstream bad;
  std::int64_t failures = 0;
  double worst = 0.0;
  for (Eigen::Index r = 0; r < want.rows(); ++r) {
    for (Eigen::Index c = 0; c < want.cols(); ++c) {
      const double err = std::abs(static_cast<double>(got(r, c)) - want(r, c));
      worst = std::max(worst, err / tol(r, c));
      if (!(err <= tol(r, c))) {  // also catches NaN
        if (failures++ < 6) {
          bad << "\n  [" << r << ", " << c << "] got " << got(r, c) << " want " << want(r, c)
              << " (err " << err << " > tol " << tol(r, c) << ")";
        }
      }
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << failures << " entries out of tolerance (worst err/tol " << worst << "):" << bad.str();
}

inline Eigen::MatrixXd relative_tolerance(const Eigen::MatrixXd& want, double rel, double abs) {
  return (want.cwiseAbs() * rel).array() + abs;
}

// Checks a selection against float64 reference scores known only to within `tol` per entry: the
// kept count is right, protected tokens are kept, a candidate that fewer than (budget - protected)
// others could outrank is kept, and one that at least that many surely outrank is dropped. Ties
// in the reference go to the more recent token. Candidates too close to the cut to decide are
// counted in *undecided; where the reference is well separated that count is 0 and the check is
// an exact comparison.
inline ::testing::AssertionResult SelectionAgrees(
    const capkv::Selection& sel, const Eigen::MatrixXd& want, const Eigen::MatrixXd& tol,
    const capkv::Protection& protection, std::int64_t budget, std::int64_t* undecided = nullptr) {
  const std::int64_t n = want.cols();
  const std::int64_t kept = std::min(budget, n);
  if (sel.n_kv_heads() != want.rows() || sel.n_tokens != n) {
    return ::testing::AssertionFailure() << "selection shape differs from the reference";
  }
  if (undecided) *undecided = 0;
  for (std::int64_t h = 0; h < want.rows(); ++h) {
    const auto idx = sel.head(h);
    if (sel.kept(h) != kept) {
      return ::testing::AssertionFailure()
             << "head " << h << " keeps " << sel.kept(h) << ", want " << kept;
    }
    std::vector<char> in(static_cast<std::size_t>(n), 0);
    for (std::size_t k = 0; k < idx.size(); ++k) {
      if (k > 0 && idx[k] <= idx[k - 1]) {
        return ::testing::AssertionFailure() << "head " << h << " indices not ascending";
      }
      if (idx[k] < 0 || idx[k] >= n) return ::testing::AssertionFailure() << "index out of range";
      in[idx[k]] = 1;
    }
    if (kept == n) continue;
    const std::int64_t free_slots = kept - protection.count(n);
    for (std::int64_t i = 0; i < n; ++i) {
      if (protection.contains(i, n)) {
        if (!in[i]) {
          return ::testing::AssertionFailure() << "head " << h << " drops protected token " << i;
        }
        continue;
      }
      std::int64_t could_outrank = 0, surely_outrank = 0;
      const double lo = want(h, i) - tol(h, i), hi = want(h, i) + tol(h, i);
      for (std::int64_t j = 0; j < n; ++j) {
        if (j == i || protection.contains(j, n)) continue;
        const double lo_j = want(h, j) - tol(h, j), hi_j = want(h, j) + tol(h, j);
        could_outrank += hi_j > lo || (hi_j == lo && j > i);
        surely_outrank += lo_j > hi || (lo_j == hi && j > i);
      }
      if (could_outrank < free_slots && !in[i]) {
        return ::testing::AssertionFailure()
               << "head " << h << " drops token " << i << " (reference score " << want(h, i)
               << ") which must be kept";
      }
      if (surely_outrank >= free_slots && in[i]) {
        return ::testing::AssertionFailure()
               << "head " << h << " keeps token " << i << " (reference score " << want(h, i)
               << ") which must be dropped";
      }
      if (undecided && could_outrank >= free_slots && surely_outrank < free_slots) ++*undecided;
    }
  }
  return ::testing::AssertionSuccess();
}

inline std::vector<std::int32_t> as_vector(std::span<const std::int32_t> s) {
  return {s.begin(), s.end()};
}

}  // namespace capkv_test
