#pragma once

#include <capkv/capkv.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eval/memory_usage.hpp"
#include "eval/policy_set.hpp"
#include "eval/progress_bar.hpp"
#include "model/llama_model.hpp"

namespace capkv::llm::eval {

// One prompt prefilled with the full cache, and every policy's decision for it at every budget:
// the expensive part of the protocol, done once per prompt and shared by all the measurements
// (continuation, attention fidelity, surrogate alignment, decode-time mode, passkey).
struct PromptCompression {
  explicit PromptCompression(KvCache full) : cache(std::move(full)) {}

  KvCache cache;                // the full cache of the prompt (capacity for the continuation too)
  RowMatrixXf last_logits;      // [1, vocab]: the prefill's prediction after the last prompt token
  std::vector<double> budgets;  // fractions kept
  std::vector<std::int64_t> kept_tokens;  // per budget, tokens kept per KV head
  // [policy][budget][layer] and [policy][layer] (KV-head scores, for the Spearman measure).
  std::vector<std::vector<std::vector<capkv::Selection>>> selections;
  std::vector<std::vector<capkv::ScoreMatrix>> scores;
  // [budget][layer]: H2O decode states after their prefill (empty unless asked for).
  std::vector<std::vector<capkv::cpu::H2OState>> h2o_decode_states;

  double prefill_seconds = 0.0;
  double select_seconds = 0.0;
  // Per policy, the seconds its scoring and selection took, summed over layers (so over the
  // workers: thread-seconds, not wall time). H2O's includes one scoring per budget when the
  // decode-time states are prefilled (H2OState::prefill scores at its own budget).
  std::vector<double> scoring_seconds;
  std::int64_t capture_bytes = 0;  // the half-precision query captures, freed after selection
  MemoryTrace memory;              // after the prefill and after the selection

  // A copy of the full cache compressed with one policy's selection at one budget.
  KvCache compressed(std::size_t policy, std::size_t budget) const;
};

struct CompressionRequest {
  std::span<const TokenId> prompt;
  const std::vector<PolicyEntry>* policies = nullptr;
  std::span<const double> budgets;
  std::int64_t extra_capacity = 0;  // tokens the caller will append after the prompt
  bool h2o_decode_states = false;   // also prefill cpu::H2OState per budget (needs H2O in the set)
  int threads = 1;
  std::string label;  // progress stage prefix
};

// Prefills the prompt in one forward call with the full cache while capturing the queries the
// policies need, then selects per layer for every policy and budget (layers in parallel), then
// frees the captures.
PromptCompression prefill_and_select(const LlamaModel& model, const CompressionRequest& request,
                                     ProgressBar& progress);

// Index of the named policy in the set, or -1.
std::int64_t find_policy(const std::vector<PolicyEntry>& policies, std::string_view name);

}  // namespace capkv::llm::eval
