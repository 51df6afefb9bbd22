#pragma once

#include <Eigen/Core>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "model/llama_config.hpp"

namespace capkv::llm {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// One decoder block, fp32. Matrices are [out, in] as in PyTorch (y = W x).
struct LlamaBlock {
  Eigen::VectorXf attn_norm, ffn_norm;
  RowMatrixXf wq, wk, wv, wo;
  RowMatrixXf w_gate, w_up, w_down;
};

// Every weight dequantized to fp32 once at load (about 0.55 GB for SmolLM2-135M), so the forward
// pass is plain Eigen GEMMs.
struct LlamaWeights {
  RowMatrixXf token_embd;  // [vocab, hidden]; also the output projection (tied embeddings)
  Eigen::VectorXf output_norm;
  std::vector<LlamaBlock> blocks;

  // The GGUF converter permuted the rows of Wq and Wk for interleaved RoPE; they are permuted back
  // so the model uses half-split RoPE and its Q/K match Hugging Face (and kvpress) exactly.
  static LlamaWeights from_gguf(const GgufFile& file, const LlamaConfig& config);
};

// Per head of `n_heads` x `head_dim` rows: hf[i] = gguf[2i], hf[i + head_dim/2] = gguf[2i + 1].
RowMatrixXf unpermute_rope_rows(const RowMatrixXf& gguf_rows, std::int64_t n_heads,
                                std::int64_t head_dim);

}  // namespace capkv::llm
