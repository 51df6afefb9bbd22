#include "eval/prompt_compression.hpp"

#include <chrono>
#include <mutex>
#include <stdexcept>

#include "eval/capture.hpp"
#include "eval/layer_selection.hpp"
#include "eval/parallel.hpp"

namespace capkv::llm::eval {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

KvCache PromptCompression::compressed(std::size_t policy, std::size_t budget) const {
  KvCache copy = cache;
  const auto& by_layer = selections.at(policy).at(budget);
  for (std::size_t l = 0; l < copy.layers.size(); ++l) copy.layers[l].retain(by_layer[l]);
  return copy;
}

std::int64_t find_policy(const std::vector<PolicyEntry>& policies, std::string_view name) {
  for (std::size_t i = 0; i < policies.size(); ++i) {
    if (policies[i].name == name) return static_cast<std::int64_t>(i);
  }
  return -1;
}

PromptCompression prefill_and_select(const LlamaModel& model, const CompressionRequest& request,
                                     ProgressBar& progress) {
  const LlamaConfig& c = model.config();
  const std::vector<PolicyEntry>& policies = *request.policies;
  const auto n = static_cast<std::int64_t>(request.prompt.size());
  if (n == 0) throw std::invalid_argument("prefill_and_select: empty prompt");

  PromptCompression out(model.make_cache(n + request.extra_capacity));
  const CaptureNeeds needs = capture_needs(policies);
  PrefillCapture capture(c.n_layers, c.n_heads, c.head_dim, needs.post_rope_rows, needs.pre_rope);

  progress.stage(request.label + "prefill " + std::to_string(n) + " tokens", 1);
  auto start = std::chrono::steady_clock::now();
  set_compute_threads(request.threads);
  out.last_logits = model.forward(request.prompt, out.cache, Logits::kLast, &capture);
  out.prefill_seconds = seconds_since(start);
  out.memory.emplace_back("prefill", memory_usage());
  release_free_memory();  // the prefill's activations, before the scorers allocate theirs
  out.capture_bytes = capture.bytes();
  progress.advance();

  out.budgets.assign(request.budgets.begin(), request.budgets.end());
  std::vector<capkv::Budget> budgets;
  for (double f : request.budgets) {
    budgets.push_back(capkv::Budget::keep_fraction(f));
    out.kept_tokens.push_back(budgets.back().resolve(n));
  }
  const std::size_t n_layers = static_cast<std::size_t>(c.n_layers);
  out.selections.assign(policies.size(),
                        std::vector<std::vector<capkv::Selection>>(
                            budgets.size(), std::vector<capkv::Selection>(n_layers)));
  out.scores.assign(policies.size(), std::vector<capkv::ScoreMatrix>(n_layers));

  const std::int64_t h2o = find_policy(policies, "H2O");
  const bool with_states = request.h2o_decode_states && h2o >= 0;
  // H2OState has no default state to fill in later, so each layer's states are built by its task
  // and moved into place afterwards.
  std::vector<std::vector<capkv::cpu::H2OState>> states_by_layer(n_layers);

  out.scoring_seconds.assign(policies.size(), 0.0);
  std::mutex scoring_mutex;
  auto add_scoring_time = [&](std::size_t policy, std::chrono::steady_clock::time_point since) {
    const double seconds = seconds_since(since);
    std::lock_guard lock(scoring_mutex);
    out.scoring_seconds[policy] += seconds;
  };

  progress.stage(request.label + "select (layers)", c.n_layers);
  start = std::chrono::steady_clock::now();
  const capkv::Rope rope{c.rope_base, capkv::RopeLayout::kHalf};
  parallel_for(c.n_layers, request.threads, [&](std::int64_t layer) {
    const LayerCache& lc = out.cache.layers[static_cast<std::size_t>(layer)];
    capkv::LayerInputs in;
    in.keys = lc.keys_view();
    in.values = lc.values_view();
    if (!capture.queries(layer).empty()) in.queries = capture.queries(layer).view();
    if (!capture.queries_pre_rope(layer).empty()) {
      in.queries_pre_rope = capture.queries_pre_rope(layer).view();
    }
    in.rope = rope;
    in.layer = layer;
    const auto l = static_cast<std::size_t>(layer);
    for (std::size_t p = 0; p < policies.size(); ++p) {
      if (with_states && static_cast<std::int64_t>(p) == h2o) continue;  // below, from the states
      const auto scoring = std::chrono::steady_clock::now();
      LayerSelections s = select_at_budgets(policies[p].policy, in, budgets);
      add_scoring_time(p, scoring);
      for (std::size_t b = 0; b < budgets.size(); ++b)
        out.selections[p][b][l] = std::move(s.by_budget[b]);
      out.scores[p][l] = std::move(s.scores);
    }
    if (with_states) {
      // H2OState::prefill is capkv::select at the state's budget (with scores): its selection is
      // the one-shot H2O selection too, so H2O is scored once per budget, not once more.
      const auto hp = static_cast<std::size_t>(h2o);
      const auto& policy = std::get<capkv::H2O>(policies[hp].policy);
      const auto scoring = std::chrono::steady_clock::now();
      for (std::size_t b = 0; b < budgets.size(); ++b) {
        capkv::cpu::H2OState state(policy, out.kept_tokens[b]);
        capkv::Selection sel = state.prefill(in);
        if (b == 0) out.scores[hp][l] = std::move(sel.scores);
        sel.scores.resize(0, 0);
        out.selections[hp][b][l] = std::move(sel);
        states_by_layer[l].push_back(std::move(state));
      }
      add_scoring_time(hp, scoring);
    }
    progress.advance();
  });
  out.select_seconds = seconds_since(start);
  out.memory.emplace_back("select", memory_usage());
  capture.release();
  release_free_memory();

  if (with_states) {
    out.h2o_decode_states.resize(budgets.size());
    for (std::size_t b = 0; b < budgets.size(); ++b) {
      for (std::size_t l = 0; l < n_layers; ++l) {
        out.h2o_decode_states[b].push_back(std::move(states_by_layer[l][b]));
      }
    }
  }
  return out;
}

}  // namespace capkv::llm::eval
