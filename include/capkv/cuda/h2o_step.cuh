#pragma once

// H2OStep: one decoding step of H2O for one layer on the GPU, the counterpart of
// capkv::cpu::H2OState::observe (kernels/h2o_step.cuh). The state lives in the caller's device
// memory: per KV head its current size and the accumulators of its slots, in the cache's slot
// order. Before the call the caller writes the new token's key into slot sizes[h] of each head;
// the step then
//   - computes each query head's attention over its KV head's slots [0, size] (softmax of
//     q.k / sqrt(d) in fp32),
//   - appends the new token with an accumulator of 0 and adds the attention of the group's query
//     heads in head order,
//   - once a head holds more than `budget`, evicts the lowest accumulator among the slots outside
//     the recent window (the older slot on ties), shifting the later accumulators down by one,
// and reports evicted[h] (the slot, or -1) and the new sizes[h]. Exactly the CPU state's rules, so
// the accumulators stay in the CPU's order; the caller removes the same slot from its key and
// value cache (shifting the later rows down, as H2OState's positions do; CompactInPlace with
// every slot but the victim does it on the device).
//
// Starting the state: H2OSelect's `scores` output holds the prefill accumulators of all n tokens;
// compacting them with the selection (CompactInPlace over the [n, Hkv, 1] fp32 view with strides
// {1, scores_ld, 1}) leaves them in slot order, next to the compacted keys and values.
//
// Bad input, as the CPU refuses it: refused before any work (Status) for the kvpress preset
// (prefill only), a budget below 1, a shape that does not fit; found on the device (read_status)
// for NaN/Inf in the query, the keys or the accumulators, a size outside the cache, and a head over
// budget whose recent window covers every slot (recent_fraction > 1). In the device cases nothing
// of the state is written, for any head. (The CPU throws that last error from inside its head loop,
// after updating the earlier heads; here the state is left as it was.)
// Accumulators are fp32 where H2OState keeps doubles, so over a long decode the two may break a
// near tie differently.

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/policies/h2o.hpp"
#include "kernels/h2o_step.cuh"

namespace capkv::cuda {

struct H2OStep {
  struct Arguments {
    H2O policy;
    std::int64_t budget = 0;  // tokens kept per KV head, as H2OState's
    TensorView keys;          // [capacity, Hkv, d] device: slots [0, sizes[h]] of head h are read
    TensorView query;         // [1, Hq, d] device: the step's query (after RoPE)
    float* accumulators = nullptr;  // [Hkv, accumulators_ld] device, in/out
    std::int64_t accumulators_ld = 0;
    std::int32_t* sizes = nullptr;    // [Hkv] device, in/out: tokens per head before the step
    std::int32_t* evicted = nullptr;  // [Hkv] device, out: the evicted slot, or -1
  };

  static constexpr std::int64_t kMaxGroup = 1024;

  // The recent window H2O protects; it depends on the budget only (H2OState asks with the size
  // after the append, which H2O::protection ignores).
  static std::int64_t window(const Arguments& a) {
    return a.policy.protection(a.budget, a.budget).window;
  }

  static Status can_implement(const Arguments& a) {
    Status s = checked([&] {
      a.keys.validate("keys");
      a.query.validate("query");
    });
    if (!s) return s;
    if (a.policy.config.normalize_by_exposure) {
      return Status::invalid("policy",
                             "the kvpress ObservedAttention preset scores the prefill only");
    }
    if (!std::isfinite(a.policy.config.recent_fraction) || a.policy.config.recent_fraction < 0.0) {
      return Status::invalid("policy", "recent_fraction must be a finite number >= 0");
    }
    if (a.budget < 1)
      return Status::invalid("budget", "H2O decoding needs room for at least one token");
    const std::int64_t capacity = a.keys.n_tokens();
    if (capacity < 1) return Status::invalid("keys", "has no slot for the new token");
    if (capacity > 0x7fffffffLL) return Status::invalid("keys", "more than 2^31 - 1 slots");
    if (a.keys.n_heads() > 65535) return Status::invalid("keys", "more than 65535 KV heads");
    if (a.keys.head_dim() > kernels::kH2OStepMaxDim)
      return Status::invalid("keys", "head_dim above 256 is not supported on the GPU");
    if (a.query.n_tokens() != 1)
      return Status::invalid("query", "must hold exactly one token, the step's query");
    if (a.query.head_dim() != a.keys.head_dim())
      return Status::invalid("query", "head_dim differs from the keys'");
    if (a.query.n_heads() % a.keys.n_heads() != 0) {
      return Status::invalid("query", "the query heads must be a multiple of the KV heads");
    }
    if (a.query.n_heads() / a.keys.n_heads() > kMaxGroup)
      return Status::invalid("query", "more than 1024 query heads per KV head");
    if (a.accumulators == nullptr) return Status::invalid("accumulators", "is null");
    if (a.accumulators_ld < capacity) {
      return Status::invalid("accumulators_ld", "is smaller than the keys' token count (capacity)");
    }
    if (a.sizes == nullptr) return Status::invalid("sizes", "is null");
    if (a.evicted == nullptr) return Status::invalid("evicted", "is null");
    return Status::success();
  }

  struct Layout {
    std::uint32_t* flags = nullptr;
    float* logits = nullptr;
    capkv::device::SoftmaxPartial* partials = nullptr;
    float* updated = nullptr;
  };

  static std::int64_t tiles(const Arguments& a) {
    return (a.keys.n_tokens() + kernels::kH2OStepSlots - 1) / kernels::kH2OStepSlots;
  }

  // Sized for the capacity, since the sizes are only known on the device.
  static Layout carve(WorkspaceCarver& carver, const Arguments& a) {
    const auto capacity = static_cast<std::size_t>(a.keys.n_tokens());
    const auto hq = static_cast<std::size_t>(a.query.n_heads());
    Layout l;
    l.flags = take_flags(carver);
    l.logits = carver.take<float>(hq * capacity);
    l.partials =
        carver.take<capkv::device::SoftmaxPartial>(hq * static_cast<std::size_t>(tiles(a)));
    l.updated = carver.take<float>(static_cast<std::size_t>(a.keys.n_heads()) * capacity);
    return l;
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<H2OStep>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    const Layout l = carve(carver, a);
    kernels::H2OStepParams p;
    p.keys = kernels::device_view(a.keys);
    p.query = kernels::device_view(a.query);
    p.group = static_cast<int>(a.query.n_heads() / a.keys.n_heads());
    p.scale = 1.0f / std::sqrt(static_cast<float>(a.keys.head_dim()));
    p.budget = a.budget;
    p.window = window(a);
    p.accumulators = a.accumulators;
    p.accumulators_ld = a.accumulators_ld;
    p.sizes = a.sizes;
    p.evicted = a.evicted;
    p.logits = l.logits;
    p.partials = l.partials;
    p.tiles = tiles(a);
    p.updated = l.updated;
    p.flags = l.flags;
    const auto hkv = static_cast<unsigned>(a.keys.n_heads());
    kernels::h2o_step_logits_kernel<<<dim3(static_cast<unsigned>(p.tiles), hkv),
                                      kernels::kH2OStepThreads, 0, stream>>>(p);
    s = launch_status("h2o_step_logits_kernel");
    if (!s) return s;
    kernels::h2o_step_update_kernel<<<hkv, kernels::kH2OStepThreads,
                                      kernels::h2o_update_shared_bytes(p.group), stream>>>(p);
    return launch_status("h2o_step_update_kernel");
  }
};

}  // namespace capkv::cuda
