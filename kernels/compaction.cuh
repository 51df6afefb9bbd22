#pragma once

// Gathers the kept rows of a cache (keys or values, any dtype and strides) into the caller's
// output, as bytes: no conversion, so a bf16 cache stays bitwise bf16. One warp per kept row.
//   dense   out[j, h, :] = src[indices[h * ld + j], h, :]   (every head keeps the same count B)
//   varlen  out[offsets[h] + j, :] = src[indices[offsets[h] + j], h, :]   (packed rows, CSR)
// Bytes: 2 * total kept * d * elem (read and write) plus the indices. No flops.
// Not in place: on a GPU the rows of different warps would race where a kept row moves onto one
// not yet read; the CPU path offers compact_in_place for that.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_view.cuh"
#include "kernels/error_flags.cuh"

namespace capkv::cuda::kernels {

inline constexpr int kCompactThreads = 256;

struct CompactParams {
  DeviceView source;                  // [n, H, d]
  void* out = nullptr;                // dense: a [B, H, d] view's base; varlen: packed [total, d]
  std::int64_t out_token_stride = 0;  // elements
  std::int64_t out_head_stride = 0;
  std::int64_t out_dim_stride = 1;
  const std::int32_t* indices = nullptr;
  std::int64_t indices_ld = 0;            // dense: row stride of indices; varlen: unused
  std::int64_t kept = 0;                  // dense: B
  const std::int64_t* offsets = nullptr;  // varlen: [H + 1]; null selects the dense form
  std::int64_t total = 0;                 // varlen: offsets[H], known to the host
  std::uint32_t* flags = nullptr;
};

template <class Word>
__device__ inline void copy_row(const CompactParams& p, std::int64_t src_token, std::int64_t head,
                                std::int64_t dst_row, std::int64_t dst_head, int lane) {
  const auto* src = static_cast<const Word*>(p.source.data);
  auto* dst = static_cast<Word*>(p.out);
  const std::int64_t s0 = p.source.offset(src_token, head, 0);
  const std::int64_t d0 = dst_row * p.out_token_stride + dst_head * p.out_head_stride;
  for (std::int64_t c = lane; c < p.source.head_dim; c += 32) {
    dst[d0 + c * p.out_dim_stride] = src[s0 + c * p.source.dim_stride];
  }
}

// Grid ceil(rows / warps per block) with rows = H * B (dense) or total (varlen).
__global__ void __launch_bounds__(kCompactThreads) compact_kernel(CompactParams p) {
  const int warps = blockDim.x / 32;
  const int lane = threadIdx.x % 32;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * warps + threadIdx.x / 32;
  const std::int64_t heads = p.source.n_heads;
  std::int64_t head = 0;
  std::int64_t index_at = 0;
  std::int64_t dst_row = 0;
  std::int64_t dst_head = 0;
  if (p.offsets == nullptr) {
    if (row >= heads * p.kept) return;
    head = row / p.kept;
    const std::int64_t j = row % p.kept;
    index_at = head * p.indices_ld + j;
    dst_row = j;
    dst_head = head;
  } else {
    if (row >= p.total) return;
    // The head whose range holds this row: binary search over the H + 1 offsets.
    std::int64_t lo = 0;
    std::int64_t hi = heads;  // offsets[lo] <= row < offsets[hi]
    while (hi - lo > 1) {
      const std::int64_t mid = (lo + hi) / 2;
      if (p.offsets[mid] <= row) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    head = lo;
    index_at = row;
    dst_row = row;
    dst_head = 0;
  }
  const std::int64_t src = p.indices[index_at];
  if (src < 0 || src >= p.source.n_tokens) {
    if (lane == 0) raise_flag(p.flags, kSelectionOutOfRange);
    return;
  }
  if (p.source.dtype == DType::kF32) {
    copy_row<std::uint32_t>(p, src, head, dst_row, dst_head, lane);
  } else {
    copy_row<std::uint16_t>(p, src, head, dst_row, dst_head, lane);
  }
}

}  // namespace capkv::cuda::kernels
