#pragma once

// Scores that need no model math: L2-norm (Knorm) s_i = -||k_i||_2 and StreamingLLM's positional
// score s_i = i (its protected sinks and window are the whole budget; the score only has to be
// finite and every key is still checked, as on the CPU). One warp per (token, KV head).
// Bytes: K once (n * Hkv * d * elem), Hkv * n * 4 written. Flops: 2 n d per KV head (L2 norm).

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kKeyScoreThreads = 256;

enum class KeyScore : int { kNegativeL2Norm = 0, kPosition = 1 };

struct KeyScoreParams {
  DeviceView keys;  // [n, Hkv, d]
  KeyScore kind = KeyScore::kNegativeL2Norm;
  float* scores = nullptr;  // [Hkv, scores_ld] out
  std::int64_t scores_ld = 0;
  std::uint32_t* flags = nullptr;
};

// Grid (ceil(n / warps per block), Hkv).
__global__ void __launch_bounds__(kKeyScoreThreads) key_score_kernel(KeyScoreParams p) {
  const int warps = blockDim.x / 32;
  const int lane = threadIdx.x % 32;
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * warps + threadIdx.x / 32;
  const std::int64_t kv = blockIdx.y;
  const bool active = i < p.keys.n_tokens;
  float sq = 0.0f;
  bool bad = false;
  if (active) {
    for (std::int64_t c = lane; c < p.keys.head_dim; c += 32) {
      const float x = p.keys.load(i, kv, c);
      bad |= !isfinite(x);
      sq = fmaf(x, x, sq);
    }
  }
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
  if (active && lane == 0) {
    p.scores[kv * p.scores_ld + i] =
        p.kind == KeyScore::kPosition ? static_cast<float>(i) : -sqrtf(sq);
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) raise_flag(p.flags, kKeysNotFinite);
}

}  // namespace capkv::cuda::kernels
