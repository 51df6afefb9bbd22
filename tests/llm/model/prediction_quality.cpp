#include "prediction_quality.hpp"

#include <stdexcept>

namespace capkv::llm::testing {

PredictionQuality score_predictions(const RowMatrixXf& logits, std::span<const TokenId> targets) {
  if (logits.rows() != static_cast<Eigen::Index>(targets.size())) {
    throw std::invalid_argument("one logits row per target");
  }
  PredictionQuality q;
  for (Eigen::Index r = 0; r < logits.rows(); ++r) {
    const Eigen::RowVectorXd row = logits.row(r).cast<double>();
    Eigen::Index best = 0;
    const double max = row.maxCoeff(&best);
    const double log_z = max + std::log((row.array() - max).exp().sum());
    q.mean_nll += log_z - row[targets[r]];
    q.top1 += best == targets[r] ? 1.0 : 0.0;
  }
  q.count = logits.rows();
  if (q.count > 0) {
    q.mean_nll /= static_cast<double>(q.count);
    q.top1 /= static_cast<double>(q.count);
  }
  return q;
}

}  // namespace capkv::llm::testing
