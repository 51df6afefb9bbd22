#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "capkv/cpu/head_matrix.hpp"

namespace capkv::cpu {

// Softmax attention over n keys with the causal mask for the last m' queries of several query
// heads stacked head after head (rows_per_head = m' rows each): row r sits at position
// n - m' + r % m' and sees keys 0..n-m'+r%m'. Logits scaled by 1/sqrt(d), softmax in fp32 after
// subtracting the row maximum; masked entries are exactly 0. Returns [rows, n]. Stacking a GQA
// group's heads makes one tall GEMM that reads the keys once, where one GEMM per head only m'
// rows tall reads them g times at a fraction of the machine's rate.
inline RowMatrixXf causal_attention(const ConstRowMap& queries, const ConstRowMap& keys,
                                    std::int64_t rows_per_head) {
  const std::int64_t m = queries.rows();
  const std::int64_t n = keys.rows();
  const float scale = 1.0f / std::sqrt(static_cast<float>(keys.cols()));
  RowMatrixXf p(m, n);
  p.noalias() = (queries * keys.transpose()) * scale;
  for (std::int64_t r = 0; r < m; ++r) {
    const std::int64_t visible = n - rows_per_head + r % rows_per_head + 1;
    auto row = p.row(r);
    row.tail(n - visible).setZero();
    auto seen = row.head(visible);
    seen = (seen.array() - seen.maxCoeff()).exp();
    seen /= seen.sum();
  }
  return p;
}

// Rows [first, end) of query heads [head0, head0 + heads), stacked head after head into one
// [heads * rows, d] matrix for the stacked causal_attention above.
inline RowMatrixXf stacked_queries(const TensorView& queries, std::int64_t head0,
                                   std::int64_t heads, std::int64_t first) {
  const std::int64_t rows = queries.n_tokens() - first;
  RowMatrixXf stacked(heads * rows, queries.head_dim());
  for (std::int64_t j = 0; j < heads; ++j) {
    stacked.middleRows(j * rows, rows) = HeadMatrix(queries, head0 + j, "queries", first).matrix();
  }
  return stacked;
}

// How many query heads of a group to stack per logits GEMM: enough for about 256 rows (a GEMM
// tall enough to run at the machine's rate), so the logits never take more than that many rows of
// n floats however long the prompt.
inline std::int64_t heads_per_gemm(std::int64_t rows_per_head, std::int64_t group) {
  return std::clamp<std::int64_t>(256 / std::max<std::int64_t>(rows_per_head, 1), 1, group);
}

inline ConstRowMap row_map(const RowMatrixXf& m) {
  return ConstRowMap(m.data(), m.rows(), m.cols(), Eigen::OuterStride<>(m.cols()));
}

}  // namespace capkv::cpu
