#pragma once

#include <cstdint>
#include <span>

#include "model/kv_cache.hpp"

namespace capkv::llm {

// What one layer computed for the tokens of a forward call, [T, heads * head_dim] each, handed
// over after RoPE and before the new K/V enter the cache: exactly where an engine calls an
// eviction library.
struct LayerActivations {
  std::int64_t layer;
  std::span<const std::int64_t> positions;
  const RowMatrixXf& q_pre_rope;
  const RowMatrixXf& q;
  const RowMatrixXf& k_pre_rope;
  const RowMatrixXf& k;
  const RowMatrixXf& v;
};

class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  virtual void on_layer(const LayerActivations& activations, LayerCache& cache) = 0;
};

}  // namespace capkv::llm
