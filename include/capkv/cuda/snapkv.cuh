#pragma once

// SnapKVSelect: SnapKV's selection of one layer on the GPU, the counterpart of
// capkv::select(SnapKV, inputs, budget) with uniform head budgets: window attention votes,
// pooling and the GQA reduction (kernels/attention_votes.cuh), then the shared top-B with the
// window (and any sinks) protected. Like CapKVSelect it writes the outputs only if no kernel found
// bad input.

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "capkv/core/budget.hpp"
#include "capkv/core/layer_inputs.hpp"
#include "capkv/core/scores.hpp"
#include "capkv/cuda/attention_votes.cuh"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/cuda/top_b.cuh"
#include "capkv/policies/snapkv.hpp"
#include "kernels/attention_votes.cuh"

namespace capkv::cuda {

struct SnapKVSelect {
  struct Arguments {
    SnapKV policy;
    LayerInputs inputs;  // device views: keys and queries (after RoPE)
    Budget budget = Budget::tokens(0);
    GqaReduction gqa = GqaReduction::kMean;
    std::int32_t* indices = nullptr;  // [Hkv, indices_ld] device, out
    std::int64_t indices_ld = 0;
    std::int64_t* offsets = nullptr;  // [Hkv + 1] device, out, optional
    float* scores = nullptr;          // [Hkv, scores_ld] device, out, optional
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
  static std::int64_t window(const Arguments& a) {
    return std::min(a.policy.config.window, a.inputs.n_tokens());
  }

  static Status can_implement(const Arguments& a) {
    const SnapKV::Config& c = a.policy.config;
    if (c.window < 1)
      return Status::invalid("window", "SnapKV needs at least one observation query");
    if (c.kernel < 1 || c.kernel % 2 == 0)
      return Status::invalid("kernel", "the pooling kernel must be odd");
    Status s = checked([&] { validate(a.inputs, a.policy.needs()); });
    if (!s) return s;
    const std::int64_t n = a.inputs.n_tokens();
    if (n == 0 && !a.budget.is_zero())
      return Status::invalid("budget", "is nonzero but the cache is empty");
    if (n > 0x7fffffffLL) return Status::invalid("keys", "more than 2^31 - 1 tokens");
    if (a.inputs.queries->n_tokens() < window(a)) {
      return Status::invalid("queries", "SnapKV needs the last window queries");
    }
    if (a.inputs.keys.head_dim() > 256)
      return Status::invalid("keys", "head_dim above 256 is not supported on the GPU");
    const std::int64_t k = kept(a);
    const Protection protection = a.policy.protection(n, k);
    if (k < n && k < protection.count(n)) {
      return Status::invalid("budget", "keeps fewer tokens than SnapKV protects (window + sinks)");
    }
    if (k > 0 && a.indices == nullptr) return Status::invalid("indices", "is null");
    if (a.indices_ld < k) return Status::invalid("indices_ld", "is smaller than the kept count");
    if (a.scores && a.scores_ld < n)
      return Status::invalid("scores_ld", "is smaller than the token count");
    return Status::success();
  }

  static Layout carve(WorkspaceCarver& carver, const Arguments& a) {
    const std::int64_t n = a.inputs.n_tokens();
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t w = window(a);
    Layout l;
    l.flags = take_flags(carver);
    l.votes = AttentionVotes::carve(carver, n, hq, w, n - w);
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
    Status s = start_run<SnapKVSelect>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    const Layout l = carve(carver, a);
    const std::int64_t n = a.inputs.n_tokens();
    if (n == 0) return Status::success();
    const SnapKV::Config& c = a.policy.config;
    const std::int64_t hkv = a.inputs.n_kv_heads();
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t w = window(a);
    const std::int64_t prefix = n - w;

    s = AttentionVotes::enqueue(a.inputs.keys, *a.inputs.queries, hq, w, prefix,
                                c.aggregation == SnapKV::Aggregation::kMean, l.votes, l.flags,
                                stream);
    if (!s) return s;
    kernels::SnapPoolParams pp;
    pp.raw = l.votes.raw;
    pp.n = n;
    pp.prefix = prefix;
    pp.kv_heads = hkv;
    pp.group = static_cast<int>(hq / hkv);
    pp.kernel = static_cast<int>(c.kernel);
    pp.max_pool = c.pooling == SnapKV::Pooling::kMax;
    pp.reduction = a.gqa == GqaReduction::kMean  ? kernels::GroupReduction::kMean
                   : a.gqa == GqaReduction::kMax ? kernels::GroupReduction::kMax
                                                 : kernels::GroupReduction::kSum;
    pp.scores = l.scores;
    pp.scores_ld = n;
    kernels::
        snap_pool_kernel<<<std::min<unsigned>(ceil_div(hkv * n, 256), 65535u), 256, 0, stream>>>(
            pp);
    s = launch_status("SnapKV kernels");
    if (!s) return s;

    return TopB::enqueue(selection_top_b(a, l.scores, kept(a)), l.thresholds, l.flags, stream);
  }
};

}  // namespace capkv::cuda
