#pragma once

#include <Eigen/Core>
#include <capkv/core/selection.hpp>
#include <capkv/core/tensor_view.hpp>
#include <cstdint>
#include <span>
#include <vector>

namespace capkv::llm {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrixXf>;

// One layer's KV cache as an engine might keep it: a preallocated [kv_heads, capacity, head_dim]
// buffer per tensor, each head filled from the front. Heads can hold different counts once a
// policy evicts per head, so each head has its own size and the positions of its tokens. The
// policies see it through strided capkv views (token stride head_dim, head stride capacity *
// head_dim), and eviction is capkv's in-place compaction.
class LayerCache {
 public:
  LayerCache(std::int64_t n_kv_heads, std::int64_t head_dim, std::int64_t capacity);

  std::int64_t n_kv_heads() const { return n_kv_heads_; }
  std::int64_t head_dim() const { return head_dim_; }
  std::int64_t capacity() const { return capacity_; }
  std::int64_t size(std::int64_t head) const { return sizes_[head]; }

  ConstRowMap keys(std::int64_t head) const;
  ConstRowMap values(std::int64_t head) const;
  std::span<const std::int64_t> positions(std::int64_t head) const;

  // Appends T tokens: k and v are [T, kv_heads * head_dim] (head-major columns). Grows as needed.
  void append(const RowMatrixXf& k, const RowMatrixXf& v, std::span<const std::int64_t> positions);

  // Views of the first n tokens of every head, for the policies; all heads must hold n tokens.
  capkv::TensorView keys_view() const;
  capkv::TensorView values_view() const;

  // Keeps, per head, only the selected tokens (in order), through capkv::compact_in_place.
  void retain(const capkv::Selection& selection);
  // Removes one token of one head (H2O's per-step eviction).
  void erase(std::int64_t head, std::int64_t slot);

 private:
  void grow(std::int64_t capacity);
  capkv::MutableTensorView view(std::vector<float>& buffer, std::int64_t n_tokens);

  std::int64_t n_kv_heads_, head_dim_, capacity_;
  std::vector<float> keys_, values_;
  std::vector<std::int64_t> positions_;  // [kv_heads, capacity]
  std::vector<std::int64_t> sizes_;
};

// The whole model's cache plus the position the next token will take.
struct KvCache {
  std::vector<LayerCache> layers;
  std::int64_t next_position = 0;

  KvCache(std::int64_t n_layers, std::int64_t n_kv_heads, std::int64_t head_dim,
          std::int64_t capacity);
  // Tokens held by layer 0's head 0; the size reported to users.
  std::int64_t tokens() const { return layers.empty() ? 0 : layers[0].size(0); }
  // Bytes of K and V actually held (fp32), summed over layers and heads.
  std::int64_t bytes_held() const;
};

}  // namespace capkv::llm
