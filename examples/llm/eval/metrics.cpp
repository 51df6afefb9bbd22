#include "eval/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace capkv::llm::eval {

std::vector<double> log_softmax(std::span<const float> logits) {
  std::vector<double> out(logits.size());
  if (logits.empty()) return out;
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i)
    sum += std::exp(static_cast<double>(logits[i]) - max);
  const double log_z = max + std::log(sum);
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - log_z;
  return out;
}

double kl_divergence(std::span<const float> full_logits, std::span<const float> compressed_logits) {
  if (full_logits.size() != compressed_logits.size()) {
    throw std::invalid_argument("kl_divergence: the two logit rows differ in length");
  }
  const std::vector<double> log_p = log_softmax(full_logits);
  const std::vector<double> log_q = log_softmax(compressed_logits);
  double kl = 0.0;
  for (std::size_t i = 0; i < log_p.size(); ++i) {
    const double p = std::exp(log_p[i]);
    if (p > 0.0) kl += p * (log_p[i] - log_q[i]);
  }
  return std::max(kl, 0.0);
}

double negative_log_likelihood(std::span<const float> logits, std::int64_t target) {
  if (target < 0 || static_cast<std::size_t>(target) >= logits.size()) {
    throw std::out_of_range("negative_log_likelihood: target outside the vocabulary");
  }
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  return max + std::log(sum) - static_cast<double>(logits[static_cast<std::size_t>(target)]);
}

std::int64_t argmax(std::span<const float> logits) {
  return std::max_element(logits.begin(), logits.end()) - logits.begin();
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 100.0);
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + frac * (values[hi] - values[lo]);
}

Summary summarize(std::span<const double> values) {
  Summary s;
  double sum = 0.0;
  s.min = std::numeric_limits<double>::infinity();
  s.max = -std::numeric_limits<double>::infinity();
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    ++s.count;
    sum += v;
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
  }
  if (s.count == 0) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return {nan, nan, nan, nan, 0};
  }
  s.mean = sum / static_cast<double>(s.count);
  double squares = 0.0;
  for (double v : values) {
    if (std::isfinite(v)) squares += (v - s.mean) * (v - s.mean);
  }
  s.std = s.count > 1 ? std::sqrt(squares / static_cast<double>(s.count - 1)) : 0.0;
  return s;
}

std::vector<double> average_ranks(std::span<const double> values) {
  const std::size_t n = values.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return values[a] < values[b]; });
  std::vector<double> ranks(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j + 1 < n && values[order[j + 1]] == values[order[i]]) ++j;
    // Positions i..j (0-based) hold one tied value: ranks i+1..j+1, mean (i + j) / 2 + 1.
    const double rank = static_cast<double>(i + j) / 2.0 + 1.0;
    for (std::size_t k = i; k <= j; ++k) ranks[order[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

double spearman(std::span<const double> a, std::span<const double> b) {
  if (a.size() != b.size())
    throw std::invalid_argument("spearman: the two series differ in length");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (a.size() < 2) return nan;
  const std::vector<double> ra = average_ranks(a);
  const std::vector<double> rb = average_ranks(b);
  const double n = static_cast<double>(a.size());
  const double mean = (n + 1.0) / 2.0;  // the mean of any average-rank vector
  double cov = 0.0, var_a = 0.0, var_b = 0.0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    cov += (ra[i] - mean) * (rb[i] - mean);
    var_a += (ra[i] - mean) * (ra[i] - mean);
    var_b += (rb[i] - mean) * (rb[i] - mean);
  }
  if (var_a == 0.0 || var_b == 0.0) return nan;
  return cov / std::sqrt(var_a * var_b);
}

ContinuationComparison compare_continuations(const RowMatrixXf& full, const RowMatrixXf& compressed,
                                             std::span<const TokenId> targets) {
  if (full.rows() != compressed.rows() || full.cols() != compressed.cols()) {
    throw std::invalid_argument("compare_continuations: the logit matrices differ in shape");
  }
  if (static_cast<std::size_t>(full.rows()) != targets.size()) {
    throw std::invalid_argument("compare_continuations: one target per position is needed");
  }
  ContinuationComparison c;
  const auto m = static_cast<std::size_t>(full.rows());
  const auto vocab = static_cast<std::size_t>(full.cols());
  if (m == 0) return c;
  c.kl.resize(m);
  std::size_t agree = 0;
  for (std::size_t t = 0; t < m; ++t) {
    const std::span<const float> p(full.row(static_cast<Eigen::Index>(t)).data(), vocab);
    const std::span<const float> q(compressed.row(static_cast<Eigen::Index>(t)).data(), vocab);
    c.kl[t] = kl_divergence(p, q);
    agree += argmax(p) == argmax(q) ? 1 : 0;
    c.nll_full += negative_log_likelihood(p, targets[t]);
    c.nll_compressed += negative_log_likelihood(q, targets[t]);
  }
  const double count = static_cast<double>(m);
  c.nll_full /= count;
  c.nll_compressed /= count;
  c.ppl_ratio = std::exp(c.nll_compressed - c.nll_full);
  c.top1 = static_cast<double>(agree) / count;
  c.kl_mean = std::accumulate(c.kl.begin(), c.kl.end(), 0.0) / count;
  c.kl_median = median(c.kl);
  c.kl_p99 = percentile(c.kl, 99.0);
  return c;
}

}  // namespace capkv::llm::eval
