#include "model/kv_cache.hpp"

#include <algorithm>
#include <capkv/core/compaction.hpp>
#include <capkv/core/error.hpp>

namespace capkv::llm {

LayerCache::LayerCache(std::int64_t n_kv_heads, std::int64_t head_dim, std::int64_t capacity)
    : n_kv_heads_(n_kv_heads), head_dim_(head_dim), capacity_(std::max<std::int64_t>(capacity, 1)),
      keys_(static_cast<std::size_t>(n_kv_heads * capacity_ * head_dim)),
      values_(keys_.size()),
      positions_(static_cast<std::size_t>(n_kv_heads * capacity_)),
      sizes_(static_cast<std::size_t>(n_kv_heads), 0) {}

ConstRowMap LayerCache::keys(std::int64_t h) const {
  return {keys_.data() + h * capacity_ * head_dim_, sizes_[h], head_dim_};
}
ConstRowMap LayerCache::values(std::int64_t h) const {
  return {values_.data() + h * capacity_ * head_dim_, sizes_[h], head_dim_};
}
std::span<const std::int64_t> LayerCache::positions(std::int64_t h) const {
  return {positions_.data() + h * capacity_, static_cast<std::size_t>(sizes_[h])};
}

void LayerCache::grow(std::int64_t capacity) {
  LayerCache bigger(n_kv_heads_, head_dim_, capacity);
  for (std::int64_t h = 0; h < n_kv_heads_; ++h) {
    const std::int64_t rows = sizes_[h] * head_dim_;
    std::copy_n(keys_.data() + h * capacity_ * head_dim_, rows, bigger.keys_.data() + h * capacity * head_dim_);
    std::copy_n(values_.data() + h * capacity_ * head_dim_, rows, bigger.values_.data() + h * capacity * head_dim_);
    std::copy_n(positions_.data() + h * capacity_, sizes_[h], bigger.positions_.data() + h * capacity);
  }
  bigger.sizes_ = sizes_;
  *this = std::move(bigger);
}

void LayerCache::append(const RowMatrixXf& k, const RowMatrixXf& v,
                        std::span<const std::int64_t> positions) {
  const auto t = static_cast<std::int64_t>(positions.size());
  const std::int64_t needed = *std::max_element(sizes_.begin(), sizes_.end()) + t;
  if (needed > capacity_) grow(std::max(needed, 2 * capacity_));
  for (std::int64_t h = 0; h < n_kv_heads_; ++h) {
    float* kd = keys_.data() + (h * capacity_ + sizes_[h]) * head_dim_;
    float* vd = values_.data() + (h * capacity_ + sizes_[h]) * head_dim_;
    for (std::int64_t r = 0; r < t; ++r) {
      Eigen::Map<Eigen::RowVectorXf>(kd + r * head_dim_, head_dim_) = k.row(r).segment(h * head_dim_, head_dim_);
      Eigen::Map<Eigen::RowVectorXf>(vd + r * head_dim_, head_dim_) = v.row(r).segment(h * head_dim_, head_dim_);
      positions_[h * capacity_ + sizes_[h] + r] = positions[r];
    }
    sizes_[h] += t;
  }
}

capkv::MutableTensorView LayerCache::view(std::vector<float>& buffer, std::int64_t n_tokens) {
  return {buffer.data(), capkv::DType::kF32, n_tokens, n_kv_heads_, head_dim_,
          capkv::Strides{head_dim_, capacity_ * head_dim_, 1}};
}

capkv::TensorView LayerCache::keys_view() const {
  capkv::require(std::all_of(sizes_.begin(), sizes_.end(), [&](auto s) { return s == sizes_[0]; }),
                 "cache", "heads hold different counts; a layer view needs equal ones");
  return const_cast<LayerCache*>(this)->view(const_cast<std::vector<float>&>(keys_), sizes_[0]);
}
capkv::TensorView LayerCache::values_view() const {
  keys_view();  // same precondition
  return const_cast<LayerCache*>(this)->view(const_cast<std::vector<float>&>(values_), sizes_[0]);
}

void LayerCache::retain(const capkv::Selection& selection) {
  const std::int64_t n = sizes_[0];
  capkv::compact_in_place(view(keys_, n), selection);
  capkv::compact_in_place(view(values_, n), selection);
  for (std::int64_t h = 0; h < n_kv_heads_; ++h) {
    const auto kept = selection.head(h);
    std::int64_t* pos = positions_.data() + h * capacity_;
    for (std::size_t j = 0; j < kept.size(); ++j) pos[j] = pos[kept[j]];
    sizes_[h] = static_cast<std::int64_t>(kept.size());
  }
}

void LayerCache::erase(std::int64_t h, std::int64_t slot) {
  float* kd = keys_.data() + h * capacity_ * head_dim_;
  float* vd = values_.data() + h * capacity_ * head_dim_;
  std::int64_t* pos = positions_.data() + h * capacity_;
  const std::int64_t n = sizes_[h];
  std::copy(kd + (slot + 1) * head_dim_, kd + n * head_dim_, kd + slot * head_dim_);
  std::copy(vd + (slot + 1) * head_dim_, vd + n * head_dim_, vd + slot * head_dim_);
  std::copy(pos + slot + 1, pos + n, pos + slot);
  --sizes_[h];
}

KvCache::KvCache(std::int64_t n_layers, std::int64_t n_kv_heads, std::int64_t head_dim,
                 std::int64_t capacity) {
  layers.reserve(static_cast<std::size_t>(n_layers));
  for (std::int64_t l = 0; l < n_layers; ++l) layers.emplace_back(n_kv_heads, head_dim, capacity);
}

std::int64_t KvCache::bytes_held() const {
  std::int64_t bytes = 0;
  for (const LayerCache& layer : layers)
    for (std::int64_t h = 0; h < layer.n_kv_heads(); ++h)
      bytes += 2 * layer.size(h) * layer.head_dim() * static_cast<std::int64_t>(sizeof(float));
  return bytes;
}

}  // namespace capkv::llm
