#pragma once

// Keeps each layer's prompt queries (after and before RoPE) from the prefill, which the policies
// read when the cache is compressed right after it.

#include <capkv/core/tensor_view.hpp>
#include <cstdint>
#include <vector>

#include "model/forward_observer.hpp"

namespace capkv::llm {

class QueryRecorder : public ForwardObserver {
 public:
  QueryRecorder(std::int64_t n_layers, std::int64_t n_heads, std::int64_t head_dim)
      : n_heads_(n_heads), head_dim_(head_dim), q_(n_layers), q_pre_rope_(n_layers) {}

  void on_layer(const LayerActivations& a, LayerCache&) override {
    q_[a.layer] = a.q;
    q_pre_rope_[a.layer] = a.q_pre_rope;
  }

  // [prompt tokens, heads, head_dim] views of what on_layer kept.
  TensorView queries(std::int64_t layer) const { return view(q_[layer]); }
  TensorView queries_pre_rope(std::int64_t layer) const { return view(q_pre_rope_[layer]); }

 private:
  TensorView view(const RowMatrixXf& q) const {
    return {q.data(), DType::kF32, Layout::kTokensHeadsDim, q.rows(), n_heads_, head_dim_};
  }

  std::int64_t n_heads_, head_dim_;
  std::vector<RowMatrixXf> q_, q_pre_rope_;
};

}  // namespace capkv::llm
