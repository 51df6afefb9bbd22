#pragma once

// The attention-vote stage shared by SnapKVSelect and H2OSelect (kernels/attention_votes.cuh):
// the last w query rows of every head attend causally over the keys, and each of the first
// `tokens` tokens collects its probabilities summed (or averaged) over those rows, per query head.

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "kernels/attention_votes.cuh"

namespace capkv::cuda {

struct AttentionVotes {
  struct Buffers {
    float2* partials = nullptr;
    float2* normalisers = nullptr;
    float* raw = nullptr;  // [Hq, tokens]
  };

  static std::int64_t tiles(std::int64_t n) {
    return (n + kernels::kSnapTokens - 1) / kernels::kSnapTokens;
  }

  static Buffers carve(WorkspaceCarver& carver, std::int64_t n, std::int64_t query_heads,
                       std::int64_t rows, std::int64_t tokens) {
    Buffers b;
    b.partials = carver.take<float2>(static_cast<std::size_t>(query_heads * rows * tiles(n)));
    b.normalisers = carver.take<float2>(static_cast<std::size_t>(query_heads * rows));
    b.raw = carver.take<float>(static_cast<std::size_t>(query_heads * tokens));
    return b;
  }

  // Also checks every key and every one of the `rows` last queries for NaN/Inf, even when there is
  // nothing to vote for (tokens == 0), as the CPU path refuses bad input in that case too.
  static Status enqueue(const TensorView& keys, const TensorView& queries, std::int64_t query_heads,
                        std::int64_t rows, std::int64_t tokens, bool mean, const Buffers& b,
                        std::uint32_t* flags, cudaStream_t stream) {
    const std::int64_t n = keys.n_tokens();
    if (n == 0) return Status::success();
    const std::int64_t hkv = keys.n_heads();
    kernels::SnapParams p;
    p.keys = kernels::device_view(keys);
    p.queries = kernels::device_view(queries);
    p.group = static_cast<int>(query_heads / hkv);
    p.window = rows;
    p.scale = 1.0f / std::sqrt(static_cast<float>(keys.head_dim()));
    p.partials = b.partials;
    p.tiles = tiles(n);
    p.normalisers = b.normalisers;
    p.raw = b.raw;
    p.tokens = tokens;
    p.mean = mean;
    p.flags = flags;
    const std::size_t shared = kernels::snap_shared_bytes(keys.head_dim());
    Status s = allow_shared_memory(kernels::snap_stats_kernel, shared, "snap_stats_kernel");
    if (!s) return s;
    s = allow_shared_memory(kernels::snap_vote_kernel, shared, "snap_vote_kernel");
    if (!s) return s;
    kernels::snap_stats_kernel<<<dim3(static_cast<unsigned>(p.tiles), static_cast<unsigned>(hkv)),
                                 kernels::kSnapThreads, shared, stream>>>(p);
    if (tokens > 0) {
      const std::int64_t total_rows = query_heads * rows;
      kernels::snap_normalise_kernel<<<std::min<unsigned>(ceil_div(total_rows * 32, 256), 65535u),
                                       256, 0, stream>>>(p, total_rows);
      kernels::snap_vote_kernel<<<dim3(ceil_div(tokens, kernels::kSnapTokens),
                                       static_cast<unsigned>(hkv)),
                                  kernels::kSnapThreads, shared, stream>>>(p);
    }
    return launch_status("attention vote kernels");
  }
};

}  // namespace capkv::cuda
