#pragma once

// Per query head: A = L L^T and W = L^-T, from the fp64 Gram, in one block per head running the
// shared team-parallel factorisation (include/capkv/device/tile_cholesky.hpp). The matrix lives in
// shared memory when d (d + 1) doubles fit (d <= 128 on sm_80+: 130 KB), else in a global scratch
// copy only this block touches (d up to 256: 512 KB, L2-resident).
// Work per head: d^3/3 flops for the factor and d^3/3 for the inverse, fp64. Bytes: d^2 * 8 in,
// d^2 * 4 out; negligible next to the n d^2 passes, but latency-bound (3 barriers per column),
// which is why each head has its own block and the heads run side by side.

#include <cuda_runtime.h>

#include <cstdint>

#include "capkv/device/tile_cholesky.hpp"
#include "kernels/block_team.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kCholeskyThreads = 512;

struct CholeskyParams {
  const double* gram = nullptr;  // [Hq, d, d], SPD (only the lower triangle is read)
  int d = 0;
  double* scratch = nullptr;          // [Hq, d, d] when not in shared memory, else null
  float* inverse_factor_t = nullptr;  // [Hq, d, d] out: W = L^-T, upper triangular, zeros below
  int* info = nullptr;                // [Hq] out, may be null: 0, or the LAPACK-style failed pivot
  std::uint32_t* flags = nullptr;
};

// Grid Hq, kCholeskyThreads threads; dynamic shared memory d (d + 1) doubles when scratch is null.
__global__ void __launch_bounds__(kCholeskyThreads) cholesky_inverse_kernel(CholeskyParams p) {
  extern __shared__ double shared_matrix[];
  const std::int64_t h = blockIdx.x;
  const int d = p.d;
  const std::int64_t square = static_cast<std::int64_t>(d) * d;
  // An odd row stride in shared memory puts a column's elements in distinct banks.
  const int ld = p.scratch ? d : d + 1;
  double* a = p.scratch ? p.scratch + h * square : shared_matrix;
  const double* in = p.gram + h * square;
  for (int e = threadIdx.x; e < d * d; e += blockDim.x) {
    const int r = e / d;
    const int c = e % d;
    if (c <= r) a[r * ld + c] = in[e];
  }
  const BlockTeam team;
  const int info = capkv::device::cholesky_lower(a, ld, d, team);  // starts with a barrier
  float* w = p.inverse_factor_t + h * square;
  if (info != 0) {
    // Every thread saw the same pivot. NaN makes any score computed from W NaN as well.
    for (int e = threadIdx.x; e < d * d; e += blockDim.x) w[e] = __int_as_float(0x7fc00000);
    if (threadIdx.x == 0) {
      if (p.info) p.info[h] = info;
      raise_flag(p.flags, kNotPositiveDefinite);
    }
    return;
  }
  capkv::device::invert_lower(a, ld, d, team);  // ends with a barrier
  for (int e = threadIdx.x; e < d * d; e += blockDim.x) {
    const int r = e / d;  // W[r][c] = X[c][r] with X = L^-1 lower triangular
    const int c = e % d;
    w[e] = c >= r ? static_cast<float>(a[c * ld + r]) : 0.0f;
  }
  if (threadIdx.x == 0 && p.info) p.info[h] = 0;
}

}  // namespace capkv::cuda::kernels
