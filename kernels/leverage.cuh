#pragma once

// CapKV scores: for each query head h of a KV group, s_hi = w_hi ||L_h^-1 u_i||^2 computed as the
// row norms of the product U_tile W_h (W_h = L_h^-T, upper triangular), then reduced over the group
// (mean, max or sum) and written per KV head. Grid (ceil(n / kLeverageTokens), Hkv): a block stages
// its tile of U in shared memory once and runs the g products against it, so U is read once from
// DRAM and the per-query-head scores never leave the block (deterministic order, no atomics).
// Work per query head: 2 n d^2 flops for a dense W; the kernel skips W's zero lower triangle at a
// granularity of 32 rows (3/4 of the dense work for d = 128). Bytes: U once, Hq * n * 4 weights,
// Hkv * n * 4 scores, and W re-read from L2 by every block (g d^2 * 4 per block).

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kLeverageThreads = 256;  // 16 x 16; each thread a 4 x 4 piece of a product
inline constexpr int kLeverageTokens = 64;
inline constexpr int kLeverageCols = 64;   // product columns per pass
inline constexpr int kLeverageDepth = 32;  // rows of W staged at a time

enum class GroupReduction : int { kMean = 0, kMax = 1, kSum = 2 };

struct LeverageParams {
  DeviceView basis;                         // [n, Hkv, d]
  const float* inverse_factor_t = nullptr;  // [Hq, d, d], W = L^-T
  const float* weights = nullptr;           // [Hq, weights_ld]; null: w = 1
  std::int64_t weights_ld = 0;
  int group = 1;
  std::int64_t begin = 0;  // tokens before it score 0
  GroupReduction reduction = GroupReduction::kMean;
  float* scores = nullptr;  // [Hkv, scores_ld] out
  std::int64_t scores_ld = 0;
  std::uint32_t nonfinite_flag = kValuesNotFinite;
  std::uint32_t* flags = nullptr;
};

inline int leverage_padded_dim(std::int64_t d) {
  return static_cast<int>((d + kLeverageCols - 1) / kLeverageCols * kLeverageCols);
}

// Folds query head j's score of one token into the group's running value (mean and sum add; the
// mean divides at the end), in the order j = 0, 1, ... by the token's one owner thread.
__device__ inline void combine_group_score(GroupReduction reduction, int j, float s,
                                           float& combined) {
  if (reduction == GroupReduction::kMax) {
    combined = j == 0 ? s : fmaxf(combined, s);
  } else {
    combined += s;
  }
}

// Writes a block's combined scores for tokens [token0, token0 + valid) of KV head kv (0 for the
// sinks, the group mean divided out) and raises the basis flag if any loaded value was bad.
// Every thread of the block calls it after the block's last barrier.
__device__ inline void write_group_scores(const LeverageParams& p, const float* combined,
                                          std::int64_t kv, std::int64_t token0, int valid,
                                          bool bad) {
  for (int r = threadIdx.x; r < valid; r += blockDim.x) {
    const std::int64_t i = token0 + r;
    float s = i < p.begin ? 0.0f : combined[r];
    if (p.reduction == GroupReduction::kMean && i >= p.begin) s /= static_cast<float>(p.group);
    p.scores[kv * p.scores_ld + i] = s;
  }
  if (bad && threadIdx.x == 0) raise_flag(p.flags, p.nonfinite_flag);
}

// Dynamic shared memory: kLeverageTokens * (padded d + 1) + kLeverageDepth * kLeverageCols +
// kLeverageTokens floats.
__global__ void __launch_bounds__(kLeverageThreads) leverage_kernel(LeverageParams p) {
  extern __shared__ float shared[];
  const int d = static_cast<int>(p.basis.head_dim);
  const int padded = (d + kLeverageCols - 1) / kLeverageCols * kLeverageCols;
  const int ld = padded + 1;
  float* u = shared;
  float* w_stage = u + kLeverageTokens * ld;
  float* combined = w_stage + kLeverageDepth * kLeverageCols;

  const std::int64_t kv = blockIdx.y;
  const std::int64_t n = p.basis.n_tokens;
  const std::int64_t token0 = static_cast<std::int64_t>(blockIdx.x) * kLeverageTokens;
  const int valid = static_cast<int>(std::min<std::int64_t>(kLeverageTokens, n - token0));
  const bool any_candidate = token0 + valid > p.begin;
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;

  for (int r = threadIdx.x; r < kLeverageTokens; r += blockDim.x) combined[r] = 0.0f;
  // A tile wholly among the sinks has nothing to compute (uniform over the block).
  const bool bad =
      any_candidate && load_tile(p.basis, kv, token0, kLeverageTokens, valid, padded, u, ld);
  __syncthreads();

  if (any_candidate) {
    const int depth_steps = (d + kLeverageDepth - 1) / kLeverageDepth;
    for (int j = 0; j < p.group; ++j) {
      const std::int64_t h = kv * p.group + j;
      const float* w = p.inverse_factor_t + h * static_cast<std::int64_t>(d) * d;
      float row_sq[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int c0 = 0; c0 < d; c0 += kLeverageCols) {
        float acc[4][4] = {};
        // W is upper triangular: product column c only needs rows <= c.
        const int steps =
            std::min(depth_steps, (c0 + kLeverageCols + kLeverageDepth - 1) / kLeverageDepth);
        for (int s = 0; s < steps; ++s) {
          const int k0 = s * kLeverageDepth;
          __syncthreads();  // the previous stage of W is consumed
          for (int e = threadIdx.x; e < kLeverageDepth * kLeverageCols; e += blockDim.x) {
            const int kr = k0 + e / kLeverageCols;
            const int c = c0 + e % kLeverageCols;
            w_stage[e] = kr < d && c < d ? w[static_cast<std::int64_t>(kr) * d + c] : 0.0f;
          }
          __syncthreads();
#pragma unroll 8
          for (int k = 0; k < kLeverageDepth; ++k) {
            float a[4];
            float b[4];
            for (int r = 0; r < 4; ++r) a[r] = u[(ty + 16 * r) * ld + k0 + k];
            for (int c = 0; c < 4; ++c) b[c] = w_stage[k * kLeverageCols + tx + 16 * c];
            for (int r = 0; r < 4; ++r) {
              for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
            }
          }
        }
        for (int r = 0; r < 4; ++r) {
          for (int c = 0; c < 4; ++c) row_sq[r] = fmaf(acc[r][c], acc[r][c], row_sq[r]);
        }
      }
      // The 16 threads of a row group are 16 consecutive lanes of one warp.
      for (int r = 0; r < 4; ++r) {
        for (int o = 8; o > 0; o >>= 1) row_sq[r] += __shfl_xor_sync(0xffffffffu, row_sq[r], o);
      }
      if (tx == 0) {
        for (int r = 0; r < 4; ++r) {
          const int row = ty + 16 * r;
          const std::int64_t i = token0 + row;
          if (row >= valid || i < p.begin) continue;
          const float wi = p.weights ? p.weights[h * p.weights_ld + i] : 1.0f;
          // Each row has one owner thread, so the group reduction runs in order j = 0, 1, ...
          combine_group_score(p.reduction, j, wi * row_sq[r], combined[row]);
        }
      }
    }
  }
  __syncthreads();
  write_group_scores(p, combined, kv, token0, valid, bad);
}

}  // namespace capkv::cuda::kernels
