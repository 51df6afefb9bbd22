#pragma once

#include <capkv/capkv.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace capkv::llm::eval {

using AnyPolicy = std::variant<capkv::CapKV, capkv::SnapKV, capkv::H2O, capkv::L2Norm,
                               capkv::StreamingLLM, capkv::RandomPolicy>;

// One evaluated policy: the library's policy object plus the name it carries in every output. Two
// presets of one policy are two entries with distinct names.
struct PolicyEntry {
  std::string name;
  std::string description;  // the preset, for results.json
  AnyPolicy policy;
};

// The evaluated set, in table order:
//   CapKV          CapKV() defaults: anchor = mean of the last 32 post-RoPE queries, t = <k, mu>
//   CapKV-kvpress  CapKV::kvpress(): rotated mean of the pre-RoPE prompt queries, cosine
//   SnapKV         SnapKV::kvpress(): window 64, avg-pool 5, mean
//   H2O            H2O::paper(): accumulated attention of all prompt queries, 50% recent window
//   L2Norm         L2Norm() (= kvpress): lowest key norms, no sinks, every layer
//   StreamingLLM   4 sinks + most recent
//   Random         uniform scores, seeded, with StreamingLLM's (and CapKV's) 4 sinks protected
std::vector<std::string> all_policy_names();

// Parses "all" or a comma-separated list of the names above (case-insensitive). Throws
// std::invalid_argument naming an unknown entry.
std::vector<PolicyEntry> make_policies(std::string_view list, std::uint64_t seed);

// What the prefill must capture so that every policy of the set can score.
struct CaptureNeeds {
  std::int64_t post_rope_rows = 0;  // last prompt queries after RoPE; INT64_MAX = all of them
  bool pre_rope = false;
};
CaptureNeeds capture_needs(const std::vector<PolicyEntry>& policies);

// Whether the policy's scores depend on the budget (only CapKV's greedy variant): the others are
// scored once per layer and selected at every budget from the same scores.
bool scores_depend_on_budget(const AnyPolicy& policy);

}  // namespace capkv::llm::eval
