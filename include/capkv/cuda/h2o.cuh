#pragma once

// H2OSelect: H2O's prefill selection of one layer on the GPU, the counterpart of
// capkv::select(H2O, inputs, budget): every prompt query given attends causally over the cache,
// each token accumulates its attention summed over the group's query heads (kvpress: divided by the
// queries that see it), and the top-B keeps the heavy hitters plus the recent window
// (kernels/attention_votes.cuh, then the shared top-B). Decoding-time H2O, the counterpart of
// capkv::cpu::H2OState, is H2OStep (capkv/cuda/h2o_step.cuh): its state starts from this
// launcher's `scores` compacted with the selection (CompactInPlace).
// The attention is m x n per query head, so the cost grows with the prompt length squared; like the
// CPU path this is for prefill lengths where that is affordable.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "capkv/core/budget.hpp"
#include "capkv/core/layer_inputs.hpp"
#include "capkv/cuda/attention_votes.cuh"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/cuda/top_b.cuh"
#include "capkv/policies/h2o.hpp"
#include "kernels/attention_votes.cuh"

namespace capkv::cuda {

struct H2OSelect {
  struct Arguments {
    H2O policy;
    LayerInputs inputs;  // device views: keys and the prompt queries (m <= n)
    Budget budget = Budget::tokens(0);
    std::int32_t* indices = nullptr;  // [Hkv, indices_ld] device, out
    std::int64_t indices_ld = 0;
    std::int64_t* offsets = nullptr;  // [Hkv + 1] device, out, optional
    float* scores = nullptr;          // [Hkv, scores_ld] device, out, optional: the accumulators
    std::int64_t scores_ld = 0;
  };

  struct Layout {
    std::uint32_t* flags = nullptr;
    AttentionVotes::Buffers votes;
    float* scores = nullptr;
    capkv::device::Threshold* thresholds = nullptr;
  };

  static std::int64_t kept(const Arguments& a) {
    return a.policy.resolve_budget(a.budget, a.inputs);
  }

  static Status can_implement(const Arguments& a) {
    Status s = checked([&] { validate(a.inputs, a.policy.needs()); });
    if (!s) return s;
    const std::int64_t n = a.inputs.n_tokens();
    if (n == 0 && !a.budget.is_zero())
      return Status::invalid("budget", "is nonzero but the cache is empty");
    if (n > 0x7fffffffLL) return Status::invalid("keys", "more than 2^31 - 1 tokens");
    if (a.inputs.queries->n_tokens() > n) {
      return Status::invalid("queries", "H2O's prompt queries cannot outnumber the cached tokens");
    }
    if (a.inputs.keys.head_dim() > 256)
      return Status::invalid("keys", "head_dim above 256 is not supported on the GPU");
    const std::int64_t k = kept(a);
    const Protection protection = a.policy.protection(n, k);
    if (k < n && k < protection.count(n)) {
      return Status::invalid("budget", "keeps fewer tokens than H2O protects (the recent window)");
    }
    if (k > 0 && a.indices == nullptr) return Status::invalid("indices", "is null");
    if (a.indices_ld < k) return Status::invalid("indices_ld", "is smaller than the kept count");
    if (a.scores && a.scores_ld < n)
      return Status::invalid("scores_ld", "is smaller than the token count");
    return Status::success();
  }

  static Layout carve(WorkspaceCarver& carver, const Arguments& a) {
    const std::int64_t n = a.inputs.n_tokens();
    const std::int64_t m = a.inputs.queries->n_tokens();
    Layout l;
    l.flags = take_flags(carver);
    l.votes = AttentionVotes::carve(carver, n, a.inputs.n_query_heads(), m, n);
    l.scores = carver.take<float>(static_cast<std::size_t>(a.inputs.n_kv_heads() * n));
    l.thresholds =
        carver.take<capkv::device::Threshold>(static_cast<std::size_t>(a.inputs.n_kv_heads()));
    return l;
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<H2OSelect>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    const Layout l = carve(carver, a);
    const std::int64_t n = a.inputs.n_tokens();
    if (n == 0) return Status::success();
    const std::int64_t m = a.inputs.queries->n_tokens();
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t hkv = a.inputs.n_kv_heads();
    s = AttentionVotes::enqueue(a.inputs.keys, *a.inputs.queries, hq, m, n, /*mean=*/false, l.votes,
                                l.flags, stream);
    if (!s) return s;
    kernels::H2OCombineParams c;
    c.raw = l.votes.raw;
    c.n = n;
    c.queries = m;
    c.kv_heads = hkv;
    c.group = static_cast<int>(hq / hkv);
    c.normalize_by_exposure = a.policy.config.normalize_by_exposure;
    c.scores = l.scores;
    c.scores_ld = n;
    kernels::
        h2o_combine_kernel<<<std::min<unsigned>(ceil_div(hkv * n, 256), 65535u), 256, 0, stream>>>(
            c);
    s = launch_status("h2o_combine_kernel");
    if (!s) return s;

    return TopB::enqueue(selection_top_b(a, l.scores, kept(a)), l.thresholds, l.flags, stream);
  }
};

}  // namespace capkv::cuda
