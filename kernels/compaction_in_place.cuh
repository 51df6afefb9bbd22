#pragma once

// In-place compaction of a device cache (keys or values, any dtype and strides), bitwise: slot k
// of head h receives row idx_h[k], for k below the head's kept count; rows past it are left as
// they were. Two kernels in one stream:
//   validate  grid-stride over every kept index: in [0, n) and strictly above its predecessor in
//             the head (and, varlen, offsets ascending from 0 to the total); raises flags only.
//   move      one block per head: returns at once unless the error word is clear, then runs
//             capkv::device::compact_head_in_place with the block as the team and a shared-memory
//             buffer (the read-before-write argument is in that header).
// "Nothing written on bad input" holds because the move kernel is the only writer, it starts only
// after the validate kernel has finished (same stream), and it reads the error word before its
// first store; the word is not written during the move. Heads run in parallel because a head's
// rows and another head's are distinct elements (TensorView::validate refuses aliasing strides).
// Bytes: 2 * moved rows * d * elem, plus the indices twice. No flops.

#include <cuda_runtime.h>

#include <cstdint>

#include "capkv/core/dtype.hpp"
#include "capkv/device/in_place_compaction.hpp"
#include "kernels/block_team.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kInPlaceThreads = 256;
inline constexpr int kInPlaceBufferBytes = 32 * 1024;  // static shared memory of the move kernel

struct InPlaceParams {
  void* cache = nullptr;  // base of the [n, H, d] view
  DType dtype = DType::kF32;
  std::int64_t n_tokens = 0;
  std::int64_t n_heads = 0;
  std::int64_t head_dim = 0;
  capkv::device::ElementStrides strides;
  const std::int32_t* indices = nullptr;
  std::int64_t indices_ld = 0;            // dense: row stride of indices
  std::int64_t kept = 0;                  // dense: B per head
  const std::int64_t* offsets = nullptr;  // varlen: [H + 1]; null selects the dense form
  std::int64_t total = 0;                 // dense: H * B; varlen: offsets[H] as the host knows it
  std::uint32_t* flags = nullptr;
};

// The head of kept entry e (0 <= e < total) and where that head's indices start. Varlen: binary
// search over offsets; with bad offsets the answer is some head in [0, H) and the validate kernel
// flags the offsets themselves, and every read stays inside indices[0, total) and offsets[0, H].
__device__ inline void locate_entry(const InPlaceParams& p, std::int64_t e, std::int64_t& head,
                                    std::int64_t& first) {
  if (p.offsets == nullptr) {
    head = e / p.kept;
    first = head * p.kept;  // entry position; the index itself is at head * indices_ld + k
    return;
  }
  std::int64_t lo = 0;
  std::int64_t hi = p.n_heads;  // offsets[lo] <= e < offsets[hi] when the offsets are sane
  while (hi - lo > 1) {
    const std::int64_t mid = (lo + hi) / 2;
    if (p.offsets[mid] <= e) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  head = lo;
  first = p.offsets[lo];
  if (first > e || first < 0) first = e;  // bad offsets: treat e as a head's first entry
}

// Grid-stride over the `total` kept entries (and, varlen, the H + 1 offsets).
__global__ void __launch_bounds__(kInPlaceThreads) in_place_validate_kernel(InPlaceParams p) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t start = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned problem = capkv::device::kKeptIndexOk;
  bool bad_offsets = false;
  for (std::int64_t e = start; e < p.total; e += stride) {
    std::int64_t head = 0;
    std::int64_t first = 0;
    locate_entry(p, e, head, first);
    const std::int64_t k = e - first;
    const std::int32_t* idx =
        p.offsets == nullptr ? p.indices + head * p.indices_ld : p.indices + first;
    problem |= capkv::device::check_kept_index(idx, k, p.n_tokens);
  }
  if (p.offsets != nullptr) {
    for (std::int64_t h = start; h <= p.n_heads; h += stride) {
      const std::int64_t o = p.offsets[h];
      if (h == 0 && o != 0) bad_offsets = true;
      if (h == p.n_heads && o != p.total) bad_offsets = true;
      if (h > 0 && o < p.offsets[h - 1]) bad_offsets = true;
    }
  }
  // One atomic per block and flag at most.
  const bool out_of_range = __syncthreads_or(problem & capkv::device::kKeptIndexOutOfRange);
  const bool not_ascending = __syncthreads_or(problem & capkv::device::kKeptIndexNotAscending);
  const bool offsets_wrong = __syncthreads_or(bad_offsets);
  if (threadIdx.x == 0) {
    if (out_of_range) raise_flag(p.flags, kSelectionOutOfRange);
    if (not_ascending) raise_flag(p.flags, kSelectionNotAscending);
    if (offsets_wrong) raise_flag(p.flags, kOffsetsInvalid);
  }
}

template <class Word>
__device__ inline void move_head(const InPlaceParams& p, std::int64_t head, Word* buffer) {
  const std::int32_t* idx = nullptr;
  std::int64_t count = 0;
  if (p.offsets == nullptr) {
    idx = p.indices + head * p.indices_ld;
    count = p.kept;
  } else {
    idx = p.indices + p.offsets[head];
    count = p.offsets[head + 1] - p.offsets[head];
  }
  capkv::device::compact_head_in_place(
      static_cast<Word*>(p.cache), p.strides, head, p.head_dim, idx, count, buffer,
      kInPlaceBufferBytes / static_cast<int>(sizeof(Word)), BlockTeam{});
}

// Grid H, kInPlaceThreads threads.
__global__ void __launch_bounds__(kInPlaceThreads) in_place_move_kernel(InPlaceParams p) {
  __shared__ alignas(16) unsigned char buffer[kInPlaceBufferBytes];
  // Every thread reads the word; nothing writes it while this kernel runs, so the block agrees.
  if (!flags_clear(p.flags)) return;
  const std::int64_t head = blockIdx.x;
  if (p.dtype == DType::kF32) {
    move_head(p, head, reinterpret_cast<std::uint32_t*>(buffer));
  } else {
    move_head(p, head, reinterpret_cast<std::uint16_t*>(buffer));
  }
}

}  // namespace capkv::cuda::kernels
