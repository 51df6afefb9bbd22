#pragma once

// The glue kernels of the composed CapKV reference (include/capkv/cuda/composed_capkv.cuh), which
// does the linear algebra with cuBLAS and cuSOLVER instead of the fused kernels: it materialises
// what the fused path keeps on chip (scaled copies of U per query head, the products L^-1 U^T), so
// it moves far more bytes. It exists to check the fused path and to time it against the libraries.
// Bytes, per call: U read once and written (g + 1) times in fp32 (pack), the scaled copies read by
// the Gram GEMM and the products written and read back (2 Hq n d * 4 each way), plus d^2-sized
// matrices; flops: 2 n d^2 per query head twice (the GEMMs, fp32) and 2 d^3/3 per head in fp64.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"
#include "kernels/leverage.cuh"

namespace capkv::cuda::kernels {

struct PackParams {
  DeviceView basis;                // [n, Hkv, d]
  std::int64_t begin = 0;          // rows [begin, n) are packed
  const float* weights = nullptr;  // [Hq, weights_ld]; null: w = 1
  std::int64_t weights_ld = 0;
  int group = 1;
  float eps = 0.0f;
  float* unscaled = nullptr;  // [Hkv, n - begin, d]
  float* scaled = nullptr;    // [Hq, n - begin, d]: sqrt(w + eps) u
  std::uint32_t nonfinite_flag = kValuesNotFinite;
  std::uint32_t* flags = nullptr;
};

// Grid-stride over [Hkv, n - begin, d] elements.
__global__ void pack_basis_kernel(PackParams p) {
  const std::int64_t d = p.basis.head_dim;
  const std::int64_t rows = p.basis.n_tokens - p.begin;
  const std::int64_t total = p.basis.n_heads * rows * d;
  bool bad = false;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t kv = e / (rows * d);
    const std::int64_t r = (e / d) % rows;
    const std::int64_t c = e % d;
    const float x = p.basis.load(p.begin + r, kv, c);
    bad |= !isfinite(x);
    p.unscaled[e] = x;
    for (int j = 0; j < p.group; ++j) {
      const std::int64_t h = kv * p.group + j;
      const float w = p.weights ? p.weights[h * p.weights_ld + p.begin + r] : 1.0f;
      p.scaled[(h * rows + r) * d + c] = sqrtf(w + p.eps) * x;
    }
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) raise_flag(p.flags, p.nonfinite_flag);
}

struct PrepareFactorParams {
  const float* gram = nullptr;  // [Hq, d, d] fp32 from the GEMM (column-major, symmetric)
  int d = 0;
  double ridge = 1.0;
  double* factor = nullptr;   // [Hq, d, d] fp64: gram + ridge I, then L
  double* inverse = nullptr;  // [Hq, d, d] fp64: I, then L^-1
  double** factor_pointers = nullptr;
  double** inverse_pointers = nullptr;
};

// Grid (ceil(d * d / threads), Hq).
__global__ void prepare_factor_kernel(PrepareFactorParams p) {
  const std::int64_t h = blockIdx.y;
  const std::int64_t square = static_cast<std::int64_t>(p.d) * p.d;
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e == 0) {
    p.factor_pointers[h] = p.factor + h * square;
    p.inverse_pointers[h] = p.inverse + h * square;
  }
  if (e >= square) return;
  const bool diagonal = e / p.d == e % p.d;
  p.factor[h * square + e] =
      static_cast<double>(p.gram[h * square + e]) + (diagonal ? p.ridge : 0.0);
  p.inverse[h * square + e] = diagonal ? 1.0 : 0.0;
}

struct NarrowInverseParams {
  const double* inverse = nullptr;  // [Hq, d, d] column-major L^-1
  const int* info = nullptr;        // [Hq] from potrfBatched
  std::int64_t heads = 0;
  int d = 0;
  float* inverse_f32 = nullptr;  // [Hq, d, d] column-major, lower triangle only
  std::uint32_t* flags = nullptr;
};

// Grid-stride over [Hq, d, d]. trsm leaves the strict upper triangle of L^-1 as whatever it
// computed (zeros in exact arithmetic); it is cleared so the GEMM sees a triangular matrix.
__global__ void narrow_inverse_kernel(NarrowInverseParams p) {
  const std::int64_t square = static_cast<std::int64_t>(p.d) * p.d;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       e < p.heads * square; e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t h = e / square;
    const std::int64_t within = e % square;
    const std::int64_t col = within / p.d;
    const std::int64_t row = within % p.d;
    p.inverse_f32[e] = row >= col ? static_cast<float>(p.inverse[e]) : 0.0f;
    if (within == 0 && p.info[h] != 0) raise_flag(p.flags, kNotPositiveDefinite);
  }
}

struct ProjectedNormParams {
  const float* projected = nullptr;  // [Hq, n - begin, d]: column i of L_h^-1 U^T, row-major rows
  const float* weights = nullptr;    // [Hq, weights_ld]; null: w = 1
  std::int64_t weights_ld = 0;
  std::int64_t n = 0;
  std::int64_t begin = 0;
  int d = 0;
  int group = 1;
  std::int64_t kv_heads = 0;
  GroupReduction reduction = GroupReduction::kMean;
  float* scores = nullptr;  // [Hkv, scores_ld]
  std::int64_t scores_ld = 0;
};

// One warp per (token, KV head): s = reduce_j w_hi ||P_h[i]||^2.
__global__ void projected_norm_kernel(ProjectedNormParams p) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warp = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
  if (warp >= p.kv_heads * p.n) return;
  const std::int64_t kv = warp / p.n;
  const std::int64_t i = warp % p.n;
  const std::int64_t rows = p.n - p.begin;
  float combined = 0.0f;
  if (i >= p.begin) {
    for (int j = 0; j < p.group; ++j) {
      const std::int64_t h = kv * p.group + j;
      const float* row = p.projected + (h * rows + (i - p.begin)) * p.d;
      float sq = 0.0f;
      for (int c = lane; c < p.d; c += 32) sq = fmaf(row[c], row[c], sq);
      for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
      const float s = (p.weights ? p.weights[h * p.weights_ld + i] : 1.0f) * sq;
      combined =
          p.reduction == GroupReduction::kMax ? (j == 0 ? s : fmaxf(combined, s)) : combined + s;
    }
    if (p.reduction == GroupReduction::kMean) combined /= static_cast<float>(p.group);
  }
  if (lane == 0) p.scores[kv * p.scores_ld + i] = combined;
}

}  // namespace capkv::cuda::kernels
