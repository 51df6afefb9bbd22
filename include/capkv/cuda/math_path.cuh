#pragma once

// Which units run CapKV's two matrix products (the weighted Gram and the leverage product).
//   kAuto         tensor cores where they apply, CUDA cores elsewhere;
//   kCudaCores    fp32 FMA on the CUDA cores, any dtype and head_dim;
//   kTensorCores  bf16 MMA with the two-term split (capkv/device/bf16_split.hpp): fp16/bf16 bases
//                 with head_dim a multiple of 16 on sm_80 or newer; refused elsewhere.
// Both paths agree with the float64 reference within 2^-16 of each term's magnitude (the
// tensor-core split) or the fp32 summation bound (CUDA cores); benchmarks and tests pin one.

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

// Whether the current device runs bf16 MMA (sm_80+). False when there is no device.
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

// Shape-only check for can_implement (no device needed): an explicit kTensorCores on a basis the
// tensor-core kernels cannot take. Workspaces are sized from the shape alone for the same reason.
inline Status check_math_path(MathPath m, const TensorView& basis) {
  if (m == MathPath::kTensorCores && !tensor_core_shape(basis)) {
    return Status::invalid("math",
                           "tensor cores need an fp16 or bf16 basis with head_dim a multiple of 16");
  }
  return Status::success();
}

// The path a launch takes. kTensorCores on a device without bf16 MMA is an error at launch.
inline Status resolve_math_path(MathPath m, const TensorView& basis, bool& tensor_cores) {
  tensor_cores = false;
  if (m == MathPath::kCudaCores) return Status::success();
  const bool shape = tensor_core_shape(basis);
  if (m == MathPath::kAuto) {
    tensor_cores = shape && device_has_bf16_mma();
    return Status::success();
  }
  if (!shape) return check_math_path(m, basis);
  if (!device_has_bf16_mma())
    return Status::error(StatusCode::kNotSupported, "math", "tensor cores need sm_80 or newer");
  tensor_cores = true;
  return Status::success();
}

}  // namespace capkv::cuda
