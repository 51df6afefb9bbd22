#include "eval/prompt_attention.hpp"

#include <cmath>
#include <stdexcept>

namespace capkv::llm::eval {

PromptAttention::PromptAttention(const RowMatrixXf& queries, std::span<const ConstRowMap> keys,
                                 std::span<const ConstRowMap> values) {
  if (keys.empty() || keys.size() != values.size()) {
    throw std::invalid_argument("PromptAttention: one key and one value matrix per KV head");
  }
  const auto n_kv = static_cast<std::int64_t>(keys.size());
  const std::int64_t d = keys[0].cols();
  n_tokens_ = keys[0].rows();
  if (queries.cols() % d != 0 || (queries.cols() / d) % n_kv != 0) {
    throw std::invalid_argument("PromptAttention: query width is not a multiple of KV heads * d");
  }
  const std::int64_t n_q = queries.cols() / d;
  group_ = n_q / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (std::int64_t kv = 0; kv < n_kv; ++kv) {
    if (keys[kv].rows() != n_tokens_ || values[kv].rows() != n_tokens_ || keys[kv].cols() != d) {
      throw std::invalid_argument("PromptAttention: every KV head must hold the same prompt");
    }
    values_.emplace_back(values[kv]);
  }
  for (std::int64_t h = 0; h < n_q; ++h) {
    const std::int64_t kv = h / group_;
    RowMatrixXf p = (queries.middleCols(h * d, d) * keys[kv].transpose()) * scale;
    for (Eigen::Index r = 0; r < p.rows(); ++r) {
      auto row = p.row(r);
      row = (row.array() - row.maxCoeff()).exp();
      row /= row.sum();
    }
    outputs_.push_back(p * values_[kv]);
    probabilities_.push_back(std::move(p));
  }
}

Eigen::VectorXd PromptAttention::received_mass(std::int64_t kv_head) const {
  Eigen::VectorXd mass = Eigen::VectorXd::Zero(n_tokens_);
  for (std::int64_t j = 0; j < group_; ++j) {
    mass += probabilities(kv_head * group_ + j).cast<double>().colwise().sum().transpose();
  }
  return mass;
}

PromptAttention::Fidelity PromptAttention::fidelity(const capkv::Selection& selection) const {
  if (selection.n_kv_heads() != n_kv_heads() || selection.n_tokens != n_tokens_) {
    throw std::invalid_argument("PromptAttention::fidelity: the selection is of another cache");
  }
  Fidelity f;
  std::int64_t count = 0;
  for (std::int64_t h = 0; h < n_query_heads(); ++h) {
    const std::int64_t kv = h / group_;
    const auto kept = selection.head(kv);
    const std::vector<int> index(kept.begin(), kept.end());
    const RowMatrixXf& p = probabilities(h);
    const RowMatrixXf p_kept = p(Eigen::all, index);
    const RowMatrixXf o_kept = p_kept * values_[kv](index, Eigen::all);
    const RowMatrixXf& o_full = outputs_[h];
    for (Eigen::Index t = 0; t < p.rows(); ++t) {
      const double mass = p_kept.row(t).cast<double>().sum();
      const double full_norm = o_full.row(t).cast<double>().norm();
      double error = 1.0;
      if (mass > 0.0) {
        const Eigen::RowVectorXd diff =
            o_full.row(t).cast<double>() - o_kept.row(t).cast<double>() / mass;
        error = full_norm > 0.0 ? diff.norm() / full_norm : 0.0;
      }
      f.recall += mass;
      f.output_error += error;
      ++count;
    }
  }
  if (count > 0) {
    f.recall /= static_cast<double>(count);
    f.output_error /= static_cast<double>(count);
  }
  return f;
}

}  // namespace capkv::llm::eval
