#pragma once

// Attention votes, the scores of the attention-based policies: the last w prompt queries of each
// query head attend over all n keys with the causal mask (query row r of the w sits at position
// n - w + r; logits scaled by 1/sqrt(d); softmax in fp32), and token i collects the sum (or mean)
// of its probabilities over those rows.
//   SnapKV  w = the observation window, votes for the prefix i < n - w (which every row sees),
//           then pooling along the tokens (max or zero-padded average, stride 1) and the GQA
//           reduction; window tokens score 0.
//   H2O     w = every prompt query given (m <= n), votes for all n tokens (masked), summed over
//           the group's query heads, optionally divided by the number of queries that see i.
// Kernels:
//   stats      per (token tile, KV head): each row's max and sum of exp over the tile's visible
//              keys (a partial softmax normaliser), for the g heads of the group
//   normalise  per row: the tile partials combined in a fixed order (max, then sum)
//   vote       per (token tile, KV head): probabilities recomputed from the logits and summed
//              over each head's rows in row order, as the CPU's column sums run
//   pool (SnapKV) / combine (H2O): per (token, KV head)
// Bytes: K read twice (n * Hkv * d * elem each), the rows once per tile (L2), Hq * n * 4 for the
// raw votes. Flops: 4 w n d per query head (the logits, twice).

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"
#include "kernels/leverage.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kSnapThreads = 256;
inline constexpr int kSnapTokens = 64;  // keys per tile
inline constexpr int kSnapRows = 32;    // window rows per stage

struct SnapParams {
  DeviceView keys;     // [n, Hkv, d]
  DeviceView queries;  // [m, Hq, d]; the window is rows [m - w, m)
  int group = 1;
  std::int64_t window = 1;     // w = min(config window, n)
  float scale = 1.0f;          // 1 / sqrt(d)
  float2* partials = nullptr;  // [Hq * w, tiles]: (max, sum of exp(logit - max))
  std::int64_t tiles = 0;
  float2* normalisers = nullptr;  // [Hq * w]: (max, sum)
  float* raw = nullptr;           // [Hq, tokens] votes
  std::int64_t tokens = 0;        // votes for tokens [0, tokens): n - w (SnapKV) or n (H2O)
  bool mean = false;              // divide the votes by w
  std::uint32_t* flags = nullptr;
};

inline std::size_t snap_shared_bytes(std::int64_t d) {
  return sizeof(float) * static_cast<std::size_t>((kSnapTokens + kSnapRows) * (d + 1) +
                                                  kSnapRows * (kSnapTokens + 1) + kSnapTokens);
}

// Logits of the staged window rows against the staged keys: logits[r][t] = scale * <q_r, k_t>.
__device__ inline void snap_logits(const float* q, const float* k, int ld, int d, float scale,
                                   float* logits) {
  for (int e = threadIdx.x; e < kSnapRows * kSnapTokens; e += blockDim.x) {
    const int r = e / kSnapTokens;
    const int t = e % kSnapTokens;
    float dot = 0.0f;
    for (int c = 0; c < d; ++c) dot = fmaf(q[r * ld + c], k[t * ld + c], dot);
    logits[r * (kSnapTokens + 1) + t] = dot * scale;
  }
}

// Grid (tiles over [0, n), Hkv), kSnapThreads threads, snap_shared_bytes(d).
__global__ void __launch_bounds__(kSnapThreads) snap_stats_kernel(SnapParams p) {
  extern __shared__ float shared[];
  const int d = static_cast<int>(p.keys.head_dim);
  const int ld = d + 1;
  float* k = shared;
  float* q = k + kSnapTokens * ld;
  float* logits = q + kSnapRows * ld;
  const std::int64_t kv = blockIdx.y;
  const std::int64_t n = p.keys.n_tokens;
  const std::int64_t m = p.queries.n_tokens;
  const std::int64_t w = p.window;
  const std::int64_t token0 = static_cast<std::int64_t>(blockIdx.x) * kSnapTokens;
  const int valid = static_cast<int>(std::min<std::int64_t>(kSnapTokens, n - token0));
  const bool bad_keys = load_tile(p.keys, kv, token0, kSnapTokens, valid, d, k, ld);
  bool bad_queries = false;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  for (int j = 0; j < p.group; ++j) {
    const std::int64_t h = kv * p.group + j;
    for (std::int64_t r0 = 0; r0 < w; r0 += kSnapRows) {
      const int rows = static_cast<int>(std::min<std::int64_t>(kSnapRows, w - r0));
      __syncthreads();  // the previous stage's logits are consumed
      bad_queries |= load_tile(p.queries, h, m - w + r0, kSnapRows, rows, d, q, ld);
      snap_logits(q, k, ld, d, p.scale, logits);
      __syncthreads();
      // One warp per row: the keys this window row may see are those at or before its position.
      for (int r = warp; r < rows; r += blockDim.x / 32) {
        const std::int64_t last_visible = n - w + r0 + r;
        const float* row = logits + r * (kSnapTokens + 1);
        float mx = -INFINITY;
        for (int t = lane; t < valid; t += 32) {
          if (token0 + t <= last_visible) mx = fmaxf(mx, row[t]);
        }
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float sum = 0.0f;
        if (mx != -INFINITY) {
          for (int t = lane; t < valid; t += 32) {
            if (token0 + t <= last_visible) sum += expf(row[t] - mx);
          }
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) p.partials[(h * w + r0 + r) * p.tiles + blockIdx.x] = make_float2(mx, sum);
      }
    }
  }
  if (threadIdx.x == 0) {
    if (bad_keys) raise_flag(p.flags, kKeysNotFinite);
    if (bad_queries) raise_flag(p.flags, kQueriesNotFinite);
  }
}

// One warp per window row; grid-stride over the Hq * w rows.
__global__ void snap_normalise_kernel(SnapParams p, std::int64_t rows) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t row = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
       row < rows; row += warps) {
    const float2* part = p.partials + row * p.tiles;
    float mx = -INFINITY;
    for (std::int64_t t = lane; t < p.tiles; t += 32) mx = fmaxf(mx, part[t].x);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
    for (std::int64_t t = lane; t < p.tiles; t += 32) {
      if (part[t].x != -INFINITY) sum += part[t].y * expf(part[t].x - mx);
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) p.normalisers[row] = make_float2(mx, sum);
  }
}

// Grid (tiles over [0, tokens), Hkv), kSnapThreads threads, snap_shared_bytes(d).
__global__ void __launch_bounds__(kSnapThreads) snap_vote_kernel(SnapParams p) {
  extern __shared__ float shared[];
  const int d = static_cast<int>(p.keys.head_dim);
  const int ld = d + 1;
  float* k = shared;
  float* q = k + kSnapTokens * ld;
  float* logits = q + kSnapRows * ld;
  float* votes = logits + kSnapRows * (kSnapTokens + 1);
  const std::int64_t kv = blockIdx.y;
  const std::int64_t n = p.keys.n_tokens;
  const std::int64_t m = p.queries.n_tokens;
  const std::int64_t w = p.window;
  const std::int64_t tokens = p.tokens;
  const std::int64_t token0 = static_cast<std::int64_t>(blockIdx.x) * kSnapTokens;
  const int valid = static_cast<int>(std::min<std::int64_t>(kSnapTokens, tokens - token0));
  load_tile(p.keys, kv, token0, kSnapTokens, valid, d, k, ld);  // finiteness was checked by stats
  for (int j = 0; j < p.group; ++j) {
    const std::int64_t h = kv * p.group + j;
    for (int t = threadIdx.x; t < kSnapTokens; t += blockDim.x) votes[t] = 0.0f;
    for (std::int64_t r0 = 0; r0 < w; r0 += kSnapRows) {
      const int rows = static_cast<int>(std::min<std::int64_t>(kSnapRows, w - r0));
      __syncthreads();
      load_tile(p.queries, h, m - w + r0, kSnapRows, rows, d, q, ld);
      snap_logits(q, k, ld, d, p.scale, logits);
      __syncthreads();
      // Each token's owner thread adds the rows in order, as the CPU's column sum does. A row
      // adds nothing for a token after its position (never the case in SnapKV's prefix).
      for (int t = threadIdx.x; t < valid; t += blockDim.x) {
        float v = votes[t];
        for (int r = 0; r < rows; ++r) {
          if (token0 + t > n - w + r0 + r) continue;
          const float2 norm = p.normalisers[h * w + r0 + r];
          v += expf(logits[r * (kSnapTokens + 1) + t] - norm.x) / norm.y;
        }
        votes[t] = v;
      }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < valid; t += blockDim.x) {
      p.raw[h * tokens + token0 + t] = p.mean ? votes[t] / static_cast<float>(w) : votes[t];
    }
  }
}

struct SnapPoolParams {
  const float* raw = nullptr;  // [Hq, prefix]
  std::int64_t n = 0;
  std::int64_t prefix = 0;
  std::int64_t kv_heads = 0;
  int group = 1;
  int kernel = 1;
  bool max_pool = true;
  GroupReduction reduction = GroupReduction::kMean;
  float* scores = nullptr;  // [Hkv, scores_ld]
  std::int64_t scores_ld = 0;
};

// Grid-stride over [Hkv, n]. Max pooling ignores the padding (PyTorch pads with -inf); average
// pooling counts it as zeros and divides by the kernel size, as capkv::cpu::detail::pool_1d.
__global__ void snap_pool_kernel(SnapPoolParams p) {
  const std::int64_t total = p.kv_heads * p.n;
  const int pad = p.kernel / 2;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t kv = e / p.n;
    const std::int64_t i = e % p.n;
    float combined = 0.0f;
    if (i < p.prefix) {
      const std::int64_t lo = i - pad > 0 ? i - pad : 0;
      const std::int64_t hi = i + pad + 1 < p.prefix ? i + pad + 1 : p.prefix;
      for (int j = 0; j < p.group; ++j) {
        const float* row = p.raw + (kv * p.group + j) * p.prefix;
        float pooled = p.max_pool ? -INFINITY : 0.0f;
        for (std::int64_t x = lo; x < hi; ++x)
          pooled = p.max_pool ? fmaxf(pooled, row[x]) : pooled + row[x];
        if (!p.max_pool) pooled /= static_cast<float>(p.kernel);
        if (p.reduction == GroupReduction::kMax) {
          combined = j == 0 ? pooled : fmaxf(combined, pooled);
        } else {
          combined += pooled;
        }
      }
      if (p.reduction == GroupReduction::kMean) combined /= static_cast<float>(p.group);
    }
    p.scores[kv * p.scores_ld + i] = combined;
  }
}

struct H2OCombineParams {
  const float* raw = nullptr;  // [Hq, n]
  std::int64_t n = 0;
  std::int64_t queries = 0;  // m
  std::int64_t kv_heads = 0;
  int group = 1;
  bool normalize_by_exposure = false;
  float* scores = nullptr;  // [Hkv, scores_ld]
  std::int64_t scores_ld = 0;
};

// Grid-stride over [Hkv, n]: the group's votes summed in head order, then (kvpress) divided by
// min(m, n - i), the number of prompt queries that see token i.
__global__ void h2o_combine_kernel(H2OCombineParams p) {
  const std::int64_t total = p.kv_heads * p.n;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t kv = e / p.n;
    const std::int64_t i = e % p.n;
    float s = 0.0f;
    for (int j = 0; j < p.group; ++j) s += p.raw[(kv * p.group + j) * p.n + i];
    if (p.normalize_by_exposure) {
      const std::int64_t seen = p.queries < p.n - i ? p.queries : p.n - i;
      s /= static_cast<float>(seen);
    }
    p.scores[kv * p.scores_ld + i] = s;
  }
}

}  // namespace capkv::cuda::kernels
