#include "eval/capture.hpp"

#include <algorithm>
#include <stdexcept>

namespace capkv::llm::eval {

HalfQueries::HalfQueries(const RowMatrixXf& q, std::int64_t first_row, std::int64_t n_heads,
                         std::int64_t head_dim)
    : n_tokens_(q.rows() - first_row), n_heads_(n_heads), head_dim_(head_dim) {
  if (q.cols() != n_heads * head_dim || first_row < 0 || first_row > q.rows()) {
    throw std::invalid_argument("HalfQueries: rows do not hold heads * head_dim values");
  }
  const auto rows = q.middleRows(first_row, n_tokens_);
  // fp16's largest finite value is 65504; anything near it would round to Inf.
  const float largest = rows.size() == 0 ? 0.0f : rows.cwiseAbs().maxCoeff();
  dtype_ = largest < 60000.0f ? capkv::DType::kF16 : capkv::DType::kBF16;
  data_.resize(static_cast<std::size_t>(rows.size()));
  std::size_t i = 0;
  for (Eigen::Index r = 0; r < rows.rows(); ++r) {
    for (Eigen::Index c = 0; c < rows.cols(); ++c) {
      const float x = rows(r, c);
      data_[i++] = dtype_ == capkv::DType::kF16 ? capkv::float_to_half(x) : capkv::float_to_bf16(x);
    }
  }
}

capkv::TensorView HalfQueries::view() const {
  return capkv::TensorView(data_.data(), dtype_, capkv::Layout::kTokensHeadsDim, n_tokens_,
                           n_heads_, head_dim_)
      .with_extent(static_cast<std::int64_t>(data_.size()));
}

PrefillCapture::PrefillCapture(std::int64_t n_layers, std::int64_t n_heads, std::int64_t head_dim,
                               std::int64_t post_rope_rows, bool pre_rope)
    : n_heads_(n_heads),
      head_dim_(head_dim),
      post_rope_rows_(post_rope_rows),
      want_pre_rope_(pre_rope),
      post_rope_(static_cast<std::size_t>(n_layers)),
      pre_rope_(static_cast<std::size_t>(n_layers)) {}

void PrefillCapture::on_layer(const LayerActivations& a, LayerCache&) {
  HalfQueries& post = post_rope_.at(static_cast<std::size_t>(a.layer));
  if (!post.empty()) throw std::logic_error("PrefillCapture: the prefill must be one forward call");
  const std::int64_t t = a.q.rows();
  post = HalfQueries(a.q, t - std::min(t, post_rope_rows_), n_heads_, head_dim_);
  if (want_pre_rope_) pre_rope_[a.layer] = HalfQueries(a.q_pre_rope, 0, n_heads_, head_dim_);
}

std::int64_t PrefillCapture::bytes() const {
  std::int64_t total = 0;
  for (const auto& q : post_rope_) total += q.bytes();
  for (const auto& q : pre_rope_) total += q.bytes();
  return total;
}

void PrefillCapture::release() {
  post_rope_.assign(post_rope_.size(), HalfQueries());
  pre_rope_.assign(pre_rope_.size(), HalfQueries());
}

void ContinuationCapture::on_layer(const LayerActivations& a, LayerCache&) {
  RowMatrixXf& q = queries_.at(static_cast<std::size_t>(a.layer));
  const Eigen::Index old_rows = q.rows();
  q.conservativeResize(old_rows + a.q.rows(), a.q.cols());
  q.bottomRows(a.q.rows()) = a.q;
}

}  // namespace capkv::llm::eval
