#include "eval/policy_set.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <stdexcept>

namespace capkv::llm::eval {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t");
  return std::string(s.substr(first, last - first + 1));
}

PolicyEntry make_entry(const std::string& name, std::uint64_t seed) {
  if (name == "CapKV") {
    return {name,
            "CapKV() defaults: anchor = mean of the last 32 post-RoPE queries, t = <k, mu>, "
            "tau 5, u = v, 4 sinks",
            capkv::CapKV()};
  }
  if (name == "CapKV-kvpress") {
    return {name,
            "CapKV::kvpress(): anchor = pre-RoPE prompt-query mean rotated by the RoPE "
            "averaged over the next 512 positions, t = cosine, 4 sinks",
            capkv::CapKV::kvpress()};
  }
  if (name == "SnapKV") {
    return {name, "SnapKV::kvpress(): window 64 (protected), avg-pool 5, mean over the window",
            capkv::SnapKV::kvpress()};
  }
  if (name == "H2O") {
    return {name,
            "H2O::paper(): attention accumulated from every prompt query, 50% of the budget "
            "a recent window",
            capkv::H2O::paper()};
  }
  if (name == "L2Norm") {
    return {name, "L2Norm() (kvpress KnormPress): lowest key norms, no sinks, every layer",
            capkv::L2Norm()};
  }
  if (name == "StreamingLLM") {
    return {name, "StreamingLLM::paper(): 4 sinks + most recent, no key re-rotation",
            capkv::StreamingLLM::paper()};
  }
  if (name == "Random") {
    return {
        name, "RandomPolicy: uniform seeded scores, 4 sinks protected (as StreamingLLM, CapKV)",
        capkv::RandomPolicy(capkv::RandomPolicy::Config{.seed = seed, .sinks = 4, .window = 0})};
  }
  throw std::invalid_argument("unknown policy '" + name + "'");
}

}  // namespace

std::vector<std::string> all_policy_names() {
  return {"CapKV", "CapKV-kvpress", "SnapKV", "H2O", "L2Norm", "StreamingLLM", "Random"};
}

std::vector<PolicyEntry> make_policies(std::string_view list, std::uint64_t seed) {
  const std::vector<std::string> known = all_policy_names();
  std::vector<std::string> chosen;
  if (lower(trim(list)) == "all") {
    chosen = known;
  } else {
    std::size_t start = 0;
    while (start <= list.size()) {
      const std::size_t comma = std::min(list.find(',', start), list.size());
      const std::string item = trim(list.substr(start, comma - start));
      start = comma + 1;
      if (item.empty()) continue;
      const auto match = std::find_if(known.begin(), known.end(), [&](const std::string& k) {
        return lower(k) == lower(item);
      });
      if (match == known.end()) {
        std::string names;
        for (const auto& k : known) names += (names.empty() ? "" : ", ") + k;
        throw std::invalid_argument("unknown policy '" + item + "' (known: " + names + ", or all)");
      }
      if (std::find(chosen.begin(), chosen.end(), *match) == chosen.end()) chosen.push_back(*match);
    }
  }
  if (chosen.empty()) throw std::invalid_argument("no policy selected");
  // Table order is the canonical order, whatever order the list gave.
  std::vector<PolicyEntry> entries;
  for (const auto& name : known) {
    if (std::find(chosen.begin(), chosen.end(), name) != chosen.end()) {
      entries.push_back(make_entry(name, seed));
    }
  }
  return entries;
}

CaptureNeeds capture_needs(const std::vector<PolicyEntry>& policies) {
  CaptureNeeds needs;
  for (const PolicyEntry& entry : policies) {
    std::visit(
        [&](const auto& p) {
          using P = std::decay_t<decltype(p)>;
          const capkv::InputNeeds in = p.needs();
          needs.pre_rope = needs.pre_rope || in.queries_pre_rope;
          if (!in.queries) return;
          std::int64_t rows = std::numeric_limits<std::int64_t>::max();
          if constexpr (std::is_same_v<P, capkv::SnapKV>) rows = p.config.window;
          if constexpr (std::is_same_v<P, capkv::CapKV>) {
            if (p.config.anchor == capkv::CapKV::Anchor::kObservationWindow) {
              rows = p.config.observation_window;
            }
          }
          needs.post_rope_rows = std::max(needs.post_rope_rows, rows);
        },
        entry.policy);
  }
  return needs;
}

bool scores_depend_on_budget(const AnyPolicy& policy) {
  if (const auto* capkv = std::get_if<capkv::CapKV>(&policy)) {
    return capkv->config.method == capkv::CapKV::Method::kGreedy;
  }
  return false;
}

}  // namespace capkv::llm::eval
