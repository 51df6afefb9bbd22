#pragma once

// Marks the math that the CPU path, the tests and the CUDA kernels share. Under nvcc the functions
// become __host__ __device__, so a kernel runs the very code the CPU tests check; under a plain C++
// compiler the macro is empty and these headers need no CUDA at all.

#if defined(__CUDACC__)
#define CAPKV_HOST_DEVICE __host__ __device__
#else
#define CAPKV_HOST_DEVICE
#endif

// nvcc warns when a __host__ __device__ template calls a __device__-only member of its argument
// (a CUDA block's sync) even where it is only ever instantiated from device code; this silences
// exactly that check for the next function template.
#if defined(__CUDACC__)
#define CAPKV_HD_TEMPLATE _Pragma("nv_exec_check_disable")
#else
#define CAPKV_HD_TEMPLATE
#endif

namespace capkv::device {

// A group of cooperating threads as the shared algorithms see it: `rank()` of `size()` workers and
// a barrier. The CPU runs them as one worker whose barrier is a no-op; a CUDA block passes
// threadIdx.x, blockDim.x and __syncthreads (kernels/device_view.cuh).
struct SerialTeam {
  CAPKV_HOST_DEVICE constexpr int rank() const { return 0; }
  CAPKV_HOST_DEVICE constexpr int size() const { return 1; }
  CAPKV_HOST_DEVICE constexpr void sync() const {}
};

}  // namespace capkv::device
