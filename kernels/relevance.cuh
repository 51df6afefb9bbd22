#pragma once

// CapKV's relevance weights w_hi = exp(tau * (t_hi - max_j t_hj)) for every query head h and token
// i >= begin (0 before), in three kernels:
//   anchor     mu_h = mean of query rows [first, m) of head h (optionally rotated by the RoPE
//              rotation averaged over the next positions, the kvpress preset); one block per head.
//   statistic  t_hi = <k_i, mu_h> or cos(k_i, mu_h) clamped to [-1, 1], written into the weights
//              buffer, and max_i t_hi by an atomicMax on order-preserving keys (exact, so the
//              result does not depend on block order). One block per (token tile, KV head): the
//              tile of K is read once for the g query heads of its group.
//   exponent   w = exp(tau * (t - max)) in place.
// Bytes: K read once (n * Hkv * d * elem), the queries' rows once, 3 * Hq * n * 4 for t and w.
// Flops: 2 n d per query head (plus 2 n d for the key norms with the cosine statistic).

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "capkv/device/radix_select.hpp"
#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

struct AnchorParams {
  DeviceView queries;       // [m, Hq, d]
  std::int64_t first = 0;   // first query row averaged
  bool rotate = false;      // apply the averaged RoPE rotation (kvpress)
  bool half_layout = true;  // RoPE pairs (j, j + d/2); else (2j, 2j + 1)
  double theta = 10000.0;
  double first_position = 0;  // the rotation is averaged over [first_position, + horizon)
  double horizon = 1;
  float* anchors = nullptr;       // [Hq, d] out
  float* anchor_norms = nullptr;  // [Hq] out, may be null
  std::uint32_t* flags = nullptr;
};

// Block: 128..256 threads, dynamic shared memory d doubles. Query head = blockIdx.x.
__global__ void anchor_kernel(AnchorParams p) {
  extern __shared__ double mean[];
  const int d = static_cast<int>(p.queries.head_dim);
  const std::int64_t h = blockIdx.x;
  const std::int64_t m = p.queries.n_tokens;
  bool bad = false;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    double sum = 0.0;  // double, as the CPU path: many rows of similar queries
    for (std::int64_t r = p.first; r < m; ++r) {
      const float x = p.queries.load(r, h, i);
      bad |= !isfinite(x);
      sum += static_cast<double>(x);
    }
    mean[i] = sum / static_cast<double>(m - p.first);
  }
  if (__syncthreads_or(bad)) {
    if (threadIdx.x == 0) raise_flag(p.flags, kQueriesNotFinite);
    return;
  }
  float* out = p.anchors + h * d;
  if (p.rotate) {
    // mean over positions q in [a, a + F) of (cos q w, sin q w), in closed form: the sum of a
    // geometric series e^{i q w} is e^{i (a + (F-1)/2) w} sin(F w / 2) / sin(w / 2).
    for (int j = threadIdx.x; j < d / 2; j += blockDim.x) {
      const double w = pow(p.theta, -2.0 * j / d);
      const double half = sin(0.5 * w);
      const double ratio = half != 0.0 ? sin(0.5 * p.horizon * w) / (p.horizon * half) : 1.0;
      const double center = (p.first_position + 0.5 * (p.horizon - 1.0)) * w;
      const double c = cos(center) * ratio;
      const double s = sin(center) * ratio;
      const int a = p.half_layout ? j : 2 * j;
      const int b = p.half_layout ? j + d / 2 : 2 * j + 1;
      out[a] = static_cast<float>(mean[a] * c - mean[b] * s);
      out[b] = static_cast<float>(mean[a] * s + mean[b] * c);
    }
  } else {
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[i] = static_cast<float>(mean[i]);
  }
  if (p.anchor_norms == nullptr) return;
  __syncthreads();  // out[] complete (global writes of this block are visible after the barrier)
  if (threadIdx.x < 32) {
    float sq = 0.0f;
    for (int i = threadIdx.x; i < d; i += 32) sq += out[i] * out[i];
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    if (threadIdx.x == 0) p.anchor_norms[h] = sqrtf(sq);
  }
}

inline constexpr int kStatisticTile = 32;  // tokens per shared-memory tile
inline constexpr int kStatisticTiles = 8;  // tiles per block
inline constexpr int kStatisticThreads = 256;

struct StatisticParams {
  DeviceView keys;         // [n, Hkv, d]
  int group = 1;           // g query heads per KV head
  std::int64_t begin = 0;  // first candidate token
  bool cosine = false;
  const float* anchors = nullptr;       // [Hq, d]
  const float* anchor_norms = nullptr;  // [Hq], with cosine
  float* statistic = nullptr;           // [Hq, ld] out
  std::int64_t ld = 0;
  std::uint32_t* max_keys = nullptr;  // [Hq], zeroed before the launch
  std::uint32_t* flags = nullptr;
};

// Grid (ceil((n - begin) / (tile * tiles)), Hkv), kStatisticThreads threads. Dynamic shared memory:
// g * d anchors + tile * (d + 1) keys + tile key norms + g maxima, as floats.
__global__ void __launch_bounds__(kStatisticThreads) statistic_kernel(StatisticParams p) {
  extern __shared__ float shared[];
  const int d = static_cast<int>(p.keys.head_dim);
  const int g = p.group;
  const int ld = d + 1;  // odd row stride: threads of a warp read different rows, distinct banks
  float* mu = shared;
  float* tile = mu + g * d;
  float* key_norm = tile + kStatisticTile * ld;
  auto* block_max = reinterpret_cast<std::uint32_t*>(key_norm + kStatisticTile);
  const std::int64_t kv = blockIdx.y;
  const std::int64_t n = p.keys.n_tokens;
  for (int e = threadIdx.x; e < g * d; e += blockDim.x) mu[e] = p.anchors[kv * g * d + e];
  for (int j = threadIdx.x; j < g; j += blockDim.x) block_max[j] = 0u;

  bool bad = false;
  const std::int64_t block_first =
      p.begin + static_cast<std::int64_t>(blockIdx.x) * kStatisticTile * kStatisticTiles;
  for (int t = 0; t < kStatisticTiles; ++t) {
    const std::int64_t token0 = block_first + t * kStatisticTile;
    if (token0 >= n) break;  // uniform over the block
    const int valid = static_cast<int>(std::min<std::int64_t>(kStatisticTile, n - token0));
    __syncthreads();  // the previous tile is consumed (and mu/block_max initialised)
    bad |= load_tile(p.keys, kv, token0, kStatisticTile, valid, d, tile, ld);
    if (p.cosine) {
      for (int r = threadIdx.x; r < valid; r += blockDim.x) {
        float sq = 0.0f;
        for (int c = 0; c < d; ++c) sq += tile[r * ld + c] * tile[r * ld + c];
        key_norm[r] = sqrtf(sq);
      }
      __syncthreads();
    }
    for (int e = threadIdx.x; e < kStatisticTile * g; e += blockDim.x) {
      const int r = e % kStatisticTile;
      const int j = e / kStatisticTile;
      if (r >= valid) continue;
      float dot = 0.0f;
      for (int c = 0; c < d; ++c) dot += tile[r * ld + c] * mu[j * d + c];
      if (p.cosine) {
        const float denom = key_norm[r] * p.anchor_norms[kv * g + j];
        dot = denom > 0.0f ? fminf(fmaxf(dot / denom, -1.0f), 1.0f) : 0.0f;
      }
      p.statistic[(kv * g + j) * p.ld + token0 + r] = dot;
      // NaN would break the max; NaN keys are reported through the flag instead.
      if (dot == dot) atomicMax(&block_max[j], capkv::device::order_key(dot));
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < g; j += blockDim.x) {
    if (block_max[j] != 0u) atomicMax(&p.max_keys[kv * g + j], block_max[j]);
  }
  if (bad && threadIdx.x == 0) raise_flag(p.flags, kKeysNotFinite);
}

struct ExponentParams {
  float* weights = nullptr;  // [Hq, ld]: the statistic in, the weights out
  std::int64_t ld = 0;
  std::int64_t n = 0;
  std::int64_t begin = 0;
  std::int64_t heads = 0;
  float tau = 5.0f;
  const std::uint32_t* max_keys = nullptr;
};

// Grid-stride over [Hq, n]; tokens before `begin` get weight 0.
__global__ void exponent_kernel(ExponentParams p) {
  const std::int64_t total = p.heads * p.n;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t h = e / p.n;
    const std::int64_t i = e % p.n;
    float* w = p.weights + h * p.ld + i;
    if (i < p.begin) {
      *w = 0.0f;
    } else {
      const float t_max = capkv::device::from_order_key(p.max_keys[h]);
      *w = expf(p.tau * (*w - t_max));
    }
  }
}

}  // namespace capkv::cuda::kernels
