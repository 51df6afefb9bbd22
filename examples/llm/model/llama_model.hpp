#pragma once

#include <filesystem>
#include <span>

#include "gguf/gguf_file.hpp"
#include "model/forward_observer.hpp"
#include "model/kv_cache.hpp"
#include "model/llama_config.hpp"
#include "model/llama_weights.hpp"
#include "tokenizer/tokenizer.hpp"

namespace capkv::llm {

// Which rows of a forward call need logits: the vocabulary projection is the largest GEMM, so a
// prefill asks only for the last row.
enum class Logits { kAll, kLast };

// A Llama decoder in Eigen fp32: RMSNorm, half-split RoPE, GQA attention over an evictable cache,
// SwiGLU, tied embeddings. Batched: a forward call takes any number of new tokens.
class LlamaModel {
 public:
  LlamaModel(LlamaConfig config, LlamaWeights weights) : config_(config), weights_(std::move(weights)) {}
  static LlamaModel load(const GgufFile& file);

  const LlamaConfig& config() const { return config_; }
  KvCache make_cache(std::int64_t capacity) const {
    return KvCache(config_.n_layers, config_.n_kv_heads, config_.head_dim, capacity);
  }

  // Runs `tokens` at positions cache.next_position, ...; appends their K/V to the cache and
  // advances it. Returns logits [T or 1, vocab].
  RowMatrixXf forward(std::span<const TokenId> tokens, KvCache& cache, Logits which = Logits::kLast,
                      ForwardObserver* observer = nullptr) const;

 private:
  LlamaConfig config_;
  LlamaWeights weights_;
};

// The tokenizer stored in the GGUF metadata (tokenizer.ggml.tokens / merges / token_type).
Tokenizer tokenizer_from_gguf(const GgufFile& file);

// CAPKV_MODEL if set, else ~/.cache/capkv/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch_model.sh).
std::filesystem::path default_model_path();

}  // namespace capkv::llm
