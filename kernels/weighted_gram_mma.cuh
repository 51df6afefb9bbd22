#pragma once

// The weighted Gram of kernels/weighted_gram.cuh on the tensor cores, for fp16 and bf16 bases with
// head_dim a multiple of 16 (sm_80 or newer):
//   partial[split, h] = sum_{i in chunk} (w_hi + eps) u_i u_i^T    (output tiles of the lower half)
// in the same partials layout, so gram_reduce_kernel finishes both paths identically.
//
// Precision: each operand goes through the two-term bf16 split (capkv/device/bf16_split.hpp). The
// scaled row a_i = (w_hi + eps) u_i is split into hi + lo; the basis row is exact in bf16 for a
// bf16 cache and splits exactly for an fp16 one. Products: a_hi u_hi + a_lo u_hi (+ a_hi u_lo for
// fp16), accumulated in fp32 by the MMA: each term is off by at most 2^-17 (bf16) or 3 * 2^-17
// (fp16) of its magnitude before the fp32 summation, against 2^-8 for a plain bf16 product. Two
// or three MMAs per product still run several times faster than fp32 on CUDA cores.
//
// Blocking: grid (g * tile_pairs, splits, Hkv) as the CUDA-core kernel. A block owns one 64 x 64
// output tile (a pair of 64-wide tiles of the lower half) of one query head and one token chunk;
// its 8 warps hold 2 of the 4 x 4 16 x 16 accumulator fragments each. Per stage of 64 tokens the
// block converts the two 64-column slices of U into split bf16 in shared memory (the scaled slice
// for the rows, the plain one for the columns), then runs 4 k-steps of 16 tokens. Fragments above
// the diagonal of a diagonal tile are skipped: the reduction only reads the lower half.
// Work per query head: n d^2 / 2 * (1 + 64/d) MMA multiply-adds times 2 or 3 for the split.

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>

#include "capkv/device/bf16_split.hpp"
#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"
#include "kernels/weighted_gram.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kMmaGramTile = 64;
inline constexpr int kMmaGramTokens = 64;
inline constexpr int kMmaGramThreads = 256;
inline constexpr int kMmaGramLd = kMmaGramTile + 8;  // bf16 per staged row: 144 bytes, 32B-aligned
                                                     // fragment starts, fewer bank conflicts

constexpr int mma_gram_tiles(std::int64_t d) {
  return static_cast<int>((d + kMmaGramTile - 1) / kMmaGramTile);
}
constexpr int mma_gram_tile_pairs(std::int64_t d) {
  return mma_gram_tiles(d) * (mma_gram_tiles(d) + 1) / 2;
}

// Eight consecutive elements (dims c .. c + 7) of one row as fp32; zeros past head_dim. With
// head_dim a multiple of 16 and c a multiple of 8 the eight are all inside or all outside. For
// fp16/bf16 views only (the launchers' tensor_core_shape): an fp32 vector load is four wide.
__device__ inline void load_eight(const DeviceView& v, std::int64_t token, std::int64_t head, int c,
                                  float* out) {
  if (c >= v.head_dim) {
    for (int q = 0; q < 8; ++q) out[q] = 0.0f;
  } else if (v.vector_rows) {
    load_vector(v, token, head, c, out);  // 8 elements: the tensor-core path is fp16/bf16 only
  } else {
    for (int q = 0; q < 8; ++q) out[q] = v.load(token, head, c + q);
  }
}

// Stores eight split values at dst_hi[0..7] / dst_lo[0..7] (16-byte aligned) as bf16.
__device__ inline void store_split_eight(const float* x, __nv_bfloat16* dst_hi,
                                         __nv_bfloat16* dst_lo) {
  __align__(16) __nv_bfloat16 hi[8];
  __align__(16) __nv_bfloat16 lo[8];
  for (int q = 0; q < 8; ++q) {
    const capkv::device::Bf16Pair s = capkv::device::split_bf16(x[q]);
    hi[q] = __float2bfloat16_rn(s.hi);  // exact: s.hi and s.lo are bf16 values
    lo[q] = __float2bfloat16_rn(s.lo);
  }
  *reinterpret_cast<uint4*>(dst_hi) = *reinterpret_cast<const uint4*>(hi);
  *reinterpret_cast<uint4*>(dst_lo) = *reinterpret_cast<const uint4*>(lo);
}

// Same parameters as the CUDA-core kernel (GramParams); `chunk` from the same gram_split.
__global__ void __launch_bounds__(kMmaGramThreads) gram_partial_mma_kernel(GramParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(32) __nv_bfloat16 a_hi[kMmaGramTokens * kMmaGramLd];
  __shared__ __align__(32) __nv_bfloat16 a_lo[kMmaGramTokens * kMmaGramLd];
  __shared__ __align__(32) __nv_bfloat16 b_hi[kMmaGramTokens * kMmaGramLd];
  __shared__ __align__(32) __nv_bfloat16 b_lo[kMmaGramTokens * kMmaGramLd];

  const int d = static_cast<int>(p.basis.head_dim);
  const int pairs = mma_gram_tile_pairs(d);
  const int j = blockIdx.x / pairs;
  int pair = blockIdx.x % pairs;
  int row_tile = 0;  // pair -> (row_tile >= col_tile), row-major order of the lower triangle
  while (pair > row_tile) {
    pair -= row_tile + 1;
    ++row_tile;
  }
  const int col_tile = pair;
  const bool diagonal = row_tile == col_tile;
  const std::int64_t kv = blockIdx.z;
  const std::int64_t h = kv * p.group + j;
  const std::int64_t n = p.basis.n_tokens;
  const std::int64_t first = p.begin + static_cast<std::int64_t>(blockIdx.y) * p.chunk;
  const std::int64_t last = std::min(n, first + p.chunk);
  // An fp16 basis needs its low part; a bf16 one is exact in the high part alone.
  const bool basis_lo = p.basis.dtype == DType::kF16;

  const int warp = threadIdx.x / 32;
  const int frag_row = warp / 2;         // 16-row block of the 64 x 64 tile
  const int frag_col0 = 2 * (warp % 2);  // and two 16-column blocks
  // A fragment is needed when it is inside head_dim and, on a diagonal tile, not above it.
  bool active[2];
  for (int f = 0; f < 2; ++f) {
    const int fc = frag_col0 + f;
    active[f] = row_tile * kMmaGramTile + 16 * frag_row < d &&
                col_tile * kMmaGramTile + 16 * fc < d && !(diagonal && fc > frag_row);
  }
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
  for (int f = 0; f < 2; ++f) wmma::fill_fragment(acc[f], 0.0f);

  bool bad = false;
  for (std::int64_t t0 = first; t0 < last; t0 += kMmaGramTokens) {
    const int valid = static_cast<int>(std::min<std::int64_t>(kMmaGramTokens, last - t0));
    __syncthreads();  // the previous stage is consumed
    // 64 tokens x 8 groups of 8 columns, for the row slice (scaled) and the column slice.
    for (int e = threadIdx.x; e < kMmaGramTokens * 8; e += blockDim.x) {
      const int t = e / 8;
      const int c = (e % 8) * 8;
      float x[8];
      float y[8];
      float w = 0.0f;
      if (t < valid) {
        w = (p.weights ? p.weights[h * p.weights_ld + t0 + t] : 1.0f) + p.eps;
        load_eight(p.basis, t0 + t, kv, row_tile * kMmaGramTile + c, x);
        if (diagonal) {
          for (int q = 0; q < 8; ++q) y[q] = x[q];
        } else {
          load_eight(p.basis, t0 + t, kv, col_tile * kMmaGramTile + c, y);
        }
      } else {
        for (int q = 0; q < 8; ++q) x[q] = y[q] = 0.0f;
      }
      for (int q = 0; q < 8; ++q) {
        bad |= !isfinite(x[q]) || !isfinite(y[q]);
        x[q] *= w;
      }
      store_split_eight(x, a_hi + t * kMmaGramLd + c, a_lo + t * kMmaGramLd + c);
      store_split_eight(y, b_hi + t * kMmaGramLd + c, b_lo + t * kMmaGramLd + c);
    }
    __syncthreads();
    for (int k = 0; k < kMmaGramTokens; k += 16) {
      // A (16 dims x 16 tokens) is the transposed token-major slice: column-major with the row
      // stride; B (16 tokens x 16 dims) is the token-major slice itself.
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> fa_hi;
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> fa_lo;
      wmma::load_matrix_sync(fa_hi, a_hi + k * kMmaGramLd + 16 * frag_row, kMmaGramLd);
      wmma::load_matrix_sync(fa_lo, a_lo + k * kMmaGramLd + 16 * frag_row, kMmaGramLd);
      for (int f = 0; f < 2; ++f) {
        if (!active[f]) continue;
        const int col = 16 * (frag_col0 + f);
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb;
        wmma::load_matrix_sync(fb, b_hi + k * kMmaGramLd + col, kMmaGramLd);
        wmma::mma_sync(acc[f], fa_hi, fb, acc[f]);
        wmma::mma_sync(acc[f], fa_lo, fb, acc[f]);
        if (basis_lo) {
          wmma::load_matrix_sync(fb, b_lo + k * kMmaGramLd + col, kMmaGramLd);
          wmma::mma_sync(acc[f], fa_hi, fb, acc[f]);
        }
      }
    }
  }

  float* out =
      p.partials + ((static_cast<std::int64_t>(blockIdx.y) * gridDim.z * p.group + h) * d) * d;
  for (int f = 0; f < 2; ++f) {
    if (!active[f]) continue;
    const int row = row_tile * kMmaGramTile + 16 * frag_row;
    const int col = col_tile * kMmaGramTile + 16 * (frag_col0 + f);
    wmma::store_matrix_sync(out + static_cast<std::int64_t>(row) * d + col, acc[f], d,
                            wmma::mem_row_major);
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) raise_flag(p.flags, p.nonfinite_flag);
#else
  // Built for an architecture without bf16 MMA: the launcher never picks this kernel there.
  if (threadIdx.x == 0) raise_flag(p.flags, kInternalError);
#endif
}

}  // namespace capkv::cuda::kernels
