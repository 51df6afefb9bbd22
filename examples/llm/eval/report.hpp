#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "eval/metrics.hpp"
#include "eval/passkey.hpp"
#include "eval/policy_set.hpp"
#include "eval/protocol.hpp"

namespace capkv::llm::eval {

// Everything that defines a run, recorded in results.json next to the numbers.
struct RunConfig {
  std::string model_path;
  std::string model_sha256;
  std::vector<std::string> texts;
  std::vector<std::int64_t> contexts;
  std::vector<double> budgets;
  std::vector<PolicyEntry> policies;
  std::int64_t docs = 1;
  std::int64_t continuation = 128;
  std::int64_t passkey = 0;
  std::int64_t passkey_answer_tokens = 8;
  bool decode = true;
  std::uint64_t seed = 0;
  int threads = 1;
  std::string date;  // ISO 8601, UTC
};

// All results of one context length.
struct ContextResults {
  std::int64_t context = 0;
  std::vector<DocumentResult> documents;
  std::vector<PasskeyResult> passkey;
  double seconds = 0.0;
};

// One row of the tables: a policy at a budget, summarised over the documents (mean, std, min, max).
struct SummaryRow {
  std::int64_t context = 0;
  std::string mode;  // "one-shot" or "decode"
  std::string policy;
  double budget = 0.0;
  std::int64_t kept_tokens = 0;  // of the first document (all windows have the same length)
  std::int64_t documents = 0;
  Summary kl_mean, kl_median, kl_p99, top1, ppl_ratio;
  Summary recall, output_error, spearman;  // one-shot only
  std::int64_t passkey_correct = 0;        // among the prompts the full cache answers
  std::int64_t passkey_eligible = 0;       // prompts the full cache answers
};

std::vector<SummaryRow> summarize_results(const std::vector<ContextResults>& results,
                                          const RunConfig& config);

// The choices this tool makes where EVAL.md leaves the protocol open, for results.json and --help.
std::vector<std::string> protocol_choices();

// The Markdown tables printed on stdout: per context, the one-shot table (policy x budget) and the
// decode-time table.
std::string markdown_report(const std::vector<SummaryRow>& rows,
                            const std::vector<ContextResults>& results, const RunConfig& config);

void write_csv(const std::filesystem::path& path, const std::vector<SummaryRow>& rows);
void write_json(const std::filesystem::path& path, const RunConfig& config,
                const std::vector<ContextResults>& results, const std::vector<SummaryRow>& rows,
                double total_seconds);

}  // namespace capkv::llm::eval
