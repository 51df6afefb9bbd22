#pragma once

#include <Eigen/Core>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>

#include "capkv/core/error.hpp"
#include "capkv/core/tensor_view.hpp"

namespace capkv::cpu {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrixXf, 0, Eigen::OuterStride<>>;

// The first of `rows` rows (`cols` floats each, `stride` apart) that holds a NaN or Inf, or -1.
// An exponent of all ones is Inf or NaN: the bit test vectorises where std::isfinite and Eigen's
// allFinite do not (this check runs over every cache a policy reads, so it must run at memory
// speed; see bench/RESULTS.md).
inline std::int64_t first_nonfinite_row(const float* data, std::int64_t rows, std::int64_t cols,
                                        std::int64_t stride) {
  for (std::int64_t t = 0; t < rows; ++t) {
    const float* row = data + t * stride;
    std::uint32_t bad = 0;
    for (std::int64_t i = 0; i < cols; ++i) {
      bad |= (std::bit_cast<std::uint32_t>(row[i]) & 0x7f800000u) == 0x7f800000u;
    }
    if (bad != 0) return t;
  }
  return -1;
}

// One head of a view as an fp32 [tokens, dim] matrix. An fp32 view with unit dim stride is mapped
// in place (zero copy); anything else is converted once into owned storage. Construction checks
// that every element is finite, so a NaN is reported with its argument name before any math runs.
class HeadMatrix {
 public:
  HeadMatrix(const TensorView& view, std::int64_t head, std::string_view name,
             std::int64_t first_token = 0)
      : rows_(view.n_tokens() - first_token), cols_(view.head_dim()) {
    if (view.dtype() == DType::kF32 && view.strides().dim == 1) {
      data_ = static_cast<const float*>(view.data()) + view.offset(first_token, head, 0);
      stride_ = rows_ > 1 ? view.strides().token : cols_;
    } else {
      storage_.resize(rows_, cols_);
      for (std::int64_t t = 0; t < rows_; ++t) view.load_row(first_token + t, head, storage_.row(t).data());
      data_ = storage_.data();
      stride_ = cols_;
    }
    const std::int64_t bad = first_nonfinite_row(data_, rows_, cols_, stride_);
    if (bad >= 0) {
      throw Error(name, "NaN or Inf at token " + std::to_string(first_token + bad) + ", head " +
                            std::to_string(head));
    }
  }

  // data_ may point into storage_, so a copy would dangle.
  HeadMatrix(const HeadMatrix&) = delete;
  HeadMatrix& operator=(const HeadMatrix&) = delete;

  ConstRowMap matrix() const { return ConstRowMap(data_, rows_, cols_, Eigen::OuterStride<>(stride_)); }
  std::int64_t rows() const { return rows_; }
  std::int64_t cols() const { return cols_; }

 private:
  std::int64_t rows_;
  std::int64_t cols_;
  RowMatrixXf storage_;
  const float* data_ = nullptr;
  std::int64_t stride_ = 0;
};

// For policies that never read a tensor's values (positional ones) but must still refuse a NaN.
inline void check_finite(const TensorView& view, std::string_view name) {
  for (std::int64_t h = 0; h < view.n_heads(); ++h) HeadMatrix(view, h, name);
}

}  // namespace capkv::cpu
