#include "model/llama_model.hpp"

#include <algorithm>
#include <capkv/core/rope.hpp>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace capkv::llm {
namespace {

// Queries per attention task: bounds the [group * chunk, cache] score matrix at long context.
constexpr std::int64_t kAttentionChunk = 256;
// Unnormalised attention weights below this are dropped (see attend()).
constexpr float kNegligibleProbability = 1e-20f;
// Forward calls of fewer tokens run on one thread: their GEMMs take less than waking another.
constexpr std::int64_t kParallelMinTokens = 32;

// The forward pass does its own threading: blocks of rows of every GEMM and (KV head, chunk) tasks
// of the attention, scheduled dynamically. Eigen's own GEMM threading is off for the call: its
// threads spin-wait on each other, so on shared, busy cores a descheduled thread stalls the other
// for a whole time slice (a 40-token forward took 10 s, a 14-token one 10 s against 0.5 s on one
// thread); with dynamic scheduling the thread that runs takes the work instead.
class ThreadTeam {
 public:
  explicit ThreadTeam(std::int64_t tokens) {
#if defined(_OPENMP)
    saved_ = omp_get_max_threads();
    size_ = tokens >= kParallelMinTokens ? saved_ : 1;
#else
    (void)tokens;
#endif
    take();
  }
  ~ThreadTeam() { hand_back(); }
  ThreadTeam(const ThreadTeam&) = delete;
  ThreadTeam& operator=(const ThreadTeam&) = delete;

  int size() const { return size_; }
  // Caps what Eigen reads to one thread; per calling thread, so concurrent callers are unaffected.
  void take() const {
#if defined(_OPENMP)
    omp_set_num_threads(1);
#endif
  }
  // The caller's setting back, e.g. while an observer runs capkv's own OpenMP passes.
  void hand_back() const {
#if defined(_OPENMP)
    omp_set_num_threads(saved_);
#endif
  }

 private:
  int saved_ = 1;
  int size_ = 1;
};

// y = x w^T (w is [out, in], as in PyTorch), in blocks of rows spread over the team: about four
// blocks per thread for balance, but at least 32 rows (smaller GEMMs lose efficiency) and at most
// 128 (the largest that stays within 10% of one whole GEMM).
RowMatrixXf linear(const RowMatrixXf& x, const RowMatrixXf& w, int team) {
  RowMatrixXf y(x.rows(), w.rows());
  const std::int64_t per_block = (x.rows() + 4 * team - 1) / (4 * team);
  const std::int64_t block = std::clamp<std::int64_t>(per_block, 32, 128);
  const std::int64_t blocks = (x.rows() + block - 1) / block;
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic) num_threads(team) if (blocks > 1)
#endif
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t r0 = b * block;
    const std::int64_t rows = std::min<std::int64_t>(block, x.rows() - r0);
    y.middleRows(r0, rows).noalias() = x.middleRows(r0, rows) * w.transpose();
  }
  return y;
}

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

// Causal attention of queries r0 .. r0 + rows - 1 of the query heads that share KV head `kv_head`,
// over that head's cache (which already holds the new tokens): key j is visible to a query at
// position p when its position is <= p. Writes their [rows, head_dim] outputs into `out`.
//
// The group's query heads are stacked into one GEMM against the shared keys (GQA: 3 query heads
// per KV head here), so the keys are packed once, not once per query head. Cached positions ascend
// (appends come in order; retain and erase keep it), so the keys a query can see are a prefix of
// the cache: the masked upper triangle is neither multiplied nor exponentiated.
void attend(const RowMatrixXf& q, std::int64_t kv_head, std::int64_t group, const LayerCache& cache,
            std::span<const std::int64_t> q_positions, std::int64_t r0, std::int64_t rows,
            RowMatrixXf& out) {
  const std::int64_t d = cache.head_dim();
  const auto key_positions = cache.positions(kv_head);
  const auto visible_to = [&](std::int64_t position) {
    return static_cast<std::int64_t>(
        std::upper_bound(key_positions.begin(), key_positions.end(), position) -
        key_positions.begin());
  };
  const std::int64_t visible = visible_to(q_positions[r0 + rows - 1]);
  const ConstRowMap keys = cache.keys(kv_head);
  const ConstRowMap values = cache.values(kv_head);

  RowMatrixXf stacked(group * rows, d);
  for (std::int64_t g = 0; g < group; ++g) {
    stacked.middleRows(g * rows, rows) = q.block(r0, (kv_head * group + g) * d, rows, d);
  }
  stacked *= 1.0f / std::sqrt(static_cast<float>(d));
  RowMatrixXf scores = stacked * keys.topRows(visible).transpose();
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t seen = visible_to(q_positions[r0 + r]);
    for (std::int64_t g = 0; g < group; ++g) {
      auto row = scores.row(g * rows + r);
      auto live = row.head(seen);
      live = (live.array() - live.maxCoeff()).exp();
      // Probabilities this small (the largest is 1) cannot move an fp32 output, but left in they
      // make the P * V product run on denormals, which x86 handles in microcode: a 256-token
      // prefill spent 18 s instead of 0.8 s in attention.
      live = (live.array() < kNegligibleProbability).select(0.0f, live);
      live /= live.sum();
      row.tail(visible - seen).setZero();
    }
  }
  const RowMatrixXf o = scores * values.topRows(visible);
  for (std::int64_t g = 0; g < group; ++g) {
    out.block(r0, (kv_head * group + g) * d, rows, d) = o.middleRows(g * rows, rows);
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
  const ThreadTeam team(t);
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
    RowMatrixXf q_pre = linear(h, b.wq, team.size());
    RowMatrixXf k_pre = linear(h, b.wk, team.size());
    RowMatrixXf v = linear(h, b.wv, team.size());
    RowMatrixXf q = q_pre, k = k_pre;
    apply_rope(q, c.n_heads, c.head_dim, positions, c.rope_base);
    apply_rope(k, c.n_kv_heads, c.head_dim, positions, c.rope_base);
    if (observer) {
      team.hand_back();
      observer->on_layer({l, positions, q_pre, q, k_pre, k, v}, layer);
      team.take();
    }
    layer.append(k, v, positions);
    // One task per (KV head, chunk of queries): they write disjoint blocks of `attn`, and Eigen
    // stays single-threaded inside them. Later chunks see more keys, hence the dynamic schedule.
    const std::int64_t chunks = (t + kAttentionChunk - 1) / kAttentionChunk;
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic) num_threads(team.size())
#endif
    for (std::int64_t task = 0; task < c.n_kv_heads * chunks; ++task) {
      const std::int64_t r0 = (task % chunks) * kAttentionChunk;
      attend(q, task / chunks, c.group(), layer, positions, r0, std::min(kAttentionChunk, t - r0),
             attn);
    }
    x += linear(attn, b.wo, team.size());
    h = rms_norm(x, b.ffn_norm, c.rms_eps);
    RowMatrixXf gate = linear(h, b.w_gate, team.size());
    const RowMatrixXf up = linear(h, b.w_up, team.size());
    gate = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();  // SiLU(gate) * up
    x += linear(gate, b.w_down, team.size());
  }
  cache.next_position += t;
  const RowMatrixXf last = which == Logits::kLast ? RowMatrixXf(x.bottomRows(1)) : x;
  return linear(rms_norm(last, weights_.output_norm, c.rms_eps), weights_.token_embd,
                team.size());
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
