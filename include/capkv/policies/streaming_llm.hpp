#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "capkv/core/eviction_policy.hpp"
#include "capkv/core/rope.hpp"
#include "capkv/core/selection.hpp"

namespace capkv {

// StreamingLLM (arXiv 2309.17453): the attention sinks plus the most recent tokens; a positional
// prior that reads no tensor at all. After compaction, cpu::rerotate_kept_keys makes the kept
// keys' positions contiguous, as the paper does.
struct StreamingLLM : PolicyDefaults {
  struct Config {
    std::int64_t sinks = 4;
  };

  Config config;

  StreamingLLM() = default;
  explicit StreamingLLM(const Config& c) : config(c) {}

  static StreamingLLM paper() { return StreamingLLM(); }
  static StreamingLLM kvpress() { return StreamingLLM(); }

  std::string_view name() const { return "StreamingLLM"; }
  InputNeeds needs() const { return {}; }
  // Everything kept is protected: the sinks and the budget's remaining B - sinks recent tokens. A
  // budget below the sinks is refused by select(), like any budget below the protected set.
  Protection protection(std::int64_t, std::int64_t budget) const {
    return {config.sinks, std::max<std::int64_t>(0, budget - config.sinks)};
  }
};

// After compact(), slot j of head h holds the key cached at position selection.head(h)[j]; rotating
// it by j - that position makes the kept keys' positions 0..B-1, as if the evicted tokens had never
// been there. New tokens then continue at position B.
inline void rerotate_kept_keys(const MutableTensorView& compacted_keys, const Selection& selection,
                               const Rope& rope) {
  compacted_keys.validate("compacted_keys");
  require(selection.uniform() && selection.n_kv_heads() == compacted_keys.n_heads() &&
              (selection.n_kv_heads() == 0 || selection.kept(0) == compacted_keys.n_tokens()),
          "compacted_keys", "must be the dense compaction of this selection");
  require(compacted_keys.head_dim() % 2 == 0, "compacted_keys", "RoPE needs an even head_dim");
  rotate_rows(compacted_keys, rope, [&](std::int64_t j, std::int64_t h) {
    return j - selection.head(h)[j];
  });
}

}  // namespace capkv
