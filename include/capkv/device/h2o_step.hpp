#pragma once

// The bookkeeping of one H2O decoding step for one KV head, shared by the CUDA kernel
// (kernels/h2o_step.cuh) and the CPU tests, which hold it to capkv::cpu::H2OState::observe:
//   - the new token is appended at slot `size` with an accumulator starting at 0;
//   - every slot adds the step's attention of each query head of the group, in head order;
//   - once the head holds more than the budget, the victim is the lowest accumulator among the
//     slots outside the recent window (the older slot on ties, as std::min_element picks), and the
//     accumulators after it shift down by one (H2OState erases, so the order stays the CPU's).
// Plus the online-softmax pieces the attention row is normalised with.

#include <cmath>
#include <cstdint>

#include "capkv/device/host_device.hpp"

namespace capkv::device {
namespace detail {

CAPKV_HOST_DEVICE inline float exp_f(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return std::exp(x);
#endif
}

}  // namespace detail

// A softmax normaliser over part of a row: the part's maximum and sum of exp(x - max). An empty
// part is {-inf, 0}.
struct SoftmaxPartial {
  float max;
  float sum;
};

CAPKV_HOST_DEVICE inline SoftmaxPartial empty_softmax_partial() { return {-INFINITY, 0.0f}; }

// Combines two parts. Commutative bit for bit (so a butterfly reduction leaves every lane with the
// same answer); an empty side is skipped, because -inf - -inf would be NaN.
CAPKV_HOST_DEVICE inline SoftmaxPartial merge_softmax(SoftmaxPartial a, SoftmaxPartial b) {
  if (a.max == -INFINITY) return b;
  if (b.max == -INFINITY) return a;
  const float m = a.max > b.max ? a.max : b.max;
  return {m, a.sum * detail::exp_f(a.max - m) + b.sum * detail::exp_f(b.max - m)};
}

// Adds one logit to a part.
CAPKV_HOST_DEVICE inline SoftmaxPartial add_logit(SoftmaxPartial p, float x) {
  return merge_softmax(p, SoftmaxPartial{x, 1.0f});
}

// A candidate victim: the slot and its accumulator; slot -1 is "none".
struct SlotMin {
  float value;
  std::int32_t slot;
};

// The lower of two candidates by (value, slot): the lowest accumulator, the older slot on ties.
// Slots are distinct, so this is a total order and any reduction tree gives the same victim.
CAPKV_HOST_DEVICE inline SlotMin lower_slot(SlotMin a, SlotMin b) {
  if (a.slot < 0) return b;
  if (b.slot < 0) return a;
  if (b.value < a.value || (b.value == a.value && b.slot < a.slot)) return b;
  return a;
}

// How many slots, oldest first, may be evicted once a head holds `size_after_append` tokens: 0
// while it is within the budget (no eviction), -1 when it is over the budget but the recent window
// covers every slot (H2OState's "the recent window leaves no token to evict").
CAPKV_HOST_DEVICE inline std::int64_t h2o_evictable(std::int64_t size_after_append,
                                                    std::int64_t budget, std::int64_t window) {
  if (size_after_append <= budget) return 0;
  const std::int64_t evictable = size_after_append - window;
  if (evictable < 1) return -1;
  return evictable < size_after_append ? evictable : size_after_append;
}

// One head's step. `logits` row j (query head j of the group) holds the scaled logits of slots
// [0, size]; normalisers[j] is that row's softmax normaliser over the same slots.
struct H2OHeadStep {
  const float* logits = nullptr;  // [group, logits_ld]
  std::int64_t logits_ld = 0;
  const SoftmaxPartial* normalisers = nullptr;  // [group]
  int group = 1;
  std::int64_t size = 0;  // tokens before the append; the new token takes slot `size`
  std::int64_t budget = 1;
  std::int64_t window = 0;
  const float* accumulators_in = nullptr;  // [size]
  float* updated = nullptr;                // [size + 1] scratch, not aliasing the others
  float* accumulators_out = nullptr;       // [size + 1]; may be accumulators_in
  SlotMin* reduce = nullptr;               // [team.size()], only this team's
};

// Returns the evicted slot (-1 for none) to every worker; accumulators_out then holds the head's
// size + 1 (no eviction) or size accumulators. Every worker calls it with the same arguments.
CAPKV_HD_TEMPLATE
template <class Team>
CAPKV_HOST_DEVICE std::int64_t h2o_step_head(const H2OHeadStep& s, const Team& team) {
  const std::int64_t rank = team.rank();
  const std::int64_t workers = team.size();
  const std::int64_t n1 = s.size + 1;
  const std::int64_t evictable = h2o_evictable(n1, s.budget, s.window);
  SlotMin best{0.0f, -1};
  for (std::int64_t slot = rank; slot < n1; slot += workers) {
    float a = slot < s.size ? s.accumulators_in[slot] : 0.0f;
    for (int j = 0; j < s.group; ++j) {
      const SoftmaxPartial norm = s.normalisers[j];
      a += detail::exp_f(s.logits[j * s.logits_ld + slot] - norm.max) / norm.sum;
    }
    s.updated[slot] = a;
    if (slot < evictable) best = lower_slot(best, SlotMin{a, static_cast<std::int32_t>(slot)});
  }
  s.reduce[rank] = best;
  team.sync();  // all candidates and updated values are in; accumulators_in is read for good
  SlotMin victim{0.0f, -1};
  for (std::int64_t w = 0; w < workers; ++w) victim = lower_slot(victim, s.reduce[w]);
  const std::int64_t v = victim.slot;
  const std::int64_t kept = v >= 0 ? s.size : n1;
  for (std::int64_t slot = rank; slot < kept; slot += workers) {
    s.accumulators_out[slot] = s.updated[v >= 0 && slot >= v ? slot + 1 : slot];
  }
  team.sync();  // nobody still reads `reduce` or `updated` when the caller reuses them
  return v;
}

}  // namespace capkv::device
