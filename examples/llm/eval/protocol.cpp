#include "eval/protocol.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "eval/capture.hpp"
#include "eval/decode_eviction.hpp"
#include "eval/parallel.hpp"
#include "eval/prompt_attention.hpp"
#include "eval/prompt_compression.hpp"

namespace capkv::llm::eval {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double mean_of_finite(std::span<const double> values) {
  const Summary s = summarize(values);
  return s.count > 0 ? s.mean : std::numeric_limits<double>::quiet_NaN();
}

// Tokens whose score the policy never uses to decide (protected at any budget): CapKV's and
// Random's sinks, SnapKV's observation window. Left out of the Spearman measure, where their
// placeholder scores (zero for SnapKV's window) would only add noise.
capkv::Protection budget_independent_protection(const AnyPolicy& policy, std::int64_t n) {
  return std::visit([&](const auto& p) { return p.protection(n, 0); }, policy);
}

struct Task {
  std::size_t policy;
  std::size_t budget;
};

}  // namespace

bool has_decode_mode(std::string_view policy) {
  return policy == "H2O" || policy == "StreamingLLM";
}

std::vector<DocumentWindow> make_windows(const std::string& source, std::span<const TokenId> text,
                                         std::int64_t window, std::int64_t count) {
  const auto total = static_cast<std::int64_t>(text.size());
  if (total < window) {
    throw std::invalid_argument(source + " holds " + std::to_string(total) +
                                " tokens; a window needs " + std::to_string(window) +
                                " (context + continuation + 1)");
  }
  std::vector<DocumentWindow> windows;
  const std::int64_t span = total - window;
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t offset = count == 1 ? 0 : span * i / (count - 1);
    windows.push_back(
        {source, offset,
         std::vector<TokenId>(text.begin() + offset, text.begin() + offset + window)});
  }
  return windows;
}

DocumentResult run_document(const LlamaModel& model, const DocumentWindow& window,
                            const ProtocolConfig& config, ProgressBar& progress,
                            const std::string& label) {
  const LlamaConfig& mc = model.config();
  const std::int64_t L = config.context;
  const std::int64_t M = config.continuation;
  if (static_cast<std::int64_t>(window.tokens.size()) != window_tokens(config)) {
    throw std::invalid_argument(
        "run_document: the window must hold context + continuation + 1 tokens");
  }
  const std::span<const TokenId> all(window.tokens);
  const std::span<const TokenId> prompt = all.first(static_cast<std::size_t>(L));
  const std::span<const TokenId> continuation =
      all.subspan(static_cast<std::size_t>(L), static_cast<std::size_t>(M));
  const std::span<const TokenId> targets =
      all.subspan(static_cast<std::size_t>(L + 1), static_cast<std::size_t>(M));
  const auto& policies = config.policies;
  const std::size_t n_budgets = config.budgets.size();

  DocumentResult result;
  result.source = window.source;
  result.token_offset = window.token_offset;
  result.context = L;
  result.continuation = M;

  // 1-2. Prefill once, select for every policy and budget.
  CompressionRequest request;
  request.prompt = prompt;
  request.policies = &policies;
  request.budgets = config.budgets;
  request.extra_capacity = M;
  request.h2o_decode_states = config.decode;
  request.threads = config.threads;
  request.label = label;
  PromptCompression pc = prefill_and_select(model, request, progress);
  result.prefill_seconds = pc.prefill_seconds;
  result.select_seconds = pc.select_seconds;
  result.capture_bytes = pc.capture_bytes;

  // 3 (reference). The full cache teacher-forced over the continuation, capturing its queries.
  progress.stage(label + "full-cache continuation", 1);
  auto start = std::chrono::steady_clock::now();
  ContinuationCapture queries(mc.n_layers);
  RowMatrixXf full_logits;
  {
    KvCache full = pc.cache;
    set_compute_threads(config.threads);
    full_logits = model.forward(continuation, full, Logits::kAll, &queries);
  }
  result.continuation_seconds = seconds_since(start);
  progress.advance();
  {
    double nll = 0.0;
    for (std::int64_t t = 0; t < M; ++t) {
      nll += negative_log_likelihood(
          std::span<const float>(full_logits.row(t).data(), static_cast<std::size_t>(mc.vocab)),
          targets[static_cast<std::size_t>(t)]);
    }
    result.full_nll = nll / static_cast<double>(M);
  }

  // 4-5. Attention fidelity and surrogate alignment, per layer, from the captured queries.
  result.variants.resize(policies.size() * n_budgets);
  for (std::size_t p = 0; p < policies.size(); ++p) {
    for (std::size_t b = 0; b < n_budgets; ++b) {
      VariantResult& v = result.variants[p * n_budgets + b];
      v.policy = policies[p].name;
      v.budget = config.budgets[b];
      v.kept_tokens = pc.kept_tokens[b];
      v.recall_by_layer.assign(static_cast<std::size_t>(mc.n_layers), 0.0);
      v.output_error_by_layer.assign(static_cast<std::size_t>(mc.n_layers), 0.0);
      v.spearman_by_layer.assign(static_cast<std::size_t>(mc.n_layers), 0.0);
    }
  }
  std::vector<std::vector<double>> spearman_by_head(
      policies.size(), std::vector<double>(static_cast<std::size_t>(mc.n_layers * mc.n_kv_heads)));
  progress.stage(label + "attention recall/error (layers)", mc.n_layers);
  start = std::chrono::steady_clock::now();
  parallel_for(mc.n_layers, config.threads, [&](std::int64_t layer) {
    const auto l = static_cast<std::size_t>(layer);
    const LayerCache& lc = pc.cache.layers[l];
    std::vector<ConstRowMap> keys, values;
    for (std::int64_t h = 0; h < mc.n_kv_heads; ++h) {
      keys.push_back(lc.keys(h));
      values.push_back(lc.values(h));
    }
    const PromptAttention attention(queries.queries(layer), keys, values);
    std::vector<Eigen::VectorXd> mass;
    for (std::int64_t h = 0; h < mc.n_kv_heads; ++h) mass.push_back(attention.received_mass(h));
    for (std::size_t p = 0; p < policies.size(); ++p) {
      for (std::size_t b = 0; b < n_budgets; ++b) {
        const auto f = attention.fidelity(pc.selections[p][b][l]);
        VariantResult& v = result.variants[p * n_budgets + b];
        v.recall_by_layer[l] = f.recall;
        v.output_error_by_layer[l] = f.output_error;
      }
      const capkv::Protection fixed = budget_independent_protection(policies[p].policy, L);
      const capkv::ScoreMatrix& scores = pc.scores[p][l];
      double layer_sum = 0.0;
      std::int64_t layer_count = 0;
      for (std::int64_t h = 0; h < mc.n_kv_heads; ++h) {
        std::vector<double> s, a;
        for (std::int64_t i = 0; i < L; ++i) {
          if (fixed.contains(i, L)) continue;
          s.push_back(scores(h, i));
          a.push_back(mass[static_cast<std::size_t>(h)][i]);
        }
        const double rho = spearman(s, a);
        spearman_by_head[p][l * static_cast<std::size_t>(mc.n_kv_heads) +
                            static_cast<std::size_t>(h)] = rho;
        if (std::isfinite(rho)) {
          layer_sum += rho;
          ++layer_count;
        }
      }
      const double layer_rho = layer_count > 0 ? layer_sum / static_cast<double>(layer_count)
                                               : std::numeric_limits<double>::quiet_NaN();
      for (std::size_t b = 0; b < n_budgets; ++b)
        result.variants[p * n_budgets + b].spearman_by_layer[l] = layer_rho;
    }
    progress.advance();
  });
  for (std::size_t p = 0; p < policies.size(); ++p) {
    const double rho = mean_of_finite(spearman_by_head[p]);
    for (std::size_t b = 0; b < n_budgets; ++b) {
      VariantResult& v = result.variants[p * n_budgets + b];
      v.spearman = rho;
      v.recall = mean_of_finite(v.recall_by_layer);
      v.output_error = mean_of_finite(v.output_error_by_layer);
    }
  }
  result.attention_seconds = seconds_since(start);

  // 3. Every policy x budget: compress a copy, teacher-force M tokens in one batched forward.
  std::vector<Task> tasks;
  for (std::size_t p = 0; p < policies.size(); ++p) {
    for (std::size_t b = 0; b < n_budgets; ++b) tasks.push_back({p, b});
  }
  progress.stage(label + "compressed continuations", static_cast<std::int64_t>(tasks.size()));
  start = std::chrono::steady_clock::now();
  parallel_for(static_cast<std::int64_t>(tasks.size()), config.threads, [&](std::int64_t i) {
    const Task& task = tasks[static_cast<std::size_t>(i)];
    KvCache cache = pc.compressed(task.policy, task.budget);
    const RowMatrixXf logits = model.forward(continuation, cache, Logits::kAll);
    result.variants[task.policy * n_budgets + task.budget].continuation =
        compare_continuations(full_logits, logits, targets);
    progress.advance();
  });
  result.variants_seconds = seconds_since(start);

  // 7. Decode-time mode: one token per forward call at a fixed budget, evicting as it goes.
  if (!config.decode) return result;
  std::vector<Task> decode_tasks;
  for (std::size_t p = 0; p < policies.size(); ++p) {
    if (!has_decode_mode(policies[p].name)) continue;
    for (std::size_t b = 0; b < n_budgets; ++b) decode_tasks.push_back({p, b});
  }
  if (decode_tasks.empty()) return result;
  result.decode.resize(decode_tasks.size());
  progress.stage(label + "decode-time eviction (" + std::to_string(M) + " steps each)",
                 static_cast<std::int64_t>(decode_tasks.size()) * M);
  start = std::chrono::steady_clock::now();
  parallel_for(static_cast<std::int64_t>(decode_tasks.size()), config.threads, [&](std::int64_t i) {
    const Task& task = decode_tasks[static_cast<std::size_t>(i)];
    const PolicyEntry& entry = policies[task.policy];
    const std::int64_t budget = pc.kept_tokens[task.budget];
    KvCache cache = pc.compressed(task.policy, task.budget);
    std::unique_ptr<ForwardObserver> eviction;
    if (entry.name == "H2O") {
      eviction = std::make_unique<H2ODecodeEviction>(pc.h2o_decode_states.at(task.budget));
    } else {
      const auto sinks = std::get<capkv::StreamingLLM>(entry.policy).config.sinks;
      eviction = std::make_unique<StreamingDecodeEviction>(mc.n_layers, budget, sinks);
    }
    RowMatrixXf logits(M, mc.vocab);
    for (std::int64_t t = 0; t < M; ++t) {
      logits.row(t) = model.forward(continuation.subspan(static_cast<std::size_t>(t), 1), cache,
                                    Logits::kAll, eviction.get());
      progress.advance();
    }
    DecodeResult& d = result.decode[static_cast<std::size_t>(i)];
    d.policy = entry.name;
    d.budget = config.budgets[task.budget];
    d.kept_tokens = budget;
    d.continuation = compare_continuations(full_logits, logits, targets);
  });
  result.decode_seconds = seconds_since(start);
  return result;
}

}  // namespace capkv::llm::eval
