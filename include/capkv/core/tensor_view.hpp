#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "capkv/core/dtype.hpp"
#include "capkv/core/error.hpp"

namespace capkv {

// The two packed orders engines use for a layer's cache or its queries.
enum class Layout { kTokensHeadsDim, kHeadsTokensDim };

// Element strides (not bytes) of the three axes. An engine's cache is rarely packed: a paged or
// preallocated cache has a token stride larger than heads * dim, so every axis has its own stride.
struct Strides {
  std::int64_t token = 0;
  std::int64_t head = 0;
  std::int64_t dim = 1;
};

constexpr Strides packed_strides(Layout layout, std::int64_t n_tokens, std::int64_t n_heads,
                                 std::int64_t head_dim) {
  if (layout == Layout::kTokensHeadsDim) return {n_heads * head_dim, head_dim, 1};
  return {head_dim, n_tokens * head_dim, 1};
}

// A non-owning, read-only view of a [tokens, heads, dim] tensor in the caller's memory (keys,
// values or queries of one layer), in fp32, fp16 or bf16, with arbitrary strides.
class TensorView {
 public:
  TensorView() = default;
  TensorView(const void* data, DType dtype, Layout layout, std::int64_t n_tokens,
             std::int64_t n_heads, std::int64_t head_dim)
      : TensorView(data, dtype, n_tokens, n_heads, head_dim,
                   packed_strides(layout, n_tokens, n_heads, head_dim)) {}
  TensorView(const void* data, DType dtype, std::int64_t n_tokens, std::int64_t n_heads,
             std::int64_t head_dim, Strides strides)
      : data_(data), dtype_(dtype), n_tokens_(n_tokens), n_heads_(n_heads), head_dim_(head_dim),
        strides_(strides) {}

  // Declares how many elements the underlying allocation holds, so validate() can prove that every
  // addressed element lies inside it. Without it only the shape/stride consistency is checked.
  TensorView with_extent(std::int64_t elements) const {
    TensorView v = *this;
    v.extent_ = elements;
    return v;
  }

  const void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  std::int64_t n_tokens() const { return n_tokens_; }
  std::int64_t n_heads() const { return n_heads_; }
  std::int64_t head_dim() const { return head_dim_; }
  const Strides& strides() const { return strides_; }
  std::optional<std::int64_t> extent() const { return extent_; }

  std::int64_t offset(std::int64_t token, std::int64_t head, std::int64_t i) const {
    return token * strides_.token + head * strides_.head + i * strides_.dim;
  }

  float at(std::int64_t token, std::int64_t head, std::int64_t i) const {
    const std::int64_t o = offset(token, head, i);
    switch (dtype_) {
      case DType::kF32: return static_cast<const float*>(data_)[o];
      case DType::kF16: return half_to_float(static_cast<const std::uint16_t*>(data_)[o]);
      case DType::kBF16: return bf16_to_float(static_cast<const std::uint16_t*>(data_)[o]);
    }
    return 0.0f;
  }

  // Converts one [dim] row to fp32.
  void load_row(std::int64_t token, std::int64_t head, float* out) const {
    if (dtype_ == DType::kF32 && strides_.dim == 1) {
      std::memcpy(out, static_cast<const float*>(data_) + offset(token, head, 0),
                  sizeof(float) * static_cast<std::size_t>(head_dim_));
      return;
    }
    for (std::int64_t i = 0; i < head_dim_; ++i) out[i] = at(token, head, i);
  }

  // Throws Error(name) unless the shape is sane, the strides address distinct elements, and (when
  // the extent is known) every element lies inside the allocation.
  void validate(std::string_view name) const {
    require(n_tokens_ >= 0, name, "n_tokens is negative");
    require(n_heads_ >= 1, name, "n_heads must be at least 1");
    require(head_dim_ >= 1, name, "head_dim must be at least 1");
    if (n_tokens_ == 0) return;
    require(data_ != nullptr, name, "data is null but the view has tokens");
    std::array<std::pair<std::int64_t, std::int64_t>, 3> axes{
        {{strides_.token, n_tokens_}, {strides_.head, n_heads_}, {strides_.dim, head_dim_}}};
    for (const auto& [stride, size] : axes) {
      require(stride >= 0, name, "negative strides are not supported");
      require(size == 1 || stride > 0, name, "a zero stride would alias distinct elements");
    }
    // Sorted by stride, each axis must step over the whole span of the faster ones; otherwise two
    // indices address one element and a write through the view would clobber another.
    std::sort(axes.begin(), axes.end());
    std::int64_t span = 1;
    for (const auto& [stride, size] : axes) {
      if (size == 1) continue;
      require(stride >= span, name,
              "strides overlap: stride " + std::to_string(stride) + " is below the span " +
                  std::to_string(span) + " of the faster axes");
      require(size - 1 <= (INT64_MAX - span) / stride, name, "shape times strides overflows");
      span += (size - 1) * stride;
    }
    if (extent_) {
      require(span <= *extent_, name,
              "the view addresses " + std::to_string(span) + " elements but the buffer holds " +
                  std::to_string(*extent_));
    }
  }

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  std::int64_t n_tokens_ = 0;
  std::int64_t n_heads_ = 0;
  std::int64_t head_dim_ = 0;
  Strides strides_{};
  std::optional<std::int64_t> extent_;
};

// A view the library may write through: compaction targets and in-place compaction.
class MutableTensorView : public TensorView {
 public:
  MutableTensorView() = default;
  MutableTensorView(void* data, DType dtype, Layout layout, std::int64_t n_tokens,
                    std::int64_t n_heads, std::int64_t head_dim)
      : TensorView(data, dtype, layout, n_tokens, n_heads, head_dim) {}
  MutableTensorView(void* data, DType dtype, std::int64_t n_tokens, std::int64_t n_heads,
                    std::int64_t head_dim, Strides strides)
      : TensorView(data, dtype, n_tokens, n_heads, head_dim, strides) {}

  MutableTensorView with_extent(std::int64_t elements) const {
    MutableTensorView v = *this;
    static_cast<TensorView&>(v) = TensorView::with_extent(elements);
    return v;
  }

  std::byte* mutable_bytes() const { return static_cast<std::byte*>(const_cast<void*>(data())); }

  void store(std::int64_t token, std::int64_t head, std::int64_t i, float value) const {
    const std::int64_t o = offset(token, head, i);
    switch (dtype()) {
      case DType::kF32: reinterpret_cast<float*>(mutable_bytes())[o] = value; break;
      case DType::kF16: reinterpret_cast<std::uint16_t*>(mutable_bytes())[o] = float_to_half(value); break;
      case DType::kBF16: reinterpret_cast<std::uint16_t*>(mutable_bytes())[o] = float_to_bf16(value); break;
    }
  }
};

}  // namespace capkv
