#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "capkv/core/error.hpp"
#include "capkv/core/tensor_view.hpp"

namespace capkv {

// Which coordinates RoPE rotates together: Hugging Face pairs (j, j + d/2); GGUF llama weights and
// the original Meta code pair (2j, 2j + 1).
enum class RopeLayout { kHalf, kInterleaved };

// Rotary position embedding of one head: pair j turns by position * theta^(-2j/d).
// Angles are evaluated in double so positions of 100K+ keep full fp32 accuracy.
struct Rope {
  double theta = 10000.0;
  RopeLayout layout = RopeLayout::kHalf;

  double inv_freq(std::int64_t j, std::int64_t head_dim) const {
    return std::pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(head_dim));
  }

  // The two coordinates pair j rotates.
  std::pair<std::int64_t, std::int64_t> pair(std::int64_t j, std::int64_t head_dim) const {
    if (layout == RopeLayout::kHalf) return {j, j + head_dim / 2};
    return {2 * j, 2 * j + 1};
  }

  // Applies [[c, -s], [s, c]] to every pair, with c, s given per pair.
  template <class T>
  void apply(T* x, std::int64_t head_dim, const double* c, const double* s) const {
    for (std::int64_t j = 0; j < head_dim / 2; ++j) {
      const auto [a, b] = pair(j, head_dim);
      const double xa = x[a], xb = x[b];
      x[a] = static_cast<T>(xa * c[j] - xb * s[j]);
      x[b] = static_cast<T>(xa * s[j] + xb * c[j]);
    }
  }

  // x <- R(position) x. Because R(p + delta) = R(delta) R(p), re-rotating a cached key from
  // position p to p' is rotate(key, p' - p).
  template <class T>
  void rotate(T* x, std::int64_t head_dim, double position) const {
    require(head_dim % 2 == 0, "head_dim", "RoPE needs an even head dimension");
    std::vector<double> c(head_dim / 2), s(head_dim / 2);
    for (std::int64_t j = 0; j < head_dim / 2; ++j) {
      const double angle = position * inv_freq(j, head_dim);
      c[j] = std::cos(angle);
      s[j] = std::sin(angle);
    }
    apply(x, head_dim, c.data(), s.data());
  }

  // x <- R_bar x with R_bar = mean over p in [first, first + count) of R(p): per pair the cos and
  // sin are replaced by their means. Not a rotation (it shrinks), which is the point: it is the
  // expected rotation of a query arriving somewhere in that range (CapKV kvpress preset).
  template <class T>
  void rotate_averaged(T* x, std::int64_t head_dim, std::int64_t first, std::int64_t count) const {
    require(head_dim % 2 == 0, "head_dim", "RoPE needs an even head dimension");
    require(count >= 1, "count", "the averaged range must hold at least one position");
    std::vector<double> c(head_dim / 2, 0.0), s(head_dim / 2, 0.0);
    for (std::int64_t j = 0; j < head_dim / 2; ++j) {
      const double w = inv_freq(j, head_dim);
      for (std::int64_t p = first; p < first + count; ++p) {
        c[j] += std::cos(static_cast<double>(p) * w);
        s[j] += std::sin(static_cast<double>(p) * w);
      }
      c[j] /= static_cast<double>(count);
      s[j] /= static_cast<double>(count);
    }
    apply(x, head_dim, c.data(), s.data());
  }
};

// Rotates row (t, h) of a [tokens, heads, dim] view by angle(t, h) positions in place, through fp32
// (half-precision caches are re-rounded once). Used to re-rotate kept keys after eviction so their
// positions become contiguous (StreamingLLM) and to apply RoPE to a whole layer.
template <class Delta>
void rotate_rows(const MutableTensorView& view, const Rope& rope, Delta delta_of) {
  const std::int64_t d = view.head_dim();
  std::vector<float> row(static_cast<std::size_t>(d));
  for (std::int64_t t = 0; t < view.n_tokens(); ++t) {
    for (std::int64_t h = 0; h < view.n_heads(); ++h) {
      const double delta = static_cast<double>(delta_of(t, h));
      view.load_row(t, h, row.data());
      rope.rotate(row.data(), d, delta);
      for (std::int64_t i = 0; i < d; ++i) view.store(t, h, i, row[i]);
    }
  }
}

}  // namespace capkv
