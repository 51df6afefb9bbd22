#pragma once

// A CUDA block as the team the shared algorithms in include/capkv/device/ expect.

#include <cuda_runtime.h>

namespace capkv::cuda::kernels {

struct BlockTeam {
  __device__ int rank() const { return static_cast<int>(threadIdx.x); }
  __device__ int size() const { return static_cast<int>(blockDim.x); }
  __device__ void sync() const { __syncthreads(); }
};

}  // namespace capkv::cuda::kernels
