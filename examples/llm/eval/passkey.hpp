#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "eval/memory_usage.hpp"
#include "eval/policy_set.hpp"
#include "eval/progress_bar.hpp"
#include "model/llama_model.hpp"
#include "tokenizer/tokenizer.hpp"

namespace capkv::llm::eval {

// Passkey retrieval (Mohtashami & Jaggi's prompt): a 5-digit key stated in one sentence hidden in
// repetitive filler at some depth, then a question. Plain text, no chat template, like the
// fidelity windows.
struct PasskeyPrompt {
  std::string key;     // five digits
  double depth = 0.0;  // where the key sits, as a fraction of the filler
  std::int64_t target_tokens = 0;
  std::vector<TokenId> tokens;
};

inline constexpr std::string_view kPasskeyPreamble =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important info there.";
inline constexpr std::string_view kPasskeyFiller =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
inline constexpr std::string_view kPasskeyQuestion = " What is the pass key? The pass key is";

// The sentence that carries the key.
std::string passkey_sentence(std::string_view key);

// `count` prompts of about `target_tokens` tokens each, keys drawn from `seed`, depths spread
// evenly over the filler: (i + 0.5) / count.
std::vector<PasskeyPrompt> make_passkey_prompts(const Tokenizer& tokenizer, std::int64_t count,
                                                std::int64_t target_tokens, std::uint64_t seed);

// Whether the generated text states the key: its five digits appear together.
bool passkey_found(std::string_view generated, std::string_view key);

struct PasskeyAnswer {
  std::string text;
  bool correct = false;
};

struct PasskeyResult {
  std::string key;
  double depth = 0.0;
  std::int64_t prompt_tokens = 0;
  PasskeyAnswer full;
  std::vector<std::vector<PasskeyAnswer>> compressed;  // [policy][budget]
  MemoryTrace memory;
};

// Prefills the whole prompt (question included) with the full cache, compresses it once per policy
// and budget, and greedily decodes `answer_tokens` tokens with each cache (the first one comes from
// the prefill's logits, as in any engine that compresses after prefill).
PasskeyResult run_passkey(const LlamaModel& model, const Tokenizer& tokenizer,
                          const PasskeyPrompt& prompt, const std::vector<PolicyEntry>& policies,
                          const std::vector<double>& budgets, std::int64_t answer_tokens,
                          int threads, ProgressBar& progress, const std::string& label);

}  // namespace capkv::llm::eval
