#include "model/llama_model.hpp"

#include <algorithm>
#include <capkv/core/rope.hpp>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace capkv::llm {
namespace {

// Queries per attention chunk: bounds the [chunk, cache] score matrix at long context.
constexpr std::int64_t kAttentionChunk = 256;
// Unnormalised attention weights below this are dropped (see attend()).
constexpr float kNegligibleProbability = 1e-20f;

RowMatrixXf rms_norm(const RowMatrixXf& x, const Eigen::VectorXf& gain, float eps) {
  RowMatrixXf y(x.rows(), x.cols());
  for (std::int64_t r = 0; r < x.rows(); ++r) {
    const float scale = 1.0f / std::sqrt(x.row(r).squaredNorm() / static_cast<float>(x.cols()) + eps);
    y.row(r) = (x.row(r).array() * scale * gain.transpose().array()).matrix();
  }
  return y;
}

// Half-split RoPE on every head of every row, at the rows' positions; angles in double.
void apply_rope(RowMatrixXf& x, std::int64_t n_heads, std::int64_t head_dim,
                std::span<const std::int64_t> positions, double base) {
  const capkv::Rope rope{base, capkv::RopeLayout::kHalf};
  const std::int64_t half = head_dim / 2;
  std::vector<double> c(half), s(half);
  for (std::int64_t r = 0; r < x.rows(); ++r) {
    for (std::int64_t j = 0; j < half; ++j) {
      const double angle = static_cast<double>(positions[r]) * rope.inv_freq(j, head_dim);
      c[j] = std::cos(angle);
      s[j] = std::sin(angle);
    }
    for (std::int64_t h = 0; h < n_heads; ++h) rope.apply(x.row(r).data() + h * head_dim, head_dim, c.data(), s.data());
  }
}

// Causal attention of T new queries over one KV head's cache (which already holds them): key j is
// visible to a query at position p when its position is <= p. Writes [T, head_dim] into `out`.
// Cached positions ascend (appends come in order; retain and erase keep it), so the keys a chunk
// of queries can see are a prefix of the cache: a prefill skips the masked upper triangle instead
// of computing and then discarding it.
void attend(const RowMatrixXf& q, std::int64_t q_head, const LayerCache& cache, std::int64_t kv_head,
            std::span<const std::int64_t> q_positions, RowMatrixXf& out) {
  const std::int64_t d = cache.head_dim();
  const ConstRowMap keys = cache.keys(kv_head);
  const ConstRowMap values = cache.values(kv_head);
  const auto key_positions = cache.positions(kv_head);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  RowMatrixXf scores;
  for (std::int64_t r0 = 0; r0 < q.rows(); r0 += kAttentionChunk) {
    const std::int64_t rows = std::min(kAttentionChunk, q.rows() - r0);
    const std::int64_t last_position = q_positions[r0 + rows - 1];
    const auto visible = static_cast<std::int64_t>(
        std::upper_bound(key_positions.begin(), key_positions.end(), last_position) -
        key_positions.begin());
    scores.noalias() = q.block(r0, q_head * d, rows, d) * keys.topRows(visible).transpose() * scale;
    for (std::int64_t r = 0; r < rows; ++r) {
      auto row = scores.row(r);
      for (std::int64_t j = 0; j < visible; ++j) {
        if (key_positions[j] > q_positions[r0 + r]) row[j] = -INFINITY;
      }
      row = (row.array() - row.maxCoeff()).exp();
      // Probabilities this small (the largest is 1) cannot move an fp32 output, but left in they
      // make the P * V product run on denormals, which x86 handles in microcode: a 256-token
      // prefill spent 18 s instead of 0.8 s in attention.
      row = (row.array() < kNegligibleProbability).select(0.0f, row);
      row /= row.sum();
    }
    out.block(r0, q_head * d, rows, d).noalias() = scores * values.topRows(visible);
  }
}

}  // namespace

LlamaModel LlamaModel::load(const GgufFile& file) {
  LlamaConfig config = LlamaConfig::from_gguf(file);
  return LlamaModel(config, LlamaWeights::from_gguf(file, config));
}

RowMatrixXf LlamaModel::forward(std::span<const TokenId> tokens, KvCache& cache, Logits which,
                                ForwardObserver* observer) const {
  const LlamaConfig& c = config_;
  const auto t = static_cast<std::int64_t>(tokens.size());
  std::vector<std::int64_t> positions(static_cast<std::size_t>(t));
  for (std::int64_t r = 0; r < t; ++r) positions[r] = cache.next_position + r;

  RowMatrixXf x(t, c.hidden);
  for (std::int64_t r = 0; r < t; ++r) {
    if (tokens[r] < 0 || tokens[r] >= c.vocab) throw std::out_of_range("token id outside the vocabulary");
    x.row(r) = weights_.token_embd.row(tokens[r]);
  }
  RowMatrixXf attn(t, c.q_width());
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const LlamaBlock& b = weights_.blocks[l];
    LayerCache& layer = cache.layers[l];
    RowMatrixXf h = rms_norm(x, b.attn_norm, c.rms_eps);
    RowMatrixXf q_pre = h * b.wq.transpose();
    RowMatrixXf k_pre = h * b.wk.transpose();
    RowMatrixXf v = h * b.wv.transpose();
    RowMatrixXf q = q_pre, k = k_pre;
    apply_rope(q, c.n_heads, c.head_dim, positions, c.rope_base);
    apply_rope(k, c.n_kv_heads, c.head_dim, positions, c.rope_base);
    if (observer) observer->on_layer({l, positions, q_pre, q, k_pre, k, v}, layer);
    layer.append(k, v, positions);
    // Heads write disjoint column blocks of `attn`; Eigen stays single-threaded inside. A decode
    // step's attention is too small to pay for waking the threads.
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic) if (t > 1)
#endif
    for (std::int64_t head = 0; head < c.n_heads; ++head) {
      attend(q, head, layer, head / c.group(), positions, attn);
    }
    x.noalias() += attn * b.wo.transpose();
    h = rms_norm(x, b.ffn_norm, c.rms_eps);
    RowMatrixXf gate = h * b.w_gate.transpose();
    const RowMatrixXf up = h * b.w_up.transpose();
    gate = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();  // SiLU(gate) * up
    x.noalias() += gate * b.w_down.transpose();
  }
  cache.next_position += t;
  const RowMatrixXf last = which == Logits::kLast ? RowMatrixXf(x.bottomRows(1)) : x;
  return rms_norm(last, weights_.output_norm, c.rms_eps) * weights_.token_embd.transpose();
}

Tokenizer tokenizer_from_gguf(const GgufFile& file) {
  Vocabulary vocabulary;
  vocabulary.tokens = file.get_string_array("tokenizer.ggml.tokens");
  vocabulary.merges = file.get_string_array("tokenizer.ggml.merges");
  if (file.contains("tokenizer.ggml.token_type")) {
    for (std::int64_t type : file.get_i64_array("tokenizer.ggml.token_type")) {
      vocabulary.token_types.push_back(static_cast<TokenType>(type));
    }
  }
  return Tokenizer(std::move(vocabulary));
}

std::filesystem::path default_model_path() {
  if (const char* env = std::getenv("CAPKV_MODEL"); env != nullptr && *env != '\0') return env;
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : ".") / ".cache/capkv/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace capkv::llm
