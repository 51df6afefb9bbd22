#include "compress_prompt.hpp"

#include <capkv/capkv.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace capkv::llm {
namespace {

capkv::LayerInputs layer_inputs(std::int64_t layer, const LlamaConfig& config,
                                const QueryRecorder& queries, const KvCache& cache) {
  capkv::LayerInputs in;
  in.keys = cache.layers[layer].keys_view();
  in.values = cache.layers[layer].values_view();
  in.queries = queries.queries(layer);
  in.queries_pre_rope = queries.queries_pre_rope(layer);
  in.rope = capkv::Rope{config.rope_base, capkv::RopeLayout::kHalf};
  in.layer = layer;
  return in;
}

template <capkv::EvictionPolicy P>
void compress_layers(const P& policy, const capkv::Budget& budget, const LlamaConfig& config,
                     const QueryRecorder& queries, KvCache& cache) {
  for (std::int64_t l = 0; l < config.n_layers; ++l) {
    cache.layers[l].retain(capkv::select(policy, layer_inputs(l, config, queries, cache), budget));
  }
}

}  // namespace

std::unique_ptr<DecodeEviction> compress_prompt(std::string_view policy,
                                                const capkv::Budget& budget, std::uint64_t seed,
                                                const LlamaConfig& config,
                                                const QueryRecorder& queries, KvCache& cache) {
  const auto compress = [&](const auto& p) { compress_layers(p, budget, config, queries, cache); };
  const std::int64_t kept = budget.resolve(cache.tokens());  // read before layer 0 shrinks
  if (policy == "none") return nullptr;
  if (policy == "capkv") {
    compress(capkv::CapKV{});
  } else if (policy == "capkv-kvpress") {
    compress(capkv::CapKV::kvpress());
  } else if (policy == "snapkv") {
    compress(capkv::SnapKV::paper());
  } else if (policy == "l2norm") {
    compress(capkv::L2Norm::kvpress());
  } else if (policy == "random") {
    compress(capkv::RandomPolicy({.seed = seed}));
  } else if (policy == "streaming") {
    const capkv::StreamingLLM streaming = capkv::StreamingLLM::paper();
    compress(streaming);
    return std::make_unique<StreamingEviction>(kept, streaming.config.sinks);
  } else if (policy == "h2o") {
    // H2OState scores the prompt like select() and then carries the accumulators into decoding.
    std::vector<capkv::cpu::H2OState> states;
    for (std::int64_t l = 0; l < config.n_layers; ++l) {
      capkv::cpu::H2OState& state = states.emplace_back(capkv::H2O::paper(), kept);
      cache.layers[l].retain(state.prefill(layer_inputs(l, config, queries, cache)));
    }
    return std::make_unique<H2OEviction>(std::move(states));
  } else {
    throw std::invalid_argument("unknown policy '" + std::string(policy) + "'");
  }
  return nullptr;
}

}  // namespace capkv::llm
