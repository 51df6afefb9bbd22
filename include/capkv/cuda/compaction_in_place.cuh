#pragma once

// CompactInPlace and CompactInPlaceVarlen: move each head's kept rows of a device cache to the
// front of that head's rows, bitwise, in the cache itself (kernels/compaction_in_place.cuh). The
// GPU counterpart of capkv::compact_in_place: afterwards slot k < kept(h) of head h holds the k-th
// kept row, and rows from kept(h) on are left as they were (stale). The dense form takes B indices
// per head ([H, indices_ld]), the varlen form a CSR selection (indices and offsets, as
// capkv::Selection and the selection launchers' `offsets` output hold them).
//
// The indices must be strictly ascending within each head, as every selection is; the device
// checks that and the range first, and on a violation raises kSelectionOutOfRange,
// kSelectionNotAscending or kOffsetsInvalid (read_status) with the cache untouched.
//
// A head's move runs in one block, in order, because a slot may only be written once its row has
// been read (the heads run in parallel). With few heads and a long cache that leaves most of a big
// GPU idle; the out-of-place Compact into a second buffer has no such limit.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "kernels/compaction_in_place.cuh"

namespace capkv::cuda {
namespace detail {

inline Status check_in_place_cache(const MutableTensorView& cache) {
  Status s = checked([&] { cache.validate("cache"); });
  if (!s) return s;
  if (cache.n_tokens() > 0x7fffffffLL) return Status::invalid("cache", "more than 2^31 - 1 tokens");
  return Status::success();
}

inline kernels::InPlaceParams in_place_params(const MutableTensorView& cache,
                                              std::uint32_t* flags) {
  kernels::InPlaceParams p;
  p.cache = cache.mutable_bytes();
  p.dtype = cache.dtype();
  p.n_tokens = cache.n_tokens();
  p.n_heads = cache.n_heads();
  p.head_dim = cache.head_dim();
  p.strides = {cache.strides().token, cache.strides().head, cache.strides().dim};
  p.flags = flags;
  return p;
}

inline Status enqueue_in_place(const kernels::InPlaceParams& p, cudaStream_t stream) {
  const unsigned validate_blocks = std::clamp<unsigned>(
      ceil_div(std::max(p.total, p.n_heads + 1), kernels::kInPlaceThreads), 1u, 1024u);
  kernels::in_place_validate_kernel<<<validate_blocks, kernels::kInPlaceThreads, 0, stream>>>(p);
  Status s = launch_status("in_place_validate_kernel");
  if (!s) return s;
  kernels::in_place_move_kernel<<<static_cast<unsigned>(p.n_heads), kernels::kInPlaceThreads, 0,
                                  stream>>>(p);
  return launch_status("in_place_move_kernel");
}

}  // namespace detail

struct CompactInPlace {
  struct Arguments {
    MutableTensorView cache;                // [n, H, d] device, any dtype, layout and strides
    const std::int32_t* indices = nullptr;  // [H, indices_ld] device: B ascending indices per head
    std::int64_t indices_ld = 0;
    std::int64_t kept = 0;  // B, the same for every head
  };

  static Status can_implement(const Arguments& a) {
    Status s = detail::check_in_place_cache(a.cache);
    if (!s) return s;
    if (a.kept < 0) return Status::invalid("kept", "is negative");
    if (a.kept > a.cache.n_tokens())
      return Status::invalid("kept", "is larger than the cache's token count");
    if (a.kept > 0 && a.indices == nullptr) return Status::invalid("indices", "is null");
    if (a.indices_ld < a.kept)
      return Status::invalid("indices_ld", "is smaller than the kept count");
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) {
    WorkspaceCarver carver;
    take_flags(carver);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<CompactInPlace>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    if (a.kept == 0) return Status::success();
    kernels::InPlaceParams p = detail::in_place_params(a.cache, flags);
    p.indices = a.indices;
    p.indices_ld = a.indices_ld;
    p.kept = a.kept;
    p.total = a.kept * a.cache.n_heads();
    return detail::enqueue_in_place(p, stream);
  }
};

struct CompactInPlaceVarlen {
  struct Arguments {
    MutableTensorView cache;                // [n, H, d] device
    const std::int32_t* indices = nullptr;  // [total] device, ascending within each head
    const std::int64_t* offsets = nullptr;  // [H + 1] device: head h's indices are
                                            // indices[offsets[h], offsets[h + 1])
    std::int64_t total = 0;                 // offsets[H], as the host knows it
  };

  static Status can_implement(const Arguments& a) {
    Status s = detail::check_in_place_cache(a.cache);
    if (!s) return s;
    if (a.total < 0) return Status::invalid("total", "is negative");
    if (a.total > a.cache.n_tokens() * a.cache.n_heads())
      return Status::invalid("total", "is larger than the cache's tokens times heads");
    if (a.offsets == nullptr) return Status::invalid("offsets", "is null");
    if (a.total > 0 && a.indices == nullptr) return Status::invalid("indices", "is null");
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) {
    WorkspaceCarver carver;
    take_flags(carver);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<CompactInPlaceVarlen>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    // Even with nothing kept the offsets are checked, as they would be with something kept.
    kernels::InPlaceParams p = detail::in_place_params(a.cache, flags);
    p.indices = a.indices;
    p.offsets = a.offsets;
    p.total = a.total;
    return detail::enqueue_in_place(p, stream);
  }
};

}  // namespace capkv::cuda
