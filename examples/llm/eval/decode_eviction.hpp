#pragma once

#include <capkv/capkv.hpp>
#include <cstdint>
#include <vector>

#include "model/forward_observer.hpp"

namespace capkv::llm::eval {

// Decode-time eviction: the cache holds a fixed budget B per KV head while tokens arrive one at a
// time. Both policies follow one convention so that they compare like for like: a step's token
// attends over the B cached tokens plus itself (B + 1), then one token leaves, so every step ends
// with B. The observer sees a layer before its new K/V enter the cache, so the eviction decided at
// step t is applied when step t + 1 reaches that layer; the slot it names is that of the cache
// after step t's append, which is exactly what the cache holds then.

// H2O through decoding: cpu::H2OState (one per layer, already prefilled and retained) receives each
// step's attention rows, computed here from the step's post-RoPE query and the head's cached keys
// exactly as the model is about to compute them, and names the token to evict.
class H2ODecodeEviction : public ForwardObserver {
 public:
  explicit H2ODecodeEviction(std::vector<capkv::cpu::H2OState> states);

  void on_layer(const LayerActivations& activations, LayerCache& cache) override;

 private:
  std::vector<capkv::cpu::H2OState> states_;
  std::vector<std::vector<std::int64_t>> pending_;  // per layer, per KV head: slot or -1
};

// StreamingLLM through decoding: once a head would exceed the budget, the oldest token after the
// sinks leaves. Keys keep their original positions (no re-rotation; see results.json).
class StreamingDecodeEviction : public ForwardObserver {
 public:
  StreamingDecodeEviction(std::int64_t n_layers, std::int64_t budget, std::int64_t sinks);

  void on_layer(const LayerActivations& activations, LayerCache& cache) override;

 private:
  std::int64_t budget_, sinks_;
  std::vector<std::vector<std::int64_t>> pending_;
};

// Softmax of one step's queries over a KV head's cached keys followed by the step's own key, as
// H2OState::observe wants it: [Hq, size + 1], query head h reading KV head h / group.
RowMatrixXf step_attention(const LayerActivations& activations, const LayerCache& cache,
                           std::int64_t group);

}  // namespace capkv::llm::eval
