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

// Records the memory a stage left behind (its peak is in VmHWM), then hands its freed blocks
// back so the next stage starts from what is really live.
void checkpoint(DocumentResult& result, const std::string& stage) {
  result.memory.emplace_back(stage, memory_usage());
  release_free_memory();
}

struct Task {
  std::size_t policy;
  std::size_t budget;
};

// What one document's steps share: the window split into its parts, the compressed prompt and the
// full-cache reference.
struct DocumentContext {
  const LlamaModel& model;
  const ProtocolConfig& config;
  ProgressBar& progress;
  const std::string& label;
  std::span<const TokenId> continuation;  // tokens L .. L+M-1, teacher-forced
  std::span<const TokenId> targets;       // tokens L+1 .. L+M, what each position should predict
  const PromptCompression& compression;
  RowMatrixXf full_logits;           // [M, vocab] of the full cache
  ContinuationCapture full_queries;  // the full run's post-RoPE continuation queries

  std::size_t n_budgets() const { return config.budgets.size(); }
  VariantResult& variant(DocumentResult& r, std::size_t policy, std::size_t budget) const {
    return r.variants[policy * n_budgets() + budget];
  }
};

// Step 3's reference: the full cache teacher-forced over the continuation in one batched call,
// capturing its queries for steps 4-5. Returns the mean NLL of the real next tokens.
double run_full_continuation(DocumentContext& doc) {
  const LlamaConfig& mc = doc.model.config();
  KvCache full = doc.compression.cache;
  set_compute_threads(doc.config.threads);
  doc.full_logits = doc.model.forward(doc.continuation, full, Logits::kAll, &doc.full_queries);
  double nll = 0.0;
  for (std::size_t t = 0; t < doc.targets.size(); ++t) {
    const auto row = doc.full_logits.row(static_cast<Eigen::Index>(t));
    nll += negative_log_likelihood(
        std::span<const float>(row.data(), static_cast<std::size_t>(mc.vocab)), doc.targets[t]);
  }
  return nll / static_cast<double>(doc.targets.size());
}

// Steps 4-5, one layer: recall and output error of every selection, and the Spearman of every
// policy's scores per KV head (spearman_by_head[policy][layer * Hkv + head]).
void measure_layer(const DocumentContext& doc, std::int64_t layer, DocumentResult& result,
                   std::vector<std::vector<double>>& spearman_by_head) {
  const LlamaConfig& mc = doc.model.config();
  const PromptCompression& pc = doc.compression;
  const auto& policies = doc.config.policies;
  const std::int64_t n = doc.config.context;
  const auto l = static_cast<std::size_t>(layer);
  const LayerCache& lc = pc.cache.layers[l];
  std::vector<ConstRowMap> keys, values;
  for (std::int64_t h = 0; h < mc.n_kv_heads; ++h) {
    keys.push_back(lc.keys(h));
    values.push_back(lc.values(h));
  }
  const PromptAttention attention(doc.full_queries.queries(layer), keys, values);
  std::vector<Eigen::VectorXd> mass;
  for (std::int64_t h = 0; h < mc.n_kv_heads; ++h) mass.push_back(attention.received_mass(h));

  for (std::size_t p = 0; p < policies.size(); ++p) {
    for (std::size_t b = 0; b < doc.n_budgets(); ++b) {
      const auto fidelity = attention.fidelity(pc.selections[p][b][l]);
      VariantResult& v = doc.variant(result, p, b);
      v.recall_by_layer[l] = fidelity.recall;
      v.output_error_by_layer[l] = fidelity.output_error;
    }
    const capkv::Protection fixed = budget_independent_protection(policies[p].policy, n);
    std::vector<double> layer_rho;
    for (std::int64_t h = 0; h < mc.n_kv_heads; ++h) {
      std::vector<double> scores, received;
      for (std::int64_t i = 0; i < n; ++i) {
        if (fixed.contains(i, n)) continue;
        scores.push_back(pc.scores[p][l](h, i));
        received.push_back(mass[static_cast<std::size_t>(h)][i]);
      }
      const double rho = spearman(scores, received);
      spearman_by_head[p][l * static_cast<std::size_t>(mc.n_kv_heads) +
                          static_cast<std::size_t>(h)] = rho;
      layer_rho.push_back(rho);
    }
    for (std::size_t b = 0; b < doc.n_budgets(); ++b) {
      doc.variant(result, p, b).spearman_by_layer[l] = mean_of_finite(layer_rho);
    }
  }
}

// Steps 4-5 over every layer (in parallel), then the per-variant means.
void measure_attention(const DocumentContext& doc, DocumentResult& result) {
  const LlamaConfig& mc = doc.model.config();
  const auto& policies = doc.config.policies;
  std::vector<std::vector<double>> spearman_by_head(
      policies.size(), std::vector<double>(static_cast<std::size_t>(mc.n_layers * mc.n_kv_heads)));
  doc.progress.stage(doc.label + "attention recall/error (layers)", mc.n_layers);
  parallel_for(mc.n_layers, doc.config.threads, [&](std::int64_t layer) {
    measure_layer(doc, layer, result, spearman_by_head);
    doc.progress.advance();
  });
  for (std::size_t p = 0; p < policies.size(); ++p) {
    const double rho = mean_of_finite(spearman_by_head[p]);
    for (std::size_t b = 0; b < doc.n_budgets(); ++b) {
      VariantResult& v = doc.variant(result, p, b);
      v.spearman = rho;
      v.recall = mean_of_finite(v.recall_by_layer);
      v.output_error = mean_of_finite(v.output_error_by_layer);
    }
  }
}

// Step 3: every policy x budget compresses a copy of the prompt cache and teacher-forces the M
// tokens in one batched forward; tasks in parallel.
void run_compressed_continuations(const DocumentContext& doc, DocumentResult& result) {
  std::vector<Task> tasks;
  for (std::size_t p = 0; p < doc.config.policies.size(); ++p) {
    for (std::size_t b = 0; b < doc.n_budgets(); ++b) tasks.push_back({p, b});
  }
  doc.progress.stage(doc.label + "compressed continuations",
                     static_cast<std::int64_t>(tasks.size()));
  parallel_for(static_cast<std::int64_t>(tasks.size()), doc.config.threads, [&](std::int64_t i) {
    const Task& task = tasks[static_cast<std::size_t>(i)];
    KvCache cache = doc.compression.compressed(task.policy, task.budget);
    const RowMatrixXf logits = doc.model.forward(doc.continuation, cache, Logits::kAll);
    doc.variant(result, task.policy, task.budget).continuation =
        compare_continuations(doc.full_logits, logits, doc.targets);
    doc.progress.advance();
  });
}

// Step 7: the decode-time mode of H2O and StreamingLLM, one forward call per token at a fixed
// budget, evicting as it goes; tasks in parallel.
void run_decode_time(const DocumentContext& doc, DocumentResult& result) {
  const LlamaConfig& mc = doc.model.config();
  const auto& policies = doc.config.policies;
  const auto M = static_cast<std::int64_t>(doc.continuation.size());
  std::vector<Task> tasks;
  for (std::size_t p = 0; p < policies.size(); ++p) {
    if (!has_decode_mode(policies[p].name)) continue;
    for (std::size_t b = 0; b < doc.n_budgets(); ++b) tasks.push_back({p, b});
  }
  if (tasks.empty()) return;
  result.decode.resize(tasks.size());
  doc.progress.stage(doc.label + "decode-time eviction (" + std::to_string(M) + " steps each)",
                     static_cast<std::int64_t>(tasks.size()) * M);
  parallel_for(static_cast<std::int64_t>(tasks.size()), doc.config.threads, [&](std::int64_t i) {
    const Task& task = tasks[static_cast<std::size_t>(i)];
    const PolicyEntry& entry = policies[task.policy];
    const std::int64_t budget = doc.compression.kept_tokens[task.budget];
    KvCache cache = doc.compression.compressed(task.policy, task.budget);
    std::unique_ptr<ForwardObserver> eviction;
    if (entry.name == "H2O") {
      eviction =
          std::make_unique<H2ODecodeEviction>(doc.compression.h2o_decode_states.at(task.budget));
    } else {
      const auto sinks = std::get<capkv::StreamingLLM>(entry.policy).config.sinks;
      eviction = std::make_unique<StreamingDecodeEviction>(mc.n_layers, budget, sinks);
    }
    RowMatrixXf logits(M, mc.vocab);
    for (std::int64_t t = 0; t < M; ++t) {
      logits.row(t) = doc.model.forward(doc.continuation.subspan(static_cast<std::size_t>(t), 1),
                                        cache, Logits::kAll, eviction.get());
      doc.progress.advance();
    }
    DecodeResult& d = result.decode[static_cast<std::size_t>(i)];
    d.policy = entry.name;
    d.budget = doc.config.budgets[task.budget];
    d.kept_tokens = budget;
    d.continuation = compare_continuations(doc.full_logits, logits, doc.targets);
  });
}

}  // namespace

DocumentResult run_document(const LlamaModel& model, const DocumentWindow& window,
                            const ProtocolConfig& config, ProgressBar& progress,
                            const std::string& label) {
  const LlamaConfig& mc = model.config();
  const auto L = static_cast<std::size_t>(config.context);
  const auto M = static_cast<std::size_t>(config.continuation);
  if (static_cast<std::int64_t>(window.tokens.size()) != window_tokens(config)) {
    throw std::invalid_argument(
        "run_document: the window must hold context + continuation + 1 tokens");
  }
  const std::span<const TokenId> all(window.tokens);

  DocumentResult result;
  result.source = window.source;
  result.token_offset = window.token_offset;
  result.context = config.context;
  result.continuation = config.continuation;

  // Steps 1-2: prefill once, select for every policy and budget.
  CompressionRequest request;
  request.prompt = all.first(L);
  request.policies = &config.policies;
  request.budgets = config.budgets;
  request.extra_capacity = config.continuation;
  request.h2o_decode_states = config.decode;
  request.threads = config.threads;
  request.label = label;
  const PromptCompression compression = prefill_and_select(model, request, progress);
  result.prefill_seconds = compression.prefill_seconds;
  result.select_seconds = compression.select_seconds;
  result.capture_bytes = compression.capture_bytes;
  result.scoring_seconds = compression.scoring_seconds;
  result.memory = compression.memory;

  result.variants.resize(config.policies.size() * config.budgets.size());
  for (std::size_t p = 0; p < config.policies.size(); ++p) {
    for (std::size_t b = 0; b < config.budgets.size(); ++b) {
      VariantResult& v = result.variants[p * config.budgets.size() + b];
      v.policy = config.policies[p].name;
      v.budget = config.budgets[b];
      v.kept_tokens = compression.kept_tokens[b];
      v.recall_by_layer.assign(static_cast<std::size_t>(mc.n_layers), 0.0);
      v.output_error_by_layer.assign(static_cast<std::size_t>(mc.n_layers), 0.0);
      v.spearman_by_layer.assign(static_cast<std::size_t>(mc.n_layers), 0.0);
    }
  }

  DocumentContext doc{model,
                      config,
                      progress,
                      label,
                      all.subspan(L, M),
                      all.subspan(L + 1, M),
                      compression,
                      {},
                      ContinuationCapture(mc.n_layers)};
  progress.stage(label + "full-cache continuation", 1);
  auto start = std::chrono::steady_clock::now();
  result.full_nll = run_full_continuation(doc);
  result.continuation_seconds = seconds_since(start);
  progress.advance();
  checkpoint(result, "full continuation");

  start = std::chrono::steady_clock::now();
  measure_attention(doc, result);
  result.attention_seconds = seconds_since(start);
  checkpoint(result, "attention measures");

  start = std::chrono::steady_clock::now();
  run_compressed_continuations(doc, result);
  result.variants_seconds = seconds_since(start);
  checkpoint(result, "compressed continuations");

  if (config.decode) {
    start = std::chrono::steady_clock::now();
    run_decode_time(doc, result);
    result.decode_seconds = seconds_since(start);
    checkpoint(result, "decode-time");
  }
  return result;
}

}  // namespace capkv::llm::eval
