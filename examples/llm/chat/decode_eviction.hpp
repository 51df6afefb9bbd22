#pragma once

// Policies that keep evicting while the model generates, so the cache never outgrows its budget:
// H2O (the accumulated attention decides) and StreamingLLM (the oldest non-sink token goes).

#include <capkv/cpu/h2o.hpp>
#include <cstdint>
#include <vector>

#include "model/forward_observer.hpp"
#include "model/kv_cache.hpp"

namespace capkv::llm {

class DecodeEviction {
 public:
  virtual ~DecodeEviction() = default;
  // Watches the decoding step's forward pass, or nullptr when the policy needs nothing from it.
  virtual ForwardObserver* observer() { return nullptr; }
  // After each generated token: bring every (layer, KV head) back to the budget.
  virtual void after_step(KvCache& cache) = 0;
};

// Per layer, the step's attention rows from its post-RoPE query and the cached keys go into
// capkv::cpu::H2OState, which names the slot each KV head gives up. The victims are erased only
// after the step, so the step itself still attends to budget + 1 tokens, as in the paper.
class H2OEviction : public DecodeEviction, public ForwardObserver {
 public:
  explicit H2OEviction(std::vector<capkv::cpu::H2OState> states)
      : states_(std::move(states)), victims_(states_.size()) {}

  ForwardObserver* observer() override { return this; }
  void on_layer(const LayerActivations& a, LayerCache& cache) override;
  void after_step(KvCache& cache) override;

 private:
  std::vector<capkv::cpu::H2OState> states_;
  std::vector<std::vector<std::int64_t>> victims_;  // per layer, per KV head; -1 for none
};

// StreamingLLM: positions alone decide, so each step drops slot `sinks` (the oldest token after
// the attention sinks) from every head holding more than the budget. Kept keys stay rotated at
// their original positions (no re-rotation); that is exact within the model's 8K context.
class StreamingEviction : public DecodeEviction {
 public:
  StreamingEviction(std::int64_t budget, std::int64_t sinks) : budget_(budget), sinks_(sinks) {}
  void after_step(KvCache& cache) override;

 private:
  std::int64_t budget_, sinks_;
};

}  // namespace capkv::llm
