#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include "capkv/cpu/head_matrix.hpp"

namespace capkv::cpu {

// Softmax attention of m queries over n keys with the causal mask: query row r sits at position
// n - m + r and sees keys 0..n-m+r. Logits scaled by 1/sqrt(d), softmax in fp32 after subtracting
// the row maximum; masked entries are exactly 0. Returns [m, n].
inline RowMatrixXf causal_attention(const ConstRowMap& queries, const ConstRowMap& keys) {
  const std::int64_t m = queries.rows();
  const std::int64_t n = keys.rows();
  const float scale = 1.0f / std::sqrt(static_cast<float>(keys.cols()));
  RowMatrixXf p(m, n);
  p.noalias() = (queries * keys.transpose()) * scale;
  for (std::int64_t r = 0; r < m; ++r) {
    const std::int64_t visible = n - m + r + 1;
    auto row = p.row(r);
    row.tail(n - visible).setZero();
    auto seen = row.head(visible);
    seen = (seen.array() - seen.maxCoeff()).exp();
    seen /= seen.sum();
  }
  return p;
}

}  // namespace capkv::cpu
