#pragma once

// The digit logic of a deterministic top-B: the CUDA selection kernel (kernels/top_b.cuh) and the
// CPU tests run these same functions, and the tests hold them to capkv::select_from_scores.
//
// capkv::ranks_before orders tokens by higher score first and, among equal scores, larger index
// first. Folding both into one 64-bit key, (order_key(score) << 32) | index, turns that order into
// plain unsigned comparison of distinct keys: the B-th best candidate has a unique key T and the
// kept candidates are exactly those with key >= T. A radix select finds T eight bits at a time from
// the most significant digit: histogram the digit of the keys still in play, find the bucket that
// holds the k-th largest, narrow the prefix, repeat.

#include <cstdint>
#include <cstring>

#include "capkv/device/host_device.hpp"

namespace capkv::device {

inline constexpr int kRadixBits = 8;
inline constexpr int kRadixBuckets = 1 << kRadixBits;
inline constexpr int kRadixPasses = 64 / kRadixBits;

// Monotone map of a non-NaN float to uint32: a > b exactly when order_key(a) > order_key(b), and
// a == b exactly when the keys are equal. That last part is why -0 is mapped to +0 first:
// ranks_before compares floats, for which -0 == +0, so the two must tie and fall to the index.
CAPKV_HOST_DEVICE inline std::uint32_t order_key(float score) {
  std::uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(score);
#else
  std::memcpy(&bits, &score, sizeof bits);
#endif
  if (score == 0.0f) bits = 0u;
  // Positive floats order like their bits; negative ones in reverse. Setting the sign bit of the
  // positives and complementing the negatives puts both on one increasing unsigned line.
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

CAPKV_HOST_DEVICE inline float from_order_key(std::uint32_t key) {
  const std::uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
  float score;
#if defined(__CUDA_ARCH__)
  score = __uint_as_float(bits);
#else
  std::memcpy(&score, &bits, sizeof score);
#endif
  return score;
}

// Larger key ranks first, exactly as capkv::ranks_before(score, index, ...). Indices are
// non-negative int32, so their unsigned order is their order.
CAPKV_HOST_DEVICE inline std::uint64_t selection_key(float score, std::int32_t index) {
  return (static_cast<std::uint64_t>(order_key(score)) << 32) | static_cast<std::uint32_t>(index);
}

// Digit `pass` (0 = most significant) of a key.
CAPKV_HOST_DEVICE inline int radix_digit(std::uint64_t key, int pass) {
  return static_cast<int>((key >> (64 - kRadixBits * (pass + 1))) & (kRadixBuckets - 1));
}

// Whether a key is still in play at `pass`: its digits before `pass` equal `prefix` (which holds
// exactly those `pass` digits).
CAPKV_HOST_DEVICE inline bool radix_in_play(std::uint64_t key, std::uint64_t prefix, int pass) {
  return pass == 0 || (key >> (64 - kRadixBits * pass)) == prefix;
}

// Among the keys in play, bucket b holds the k-th largest (k is 1-based) exactly when fewer than k
// keys lie in the buckets above it and at least k in it and above. One bucket satisfies this; a
// CUDA block tests all buckets in parallel from a suffix sum.
CAPKV_HOST_DEVICE inline bool holds_kth(std::uint32_t above, std::uint32_t count, std::uint32_t k) {
  return above < k && above + count >= k;
}

struct RadixBucket {
  int bucket = 0;
  std::uint32_t rank = 0;  // the k-th largest is the rank-th largest inside this bucket (1-based)
  std::uint32_t count = 0;
};

// The serial scan: from the top bucket down, stop where the k-th largest lies. The caller
// guarantees 1 <= k <= the total of `histogram`.
CAPKV_HOST_DEVICE inline RadixBucket find_kth_bucket(const std::uint32_t* histogram,
                                                     std::uint32_t k) {
  std::uint32_t above = 0;
  for (int b = kRadixBuckets - 1; b > 0; --b) {
    if (holds_kth(above, histogram[b], k)) return {b, k - above, histogram[b]};
    above += histogram[b];
  }
  return {0, k - above, histogram[0]};
}

// What the write pass does with a head's candidates (the non-protected tokens).
enum class ThresholdMode : std::uint32_t {
  kKeepAll = 0,     // the budget covers every candidate (or every token)
  kKeepNone = 1,    // the protected tokens fill the budget
  kKeyAtLeast = 2,  // keep a candidate when its selection key >= key
};

struct Threshold {
  std::uint64_t key = 0;
  ThresholdMode mode = ThresholdMode::kKeepAll;
};

// The tokens every policy keeps (capkv::Protection, restated for device code): the first `sinks`
// and the last `window`, overlapping when n is small. They count inside the budget.
struct ProtectedRange {
  std::int64_t sinks = 0;
  std::int64_t window = 0;

  CAPKV_HOST_DEVICE bool contains(std::int64_t token, std::int64_t n) const {
    return token < sinks || token >= n - window;
  }
  CAPKV_HOST_DEVICE std::int64_t count(std::int64_t n) const {
    const std::int64_t s = sinks < n ? sinks : n;
    const std::int64_t w = window < n ? window : n;
    return s + w < n ? s + w : n;
  }
};

// How many candidates a head keeps: budget minus the protected tokens, bounded by the candidates
// there are. Mirrors capkv::select_top_b. The caller has checked budget >= protected or >= n.
struct TopBPlan {
  std::int64_t candidates = 0;  // non-protected tokens
  std::int64_t free_slots = 0;  // how many of them are kept
  Threshold trivial;            // the answer when no search is needed
  bool needs_search = false;
};

CAPKV_HOST_DEVICE inline TopBPlan plan_top_b(std::int64_t n, std::int64_t budget,
                                             const ProtectedRange& protection) {
  TopBPlan plan;
  const std::int64_t protected_count = protection.count(n);
  plan.candidates = n - protected_count;
  if (budget >= n) {
    plan.free_slots = plan.candidates;
    return plan;  // kKeepAll
  }
  plan.free_slots = budget - protected_count;
  if (plan.free_slots <= 0) {
    plan.free_slots = 0;
    plan.trivial.mode = ThresholdMode::kKeepNone;
  } else if (plan.free_slots >= plan.candidates) {
    plan.free_slots = plan.candidates;
  } else {
    plan.needs_search = true;
  }
  return plan;
}

// One pass of the search: given the histogram of digit `pass` over the keys in play and the rank
// k still sought, narrows `prefix` and `k`. Returns true when the threshold is known: either the
// last digit is fixed (threshold = the full key) or the bucket holds exactly the k keys still
// sought, in which case all of them are kept and the threshold is the bucket's smallest key.
CAPKV_HOST_DEVICE inline bool radix_step(const RadixBucket& found, int pass, std::uint64_t& prefix,
                                         std::uint32_t& k, Threshold& threshold) {
  prefix = (prefix << kRadixBits) | static_cast<std::uint64_t>(found.bucket);
  k = found.rank;
  const int shift = 64 - kRadixBits * (pass + 1);
  if (shift == 0 || found.count == found.rank) {
    threshold.mode = ThresholdMode::kKeyAtLeast;
    threshold.key = shift == 0 ? prefix : (prefix << shift);
    return true;
  }
  return false;
}

// The write pass's rule for one token.
CAPKV_HOST_DEVICE inline bool keeps_token(std::int64_t token, std::int64_t n, float score,
                                          const ProtectedRange& protection,
                                          const Threshold& threshold) {
  if (protection.contains(token, n)) return true;
  switch (threshold.mode) {
    case ThresholdMode::kKeepAll:
      return true;
    case ThresholdMode::kKeepNone:
      return false;
    case ThresholdMode::kKeyAtLeast:
      return selection_key(score, static_cast<std::int32_t>(token)) >= threshold.key;
  }
  return false;
}

}  // namespace capkv::device
