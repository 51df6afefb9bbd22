#pragma once

#include <capkv/core/dtype.hpp>
#include <capkv/core/tensor_view.hpp>
#include <cstdint>
#include <vector>

#include "model/forward_observer.hpp"

namespace capkv::llm::eval {

// One layer's queries, [tokens, heads, dim], stored in half precision: H2O reads all L prompt
// queries of every layer, and at 4K context fp32 copies of them (pre- and post-RoPE) would cost
// more than half a gigabyte. fp16 keeps 11 significant bits, plenty for attention scores; a layer
// whose queries exceed fp16's range falls back to bf16 (range of fp32, 8 bits).
class HalfQueries {
 public:
  HalfQueries() = default;
  // Stores rows [first_row, q.rows()) of q, which is [T, heads * head_dim].
  HalfQueries(const RowMatrixXf& q, std::int64_t first_row, std::int64_t n_heads,
              std::int64_t head_dim);

  bool empty() const { return n_tokens_ == 0; }
  capkv::DType dtype() const { return dtype_; }
  std::int64_t n_tokens() const { return n_tokens_; }
  capkv::TensorView view() const;
  std::int64_t bytes() const { return static_cast<std::int64_t>(data_.size() * sizeof(data_[0])); }

 private:
  std::vector<std::uint16_t> data_;
  capkv::DType dtype_ = capkv::DType::kF16;
  std::int64_t n_tokens_ = 0, n_heads_ = 0, head_dim_ = 0;
};

// Records, during the prefill, the queries the policies read: the last `post_rope_rows` post-RoPE
// queries of every layer (all of them when H2O is evaluated, else the largest observation window)
// and, when asked, every pre-RoPE query (CapKV's kvpress anchor). The keys and values are not
// copied: the policies read them from the cache itself (LayerCache::keys_view/values_view).
// The prefill must be a single forward call.
class PrefillCapture : public ForwardObserver {
 public:
  PrefillCapture(std::int64_t n_layers, std::int64_t n_heads, std::int64_t head_dim,
                 std::int64_t post_rope_rows, bool pre_rope);

  void on_layer(const LayerActivations& activations, LayerCache& cache) override;

  const HalfQueries& queries(std::int64_t layer) const { return post_rope_[layer]; }
  const HalfQueries& queries_pre_rope(std::int64_t layer) const { return pre_rope_[layer]; }
  std::int64_t bytes() const;
  // Frees the captures once every selection has been made.
  void release();

 private:
  std::int64_t n_heads_, head_dim_, post_rope_rows_;
  bool want_pre_rope_;
  std::vector<HalfQueries> post_rope_;
  std::vector<HalfQueries> pre_rope_;
};

// Records the post-RoPE queries of a continuation run, in fp32 (M rows per layer is small), for the
// attention recall, output error and surrogate-alignment measures.
class ContinuationCapture : public ForwardObserver {
 public:
  explicit ContinuationCapture(std::int64_t n_layers)
      : queries_(static_cast<std::size_t>(n_layers)) {}

  void on_layer(const LayerActivations& activations, LayerCache& cache) override;
  const RowMatrixXf& queries(std::int64_t layer) const { return queries_[layer]; }

 private:
  std::vector<RowMatrixXf> queries_;
};

}  // namespace capkv::llm::eval
