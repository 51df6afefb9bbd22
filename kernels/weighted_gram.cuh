#pragma once

// The weighted Gram of CapKV, for every query head h of a KV group sharing the basis U (values, or
// keys for the key-leverage form):
//   A_h = ridge * I + sum_{i >= begin} (w_hi + eps) u_i u_i^T            (d x d, fp64 out)
// Two kernels:
//   partial   grid (g * tile_pairs, splits, Hkv): block (j, pair, split, kv) accumulates one
//             output tile (lower-triangular tile pair) of head kv * g + j over one token chunk, in
//             fp32 registers, from U staged through shared memory kGramTokens rows at a time.
//             Blocks of the same chunk and KV head are adjacent in launch order, so the g query
//             heads (and the 3 tile pairs when d > 128) read each chunk of U from DRAM once and
//             from L2 after that.
//   reduce     sums the splits in a fixed order in fp64 (deterministic on any GPU) and adds ridge.
// Work per query head: 2 n d^2 flops (n d^2 on the lower triangle is all that is needed; the
// diagonal tiles compute their full square). Bytes: U once from DRAM, n * Hq * 4 of weights, and
// splits * Hq * d^2 * 4 written and read back for the partials (<= 64 splits, bounded).

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kGramThreads = 256;  // a 16 x 16 grid of threads
inline constexpr int kGramTokens = 32;    // tokens per shared-memory stage
inline constexpr int kGramMaxSplits = 64;
inline constexpr int kGramMinChunk = 512;

// Output tile edge: 16 threads x R rows each. R = 4 for d <= 64, else 8 (tiles of 128).
constexpr int gram_micro(std::int64_t d) { return d <= 64 ? 4 : 8; }
constexpr int gram_tile(std::int64_t d) { return 16 * gram_micro(d); }
constexpr int gram_tiles(std::int64_t d) {
  return static_cast<int>((d + gram_tile(d) - 1) / gram_tile(d));
}
constexpr int gram_tile_pairs(std::int64_t d) { return gram_tiles(d) * (gram_tiles(d) + 1) / 2; }

// The split of [begin, n) into chunks, a function of the shape only: the same inputs give the same
// partial sums, hence bitwise the same scores, on every GPU.
struct GramSplit {
  std::int64_t chunk = 0;
  std::int64_t splits = 0;
};
constexpr GramSplit gram_split(std::int64_t candidates) {
  if (candidates <= 0) return {kGramTokens, 0};
  std::int64_t splits =
      std::min<std::int64_t>(kGramMaxSplits, (candidates + kGramMinChunk - 1) / kGramMinChunk);
  std::int64_t chunk = (candidates + splits - 1) / splits;
  chunk = (chunk + kGramTokens - 1) / kGramTokens * kGramTokens;
  splits = (candidates + chunk - 1) / chunk;
  return {chunk, splits};
}

struct GramParams {
  DeviceView basis;                // [n, Hkv, d]
  const float* weights = nullptr;  // [Hq, weights_ld]; null: uniform w = 1
  std::int64_t weights_ld = 0;
  int group = 1;
  std::int64_t begin = 0;
  std::int64_t chunk = 0;
  float eps = 0.0f;
  float* partials = nullptr;  // [splits, Hq, d, d]
  std::uint32_t nonfinite_flag = kValuesNotFinite;
  std::uint32_t* flags = nullptr;
};

// Dynamic shared memory: kGramTokens * (padded d + 4) + kGramTokens floats.
template <int R>
__global__ void __launch_bounds__(kGramThreads) gram_partial_kernel(GramParams p) {
  extern __shared__ __align__(16) float shared[];
  constexpr int kTile = 16 * R;
  const int d = static_cast<int>(p.basis.head_dim);
  const int tiles = (d + kTile - 1) / kTile;
  const int padded = tiles * kTile;
  const int ld = padded + 4;  // keeps rows 16-byte aligned for the float4 reads below
  float* u = shared;
  float* scale = u + kGramTokens * ld;

  const int pairs = tiles * (tiles + 1) / 2;
  const int j = blockIdx.x / pairs;
  int pair = blockIdx.x % pairs;
  int row_tile = 0;  // pair -> (row_tile >= col_tile) in row-major order of the lower triangle
  while (pair > row_tile) {
    pair -= row_tile + 1;
    ++row_tile;
  }
  const int col_tile = pair;
  const std::int64_t kv = blockIdx.z;
  const std::int64_t h = kv * p.group + j;
  const std::int64_t n = p.basis.n_tokens;
  const std::int64_t first = p.begin + static_cast<std::int64_t>(blockIdx.y) * p.chunk;
  const std::int64_t last = std::min(n, first + p.chunk);

  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const int row0 = row_tile * kTile + ty * R;  // this thread's R rows and R columns
  const int col0 = col_tile * kTile + tx * R;
  float acc[R][R];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < R; ++c) acc[r][c] = 0.0f;
  }

  bool bad = false;
  for (std::int64_t t0 = first; t0 < last; t0 += kGramTokens) {
    const int valid = static_cast<int>(std::min<std::int64_t>(kGramTokens, last - t0));
    __syncthreads();  // the previous stage is consumed
    for (int k = threadIdx.x; k < kGramTokens; k += blockDim.x) {
      float w = 0.0f;
      if (k < valid) w = (p.weights ? p.weights[h * p.weights_ld + t0 + k] : 1.0f) + p.eps;
      scale[k] = w;
    }
    bad |= load_tile(p.basis, kv, t0, kGramTokens, valid, padded, u, ld);
#pragma unroll 4
    for (int k = 0; k < kGramTokens; ++k) {
      const float* row = u + k * ld;
      float a[R];
      float b[R];
      for (int q = 0; q < R; q += 4) {
        const float4 x = *reinterpret_cast<const float4*>(row + row0 + q);
        a[q] = x.x;
        a[q + 1] = x.y;
        a[q + 2] = x.z;
        a[q + 3] = x.w;
        const float4 y = *reinterpret_cast<const float4*>(row + col0 + q);
        b[q] = y.x;
        b[q + 1] = y.y;
        b[q + 2] = y.z;
        b[q + 3] = y.w;
      }
      const float s = scale[k];
      for (int r = 0; r < R; ++r) {
        const float ar = a[r] * s;
        for (int c = 0; c < R; ++c) acc[r][c] = fmaf(ar, b[c], acc[r][c]);
      }
    }
  }

  float* out =
      p.partials + ((static_cast<std::int64_t>(blockIdx.y) * gridDim.z * p.group + h) * d) * d;
  for (int r = 0; r < R; ++r) {
    const int row = row0 + r;
    if (row >= d) break;
    for (int c = 0; c < R; ++c) {
      const int col = col0 + c;
      if (col < d) out[static_cast<std::int64_t>(row) * d + col] = acc[r][c];
    }
  }
  if (bad && threadIdx.x == 0) raise_flag(p.flags, p.nonfinite_flag);
}

struct GramReduceParams {
  const float* partials = nullptr;  // [splits, Hq, d, d], lower tile pairs written
  std::int64_t splits = 0;
  std::int64_t heads = 0;
  int d = 0;
  double ridge = 1.0;
  double* gram = nullptr;  // [Hq, d, d] out, full and exactly symmetric
};

// Grid (ceil(d * d / threads), Hq). Element (r, c) reads the partials' lower element
// (max(r, c), min(r, c)), which every tile pair layout writes, so the result is symmetric.
__global__ void gram_reduce_kernel(GramReduceParams p) {
  const std::int64_t h = blockIdx.y;
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= p.d * p.d) return;
  const int r = e / p.d;
  const int c = e % p.d;
  const std::int64_t lower = static_cast<std::int64_t>(max(r, c)) * p.d + min(r, c);
  const std::int64_t square = static_cast<std::int64_t>(p.d) * p.d;
  double sum = r == c ? p.ridge : 0.0;
  for (std::int64_t s = 0; s < p.splits; ++s) sum += p.partials[(s * p.heads + h) * square + lower];
  p.gram[h * square + e] = sum;
}

}  // namespace capkv::cuda::kernels
