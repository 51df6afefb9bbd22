#pragma once

// Which units run CapKV's two matrix products (the weighted Gram and the leverage product).
//   kAuto         tensor cores where they apply, CUDA cores elsewhere;
//   kCudaCores    fp32 FMA on the CUDA cores, any dtype and head_dim;
//   kTensorCores  bf16 MMA with the two-term split (capkv/device/bf16_split.hpp): fp16/bf16 bases
//                 with head_dim a multiple of 16 on sm_80 or newer; refused elsewhere.
// Both paths agree with the float64 reference: within the fp32 summation bound plus 2^-17 (bf16)
// or 3 * 2^-17 (fp16) of each term's magnitude on the tensor cores, within the fp32 summation bound
// on the CUDA cores. Benchmarks and tests can pin either.

#include <cuda_runtime.h>

#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/status.cuh"

namespace capkv::cuda {

enum class MathPath { kAuto, kCudaCores, kTensorCores };

inline const char* name_of(MathPath m) {
  switch (m) {
    case MathPath::kAuto:
      return "auto";
    case MathPath::kCudaCores:
      return "cuda_cores";
    case MathPath::kTensorCores:
      return "tensor_cores";
  }
  return "?";
}

// Whether the basis has the shape and type the tensor-core kernels take (no device needed).
inline bool tensor_core_shape(const TensorView& basis) {
  return (basis.dtype() == DType::kF16 || basis.dtype() == DType::kBF16) &&
         basis.head_dim() % 16 == 0;
}

// Whether the current device runs bf16 MMA (sm_80+). False when there is no device. The launchers
// also ask whether their tensor-core kernel was compiled for sm_80+ (kernel_has_bf16_mma): a build
// for an older architecture, JIT-compiled on a newer GPU, carries only the kernel's fallback body.
inline bool device_has_bf16_mma() {
  int device = 0;
  int major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();  // leave no sticky-free error behind for the caller's next check
    return false;
  }
  return major >= 8;
}

// Whether `kernel` was compiled from code for sm_80 or newer (its bf16 MMA body, not the fallback).
template <class Kernel>
bool kernel_has_bf16_mma(Kernel kernel) {
  cudaFuncAttributes attributes{};
  if (cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  // binaryVersion: the SASS that runs; ptxVersion: the architecture the code was compiled for
  // (what __CUDA_ARCH__ saw), which is what decides the body. 0 is read as "not reported".
  return attributes.binaryVersion >= 80 &&
         (attributes.ptxVersion == 0 || attributes.ptxVersion >= 80);
}

// Shape-only check for can_implement (no device needed): an explicit kTensorCores on a basis the
// tensor-core kernels cannot take. Workspaces are sized from the shape alone for the same reason.
inline Status check_math_path(MathPath m, const TensorView& basis) {
  if (m == MathPath::kTensorCores && !tensor_core_shape(basis)) {
    return Status::invalid(
        "math", "tensor cores need an fp16 or bf16 basis with head_dim a multiple of 16");
  }
  return Status::success();
}

// The path a launch takes, given whether the tensor-core kernels were built for sm_80+.
// kTensorCores where they cannot run is an error at launch; kAuto falls back to the CUDA cores.
inline Status resolve_math_path(MathPath m, const TensorView& basis, bool kernels_have_mma,
                                bool& tensor_cores) {
  tensor_cores = false;
  if (m == MathPath::kCudaCores) return Status::success();
  const bool shape = tensor_core_shape(basis);
  const bool runnable = kernels_have_mma && device_has_bf16_mma();
  if (m == MathPath::kAuto) {
    tensor_cores = shape && runnable;
    return Status::success();
  }
  if (!shape) return check_math_path(m, basis);
  if (!runnable) {
    return Status::error(StatusCode::kNotSupported, "math",
                         "tensor cores need an sm_80+ GPU and a build for sm_80+");
  }
  tensor_cores = true;
  return Status::success();
}

}  // namespace capkv::cuda
