#pragma once

// Compact and CompactVarlen: gather the kept rows of a device cache, bitwise, into the caller's
// buffers (kernels/compaction.cuh). The GPU counterparts of capkv::compact and
// capkv::compact_varlen, with the selection's indices (and offsets) in device memory.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "kernels/compaction.cuh"

namespace capkv::cuda {

struct Compact {
  struct Arguments {
    TensorView source;                      // [n, H, d] device
    MutableTensorView out;                  // [B, H, d] device, same dtype, any layout
    const std::int32_t* indices = nullptr;  // [H, indices_ld] device, B per head
    std::int64_t indices_ld = 0;
  };

  static Status can_implement(const Arguments& a) {
    Status s = checked([&] {
      a.source.validate("source");
      a.out.validate("out");
    });
    if (!s) return s;
    if (a.out.n_heads() != a.source.n_heads() || a.out.head_dim() != a.source.head_dim()) {
      return Status::invalid("out", "heads and head_dim must match the source");
    }
    if (a.out.dtype() != a.source.dtype())
      return Status::invalid("out", "must have the source's dtype");
    if (a.out.n_tokens() > 0 && a.indices == nullptr) return Status::invalid("indices", "is null");
    if (a.indices_ld < a.out.n_tokens())
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
    Status s = start_run<Compact>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    const std::int64_t rows = a.out.n_tokens() * a.out.n_heads();
    if (rows == 0) return Status::success();
    kernels::CompactParams p;
    p.source = kernels::device_view(a.source);
    p.out = a.out.mutable_bytes();
    p.out_token_stride = a.out.strides().token;
    p.out_head_stride = a.out.strides().head;
    p.out_dim_stride = a.out.strides().dim;
    p.indices = a.indices;
    p.indices_ld = a.indices_ld;
    p.kept = a.out.n_tokens();
    p.flags = flags;
    kernels::compact_kernel<<<ceil_div(rows, kernels::kCompactThreads / 32),
                              kernels::kCompactThreads, 0, stream>>>(p);
    return launch_status("compact_kernel");
  }
};

struct CompactVarlen {
  struct Arguments {
    TensorView source;    // [n, H, d] device
    void* out = nullptr;  // packed [total, d] rows, device
    std::size_t out_bytes = 0;
    const std::int32_t* indices = nullptr;  // [total] device, ascending within each head
    const std::int64_t* offsets = nullptr;  // [H + 1] device
    std::int64_t total = 0;                 // offsets[H], as the host knows it
  };

  static Status can_implement(const Arguments& a) {
    Status s = checked([&] { a.source.validate("source"); });
    if (!s) return s;
    if (a.total < 0) return Status::invalid("total", "is negative");
    const std::size_t row =
        size_of(a.source.dtype()) * static_cast<std::size_t>(a.source.head_dim());
    if (a.out_bytes < row * static_cast<std::size_t>(a.total)) {
      return Status::invalid("out", "is smaller than total * head_dim elements");
    }
    if (a.total > 0 && (a.out == nullptr || a.indices == nullptr || a.offsets == nullptr)) {
      return Status::invalid(a.out == nullptr       ? "out"
                             : a.indices == nullptr ? "indices"
                                                    : "offsets",
                             "is null");
    }
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) {
    WorkspaceCarver carver;
    take_flags(carver);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<CompactVarlen>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    if (a.total == 0) return Status::success();
    kernels::CompactParams p;
    p.source = kernels::device_view(a.source);
    p.out = a.out;
    p.out_token_stride = a.source.head_dim();
    p.out_head_stride = 0;
    p.out_dim_stride = 1;
    p.indices = a.indices;
    p.offsets = a.offsets;
    p.total = a.total;
    p.flags = flags;
    kernels::compact_kernel<<<ceil_div(a.total, kernels::kCompactThreads / 32),
                              kernels::kCompactThreads, 0, stream>>>(p);
    return launch_status("compact_kernel");
  }
};

}  // namespace capkv::cuda
