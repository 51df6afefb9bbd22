#pragma once

// Small host-side pieces every launcher uses: the error word at the start of each workspace, grid
// sizing, and the opt-in for more than 48 KB of dynamic shared memory.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "capkv/cuda/status.cuh"
#include "capkv/cuda/workspace.cuh"

namespace capkv::cuda {

// Every launcher's workspace starts with its 4-byte error word; read it with
// read_status(workspace, stream) after run().
inline std::uint32_t* take_flags(WorkspaceCarver& carver) { return carver.take<std::uint32_t>(1); }

inline Status read_status(const void* workspace, cudaStream_t stream) {
  return read_status(static_cast<const std::uint32_t*>(workspace), stream);
}

inline Status check_workspace(const void* workspace, std::size_t bytes, std::size_t needed) {
  if (needed > 0 && workspace == nullptr) {
    return Status::error(StatusCode::kWorkspaceTooSmall, "workspace", "is null");
  }
  if (bytes < needed) {
    return Status::error(StatusCode::kWorkspaceTooSmall, "workspace",
                         "is smaller than workspace_size(arguments)");
  }
  return Status::success();
}

// Zeroes a launcher's error word (start_run does it for every launcher).
inline Status clear_flags(std::uint32_t* flags, cudaStream_t stream) {
  const cudaError_t e = cudaMemsetAsync(flags, 0, sizeof *flags, stream);
  return e == cudaSuccess ? Status::success() : Status::cuda(e, "cudaMemsetAsync");
}

// What every launcher's run() starts with, before its own kernels: the arguments, then the
// workspace against workspace_size(arguments), then the error word at the workspace's start
// (where every launcher carves it) cleared on the stream.
template <class Launcher>
Status start_run(const typename Launcher::Arguments& a, void* workspace,
                 std::size_t workspace_bytes, cudaStream_t stream) {
  Status s = Launcher::can_implement(a);
  if (!s) return s;
  s = check_workspace(workspace, workspace_bytes, Launcher::workspace_size(a));
  if (!s) return s;
  WorkspaceCarver carver(workspace);
  return clear_flags(take_flags(carver), stream);
}

inline unsigned ceil_div(std::int64_t a, std::int64_t b) {
  return static_cast<unsigned>((a + b - 1) / b);
}

// The opt-in shared memory of the current device per block, or 48 KB (always available) when it
// cannot be asked (no device).
inline std::size_t max_dynamic_shared_memory() {
  int device = 0;
  int bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so the caller's next check is clean
    return 48 * 1024;
  }
  return static_cast<std::size_t>(bytes);
}

template <class Kernel>
Status allow_shared_memory(Kernel kernel, std::size_t bytes, const char* name) {
  if (bytes <= 48 * 1024) return Status::success();
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes));
  return e == cudaSuccess ? Status::success() : Status::cuda(e, name);
}

}  // namespace capkv::cuda
