#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/kv_cache.hpp"
#include "tokenizer/vocabulary.hpp"

namespace capkv::llm::eval {

// The numbers that compare two next-token distributions, all in double: a compressed cache changes
// logits by small amounts, and fp32 log-sum-exp over 49152 entries would swamp them.

// log softmax(logits), in double.
std::vector<double> log_softmax(std::span<const float> logits);

// KL(p || q) with p = softmax(full_logits) (the reference) and q = softmax(compressed_logits).
// Never negative: rounding below zero is clamped.
double kl_divergence(std::span<const float> full_logits, std::span<const float> compressed_logits);

// -log softmax(logits)[target].
double negative_log_likelihood(std::span<const float> logits, std::int64_t target);

// Index of the largest logit; the first one on ties.
std::int64_t argmax(std::span<const float> logits);

// The q-th percentile (q in [0, 100]) with linear interpolation between order statistics (numpy's
// default), so p50 of an even count is the mean of the middle two.
double percentile(std::vector<double> values, double q);
inline double median(std::vector<double> values) { return percentile(std::move(values), 50.0); }

// Mean, sample standard deviation (n - 1; 0 for one value), min and max of the finite values; NaN
// values are skipped (an undefined Spearman on a constant head, say) and counted out.
struct Summary {
  double mean = 0.0;
  double std = 0.0;
  double min = 0.0;
  double max = 0.0;
  std::int64_t count = 0;  // finite values summarised
};
Summary summarize(std::span<const double> values);

// Ranks 1..n, ties sharing the mean of the ranks they span (the convention of scipy's spearmanr).
std::vector<double> average_ranks(std::span<const double> values);

// Spearman's rho: Pearson correlation of the average ranks. NaN when either side is constant (the
// correlation is undefined there, and 0 would pretend to know).
double spearman(std::span<const double> a, std::span<const double> b);

// How a compressed-cache continuation's logits compare with the full cache's at every position.
struct ContinuationComparison {
  std::vector<double> kl;  // per position, KL(full || compressed)
  double kl_mean = 0.0;
  double kl_median = 0.0;
  double kl_p99 = 0.0;
  double top1 = 0.0;      // fraction of positions where both argmaxes agree
  double nll_full = 0.0;  // mean NLL of the real next tokens
  double nll_compressed = 0.0;
  double ppl_ratio = 1.0;  // exp(nll_compressed - nll_full)
};

// full and compressed are [M, vocab] logits of the same M positions; targets[t] is the real token
// that follows position t.
ContinuationComparison compare_continuations(const RowMatrixXf& full, const RowMatrixXf& compressed,
                                             std::span<const TokenId> targets);

}  // namespace capkv::llm::eval
