// capkv's "hello world": build a synthetic KV cache with the structure real attention has (an
// attention sink, a few heavy hitters, a bias towards recent context), keep 25% of it with each
// policy, and measure how much of the attention output held-out future queries lose.

#include <capkv/capkv.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

constexpr std::int64_t kTokens = 2048, kKvHeads = 2, kQueryHeads = 8, kDim = 64;
constexpr std::int64_t kPromptQueries = 64, kFutureQueries = 64;
const capkv::Rope kRope{10000.0, capkv::RopeLayout::kHalf};

// One layer's tensors in [tokens, heads, dim] order, fp32.
struct Tensor {
  std::int64_t tokens, heads;
  std::vector<float> data = std::vector<float>(tokens * heads * kDim);
  float* row(std::int64_t t, std::int64_t h) { return data.data() + (t * heads + h) * kDim; }
  capkv::MutableTensorView view() {
    return {data.data(), capkv::DType::kF32, capkv::Layout::kTokensHeadsDim, tokens, heads, kDim};
  }
};

struct SyntheticLayer {
  Tensor keys{kTokens, kKvHeads}, values{kTokens, kKvHeads};
  Tensor prompt_queries_pre_rope{kPromptQueries, kQueryHeads}, prompt_queries{kPromptQueries, kQueryHeads};
  Tensor future_queries{kFutureQueries, kQueryHeads};  // after RoPE, at positions n, n+1, ...
};

SyntheticLayer make_layer(unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  SyntheticLayer layer;
  // Each KV group has a query direction; keys that point along it get attention.
  std::vector<std::vector<float>> direction(kKvHeads, std::vector<float>(kDim));
  for (auto& dir : direction) for (float& x : dir) x = normal(rng) / std::sqrt(float(kDim));
  for (std::int64_t t = 0; t < kTokens; ++t) {
    for (std::int64_t h = 0; h < kKvHeads; ++h) {
      float relevance = 2.0f * float(t) / kTokens;        // recent context matters more
      if (t == 0) relevance = 4.0f;                       // the attention sink
      if (t % 37 == 13) relevance = 3.0f;                 // heavy hitters
      for (std::int64_t i = 0; i < kDim; ++i) {
        layer.keys.row(t, h)[i] = normal(rng) + relevance * 5.0f * direction[h][i];
        layer.values.row(t, h)[i] = normal(rng);
      }
    }
  }
  auto make_queries = [&](Tensor& q) {
    for (std::int64_t t = 0; t < q.tokens; ++t)
      for (std::int64_t h = 0; h < kQueryHeads; ++h)
        for (std::int64_t i = 0; i < kDim; ++i)
          q.row(t, h)[i] = normal(rng) + 8.0f * direction[h / (kQueryHeads / kKvHeads)][i];
  };
  make_queries(layer.prompt_queries_pre_rope);
  make_queries(layer.future_queries);
  layer.prompt_queries = layer.prompt_queries_pre_rope;
  // RoPE at the tokens' positions, as an engine caches them.
  capkv::rotate_rows(layer.keys.view(), kRope, [](std::int64_t t, std::int64_t) { return t; });
  capkv::rotate_rows(layer.prompt_queries.view(), kRope,
                     [](std::int64_t t, std::int64_t) { return kTokens - kPromptQueries + t; });
  capkv::rotate_rows(layer.future_queries.view(), kRope,
                     [](std::int64_t t, std::int64_t) { return kTokens + t; });
  return layer;
}

// Relative error of the attention output when query q (head h) sees only `kept` tokens.
double output_loss(SyntheticLayer& layer, std::int64_t t, std::int64_t h, std::span<const std::int32_t> kept) {
  const std::int64_t kv = h / (kQueryHeads / kKvHeads);
  std::vector<double> logits(kTokens);
  double max_logit = -INFINITY;
  for (std::int64_t i = 0; i < kTokens; ++i) {
    double dot = 0;
    for (std::int64_t c = 0; c < kDim; ++c) dot += double(layer.future_queries.row(t, h)[c]) * layer.keys.row(i, kv)[c];
    logits[i] = dot / std::sqrt(double(kDim));
    max_logit = std::max(max_logit, logits[i]);
  }
  auto attend = [&](auto&& tokens) {
    std::vector<double> out(kDim, 0.0);
    double z = 0;
    for (std::int64_t i : tokens) {
      const double p = std::exp(logits[i] - max_logit);
      z += p;
      for (std::int64_t c = 0; c < kDim; ++c) out[c] += p * layer.values.row(i, kv)[c];
    }
    for (double& x : out) x /= z;
    return out;
  };
  std::vector<std::int64_t> all(kTokens);
  for (std::int64_t i = 0; i < kTokens; ++i) all[i] = i;
  const auto full = attend(all), compressed = attend(kept);
  double err = 0, norm = 0;
  for (std::int64_t c = 0; c < kDim; ++c) {
    err += (full[c] - compressed[c]) * (full[c] - compressed[c]);
    norm += full[c] * full[c];
  }
  return std::sqrt(err / norm);
}

template <capkv::EvictionPolicy Policy>
void report(const char* label, const Policy& policy, SyntheticLayer& layer, const capkv::LayerInputs& in) {
  const capkv::Selection kept = capkv::select(policy, in, capkv::Budget::keep_fraction(0.25));
  double loss = 0;
  for (std::int64_t t = 0; t < kFutureQueries; ++t)
    for (std::int64_t h = 0; h < kQueryHeads; ++h)
      loss += output_loss(layer, t, h, kept.head(h / (kQueryHeads / kKvHeads)));
  std::printf("  %-22s %6.1f%%\n", label, 100.0 * loss / (kFutureQueries * kQueryHeads));
}

}  // namespace

int main() {
  SyntheticLayer layer = make_layer(42);
  capkv::LayerInputs in;
  in.keys = layer.keys.view();
  in.values = layer.values.view();
  in.queries = layer.prompt_queries.view();
  in.queries_pre_rope = layer.prompt_queries_pre_rope.view();
  in.rope = kRope;

  std::printf("Keeping 25%% of a %lld-token cache (%lld query / %lld KV heads, head_dim %lld).\n",
              (long long)kTokens, (long long)kQueryHeads, (long long)kKvHeads, (long long)kDim);
  std::printf("Attention output lost by %lld held-out future queries (lower is better):\n",
              (long long)kFutureQueries);
  report("CapKV", capkv::CapKV{}, layer, in);
  report("CapKV (paper)", capkv::CapKV::paper(), layer, in);
  report("CapKV (kvpress)", capkv::CapKV::kvpress(), layer, in);
  report("Key leverage", capkv::CapKV::key_leverage(), layer, in);
  report("SnapKV", capkv::SnapKV::paper(), layer, in);
  report("H2O", capkv::H2O::paper(), layer, in);
  report("L2Norm", capkv::L2Norm{}, layer, in);
  report("StreamingLLM", capkv::StreamingLLM{}, layer, in);
  report("Random", capkv::RandomPolicy{}, layer, in);
}
