#pragma once

// InverseCholesky: W_h = L_h^-T with A_h = L_h L_h^T, one block per head, fp64
// (kernels/cholesky.cuh). A matrix that is not positive definite sets info[h] to the failed pivot
// (LAPACK's convention), fills W_h with NaN and raises kNotPositiveDefinite in the error word.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "capkv/cuda/launch_support.cuh"
#include "kernels/cholesky.cuh"

namespace capkv::cuda {

struct InverseCholesky {
  struct Arguments {
    const double* gram = nullptr;  // [heads, d, d] device, SPD; only the lower half is read
    std::int64_t heads = 0;
    std::int64_t d = 0;
    float* inverse_factor_t = nullptr;  // [heads, d, d] device, out
    int* info = nullptr;                // [heads] device, out, optional
  };

  static Status can_implement(const Arguments& a) {
    if (a.heads < 0) return Status::invalid("heads", "is negative");
    if (a.d < 1 || a.d > 256) return Status::invalid("d", "must lie in [1, 256]");
    if (a.heads > 0 && (a.gram == nullptr || a.inverse_factor_t == nullptr)) {
      return Status::invalid(a.gram ? "inverse_factor_t" : "gram", "is null");
    }
    return Status::success();
  }

  static std::size_t shared_bytes(std::int64_t d) {
    return sizeof(double) * static_cast<std::size_t>(d * (d + 1));
  }
  // Shared memory on the current device when the matrix fits, else a global scratch copy.
  static bool in_shared_memory(std::int64_t d) {
    return shared_bytes(d) <= max_dynamic_shared_memory();
  }

  static double* carve(WorkspaceCarver& carver, const Arguments& a) {
    if (in_shared_memory(a.d)) return nullptr;
    return carver.take<double>(static_cast<std::size_t>(a.heads * a.d * a.d));
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    take_flags(carver);
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<InverseCholesky>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    double* scratch = carve(carver, a);
    return enqueue(a, scratch, flags, stream);
  }

  static Status enqueue(const Arguments& a, double* scratch, std::uint32_t* flags,
                        cudaStream_t stream) {
    if (a.heads == 0) return Status::success();
    kernels::CholeskyParams p;
    p.gram = a.gram;
    p.d = static_cast<int>(a.d);
    p.scratch = scratch;
    p.inverse_factor_t = a.inverse_factor_t;
    p.info = a.info;
    p.flags = flags;
    const std::size_t shared = scratch ? 0 : shared_bytes(a.d);
    Status s =
        allow_shared_memory(kernels::cholesky_inverse_kernel, shared, "cholesky_inverse_kernel");
    if (!s) return s;
    kernels::cholesky_inverse_kernel<<<static_cast<unsigned>(a.heads), kernels::kCholeskyThreads,
                                       shared, stream>>>(p);
    return launch_status("cholesky_inverse_kernel");
  }
};

}  // namespace capkv::cuda
