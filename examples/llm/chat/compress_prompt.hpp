#pragma once

// The one place capkv-chat calls the library: after the prompt's prefill, every layer's cache is
// scored by the chosen policy (capkv::select) and compacted in place (LayerCache::retain).

#include <array>
#include <capkv/core/budget.hpp>
#include <cstdint>
#include <memory>
#include <string_view>

#include "decode_eviction.hpp"
#include "model/llama_config.hpp"
#include "query_recorder.hpp"

namespace capkv::llm {

inline constexpr std::array<std::string_view, 8> kPolicyNames{
    "capkv", "capkv-kvpress", "snapkv", "h2o", "l2norm", "streaming", "random", "none"};

// Compresses every layer of a cache that holds exactly the prompt. Returns what keeps evicting
// during decoding (h2o, streaming), else nullptr. Throws capkv::Error when the budget is below
// what the policy protects (e.g. SnapKV's 32-token window).
std::unique_ptr<DecodeEviction> compress_prompt(std::string_view policy,
                                                const capkv::Budget& budget, std::uint64_t seed,
                                                const LlamaConfig& config,
                                                const QueryRecorder& queries, KvCache& cache);

}  // namespace capkv::llm
