// Sanity (f): unpermute_rope_rows undoes the permutation llama.cpp's convert_hf_to_gguf.py applies
// to Wq and Wk. No model needed.
//
// The converter's permute(w, n_head) is
//   w.reshape(n_head, 2, head_dim // 2, cols).swapaxes(1, 2).reshape(w.shape)
// i.e. within each head, GGUF row 2i + a is Hugging Face row a * head_dim / 2 + i (a in {0, 1}).

#include <gtest/gtest.h>

#include <capkv/core/rope.hpp>
#include <cstdint>

#include "model/llama_weights.hpp"

namespace capkv::llm {
namespace {

// The converter's permutation, written from its reshape/swapaxes rather than from the inverse.
RowMatrixXf convert_hf_to_gguf(const RowMatrixXf& hf, std::int64_t n_heads, std::int64_t head_dim) {
  RowMatrixXf gguf(hf.rows(), hf.cols());
  const std::int64_t half = head_dim / 2;
  for (std::int64_t h = 0; h < n_heads; ++h) {
    for (std::int64_t a = 0; a < 2; ++a) {
      for (std::int64_t i = 0; i < half; ++i) {
        gguf.row(h * head_dim + 2 * i + a) = hf.row(h * head_dim + a * half + i);
      }
    }
  }
  return gguf;
}

TEST(UnpermuteRopeRowsTest, InvertsTheConvertersPermutation) {
  for (const auto& [n_heads, head_dim] :
       {std::pair<std::int64_t, std::int64_t>{3, 8}, {2, 64}, {1, 2}}) {
    const RowMatrixXf hf = RowMatrixXf::Random(n_heads * head_dim, 5);
    const RowMatrixXf gguf = convert_hf_to_gguf(hf, n_heads, head_dim);
    if (head_dim > 2) {
      ASSERT_NE(gguf, hf) << "the permutation should move rows";
    }
    EXPECT_EQ(unpermute_rope_rows(gguf, n_heads, head_dim), hf) << "head_dim " << head_dim;
  }
}

// Row i of the result is the one-hot index the converter moved there: each head's rows come back as
// 0, 1, ..., head_dim - 1 in order, and heads are not mixed.
TEST(UnpermuteRopeRowsTest, MapsEveryRowWithinItsHead) {
  constexpr std::int64_t kHeads = 3, kDim = 8;
  RowMatrixXf hf(kHeads * kDim, 1);
  for (std::int64_t r = 0; r < hf.rows(); ++r) hf(r, 0) = static_cast<float>(r);
  const RowMatrixXf gguf = convert_hf_to_gguf(hf, kHeads, kDim);
  // Head 1 in GGUF order: 8, 12, 9, 13, 10, 14, 11, 15 (pairs (i, i + 4) interleaved).
  EXPECT_EQ(gguf(kDim + 0, 0), 8.0f);
  EXPECT_EQ(gguf(kDim + 1, 0), 12.0f);
  EXPECT_EQ(gguf(kDim + 7, 0), 15.0f);
  const RowMatrixXf back = unpermute_rope_rows(gguf, kHeads, kDim);
  for (std::int64_t r = 0; r < back.rows(); ++r) EXPECT_EQ(back(r, 0), static_cast<float>(r));
}

// Why it matters: interleaved RoPE on the GGUF rows equals half-split RoPE on the un-permuted rows,
// so the runner can use Hugging Face's RoPE and its Q/K match Hugging Face's.
TEST(UnpermuteRopeRowsTest, HalfSplitRopeOnUnpermutedRowsEqualsInterleavedOnGgufRows) {
  constexpr std::int64_t kHeads = 2, kDim = 16;
  const Eigen::VectorXf hidden = Eigen::VectorXf::Random(6);
  const RowMatrixXf w_hf = RowMatrixXf::Random(kHeads * kDim, 6);
  const RowMatrixXf w_gguf = convert_hf_to_gguf(w_hf, kHeads, kDim);
  Eigen::VectorXf q_gguf = w_gguf * hidden;
  Eigen::VectorXf q_hf = unpermute_rope_rows(w_gguf, kHeads, kDim) * hidden;
  const capkv::Rope interleaved{100000.0, capkv::RopeLayout::kInterleaved};
  const capkv::Rope half{100000.0, capkv::RopeLayout::kHalf};
  for (std::int64_t h = 0; h < kHeads; ++h) {
    interleaved.rotate(q_gguf.data() + h * kDim, kDim, 1234.0);
    half.rotate(q_hf.data() + h * kDim, kDim, 1234.0);
  }
  // Undo the row order of the rotated GGUF vector and compare.
  const RowMatrixXf back = unpermute_rope_rows(RowMatrixXf(q_gguf), kHeads, kDim);
  EXPECT_LT((back.col(0) - q_hf).cwiseAbs().maxCoeff(), 1e-5f);
}

}  // namespace
}  // namespace capkv::llm
