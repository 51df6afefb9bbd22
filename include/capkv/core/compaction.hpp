#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "capkv/core/error.hpp"
#include "capkv/core/selection.hpp"
#include "capkv/core/tensor_view.hpp"

namespace capkv {
namespace detail {

inline void check_selection_fits(const TensorView& source, const Selection& selection) {
  require(selection.n_kv_heads() == source.n_heads(), "selection",
          "has a different number of KV heads than the cache");
  require(selection.n_tokens == source.n_tokens(), "selection",
          "was made for a cache of a different length");
}

// Copies element by element in the caller's dtype (no conversion), with memcpy when rows are
// contiguous. Reading src row idx and writing dst row j with j <= idx of the same head is safe in
// place, because selections are ascending.
inline void copy_row(const TensorView& src, std::int64_t src_token, std::int64_t src_head,
                     std::byte* dst_base, const Strides& dst_strides, std::int64_t dst_token,
                     std::int64_t dst_head) {
  const std::size_t elem = size_of(src.dtype());
  const auto* src_base = static_cast<const std::byte*>(src.data());
  const std::int64_t s0 = src.offset(src_token, src_head, 0);
  const std::int64_t d0 = dst_token * dst_strides.token + dst_head * dst_strides.head;
  if (src.strides().dim == 1 && dst_strides.dim == 1) {
    std::memmove(dst_base + d0 * elem, src_base + s0 * elem, elem * src.head_dim());
    return;
  }
  for (std::int64_t i = 0; i < src.head_dim(); ++i) {
    std::memmove(dst_base + (d0 + i * dst_strides.dim) * elem,
                 src_base + (s0 + i * src.strides().dim) * elem, elem);
  }
}

}  // namespace detail

// Gathers the kept tokens of every head into `out`, a [B, heads, dim] view (any layout or strides)
// of the same dtype. Needs the same count B in every head; use compact_varlen otherwise.
inline void compact(const TensorView& source, const Selection& selection,
                    const MutableTensorView& out) {
  source.validate("source");
  out.validate("out");
  detail::check_selection_fits(source, selection);
  require(selection.uniform(), "selection",
          "heads keep different counts; use compact_varlen for head-adaptive budgets");
  const std::int64_t kept = selection.n_kv_heads() ? selection.kept(0) : 0;
  require(out.n_tokens() == kept, "out", "must have as many tokens as each head keeps");
  require(out.n_heads() == source.n_heads() && out.head_dim() == source.head_dim(), "out",
          "heads and head_dim must match the source");
  require(out.dtype() == source.dtype(), "out", "must have the source's dtype");
  for (std::int64_t h = 0; h < source.n_heads(); ++h) {
    const auto idx = selection.head(h);
    for (std::int64_t j = 0; j < kept; ++j) {
      detail::copy_row(source, idx[j], h, out.mutable_bytes(), out.strides(), j, h);
    }
  }
}

// Moves each head's kept tokens to the front of that head's rows, in place. Afterwards token
// j < selection.kept(h) of head h is the j-th kept token; rows past that are stale.
inline void compact_in_place(const MutableTensorView& cache, const Selection& selection) {
  cache.validate("cache");
  detail::check_selection_fits(cache, selection);
  for (std::int64_t h = 0; h < cache.n_heads(); ++h) {
    const auto idx = selection.head(h);
    for (std::int64_t j = 0; j < static_cast<std::int64_t>(idx.size()); ++j) {
      if (idx[j] != j) detail::copy_row(cache, idx[j], h, cache.mutable_bytes(), cache.strides(), j, h);
    }
  }
}

// Per-head variable-length storage: head h's kept rows, packed [kept(h), dim], start at row
// selection.offsets[h] of `out` (so the selection's offsets double as the storage's offsets).
inline void compact_varlen(const TensorView& source, const Selection& selection,
                           std::span<std::byte> out) {
  source.validate("source");
  detail::check_selection_fits(source, selection);
  const std::size_t row_bytes = size_of(source.dtype()) * static_cast<std::size_t>(source.head_dim());
  require(out.size() >= row_bytes * static_cast<std::size_t>(selection.total_kept()), "out",
          "is smaller than total_kept * head_dim elements");
  const Strides packed{source.head_dim(), 0, 1};
  for (std::int64_t h = 0; h < source.n_heads(); ++h) {
    const auto idx = selection.head(h);
    for (std::int64_t j = 0; j < static_cast<std::int64_t>(idx.size()); ++j) {
      detail::copy_row(source, idx[j], h, out.data(), packed, selection.offsets[h] + j, 0);
    }
  }
}

}  // namespace capkv
