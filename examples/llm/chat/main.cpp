// capkv-chat: the smallest honest demonstration that capkv plugs into an inference engine. It
// prefills a prompt with SmolLM2-135M-Instruct, lets a policy compress every layer's KV cache to a
// budget (capkv::select + LayerCache::retain), and generates from the compressed cache; H2O and
// StreamingLLM keep evicting while generating so the cache stays within the budget.
//
//   capkv-chat --prompt "Summarise the GPL in one sentence." --policy capkv --budget 0.5
//   cat notes.txt | capkv-chat --no-chat --policy snapkv --budget-tokens 256 --max-tokens 64

#include <CLI/CLI.hpp>
#include <algorithm>
#include <capkv/core/error.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "compress_prompt.hpp"
#include "model/llama_model.hpp"
#include "query_recorder.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/utf8.hpp"

namespace {

using namespace capkv::llm;

struct Options {
  std::string prompt;
  std::string policy = "capkv";
  double budget = 0.5;
  std::int64_t budget_tokens = -1;
  int max_tokens = 128;
  double temperature = 0.0;
  std::uint64_t seed = 0;
  bool chat = true;
  std::string model = default_model_path().string();
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void report_cache(const char* label, const KvCache& cache) {
  std::int64_t lo = INT64_MAX, hi = 0;
  for (const LayerCache& layer : cache.layers) {
    for (std::int64_t h = 0; h < layer.n_kv_heads(); ++h) {
      lo = std::min(lo, layer.size(h));
      hi = std::max(hi, layer.size(h));
    }
  }
  std::fprintf(stderr, "[cache] %-18s %lld", label, static_cast<long long>(lo));
  if (hi != lo) std::fprintf(stderr, "..%lld", static_cast<long long>(hi));
  std::fprintf(stderr, " tokens per KV head, %.2f MB\n",
               static_cast<double>(cache.bytes_held()) / 1e6);
}

TokenId sample(const RowMatrixXf& logits, double temperature, std::mt19937_64& rng) {
  Eigen::Index best = 0;
  const float max = logits.row(0).maxCoeff(&best);
  if (temperature <= 0.0) return static_cast<TokenId>(best);
  std::vector<double> weights(static_cast<std::size_t>(logits.cols()));
  for (Eigen::Index i = 0; i < logits.cols(); ++i) {
    weights[i] = std::exp((static_cast<double>(logits(0, i)) - max) / temperature);
  }
  return static_cast<TokenId>(
      std::discrete_distribution<TokenId>(weights.begin(), weights.end())(rng));
}

// Tokens can end inside a multi-byte character: print only whole characters, keep the rest.
void print_complete_utf8(std::string& pending) {
  std::size_t end = 0;
  while (end < pending.size()) {
    const std::size_t length = utf8_sequence_length(pending, end);
    if (length > 0) {
      end += length;
    } else if (pending.size() - end < 4) {
      break;  // maybe the start of a character the next token completes
    } else {
      ++end;  // not UTF-8 at all; pass the byte through
    }
  }
  std::fwrite(pending.data(), 1, end, stdout);
  std::fflush(stdout);
  pending.erase(0, end);
}

int run(const Options& o) {
  const auto load_start = std::chrono::steady_clock::now();
  const GgufFile file = GgufFile::open(o.model);
  const LlamaModel model = LlamaModel::load(file);
  const Tokenizer tokenizer = tokenizer_from_gguf(file);
  std::fprintf(stderr, "[model] %s loaded in %.2f s\n", o.model.c_str(), seconds_since(load_start));

  // No system turn by default: SmolLM2's default system prompt makes the 135M model noticeably
  // worse at plain questions (it does not answer "The capital of France is" with Paris).
  const std::vector<ChatMessage> messages{{"user", o.prompt}};
  const std::vector<TokenId> prompt =
      o.chat ? encode_chatml(tokenizer, messages, ChatOptions{.default_system_prompt = ""})
             : tokenizer.encode(o.prompt);
  if (prompt.empty()) throw std::invalid_argument("the prompt is empty");
  const capkv::Budget budget = o.budget_tokens >= 0 ? capkv::Budget::tokens(o.budget_tokens)
                                                    : capkv::Budget::keep_fraction(o.budget);

  const LlamaConfig& config = model.config();
  KvCache cache = model.make_cache(static_cast<std::int64_t>(prompt.size()) + o.max_tokens);
  QueryRecorder queries(config.n_layers, config.n_heads, config.head_dim);
  const auto prefill_start = std::chrono::steady_clock::now();
  RowMatrixXf logits =
      model.forward(prompt, cache, Logits::kLast, o.policy == "none" ? nullptr : &queries);
  const double prefill_s = seconds_since(prefill_start);
  std::fprintf(stderr, "[prefill] %zu tokens in %.2f s (%.1f tokens/s)\n", prompt.size(), prefill_s,
               static_cast<double>(prompt.size()) / prefill_s);
  report_cache("before compression", cache);
  const auto eviction = compress_prompt(o.policy, budget, o.seed, config, queries, cache);
  report_cache(("after " + o.policy).c_str(), cache);

  std::mt19937_64 rng(o.seed);
  std::string pending;
  int generated = 0;
  const auto decode_start = std::chrono::steady_clock::now();
  for (; generated < o.max_tokens; ++generated) {
    const TokenId next = sample(logits, o.temperature, rng);
    if (tokenizer.is_control(next)) break;  // <|im_end|> or <|endoftext|>
    pending += tokenizer.bytes(next);
    print_complete_utf8(pending);
    logits = model.forward(std::span<const TokenId>(&next, 1), cache, Logits::kLast,
                           eviction ? eviction->observer() : nullptr);
    if (eviction) eviction->after_step(cache);
  }
  std::fwrite(pending.data(), 1, pending.size(), stdout);
  std::printf("\n");
  std::fflush(stdout);
  const double decode_s = seconds_since(decode_start);
  std::fprintf(stderr, "[decode] %d tokens in %.2f s (%.1f tokens/s)\n", generated, decode_s,
               generated / std::max(decode_s, 1e-9));
  report_cache("at the end", cache);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Generate with SmolLM2-135M-Instruct from a KV cache compressed by a capkv policy."};
  app.add_option("--prompt", o.prompt, "Prompt text (default: read stdin)");
  app.add_option("--policy", o.policy, "Eviction policy")
      ->check(CLI::IsMember(std::vector<std::string>(kPolicyNames.begin(), kPolicyNames.end())))
      ->capture_default_str();
  auto* fraction =
      app.add_option("--budget", o.budget, "Fraction of the prompt's cache kept per KV head")
          ->check(CLI::Range(0.0, 1.0))
          ->capture_default_str();
  app.add_option("--budget-tokens", o.budget_tokens,
                 "Tokens kept per KV head instead of a fraction")
      ->check(CLI::NonNegativeNumber)
      ->excludes(fraction);
  app.add_option("--max-tokens", o.max_tokens, "Tokens to generate at most")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--temperature", o.temperature, "Sampling temperature; 0 is greedy")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the sampler and of the random policy")
      ->capture_default_str();
  app.add_flag("--chat,!--no-chat", o.chat,
               "Wrap the prompt in the ChatML template (no system turn) or feed it as plain text")
      ->capture_default_str();
  app.add_option("--model", o.model, "SmolLM2-135M-Instruct GGUF (scripts/fetch_model.sh)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (app.count("--prompt") == 0) {
    o.prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  try {
    return run(o);
  } catch (const capkv::Error& e) {
    std::fprintf(stderr, "capkv-chat: %s (policy %s; try a larger budget or a longer prompt)\n",
                 e.what(), o.policy.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "capkv-chat: %s\n", e.what());
  }
  return 1;
}
