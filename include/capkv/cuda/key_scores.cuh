#pragma once

// KeyScores: the L2-norm (Knorm) score -||k_i|| and StreamingLLM's positional score per KV head
// (kernels/key_scores.cuh); both refuse NaN or Inf keys through the error word, as the CPU does.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "kernels/key_scores.cuh"

namespace capkv::cuda {

struct KeyScores {
  using Kind = kernels::KeyScore;

  struct Arguments {
    TensorView keys;  // [n, Hkv, d] device
    Kind kind = Kind::kNegativeL2Norm;
    float* scores = nullptr;  // [Hkv, scores_ld] device, out
    std::int64_t scores_ld = 0;
  };

  static Status can_implement(const Arguments& a) {
    Status s = checked([&] { a.keys.validate("keys"); });
    if (!s) return s;
    if (a.keys.n_tokens() > 0 && a.scores == nullptr) return Status::invalid("scores", "is null");
    if (a.scores_ld < a.keys.n_tokens())
      return Status::invalid("scores_ld", "is smaller than the token count");
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) {
    WorkspaceCarver carver;
    take_flags(carver);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<KeyScores>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    return enqueue(a, flags, stream);
  }

  static Status enqueue(const Arguments& a, std::uint32_t* flags, cudaStream_t stream) {
    const std::int64_t n = a.keys.n_tokens();
    if (n == 0) return Status::success();
    kernels::KeyScoreParams p;
    p.keys = kernels::device_view(a.keys);
    p.kind = a.kind;
    p.scores = a.scores;
    p.scores_ld = a.scores_ld;
    p.flags = flags;
    const dim3 grid(ceil_div(n, kernels::kKeyScoreThreads / 32),
                    static_cast<unsigned>(a.keys.n_heads()));
    kernels::key_score_kernel<<<grid, kernels::kKeyScoreThreads, 0, stream>>>(p);
    return launch_status("key_score_kernel");
  }
};

}  // namespace capkv::cuda
