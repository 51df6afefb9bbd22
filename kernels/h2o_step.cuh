#pragma once

// One H2O decoding step for every KV head of a layer (the GPU counterpart of
// capkv::cpu::H2OState::observe, with the attention row computed here from the step's query and
// the cached keys). Head h's cache holds sizes[h] kept tokens in slots [0, size) and the new
// token's key in slot `size`. Two kernels in one stream:
//   logits  grid (slot tiles, Hkv): each warp takes a slot, holds its key in registers and dots it
//           with the group's queries (staged in shared memory); the scaled logits go to the
//           workspace and each tile leaves one online-softmax partial (max, sum) per query head.
//           It also checks everything the CPU would refuse: NaN/Inf in the query, the keys or the
//           accumulators, a size outside the cache, and a head over budget whose recent window
//           covers every slot (raising the flag bits; it writes none of the caller's buffers).
//   update  grid Hkv: returns at once unless the error word is clear, so on any bad input nothing
//           of the caller's state is written (the word is final: the logits kernel has finished).
//           Merges the tile partials into each query head's normaliser, then runs
//           capkv::device::h2o_step_head with the block as the team (the accumulators, the victim
//           and the shift, exactly the CPU's order), and writes evicted[h] and sizes[h].
// Bytes: the cached keys once (sum of sizes * Hkv * d * elem), the accumulators read and written,
// Hq * slots * 4 of logits written and read. Flops: 2 * Hq * slots * d.

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "capkv/device/h2o_step.hpp"
#include "kernels/block_team.cuh"
#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kH2OStepThreads = 256;
inline constexpr int kH2OStepSlots = 64;      // slots per block of the logits kernel
inline constexpr int kH2OStepQueryChunk = 8;  // query heads staged in shared memory at once
inline constexpr int kH2OStepMaxDim = 256;    // eight elements per lane of a warp

struct H2OStepParams {
  DeviceView keys;   // [capacity, Hkv, d]
  DeviceView query;  // [1, Hq, d]
  int group = 1;
  float scale = 1.0f;  // 1 / sqrt(d)
  std::int64_t budget = 1;
  std::int64_t window = 0;
  float* accumulators = nullptr;  // [Hkv, accumulators_ld], in/out
  std::int64_t accumulators_ld = 0;
  std::int32_t* sizes = nullptr;                      // [Hkv], in/out
  std::int32_t* evicted = nullptr;                    // [Hkv], out
  float* logits = nullptr;                            // workspace [Hq, capacity]
  capkv::device::SoftmaxPartial* partials = nullptr;  // workspace [Hq, tiles]
  std::int64_t tiles = 0;                             // ceil(capacity / kH2OStepSlots)
  float* updated = nullptr;                           // workspace [Hkv, capacity]
  std::uint32_t* flags = nullptr;
};

__device__ inline capkv::device::SoftmaxPartial warp_merge_softmax(
    capkv::device::SoftmaxPartial part) {
  // Butterfly: lane i merges (x_i, x_{i^o}) and lane i^o (x_{i^o}, x_i). Contracted into FMAs the
  // two orders can differ in the last bit, so lanes may disagree slightly; only lane 0's result
  // is used.
  for (int o = 16; o > 0; o >>= 1) {
    const capkv::device::SoftmaxPartial other{__shfl_xor_sync(0xffffffffu, part.max, o),
                                              __shfl_xor_sync(0xffffffffu, part.sum, o)};
    part = capkv::device::merge_softmax(part, other);
  }
  return part;
}

// Grid (tiles, Hkv), kH2OStepThreads threads, static shared memory.
__global__ void __launch_bounds__(kH2OStepThreads) h2o_step_logits_kernel(H2OStepParams p) {
  __shared__ float q[kH2OStepQueryChunk][kH2OStepMaxDim];
  __shared__ float lg[kH2OStepQueryChunk][kH2OStepSlots];
  const std::int64_t kv = blockIdx.y;
  const std::int64_t tile = blockIdx.x;
  const std::int64_t t0 = tile * kH2OStepSlots;
  const std::int64_t capacity = p.keys.n_tokens;
  // Block-uniform: every thread reads the same size, and nothing writes it during this kernel.
  const std::int64_t size = p.sizes[kv];
  if (size < 0 || size >= capacity) {
    if (tile == 0 && threadIdx.x == 0) raise_flag(p.flags, kStateInvalid);
    return;
  }
  const std::int64_t n1 = size + 1;
  if (tile == 0 && threadIdx.x == 0 && capkv::device::h2o_evictable(n1, p.budget, p.window) < 0) {
    raise_flag(p.flags, kNoTokenToEvict);
  }
  if (t0 >= n1) return;
  const int valid = static_cast<int>(n1 - t0 < kH2OStepSlots ? n1 - t0 : kH2OStepSlots);
  const int d = static_cast<int>(p.keys.head_dim);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warps = static_cast<int>(blockDim.x) / 32;

  bool bad_accumulators = false;
  for (int t = threadIdx.x; t < valid; t += blockDim.x) {
    if (t0 + t < size)
      bad_accumulators |= !isfinite(p.accumulators[kv * p.accumulators_ld + t0 + t]);
  }
  bool bad_keys = false;
  bool bad_query = false;
  bool bad_logits = false;
  for (int j0 = 0; j0 < p.group; j0 += kH2OStepQueryChunk) {
    const int rows = p.group - j0 < kH2OStepQueryChunk ? p.group - j0 : kH2OStepQueryChunk;
    __syncthreads();  // the previous chunk's q and lg are consumed
    for (int e = threadIdx.x; e < rows * d; e += blockDim.x) {
      const int r = e / d;
      const int c = e % d;
      const float x = p.query.load(0, kv * p.group + j0 + r, c);
      bad_query |= !isfinite(x);
      q[r][c] = x;
    }
    __syncthreads();
    for (int t = warp; t < valid; t += warps) {
      float k[kH2OStepMaxDim / 32];
#pragma unroll
      for (int i = 0; i < kH2OStepMaxDim / 32; ++i) {
        const int c = lane + 32 * i;
        k[i] = c < d ? p.keys.load(t0 + t, kv, c) : 0.0f;
        bad_keys |= !isfinite(k[i]);
      }
      for (int r = 0; r < rows; ++r) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < kH2OStepMaxDim / 32; ++i) {
          const int c = lane + 32 * i;
          if (c < d) dot = fmaf(k[i], q[r][c], dot);
        }
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        const float logit = dot * p.scale;
        bad_logits |= !isfinite(logit);
        if (lane == 0) {
          lg[r][t] = logit;
          p.logits[(kv * p.group + j0 + r) * capacity + t0 + t] = logit;
        }
      }
    }
    __syncthreads();  // the chunk's logits are in lg
    for (int r = warp; r < rows; r += warps) {
      capkv::device::SoftmaxPartial part = capkv::device::empty_softmax_partial();
      for (int t = lane; t < valid; t += 32) part = capkv::device::add_logit(part, lg[r][t]);
      part = warp_merge_softmax(part);
      if (lane == 0) p.partials[(kv * p.group + j0 + r) * p.tiles + tile] = part;
    }
  }
  const bool any_keys = __syncthreads_or(bad_keys);
  const bool any_query = __syncthreads_or(bad_query);
  const bool any_logits = __syncthreads_or(bad_logits);
  const bool any_accumulators = __syncthreads_or(bad_accumulators);
  if (threadIdx.x == 0) {
    if (any_keys) raise_flag(p.flags, kKeysNotFinite);
    if (any_query) raise_flag(p.flags, kQueriesNotFinite);
    // Finite query and keys whose dot product overflows: the CPU's "attention contains Inf".
    if (any_logits && !any_keys && !any_query) raise_flag(p.flags, kScoresNotFinite);
    if (any_accumulators) raise_flag(p.flags, kAccumulatorsNotFinite);
  }
}

inline std::size_t h2o_update_shared_bytes(int group) {
  return sizeof(capkv::device::SoftmaxPartial) * static_cast<std::size_t>(group) +
         sizeof(capkv::device::SlotMin) * kH2OStepThreads;
}

// Grid Hkv, kH2OStepThreads threads, h2o_update_shared_bytes(group) of dynamic shared memory.
__global__ void __launch_bounds__(kH2OStepThreads) h2o_step_update_kernel(H2OStepParams p) {
  extern __shared__ __align__(16) unsigned char h2o_shared[];
  auto* norms = reinterpret_cast<capkv::device::SoftmaxPartial*>(h2o_shared);
  auto* reduce = reinterpret_cast<capkv::device::SlotMin*>(
      h2o_shared + sizeof(capkv::device::SoftmaxPartial) * static_cast<std::size_t>(p.group));
  // Every thread reads the word; nothing writes it while this kernel runs, so the block agrees.
  if (!flags_clear(p.flags)) return;
  const std::int64_t kv = blockIdx.x;
  const std::int64_t capacity = p.keys.n_tokens;
  const std::int64_t size = p.sizes[kv];  // in range: the logits kernel flagged it otherwise
  const std::int64_t tiles_used = (size + 1 + kH2OStepSlots - 1) / kH2OStepSlots;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  for (int j = warp; j < p.group; j += warps) {
    const capkv::device::SoftmaxPartial* row = p.partials + (kv * p.group + j) * p.tiles;
    capkv::device::SoftmaxPartial part = capkv::device::empty_softmax_partial();
    for (std::int64_t t = lane; t < tiles_used; t += 32) {
      part = capkv::device::merge_softmax(part, row[t]);
    }
    part = warp_merge_softmax(part);
    if (lane == 0) norms[j] = part;
  }
  __syncthreads();
  capkv::device::H2OHeadStep s;
  s.logits = p.logits + kv * p.group * capacity;
  s.logits_ld = capacity;
  s.normalisers = norms;
  s.group = p.group;
  s.size = size;
  s.budget = p.budget;
  s.window = p.window;
  s.accumulators_in = p.accumulators + kv * p.accumulators_ld;
  s.updated = p.updated + kv * capacity;
  s.accumulators_out = p.accumulators + kv * p.accumulators_ld;
  s.reduce = reduce;
  const std::int64_t victim = capkv::device::h2o_step_head(s, BlockTeam{});
  // After h2o_step_head's last barrier every thread has read sizes[kv].
  if (threadIdx.x == 0) {
    p.evicted[kv] = static_cast<std::int32_t>(victim);
    p.sizes[kv] = static_cast<std::int32_t>(victim >= 0 ? size : size + 1);
  }
}

}  // namespace capkv::cuda::kernels
