#pragma once

#include <cstdint>

#include "gguf/gguf_file.hpp"

namespace capkv::llm {

// The hyperparameters of a Llama-architecture GGUF (SmolLM2-135M: 30 layers, hidden 576, 9 query
// and 3 KV heads of 64, FFN 1536, RoPE base 100000, RMSNorm eps 1e-5, vocab 49152).
struct LlamaConfig {
  std::int64_t n_layers = 0;
  std::int64_t hidden = 0;
  std::int64_t n_heads = 0;
  std::int64_t n_kv_heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t ffn = 0;
  std::int64_t vocab = 0;
  std::int64_t context = 0;
  double rope_base = 10000.0;
  float rms_eps = 1e-5f;

  std::int64_t group() const { return n_heads / n_kv_heads; }
  std::int64_t q_width() const { return n_heads * head_dim; }
  std::int64_t kv_width() const { return n_kv_heads * head_dim; }

  // Reads llama.* metadata; throws GgufError when a key is missing or the shapes do not fit.
  static LlamaConfig from_gguf(const GgufFile& file);
};

}  // namespace capkv::llm
