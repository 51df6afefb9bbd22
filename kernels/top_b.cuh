#pragma once

// Per-head top-B with protected tokens and the tie rule of capkv::ranks_before, producing the kept
// indices in ascending order. Two kernels, one block per KV head each:
//   threshold  radix select over the 64-bit keys (order_key(score) << 32 | index) of the
//              non-protected tokens, eight bits per pass from the top, with the digit logic shared
//              with the CPU tests (include/capkv/device/radix_select.hpp). Distinct keys make the
//              B-th best key T unique; the kept candidates are exactly those with key >= T. Most
//              searches end within the score's four digits, once a bucket holds exactly what is
//              still needed; the index digits only matter for ties. Also rejects NaN scores.
//   write      an ordered compaction: a block-wide exclusive scan of the keep flags over the
//              tokens in order, so the output is ascending without a sort. It writes only while
//              the error word is clear, so bad input leaves the caller's buffers untouched.
// Bytes: n * 4 per pass (<= 8 passes, usually 2 to 4, L2-resident after the first) plus n * 4 for
// the write pass and B * 4 written, per head. Flops: none to speak of; this is memory-bound.

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_scan.cuh>

#include "capkv/device/radix_select.hpp"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kTopBThreads = 1024;

struct TopBParams {
  const float* scores = nullptr;  // [heads, scores_ld]
  std::int64_t scores_ld = 0;
  std::int64_t n = 0;
  std::int64_t budget = 0;  // per head; the host checked budget >= protected or >= n
  capkv::device::ProtectedRange protection;
  capkv::device::Threshold* thresholds = nullptr;  // [heads], between the two kernels
  std::int32_t* indices = nullptr;                 // [heads, indices_ld] out
  std::int64_t indices_ld = 0;
  std::int64_t* offsets = nullptr;  // [heads + 1] out, may be null: h * kept
  float* scores_out = nullptr;      // [heads, scores_out_ld], may be null: a copy of the scores
  std::int64_t scores_out_ld = 0;
  std::uint32_t* flags = nullptr;
};

// Grid = heads, kTopBThreads threads.
__global__ void __launch_bounds__(kTopBThreads) top_b_threshold_kernel(TopBParams p) {
  namespace dev = capkv::device;
  __shared__ std::uint32_t histogram[dev::kRadixBuckets];
  __shared__ dev::RadixBucket found;
  const std::int64_t h = blockIdx.x;
  const float* scores = p.scores + h * p.scores_ld;
  const std::int64_t n = p.n;
  const dev::TopBPlan plan = dev::plan_top_b(n, p.budget, p.protection);
  dev::Threshold threshold = plan.trivial;
  std::uint64_t prefix = 0;
  auto k = static_cast<std::uint32_t>(plan.free_slots);
  const int lane = threadIdx.x % 32;

  bool nan = false;
  for (int pass = 0; pass < dev::kRadixPasses; ++pass) {
    for (int b = threadIdx.x; b < dev::kRadixBuckets; b += blockDim.x) histogram[b] = 0u;
    __syncthreads();
    // Every thread runs the same number of iterations so that whole warps meet in
    // __match_any_sync; equal digits within a warp (ties, a narrow score range) are aggregated
    // into one shared-memory atomic instead of serialising on one address.
    for (std::int64_t base = 0; base < n; base += blockDim.x) {
      const std::int64_t i = base + threadIdx.x;
      int digit = -1;
      if (i < n && !p.protection.contains(i, n)) {
        const float s = scores[i];
        if (pass == 0) nan |= s != s;
        const std::uint64_t key = dev::selection_key(s, static_cast<std::int32_t>(i));
        if (plan.needs_search && dev::radix_in_play(key, prefix, pass))
          digit = dev::radix_digit(key, pass);
      }
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (digit >= 0 && lane == __ffs(peers) - 1) atomicAdd(&histogram[digit], __popc(peers));
    }
    // Protected tokens never enter the histogram but their scores must be finite too.
    if (pass == 0) {
      for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        if (p.protection.contains(i, n)) nan |= scores[i] != scores[i];
      }
      if (__syncthreads_or(nan)) {
        if (threadIdx.x == 0) raise_flag(p.flags, kScoresNotFinite);
        return;
      }
      if (!plan.needs_search) break;
    }
    __syncthreads();  // histogram complete
    // Warp 0 finds the bucket: lane l owns buckets 255 - 8l down to 248 - 8l, so an exclusive
    // prefix over lanes counts the keys above each lane's buckets.
    if (threadIdx.x < 32) {
      constexpr int kPerLane = dev::kRadixBuckets / 32;
      const int top = dev::kRadixBuckets - 1 - kPerLane * lane;
      std::uint32_t mine = 0;
      for (int q = 0; q < kPerLane; ++q) mine += histogram[top - q];
      std::uint32_t inclusive = mine;
      for (int o = 1; o < 32; o <<= 1) {
        const std::uint32_t other = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o) inclusive += other;
      }
      std::uint32_t above = inclusive - mine;
      for (int q = 0; q < kPerLane; ++q) {
        const int b = top - q;
        if (dev::holds_kth(above, histogram[b], k)) found = {b, k - above, histogram[b]};
        above += histogram[b];
      }
    }
    __syncthreads();
    const dev::RadixBucket bucket = found;
    if (dev::radix_step(bucket, pass, prefix, k, threshold)) break;  // uniform: same values
    __syncthreads();  // everyone has read `found` and the histogram before the next pass clears it
  }
  if (threadIdx.x == 0) p.thresholds[h] = threshold;
}

// Grid = heads, kTopBThreads threads.
__global__ void __launch_bounds__(kTopBThreads) top_b_write_kernel(TopBParams p) {
  namespace dev = capkv::device;
  using Scan = cub::BlockScan<int, kTopBThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  if (!flags_clear(p.flags)) return;  // uniform: the word was final before this launch
  const std::int64_t h = blockIdx.x;
  const std::int64_t n = p.n;
  const std::int64_t kept = p.budget < n ? p.budget : n;
  const dev::Threshold threshold = p.thresholds[h];
  const float* scores = p.scores + h * p.scores_ld;
  std::int32_t* out = p.indices + h * p.indices_ld;
  std::int64_t written = 0;
  for (std::int64_t base = 0; base < n; base += blockDim.x) {
    const std::int64_t i = base + threadIdx.x;
    int keep = 0;
    if (i < n) {
      const float s = scores[i];
      keep = dev::keeps_token(i, n, s, p.protection, threshold) ? 1 : 0;
      if (p.scores_out) p.scores_out[h * p.scores_out_ld + i] = s;
    }
    int position = 0;
    int total = 0;
    Scan(scan_storage).ExclusiveSum(keep, position, total);
    if (keep && written + position < kept) out[written + position] = static_cast<std::int32_t>(i);
    written += total;
    __syncthreads();  // scan_storage is reused
  }
  if (threadIdx.x == 0) {
    if (written != kept) raise_flag(p.flags, kInternalError);
    if (p.offsets) {
      p.offsets[h + 1] = (h + 1) * kept;
      if (h == 0) p.offsets[0] = 0;
    }
  }
}

}  // namespace capkv::cuda::kernels
