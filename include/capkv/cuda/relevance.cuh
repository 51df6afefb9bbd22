#pragma once

// RelevanceWeights: CapKV's w_hi = exp(tau (t_hi - max_j t_hj)) for every query head on the GPU,
// with the anchor and statistic of the policy's config (kernels/relevance.cuh). Mirrors
// capkv::cpu::detail::capkv_anchor and capkv_weights: the same rows averaged, the same RoPE
// averaging for the kvpress anchor, zero weight for the sinks.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "capkv/core/layer_inputs.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/policies/capkv.hpp"
#include "kernels/relevance.cuh"

namespace capkv::cuda {

struct RelevanceWeights {
  struct Arguments {
    CapKV::Config config;
    LayerInputs inputs;        // device views: keys, and queries or queries_pre_rope (+ rope)
    float* weights = nullptr;  // [Hq, weights_ld] device, out
    std::int64_t weights_ld = 0;
  };

  struct Buffers {
    float* anchors = nullptr;
    float* anchor_norms = nullptr;
    std::uint32_t* max_keys = nullptr;
  };

  static const TensorView& anchor_queries(const Arguments& a) {
    return a.config.anchor == CapKV::Anchor::kRotatedPromptMean ? *a.inputs.queries_pre_rope
                                                                : *a.inputs.queries;
  }

  // The checks on the layer's inputs alone, shared with the pipelines that own the weights buffer.
  static Status can_implement_inputs(const CapKV::Config& config, const LayerInputs& inputs) {
    if (config.uniform_weights) {
      return Status::invalid("config.uniform_weights", "uniform weights need no relevance pass");
    }
    InputNeeds needs = CapKV(config).needs();
    needs.values = false;  // the basis is the Gram's business
    Status s = checked([&] { validate(inputs, needs); });
    if (!s) return s;
    const TensorView& q = config.anchor == CapKV::Anchor::kRotatedPromptMean
                              ? *inputs.queries_pre_rope
                              : *inputs.queries;
    const std::int64_t d = inputs.keys.head_dim();
    if (d > 256) return Status::invalid("keys", "head_dim above 256 is not supported on the GPU");
    if (q.n_heads() < inputs.n_query_heads()) {
      return Status::invalid("queries_pre_rope", "has fewer heads than the queries");
    }
    if (inputs.n_query_heads() / inputs.n_kv_heads() * d > 16384) {
      return Status::invalid("queries", "a KV group's anchors (g * d) must fit 64 KB");
    }
    return Status::success();
  }

  static Status can_implement(const Arguments& a) {
    Status s = can_implement_inputs(a.config, a.inputs);
    if (!s) return s;
    const std::int64_t n = a.inputs.n_tokens();
    if (n > 0 && a.weights == nullptr) return Status::invalid("weights", "is null");
    if (a.weights_ld < n) return Status::invalid("weights_ld", "is smaller than the token count");
    return Status::success();
  }

  static Buffers carve(WorkspaceCarver& carver, const Arguments& a) {
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t d = a.inputs.keys.head_dim();
    Buffers b;
    b.anchors = carver.take<float>(static_cast<std::size_t>(hq * d));
    b.anchor_norms = carver.take<float>(static_cast<std::size_t>(hq));
    b.max_keys = carver.take<std::uint32_t>(static_cast<std::size_t>(hq));
    return b;
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    take_flags(carver);
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<RelevanceWeights>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    const Buffers buffers = carve(carver, a);
    return enqueue(a, buffers, flags, stream);
  }

  // The kernels alone, for pipelines that checked the arguments and own the error word.
  static Status enqueue(const Arguments& a, const Buffers& b, std::uint32_t* flags,
                        cudaStream_t stream) {
    const CapKV::Config& c = a.config;
    const TensorView& q = anchor_queries(a);
    const std::int64_t n = a.inputs.n_tokens();
    const std::int64_t m = q.n_tokens();
    // Query heads as the CPU path counts them (capkv::LayerInputs::n_query_heads); head h of the
    // anchor queries feeds query head h.
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t hkv = a.inputs.n_kv_heads();
    const std::int64_t d = a.inputs.keys.head_dim();
    const std::int64_t begin = std::min(c.sinks, n);
    if (n == 0) return Status::success();

    kernels::AnchorParams ap;
    ap.queries = kernels::device_view(q);
    if (c.anchor == CapKV::Anchor::kObservationWindow) {
      ap.first = m - std::min(m, std::max<std::int64_t>(c.observation_window, 1));
    } else if (c.anchor == CapKV::Anchor::kRotatedPromptMean) {
      ap.first = std::clamp<std::int64_t>(c.sinks - (n - m), 0, m - 1);
      ap.rotate = true;
      ap.half_layout = a.inputs.rope->layout == RopeLayout::kHalf;
      ap.theta = a.inputs.rope->theta;
      ap.first_position = static_cast<double>(n);
      ap.horizon = static_cast<double>(c.rope_horizon);
    }
    const bool cosine = c.statistic == CapKV::Statistic::kCosine;
    ap.anchors = b.anchors;
    ap.anchor_norms = cosine ? b.anchor_norms : nullptr;
    ap.flags = flags;
    kernels::anchor_kernel<<<static_cast<unsigned>(hq), 128,
                             static_cast<std::size_t>(d) * sizeof(double), stream>>>(ap);

    if (const cudaError_t e = cudaMemsetAsync(b.max_keys, 0, sizeof(std::uint32_t) * hq, stream);
        e != cudaSuccess) {
      return Status::cuda(e, "cudaMemsetAsync");
    }
    const std::int64_t candidates = n - begin;
    if (candidates > 0) {
      kernels::StatisticParams sp;
      sp.keys = kernels::device_view(a.inputs.keys);
      sp.group = static_cast<int>(hq / hkv);
      sp.begin = begin;
      sp.cosine = cosine;
      sp.anchors = b.anchors;
      sp.anchor_norms = b.anchor_norms;
      sp.statistic = a.weights;
      sp.ld = a.weights_ld;
      sp.max_keys = b.max_keys;
      sp.flags = flags;
      const std::size_t shared =
          sizeof(float) *
          static_cast<std::size_t>(sp.group * d + kernels::kStatisticTile * (d + 1) +
                                   kernels::kStatisticTile + sp.group);
      Status s = allow_shared_memory(kernels::statistic_kernel, shared, "statistic_kernel");
      if (!s) return s;
      const dim3 grid(ceil_div(candidates, kernels::kStatisticTile * kernels::kStatisticTiles),
                      static_cast<unsigned>(hkv));
      kernels::statistic_kernel<<<grid, kernels::kStatisticThreads, shared, stream>>>(sp);
    }

    kernels::ExponentParams ep;
    ep.weights = a.weights;
    ep.ld = a.weights_ld;
    ep.n = n;
    ep.begin = begin;
    ep.heads = hq;
    ep.tau = static_cast<float>(c.tau);
    ep.max_keys = b.max_keys;
    const unsigned blocks = std::min<unsigned>(ceil_div(hq * n, 256), 65535u);
    kernels::exponent_kernel<<<blocks, 256, 0, stream>>>(ep);
    return launch_status("relevance kernels");
  }
};

}  // namespace capkv::cuda
