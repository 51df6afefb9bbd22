#pragma once

// Cholesky factorisation and inversion of the factor for one small SPD matrix (d <= 256), written
// as a sequence of parallel sweeps separated by barriers so that one CUDA block (many workers) and
// the CPU tests (one worker) run the same code. CapKV needs L^-1 of A = ridge * I + sum w u u^T per
// query head; d is a head dimension, so the d^3/3 flops are small next to the n d^2 of the Gram and
// the leverage product, and the whole matrix sits in one block's shared memory (d <= 128 in fp64)
// or in global memory that the block alone touches.
//
// Storage is row-major with leading dimension `ld`; only the lower triangle is read or written.

#include <cmath>

#include "capkv/device/host_device.hpp"

namespace capkv::device {
namespace detail {

template <class T>
CAPKV_HOST_DEVICE inline T square_root(T x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// How a team splits a 2-D sweep: a team whose size is a multiple of 32 (a CUDA block) gives each
// warp rows and each lane columns, so consecutive lanes touch consecutive elements and no worker
// divides; any other team (the CPU, the thread tests) splits rows only.
struct SweepSplit {
  int row_worker;
  int row_workers;
  int lane;
  int lanes;

  CAPKV_HD_TEMPLATE
  template <class Team>
  CAPKV_HOST_DEVICE static SweepSplit of(const Team& team) {
    const int lanes = team.size() % 32 == 0 ? 32 : 1;
    return {team.rank() / lanes, team.size() / lanes, team.rank() % lanes, lanes};
  }
};

// True for a finite positive pivot; NaN fails the first test and Inf the second (Inf - Inf is NaN).
template <class T>
CAPKV_HOST_DEVICE inline bool usable_pivot(T x) {
  return x > T(0) && x - x == T(0);
}

}  // namespace detail

// In place A = L L^T: on return the lower triangle (diagonal included) holds L. Returns 0 on
// success, or k + 1 when the k-th pivot is not a finite positive number (LAPACK's `info`), in
// which case the matrix is left partly factored. Every worker of `team` must call it and gets the
// same answer, because each reads the pivot itself after a barrier instead of being told.
//
// Right-looking: step k scales column k and updates the trailing lower triangle, d - k - 1 wide.
// Work d^3/3 flops; two barriers per step.
CAPKV_HD_TEMPLATE
template <class T, class Team>
CAPKV_HOST_DEVICE int cholesky_lower(T* a, int ld, int d, const Team& team) {
  const int rank = team.rank();
  const int size = team.size();
  const detail::SweepSplit split = detail::SweepSplit::of(team);
  for (int k = 0; k < d; ++k) {
    team.sync();  // the previous step's updates of a[k][k] and column k are visible
    const T akk = a[k * ld + k];
    if (!detail::usable_pivot(akk)) {
      team.sync();  // nobody may still be reading this step's values when the caller moves on
      return k + 1;
    }
    const T lkk = detail::square_root(akk);
    for (int i = k + 1 + rank; i < d; i += size) a[i * ld + k] /= lkk;
    team.sync();
    // The trailing update only reads column k (final now) and writes columns > k, so it needs no
    // barrier of its own. a[k][k] is written here because every worker has read it by now.
    for (int i = k + 1 + split.row_worker; i < d; i += split.row_workers) {
      const T lik = a[i * ld + k];
      for (int j = k + 1 + split.lane; j <= i; j += split.lanes)
        a[i * ld + j] -= lik * a[j * ld + k];
    }
    if (rank == 0) a[k * ld + k] = lkk;
  }
  team.sync();
  return 0;
}

// In place L -> L^-1 for a lower-triangular L with a nonzero diagonal (a Cholesky factor): the
// lower triangle is overwritten by the inverse, which is lower triangular too.
//
// Forward substitution L X = I for all d columns at once, right-looking like the factorisation: at
// step k row k of X is complete up to the division by L[k][k]; then every later row i subtracts
// L[i][k] times it. Column k of L is still needed during the step, so X's column k is written
// last, after a barrier. Work d^3/3 flops; three barriers per step.
CAPKV_HD_TEMPLATE
template <class T, class Team>
CAPKV_HOST_DEVICE void invert_lower(T* a, int ld, int d, const Team& team) {
  const int rank = team.rank();
  const int size = team.size();
  const detail::SweepSplit split = detail::SweepSplit::of(team);
  for (int k = 0; k < d; ++k) {
    team.sync();
    const T lkk = a[k * ld + k];
    for (int c = rank; c < k; c += size) a[k * ld + c] /= lkk;  // X[k][c], c < k, final
    team.sync();
    for (int i = k + 1 + split.row_worker; i < d; i += split.row_workers) {
      const T lik = a[i * ld + k];  // L[i][k]: column k is rewritten only after the next barrier
      for (int c = split.lane; c < k; c += split.lanes) a[i * ld + c] -= lik * a[k * ld + c];
    }
    team.sync();
    for (int i = k + 1 + rank; i < d; i += size) a[i * ld + k] = -a[i * ld + k] / lkk;
    if (rank == 0) a[k * ld + k] = T(1) / lkk;
  }
  team.sync();
}

}  // namespace capkv::device
