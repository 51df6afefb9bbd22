#include "eval/passkey.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "eval/metrics.hpp"
#include "eval/parallel.hpp"
#include "eval/prompt_compression.hpp"

namespace capkv::llm::eval {
namespace {

std::string greedy_answer(const LlamaModel& model, const Tokenizer& tokenizer, KvCache& cache,
                          const RowMatrixXf& last_logits, std::int64_t answer_tokens) {
  const auto vocab = static_cast<std::size_t>(last_logits.cols());
  std::vector<TokenId> answer;
  TokenId next =
      static_cast<TokenId>(argmax(std::span<const float>(last_logits.row(0).data(), vocab)));
  answer.push_back(next);
  for (std::int64_t i = 1; i < answer_tokens; ++i) {
    const TokenId step[] = {next};
    const RowMatrixXf logits = model.forward(step, cache, Logits::kLast);
    next = static_cast<TokenId>(argmax(std::span<const float>(logits.row(0).data(), vocab)));
    answer.push_back(next);
  }
  return tokenizer.decode(answer, ControlTokens::kSkip);
}

}  // namespace

std::string passkey_sentence(std::string_view key) {
  const std::string k(key);
  return " The pass key is " + k + ". Remember it. " + k + " is the pass key.";
}

std::vector<PasskeyPrompt> make_passkey_prompts(const Tokenizer& tokenizer, std::int64_t count,
                                                std::int64_t target_tokens, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5DEECE66Dull);
  std::uniform_int_distribution<int> digits(10000, 99999);
  const auto filler_tokens = static_cast<std::int64_t>(tokenizer.encode(kPasskeyFiller).size());
  std::vector<PasskeyPrompt> prompts;
  for (std::int64_t i = 0; i < count; ++i) {
    PasskeyPrompt p;
    p.key = std::to_string(digits(rng));
    p.depth = (static_cast<double>(i) + 0.5) / static_cast<double>(count);
    p.target_tokens = target_tokens;
    const std::string sentence = passkey_sentence(p.key);
    const auto fixed = static_cast<std::int64_t>(tokenizer.encode(kPasskeyPreamble).size() +
                                                 tokenizer.encode(sentence).size() +
                                                 tokenizer.encode(kPasskeyQuestion).size());
    const std::int64_t repeats = std::max<std::int64_t>(1, (target_tokens - fixed) / filler_tokens);
    const auto before =
        static_cast<std::int64_t>(std::llround(p.depth * static_cast<double>(repeats)));
    std::string text(kPasskeyPreamble);
    for (std::int64_t r = 0; r < repeats; ++r) {
      if (r == before) text += sentence;
      text += kPasskeyFiller;
    }
    if (before >= repeats) text += sentence;
    text += kPasskeyQuestion;
    p.tokens = tokenizer.encode(text);
    prompts.push_back(std::move(p));
  }
  return prompts;
}

bool passkey_found(std::string_view generated, std::string_view key) {
  return !key.empty() && generated.find(key) != std::string_view::npos;
}

PasskeyResult run_passkey(const LlamaModel& model, const Tokenizer& tokenizer,
                          const PasskeyPrompt& prompt, const std::vector<PolicyEntry>& policies,
                          const std::vector<double>& budgets, std::int64_t answer_tokens,
                          int threads, ProgressBar& progress, const std::string& label) {
  CompressionRequest request;
  request.prompt = prompt.tokens;
  request.policies = &policies;
  request.budgets = budgets;
  request.extra_capacity = answer_tokens;
  request.threads = threads;
  request.label = label;
  PromptCompression pc = prefill_and_select(model, request, progress);

  PasskeyResult result;
  result.key = prompt.key;
  result.depth = prompt.depth;
  result.prompt_tokens = static_cast<std::int64_t>(prompt.tokens.size());
  result.compressed.assign(policies.size(), std::vector<PasskeyAnswer>(budgets.size()));

  // Task 0 is the full cache; then policy-major, budget-minor.
  const auto n_tasks = static_cast<std::int64_t>(1 + policies.size() * budgets.size());
  progress.stage(label + "answers (" + std::to_string(answer_tokens) + " tokens each)", n_tasks);
  parallel_for(n_tasks, threads, [&](std::int64_t task) {
    const auto p = static_cast<std::size_t>(std::max<std::int64_t>(task - 1, 0)) / budgets.size();
    const auto b = static_cast<std::size_t>(std::max<std::int64_t>(task - 1, 0)) % budgets.size();
    PasskeyAnswer* answer = task == 0 ? &result.full : &result.compressed[p][b];
    KvCache cache = task == 0 ? pc.cache : pc.compressed(p, b);
    answer->text = greedy_answer(model, tokenizer, cache, pc.last_logits, answer_tokens);
    answer->correct = passkey_found(answer->text, prompt.key);
    progress.advance();
  });
  result.memory = pc.memory;
  result.memory.emplace_back("answers", memory_usage());
  release_free_memory();
  return result;
}

}  // namespace capkv::llm::eval
