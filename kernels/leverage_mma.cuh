#pragma once

// The leverage scores of kernels/leverage.cuh on the tensor cores, for fp16 and bf16 bases with
// head_dim a multiple of 16 (sm_80 or newer): s_hi = w_hi ||u_i W_h||^2 with W_h = L_h^-T, reduced
// over the GQA group and written per KV head, with the same grid, outputs and order of reduction.
//
// Precision: W is split once per head into bf16 hi + lo (split_factor_kernel, to global memory,
// where every block reads it through L2); the basis is exact in bf16 for a bf16 cache and splits
// exactly for an fp16 one. Each product u W = u_hi W_hi + u_hi W_lo (+ u_lo W_hi for fp16), fp32
// accumulation: each term off by at most 2^-17 (bf16) or 3 * 2^-17 (fp16) of its magnitude before
// the summation, against 2^-8 for a plain bf16 product, which would reorder close scores.
//
// Blocking: a block stages 64 tokens of U (all d columns, split bf16) in shared memory once. For
// each query head of the group its 8 warps compute the 64 x d product in 16 x 16 fragments: warp w
// takes the rows 16 (w % 4) .. + 16 and every other column block starting at w / 4, skipping the
// zero blocks of the upper-triangular W (k-block > column block). Each finished fragment goes
// through a per-warp 16 x 16 scratch to sum its squares per row; the two warps sharing a row band
// meet in shared memory in a fixed order, so the scores are deterministic.
// Work per query head: n d (d + 16) / 2 MMA multiply-adds times 2 or 3 for the split.

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>

#include "capkv/device/bf16_split.hpp"
#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"
#include "kernels/leverage.cuh"
#include "kernels/weighted_gram_mma.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kMmaLeverageTokens = 64;
inline constexpr int kMmaLeverageThreads = 256;

// Row stride of the staged basis in bf16: 8 past head_dim keeps fragment starts 32-byte aligned
// and shifts successive rows across the shared-memory banks.
constexpr int mma_leverage_ld(std::int64_t d) { return static_cast<int>(d) + 8; }

// Dynamic shared memory of leverage_mma_kernel: the basis tile (hi, and lo for fp16), one 16 x 16
// fp32 scratch per warp, the two row-band partial sums and the combined scores.
constexpr std::size_t mma_leverage_shared_bytes(std::int64_t d, bool basis_lo) {
  const std::size_t tile = static_cast<std::size_t>(kMmaLeverageTokens) * mma_leverage_ld(d) * 2;
  return tile * (basis_lo ? 2 : 1) +
         sizeof(float) * (8 * 256 + 2 * kMmaLeverageTokens + kMmaLeverageTokens);
}

struct SplitFactorParams {
  const float* factor = nullptr;  // [count] fp32 (W of every head)
  std::int64_t count = 0;
  __nv_bfloat16* hi = nullptr;  // [count] out
  __nv_bfloat16* lo = nullptr;  // [count] out
};

__global__ void split_factor_kernel(SplitFactorParams p) {
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       e < p.count; e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const capkv::device::Bf16Pair s = capkv::device::split_bf16(p.factor[e]);
    p.hi[e] = __float2bfloat16_rn(s.hi);
    p.lo[e] = __float2bfloat16_rn(s.lo);
  }
}

struct LeverageMmaParams {
  LeverageParams base;  // basis, weights, group, begin, reduction, scores, flags
  const __nv_bfloat16* factor_hi = nullptr;  // [Hq, d, d] split of W = L^-T, row-major
  const __nv_bfloat16* factor_lo = nullptr;
};

__global__ void __launch_bounds__(kMmaLeverageThreads) leverage_mma_kernel(LeverageMmaParams mp) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  const LeverageParams& p = mp.base;
  extern __shared__ __align__(32) unsigned char shared_bytes[];
  const int d = static_cast<int>(p.basis.head_dim);
  const int ld = mma_leverage_ld(d);
  const bool basis_lo = p.basis.dtype == DType::kF16;
  auto* u_hi = reinterpret_cast<__nv_bfloat16*>(shared_bytes);
  __nv_bfloat16* u_lo = u_hi + kMmaLeverageTokens * ld;  // only used (and sized) for fp16
  auto* scratch = reinterpret_cast<float*>(u_hi + kMmaLeverageTokens * ld * (basis_lo ? 2 : 1));
  float* band = scratch + 8 * 256;                  // [2][64]: the two column halves' row sums
  float* combined = band + 2 * kMmaLeverageTokens;  // [64]

  const std::int64_t kv = blockIdx.y;
  const std::int64_t n = p.basis.n_tokens;
  const std::int64_t token0 = static_cast<std::int64_t>(blockIdx.x) * kMmaLeverageTokens;
  const int valid = static_cast<int>(std::min<std::int64_t>(kMmaLeverageTokens, n - token0));
  const bool any_candidate = token0 + valid > p.begin;  // uniform over the block
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int row_band = warp % 4;
  const int col_half = warp / 4;
  const int col_blocks = d / 16;

  for (int r = threadIdx.x; r < kMmaLeverageTokens; r += blockDim.x) combined[r] = 0.0f;
  bool bad = false;
  if (any_candidate) {
    for (int e = threadIdx.x; e < kMmaLeverageTokens * (d / 8); e += blockDim.x) {
      const int t = e / (d / 8);
      const int c = (e % (d / 8)) * 8;
      float x[8];
      if (t < valid) {
        load_eight(p.basis, token0 + t, kv, c, x);
      } else {
        for (int q = 0; q < 8; ++q) x[q] = 0.0f;
      }
      for (int q = 0; q < 8; ++q) bad |= !isfinite(x[q]);
      if (basis_lo) {
        store_split_eight(x, u_hi + t * ld + c, u_lo + t * ld + c);
      } else {
        __align__(16) __nv_bfloat16 hi[8];
        for (int q = 0; q < 8; ++q) hi[q] = __float2bfloat16_rn(x[q]);  // exact for bf16 input
        *reinterpret_cast<uint4*>(u_hi + t * ld + c) = *reinterpret_cast<const uint4*>(hi);
      }
    }
  }
  bad = __syncthreads_or(bad) != 0;

  if (any_candidate) {
    float* my_scratch = scratch + warp * 256;
    for (int j = 0; j < p.group; ++j) {
      const std::int64_t h = kv * p.group + j;
      const std::int64_t factor_offset = h * static_cast<std::int64_t>(d) * d;
      float row_sq = 0.0f;  // lanes 0..15: row 16 * row_band + lane, over this warp's columns
      for (int cb = col_half; cb < col_blocks; cb += 2) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kb = 0; kb <= cb; ++kb) {  // W's blocks below the diagonal block are zero
          wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fu;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fw;
          const std::int64_t w_at =
              factor_offset + static_cast<std::int64_t>(16 * kb) * d + 16 * cb;
          wmma::load_matrix_sync(fu, u_hi + 16 * row_band * ld + 16 * kb, ld);
          wmma::load_matrix_sync(fw, mp.factor_hi + w_at, d);
          wmma::mma_sync(acc, fu, fw, acc);
          if (basis_lo) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fu_lo;
            wmma::load_matrix_sync(fu_lo, u_lo + 16 * row_band * ld + 16 * kb, ld);
            wmma::mma_sync(acc, fu_lo, fw, acc);
          }
          wmma::load_matrix_sync(fw, mp.factor_lo + w_at, d);
          wmma::mma_sync(acc, fu, fw, acc);
        }
        wmma::store_matrix_sync(my_scratch, acc, 16, wmma::mem_row_major);
        __syncwarp();
        if (lane < 16) {
          const float* y = my_scratch + lane * 16;
          for (int c = 0; c < 16; ++c) row_sq = fmaf(y[c], y[c], row_sq);
        }
        __syncwarp();  // the scratch is read before the next fragment overwrites it
      }
      if (lane < 16) band[col_half * kMmaLeverageTokens + 16 * row_band + lane] = row_sq;
      __syncthreads();
      for (int row = threadIdx.x; row < kMmaLeverageTokens; row += blockDim.x) {
        const std::int64_t i = token0 + row;
        if (row >= valid || i < p.begin) continue;
        const float wi = p.weights ? p.weights[h * p.weights_ld + i] : 1.0f;
        combine_group_score(p.reduction, j, wi * (band[row] + band[kMmaLeverageTokens + row]),
                            combined[row]);
      }
      __syncthreads();  // band is read before the next head overwrites it
    }
  }
  __syncthreads();
  write_group_scores(p, combined, kv, token0, valid, bad);
#else
  if (threadIdx.x == 0) raise_flag(mp.base.flags, kInternalError);
#endif
}

}  // namespace capkv::cuda::kernels
