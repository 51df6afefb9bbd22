#include "model/llama_weights.hpp"

#include <string>

#include "gguf/dequantize.hpp"
#include "gguf/gguf_error.hpp"

namespace capkv::llm {
namespace {

RowMatrixXf load_matrix(const GgufFile& file, const std::string& name, std::int64_t rows,
                        std::int64_t cols) {
  const GgufTensorInfo& info = file.tensor(name);
  if (info.shape.size() != 2 || static_cast<std::int64_t>(info.shape[0]) != cols ||
      static_cast<std::int64_t>(info.shape[1]) != rows) {
    throw GgufError(file.source() + ": tensor " + name + " does not have the shape [" +
                    std::to_string(rows) + ", " + std::to_string(cols) + "] the config implies");
  }
  RowMatrixXf m(rows, cols);
  dequantize_rows(file, info, 0, std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
  return m;
}

Eigen::VectorXf load_vector(const GgufFile& file, const std::string& name, std::int64_t size) {
  const GgufTensorInfo& info = file.tensor(name);
  if (static_cast<std::int64_t>(info.n_elements) != size) {
    throw GgufError(file.source() + ": tensor " + name + " should hold " + std::to_string(size) +
                    " elements");
  }
  Eigen::VectorXf v(size);
  dequantize_rows(file, info, 0, std::span<float>(v.data(), static_cast<std::size_t>(size)));
  return v;
}

}  // namespace

RowMatrixXf unpermute_rope_rows(const RowMatrixXf& gguf_rows, std::int64_t n_heads,
                                std::int64_t head_dim) {
  RowMatrixXf hf(gguf_rows.rows(), gguf_rows.cols());
  const std::int64_t half = head_dim / 2;
  for (std::int64_t h = 0; h < n_heads; ++h) {
    const std::int64_t base = h * head_dim;
    for (std::int64_t i = 0; i < half; ++i) {
      hf.row(base + i) = gguf_rows.row(base + 2 * i);
      hf.row(base + i + half) = gguf_rows.row(base + 2 * i + 1);
    }
  }
  return hf;
}

LlamaWeights LlamaWeights::from_gguf(const GgufFile& file, const LlamaConfig& c) {
  LlamaWeights w;
  w.token_embd = load_matrix(file, "token_embd.weight", c.vocab, c.hidden);
  w.output_norm = load_vector(file, "output_norm.weight", c.hidden);
  if (file.find_tensor("output.weight") != nullptr) {
    throw GgufError(file.source() + ": untied output.weight is not supported by this runner");
  }
  w.blocks.resize(static_cast<std::size_t>(c.n_layers));
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaBlock& b = w.blocks[l];
    b.attn_norm = load_vector(file, p + "attn_norm.weight", c.hidden);
    b.ffn_norm = load_vector(file, p + "ffn_norm.weight", c.hidden);
    b.wq = unpermute_rope_rows(load_matrix(file, p + "attn_q.weight", c.q_width(), c.hidden),
                               c.n_heads, c.head_dim);
    b.wk = unpermute_rope_rows(load_matrix(file, p + "attn_k.weight", c.kv_width(), c.hidden),
                               c.n_kv_heads, c.head_dim);
    b.wv = load_matrix(file, p + "attn_v.weight", c.kv_width(), c.hidden);
    b.wo = load_matrix(file, p + "attn_output.weight", c.hidden, c.q_width());
    b.w_gate = load_matrix(file, p + "ffn_gate.weight", c.ffn, c.hidden);
    b.w_up = load_matrix(file, p + "ffn_up.weight", c.ffn, c.hidden);
    b.w_down = load_matrix(file, p + "ffn_down.weight", c.hidden, c.ffn);
  }
  return w;
}

LlamaConfig LlamaConfig::from_gguf(const GgufFile& file) {
  const std::string arch = file.get_string("general.architecture");
  if (arch != "llama") throw GgufError(file.source() + ": architecture '" + arch + "' is not llama");
  LlamaConfig c;
  c.n_layers = file.get_u64("llama.block_count");
  c.hidden = file.get_u64("llama.embedding_length");
  c.n_heads = file.get_u64("llama.attention.head_count");
  c.n_kv_heads = file.get_u64_or("llama.attention.head_count_kv", c.n_heads);
  c.ffn = file.get_u64("llama.feed_forward_length");
  c.context = file.get_u64_or("llama.context_length", 2048);
  c.rope_base = file.get_f32_or("llama.rope.freq_base", 10000.0f);
  c.rms_eps = file.get_f32_or("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  const GgufTensorInfo& embd = file.tensor("token_embd.weight");
  c.vocab = embd.shape.size() == 2 ? static_cast<std::int64_t>(embd.shape[1]) : 0;
  if (c.n_layers < 1 || c.n_heads < 1 || c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads != 0 ||
      c.hidden % c.n_heads != 0 || c.vocab < 1) {
    throw GgufError(file.source() + ": inconsistent llama hyperparameters");
  }
  c.head_dim = c.hidden / c.n_heads;
  if (c.head_dim % 2 != 0) throw GgufError(file.source() + ": RoPE needs an even head dimension");
  return c;
}

}  // namespace capkv::llm
