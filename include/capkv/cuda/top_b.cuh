#pragma once

// TopB: per KV head, the protected tokens plus the best (budget - protected) others by score, ties
// to the more recent token, as ascending indices (kernels/top_b.cuh). The GPU counterpart of
// capkv::select_from_scores with uniform head budgets; same answer, bit for bit, for the same
// scores. NaN or Inf scores raise kScoresNotFinite and leave the outputs untouched.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "capkv/core/protection.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "kernels/top_b.cuh"

namespace capkv::cuda {

struct TopB {
  struct Arguments {
    const float* scores = nullptr;  // [heads, scores_ld] device
    std::int64_t scores_ld = 0;
    std::int64_t heads = 0;
    std::int64_t n_tokens = 0;
    std::int64_t budget = 0;  // tokens kept per head (a resolved capkv::Budget)
    Protection protection;
    std::int32_t* indices = nullptr;  // [heads, indices_ld] device, out: min(budget, n) per head
    std::int64_t indices_ld = 0;
    std::int64_t* offsets = nullptr;  // [heads + 1] device, out, optional: capkv::Selection's CSR
    float* scores_out = nullptr;      // [heads, scores_out_ld] device, optional copy of the scores
    std::int64_t scores_out_ld = 0;
  };

  static std::int64_t kept(const Arguments& a) {
    return a.budget < a.n_tokens ? a.budget : a.n_tokens;
  }

  static Status can_implement(const Arguments& a) {
    if (a.heads < 0 || a.n_tokens < 0) return Status::invalid("scores", "negative shape");
    if (a.n_tokens > 0x7fffffffLL) return Status::invalid("scores", "more than 2^31 - 1 tokens");
    if (a.budget < 0) return Status::invalid("budget", "cannot be negative");
    if (a.protection.sinks < 0 || a.protection.window < 0) {
      return Status::invalid("protection", "sinks and window cannot be negative");
    }
    const std::int64_t k = kept(a);
    if (k < a.n_tokens && k < a.protection.count(a.n_tokens)) {
      return Status::invalid("budget",
                             "is smaller than the protected tokens (sinks + recent window)");
    }
    if (a.heads > 0 && a.n_tokens > 0 && a.scores == nullptr)
      return Status::invalid("scores", "is null");
    if (a.scores_ld < a.n_tokens)
      return Status::invalid("scores_ld", "is smaller than the token count");
    if (k > 0 && a.heads > 0 && a.indices == nullptr) return Status::invalid("indices", "is null");
    if (a.indices_ld < k) return Status::invalid("indices_ld", "is smaller than the kept count");
    if (a.scores_out && a.scores_out_ld < a.n_tokens) {
      return Status::invalid("scores_out_ld", "is smaller than the token count");
    }
    return Status::success();
  }

  static capkv::device::Threshold* carve(WorkspaceCarver& carver, const Arguments& a) {
    return carver.take<capkv::device::Threshold>(static_cast<std::size_t>(a.heads));
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    take_flags(carver);
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<TopB>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    capkv::device::Threshold* thresholds = carve(carver, a);
    return enqueue(a, thresholds, flags, stream);
  }

  // Writes the outputs only if `flags` is still clear when the write kernel runs, so a pipeline
  // that raised an error earlier on the stream leaves them untouched.
  static Status enqueue(const Arguments& a, capkv::device::Threshold* thresholds,
                        std::uint32_t* flags, cudaStream_t stream) {
    if (a.heads == 0) return Status::success();
    kernels::TopBParams p;
    p.scores = a.scores;
    p.scores_ld = a.scores_ld;
    p.n = a.n_tokens;
    p.budget = a.budget;
    p.protection = {a.protection.sinks, a.protection.window};
    p.thresholds = thresholds;
    p.indices = a.indices;
    p.indices_ld = a.indices_ld;
    p.offsets = a.offsets;
    p.scores_out = a.scores_out;
    p.scores_out_ld = a.scores_out_ld;
    p.flags = flags;
    const auto heads = static_cast<unsigned>(a.heads);
    kernels::top_b_threshold_kernel<<<heads, kernels::kTopBThreads, 0, stream>>>(p);
    kernels::top_b_write_kernel<<<heads, kernels::kTopBThreads, 0, stream>>>(p);
    return launch_status("top-B kernels");
  }
};

// The last stage of a policy's whole selection (CapKVSelect, SnapKVSelect, H2OSelect): top-B of its
// per-KV-head scores [Hkv, n] (in the workspace), with the policy's protection and the caller's
// outputs from the policy launcher's Arguments (indices, indices_ld, offsets, scores, scores_ld).
template <class SelectArguments>
TopB::Arguments selection_top_b(const SelectArguments& a, const float* scores,
                                std::int64_t budget) {
  TopB::Arguments t;
  t.scores = scores;
  t.scores_ld = a.inputs.n_tokens();
  t.heads = a.inputs.n_kv_heads();
  t.n_tokens = a.inputs.n_tokens();
  t.budget = budget;
  t.protection = a.policy.protection(t.n_tokens, budget);
  t.indices = a.indices;
  t.indices_ld = a.indices_ld;
  t.offsets = a.offsets;
  t.scores_out = a.scores;
  t.scores_out_ld = a.scores_ld;
  return t;
}

}  // namespace capkv::cuda
