#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eval/memory_usage.hpp"
#include "eval/metrics.hpp"
#include "eval/policy_set.hpp"
#include "eval/progress_bar.hpp"
#include "model/llama_model.hpp"

namespace capkv::llm::eval {

// The fidelity protocol of EVAL.md for one document window: prefill L tokens with the full cache,
// compress every (layer, KV head) once per policy and budget, teacher-force the next M real tokens
// in one batched forward and compare with the full cache; attention recall, output error and
// surrogate alignment from the full run's own continuation queries; and the decode-time mode of
// the stateful policies.

struct ProtocolConfig {
  std::int64_t context = 2048;      // L
  std::int64_t continuation = 128;  // M
  std::vector<double> budgets;      // fractions kept
  std::vector<PolicyEntry> policies;
  bool decode = true;  // run the decode-time mode (H2O, StreamingLLM)
  int threads = 1;
};

// A window of a text: L + M + 1 tokens (the last one is only a target).
struct DocumentWindow {
  std::string source;
  std::int64_t token_offset = 0;
  std::vector<TokenId> tokens;
};

struct VariantResult {
  std::string policy;
  double budget = 0.0;
  std::int64_t kept_tokens = 0;
  ContinuationComparison continuation;
  std::vector<double> recall_by_layer;
  std::vector<double> output_error_by_layer;
  double recall = 0.0;        // mean over layers
  double output_error = 0.0;  // mean over layers
  // Surrogate alignment: Spearman per (layer, KV head) of the policy's scores against the attention
  // mass the continuation's queries put on each prompt token; mean over the defined ones. The
  // scores do not depend on the budget, so every budget of a policy carries the same value.
  std::vector<double> spearman_by_layer;
  double spearman = 0.0;
};

struct DecodeResult {
  std::string policy;
  double budget = 0.0;
  std::int64_t kept_tokens = 0;
  ContinuationComparison continuation;
};

struct DocumentResult {
  std::string source;
  std::int64_t token_offset = 0;
  std::int64_t context = 0;
  std::int64_t continuation = 0;
  double full_nll = 0.0;                // mean NLL of the full cache on the M real next tokens
  std::vector<VariantResult> variants;  // policy-major, budget-minor
  std::vector<DecodeResult> decode;
  double prefill_seconds = 0.0;
  double select_seconds = 0.0;
  double continuation_seconds = 0.0;
  double attention_seconds = 0.0;
  double variants_seconds = 0.0;
  double decode_seconds = 0.0;
  std::int64_t capture_bytes = 0;
  std::vector<double> scoring_seconds;  // per policy, thread-seconds (PromptCompression's)
  MemoryTrace memory;                   // resident size and peak after each stage
};

// Tokens a document window needs: L + M + 1.
inline std::int64_t window_tokens(const ProtocolConfig& c) {
  return c.context + c.continuation + 1;
}

// `count` windows spread evenly over a tokenized text (first at offset 0, last ending at its end).
// Throws std::invalid_argument when the text holds fewer tokens than one window.
std::vector<DocumentWindow> make_windows(const std::string& source, std::span<const TokenId> text,
                                         std::int64_t window, std::int64_t count);

DocumentResult run_document(const LlamaModel& model, const DocumentWindow& window,
                            const ProtocolConfig& config, ProgressBar& progress,
                            const std::string& label);

// The policies that have a decode-time mode here.
bool has_decode_mode(std::string_view policy);

}  // namespace capkv::llm::eval
