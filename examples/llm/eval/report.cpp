#include "eval/report.hpp"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace capkv::llm::eval {
namespace {

using nlohmann::json;

template <class T, class Get>
Summary summary_over(const std::vector<const T*>& items, Get get) {
  std::vector<double> values;
  for (const T* item : items) values.push_back(get(*item));
  return summarize(values);
}

// The continuation measures shared by the one-shot and decode-time rows.
template <class T>
void summarize_continuation(const std::vector<const T*>& items, SummaryRow& row) {
  row.kl_mean = summary_over(items, [](const T& r) { return r.continuation.kl_mean; });
  row.kl_median = summary_over(items, [](const T& r) { return r.continuation.kl_median; });
  row.kl_p99 = summary_over(items, [](const T& r) { return r.continuation.kl_p99; });
  row.top1 = summary_over(items, [](const T& r) { return r.continuation.top1; });
  row.ppl_ratio = summary_over(items, [](const T& r) { return r.continuation.ppl_ratio; });
}

// "0.0123" or "0.0123 ± 0.0040" when several documents vary.
std::string cell(const Summary& s, int digits, std::int64_t documents, double scale = 1.0,
                 const char* suffix = "") {
  if (s.count == 0) return "n/a";
  if (documents > 1) {
    return fmt::format("{:.{}f}{} ± {:.{}f}", s.mean * scale, digits, suffix, s.std * scale,
                       digits);
  }
  return fmt::format("{:.{}f}{}", s.mean * scale, digits, suffix);
}

// KL spans orders of magnitude across budgets: significant digits, not fixed decimals.
std::string kl_cell(const Summary& s, std::int64_t documents) {
  if (s.count == 0) return "n/a";
  if (documents > 1) return fmt::format("{:.3g} ± {:.2g}", s.mean, s.std);
  return fmt::format("{:.3g}", s.mean);
}

std::string budget_cell(double budget, std::int64_t kept) {
  return fmt::format("{:g}% ({})", budget * 100.0, kept);
}

json summary_json(const Summary& s) {
  return {{"mean", s.mean}, {"std", s.std}, {"min", s.min}, {"max", s.max}, {"count", s.count}};
}

json memory_json(const MemoryTrace& trace) {
  json out = json::array();
  for (const auto& [stage, usage] : trace) {
    out.push_back(
        {{"after", stage}, {"rss_mib", usage.rss_mib}, {"peak_rss_mib", usage.peak_rss_mib}});
  }
  return out;
}

json comparison_json(const ContinuationComparison& c) {
  return {{"kl_mean", c.kl_mean},     {"kl_median", c.kl_median},
          {"kl_p99", c.kl_p99},       {"top1", c.top1},
          {"nll_full", c.nll_full},   {"nll_compressed", c.nll_compressed},
          {"ppl_ratio", c.ppl_ratio}, {"kl_per_position", c.kl}};
}

}  // namespace

std::vector<std::string> protocol_choices() {
  return {
      "Texts are tokenized as plain text (Tokenizer::encode, no chat template); each --docs window "
      "holds context + continuation + 1 tokens, windows spread evenly over each text.",
      "Budgets are fractions of the prompt kept per (layer, KV head): floor(f * L) tokens "
      "(Budget::keep_fraction); protected tokens count inside the budget.",
      "Each policy is scored once per layer (capkv::select with return_scores at the first "
      "budget); the other budgets select from the same scores through capkv::select_from_scores "
      "with the policy's own protection, the back half of capkv::select (scores do not depend on "
      "the budget for any evaluated policy).",
      "Captured prompt queries are stored as fp16 (bf16 for a layer whose queries exceed fp16's "
      "range) and passed as capkv TensorViews; keys and values are the cache's own fp32 views.",
      "Random keeps 4 sinks protected (like StreamingLLM and CapKV) so it isolates the scoring; "
      "seeded per layer by --seed.",
      "StreamingLLM keeps the original positions of kept keys (no re-rotation): the model's "
      "context (8192) covers every position used.",
      "Compressed continuations keep every appended token (one-shot compression after the "
      "prefill); positions continue at L.",
      "KL(full || compressed), NLL and top-1 use the M positions of the teacher-forced "
      "continuation: logits at positions L..L+M-1 predicting tokens L+1..L+M; percentiles "
      "interpolate linearly (numpy's default).",
      "Attention recall and output error use the full-cache run's post-RoPE continuation queries "
      "against the prompt part of the cache only (softmax restricted to the L prompt tokens; "
      "o_kept renormalised over the kept ones); averaged over queries and query heads, then over "
      "layers.",
      "Spearman: per (layer, KV head), the policy's KV-head scores vs the attention mass each "
      "prompt token receives from the M continuation queries (prompt-restricted softmax, summed "
      "over the group's query heads); tokens the policy protects at every budget (CapKV/Random "
      "sinks, SnapKV's 64-token window) are left out; ties get average ranks; heads where a side "
      "is constant are undefined and skipped; mean over layers and heads. Budget-independent.",
      "Passkey: plain-text prompt (preamble, filler, key sentence at depth (i + 0.5) / N, filler, "
      "question) of about the context length; the whole prompt, question included, is compressed "
      "after prefill; the first answer token comes from the prefill's (full-cache) logits, the "
      "rest are greedy-decoded with the compressed cache; correct when the 5 digits appear in the "
      "answer; accuracy is over the prompts the full cache answers.",
      "Decode-time mode (H2O, StreamingLLM): the prompt cache is compressed to B = floor(f * L) "
      "per "
      "head, then the M continuation tokens are teacher-forced one forward call each; each step "
      "attends over the B cached tokens plus itself, then one token is evicted (H2O: "
      "cpu::H2OState::observe with the step's attention rows; StreamingLLM: the oldest non-sink), "
      "so the cache never exceeds B + 1. Compared with the batched full-cache continuation.",
  };
}

std::vector<SummaryRow> summarize_results(const std::vector<ContextResults>& results,
                                          const RunConfig& config) {
  std::vector<SummaryRow> rows;
  for (const ContextResults& ctx : results) {
    if (ctx.documents.empty()) continue;
    const DocumentResult& first = ctx.documents.front();
    // One-shot rows, in the documents' own (policy-major, budget-minor) order.
    for (std::size_t v = 0; v < first.variants.size(); ++v) {
      SummaryRow row;
      row.context = ctx.context;
      row.mode = "one-shot";
      row.policy = first.variants[v].policy;
      row.budget = first.variants[v].budget;
      row.kept_tokens = first.variants[v].kept_tokens;
      row.documents = static_cast<std::int64_t>(ctx.documents.size());
      std::vector<const VariantResult*> items;
      for (const auto& d : ctx.documents) items.push_back(&d.variants[v]);
      summarize_continuation(items, row);
      row.recall = summary_over(items, [](const VariantResult& r) { return r.recall; });
      row.output_error = summary_over(items, [](const VariantResult& r) { return r.output_error; });
      row.spearman = summary_over(items, [](const VariantResult& r) { return r.spearman; });
      // Passkey: the policy's and budget's index in the configured lists.
      std::size_t pi = 0, bi = 0;
      for (; pi < config.policies.size() && config.policies[pi].name != row.policy; ++pi) {
      }
      for (; bi < config.budgets.size() && config.budgets[bi] != row.budget; ++bi) {
      }
      for (const PasskeyResult& pk : ctx.passkey) {
        if (!pk.full.correct || pi >= pk.compressed.size() || bi >= pk.compressed[pi].size())
          continue;
        ++row.passkey_eligible;
        if (pk.compressed[pi][bi].correct) ++row.passkey_correct;
      }
      rows.push_back(std::move(row));
    }
    for (std::size_t v = 0; v < first.decode.size(); ++v) {
      SummaryRow row;
      row.context = ctx.context;
      row.mode = "decode";
      row.policy = first.decode[v].policy;
      row.budget = first.decode[v].budget;
      row.kept_tokens = first.decode[v].kept_tokens;
      row.documents = static_cast<std::int64_t>(ctx.documents.size());
      std::vector<const DecodeResult*> items;
      for (const auto& d : ctx.documents) items.push_back(&d.decode[v]);
      summarize_continuation(items, row);
      const double nan = std::nan("");
      row.recall = row.output_error = row.spearman = Summary{nan, nan, nan, nan, 0};
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

std::string markdown_report(const std::vector<SummaryRow>& rows,
                            const std::vector<ContextResults>& results, const RunConfig& config) {
  std::string out;
  for (const ContextResults& ctx : results) {
    if (ctx.documents.empty()) continue;
    const auto docs = static_cast<std::int64_t>(ctx.documents.size());
    std::vector<double> ppl;
    for (const auto& d : ctx.documents) ppl.push_back(std::exp(d.full_nll));
    const Summary full_ppl = summarize(ppl);
    std::int64_t passkey_full = 0;
    for (const auto& pk : ctx.passkey) passkey_full += pk.full.correct ? 1 : 0;

    out += fmt::format("## Context {} tokens: {} document window(s), continuation M = {}\n\n",
                       ctx.context, docs, config.continuation);
    out += fmt::format("Full cache: perplexity {} on the continuation", cell(full_ppl, 2, docs));
    if (!ctx.passkey.empty()) {
      out += fmt::format("; passkey {}/{} answered (the passkey column counts only those)",
                         passkey_full, ctx.passkey.size());
    }
    out += ".";
    if (docs > 1) out += " Cells: mean ± std over the windows.";
    out += "\n\n";
    out +=
        "| Policy | Kept | KL mean | KL p99 | Top-1 | PPL ratio | Recall | Out. err | Spearman | "
        "Passkey |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const SummaryRow& r : rows) {
      if (r.context != ctx.context || r.mode != "one-shot") continue;
      const std::string passkey = ctx.passkey.empty() ? "-"
                                  : r.passkey_eligible == 0
                                      ? "n/a"
                                      : fmt::format("{}/{}", r.passkey_correct, r.passkey_eligible);
      out += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.policy,
                         budget_cell(r.budget, r.kept_tokens), kl_cell(r.kl_mean, docs),
                         kl_cell(r.kl_p99, docs), cell(r.top1, 1, docs, 100.0, "%"),
                         cell(r.ppl_ratio, 3, docs), cell(r.recall, 3, docs),
                         cell(r.output_error, 3, docs), cell(r.spearman, 3, docs), passkey);
    }
    bool any_decode = false;
    for (const SummaryRow& r : rows)
      any_decode = any_decode || (r.context == ctx.context && r.mode == "decode");
    if (any_decode) {
      out += fmt::format(
          "\nDecode-time eviction: the prompt compressed to the budget, then {} tokens "
          "teacher-forced "
          "one step at a time with the cache held at the budget (one-shot KL for reference).\n\n",
          config.continuation);
      out += "| Policy | Kept | KL mean | KL p99 | Top-1 | PPL ratio | One-shot KL mean |\n";
      out += "|---|---:|---:|---:|---:|---:|---:|\n";
      for (const SummaryRow& r : rows) {
        if (r.context != ctx.context || r.mode != "decode") continue;
        std::string one_shot = "-";
        for (const SummaryRow& o : rows) {
          if (o.context == r.context && o.mode == "one-shot" && o.policy == r.policy &&
              o.budget == r.budget) {
            one_shot = kl_cell(o.kl_mean, docs);
          }
        }
        out += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", r.policy,
                           budget_cell(r.budget, r.kept_tokens), kl_cell(r.kl_mean, docs),
                           kl_cell(r.kl_p99, docs), cell(r.top1, 1, docs, 100.0, "%"),
                           cell(r.ppl_ratio, 3, docs), one_shot);
      }
    }
    out += "\n";
  }
  return out;
}

void write_csv(const std::filesystem::path& path, const std::vector<SummaryRow>& rows) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path.string());
  f << "context,mode,policy,budget,kept_tokens,documents";
  for (const char* m : {"kl_mean", "kl_median", "kl_p99", "top1", "ppl_ratio", "recall",
                        "output_error", "spearman"}) {
    f << ',' << m << ',' << m << "_std," << m << "_min," << m << "_max";
  }
  f << ",passkey_correct,passkey_eligible\n";
  auto number = [](double v) {
    return std::isfinite(v) ? fmt::format("{:.9g}", v) : std::string();
  };
  for (const SummaryRow& r : rows) {
    f << r.context << ',' << r.mode << ',' << r.policy << ',' << number(r.budget) << ','
      << r.kept_tokens << ',' << r.documents;
    for (const Summary* s : {&r.kl_mean, &r.kl_median, &r.kl_p99, &r.top1, &r.ppl_ratio, &r.recall,
                             &r.output_error, &r.spearman}) {
      f << ',' << number(s->mean) << ',' << number(s->std) << ',' << number(s->min) << ','
        << number(s->max);
    }
    f << ',' << r.passkey_correct << ',' << r.passkey_eligible << '\n';
  }
}

void write_json(const std::filesystem::path& path, const RunConfig& config,
                const std::vector<ContextResults>& results, const std::vector<SummaryRow>& rows,
                double total_seconds) {
  json policies = json::array();
  for (const auto& p : config.policies)
    policies.push_back({{"name", p.name}, {"preset", p.description}});
  json doc;
  doc["tool"] = "capkv-eval";
  doc["date"] = config.date;
  doc["config"] = {{"model", config.model_path},
                   {"model_sha256", config.model_sha256},
                   {"texts", config.texts},
                   {"contexts", config.contexts},
                   {"budgets_kept_fraction", config.budgets},
                   {"policies", policies},
                   {"docs_per_text", config.docs},
                   {"continuation", config.continuation},
                   {"passkey_prompts", config.passkey},
                   {"passkey_answer_tokens", config.passkey_answer_tokens},
                   {"decode_time_mode", config.decode},
                   {"seed", config.seed},
                   {"threads", config.threads}};
  doc["protocol_choices"] = protocol_choices();
  doc["timing"] = {{"total_seconds", total_seconds}};
  doc["peak_rss_mib"] = memory_usage().peak_rss_mib;
  json contexts = json::array();
  for (const ContextResults& ctx : results) {
    json c;
    c["context"] = ctx.context;
    c["seconds"] = ctx.seconds;
    json documents = json::array();
    for (const DocumentResult& d : ctx.documents) {
      json jd = {{"source", d.source},
                 {"token_offset", d.token_offset},
                 {"full_nll", d.full_nll},
                 {"full_perplexity", std::exp(d.full_nll)},
                 {"capture_bytes", d.capture_bytes},
                 {"seconds",
                  {{"prefill", d.prefill_seconds},
                   {"select", d.select_seconds},
                   {"full_continuation", d.continuation_seconds},
                   {"attention_measures", d.attention_seconds},
                   {"compressed_continuations", d.variants_seconds},
                   {"decode_time", d.decode_seconds}}}};
      json scoring = json::object();
      for (std::size_t p = 0; p < d.scoring_seconds.size() && p < config.policies.size(); ++p) {
        scoring[config.policies[p].name] = d.scoring_seconds[p];
      }
      jd["scoring_thread_seconds"] = scoring;
      jd["memory"] = memory_json(d.memory);
      json variants = json::array();
      for (const VariantResult& v : d.variants) {
        variants.push_back({{"policy", v.policy},
                            {"budget", v.budget},
                            {"kept_tokens", v.kept_tokens},
                            {"continuation", comparison_json(v.continuation)},
                            {"recall", v.recall},
                            {"output_error", v.output_error},
                            {"spearman", v.spearman},
                            {"recall_by_layer", v.recall_by_layer},
                            {"output_error_by_layer", v.output_error_by_layer},
                            {"spearman_by_layer", v.spearman_by_layer}});
      }
      jd["one_shot"] = variants;
      json decode = json::array();
      for (const DecodeResult& r : d.decode) {
        decode.push_back({{"policy", r.policy},
                          {"budget", r.budget},
                          {"kept_tokens", r.kept_tokens},
                          {"continuation", comparison_json(r.continuation)}});
      }
      jd["decode_time"] = decode;
      documents.push_back(std::move(jd));
    }
    c["documents"] = documents;
    json passkey = json::array();
    for (const PasskeyResult& pk : ctx.passkey) {
      json answers = json::array();
      for (std::size_t p = 0; p < pk.compressed.size(); ++p) {
        for (std::size_t b = 0; b < pk.compressed[p].size(); ++b) {
          answers.push_back({{"policy", config.policies[p].name},
                             {"budget", config.budgets[b]},
                             {"answer", pk.compressed[p][b].text},
                             {"correct", pk.compressed[p][b].correct}});
        }
      }
      passkey.push_back({{"key", pk.key},
                         {"depth", pk.depth},
                         {"prompt_tokens", pk.prompt_tokens},
                         {"full_answer", pk.full.text},
                         {"full_correct", pk.full.correct},
                         {"memory", memory_json(pk.memory)},
                         {"compressed", answers}});
    }
    c["passkey"] = passkey;
    contexts.push_back(std::move(c));
  }
  doc["results"] = contexts;
  json summary = json::array();
  for (const SummaryRow& r : rows) {
    summary.push_back({{"context", r.context},
                       {"mode", r.mode},
                       {"policy", r.policy},
                       {"budget", r.budget},
                       {"kept_tokens", r.kept_tokens},
                       {"documents", r.documents},
                       {"kl_mean", summary_json(r.kl_mean)},
                       {"kl_median", summary_json(r.kl_median)},
                       {"kl_p99", summary_json(r.kl_p99)},
                       {"top1", summary_json(r.top1)},
                       {"ppl_ratio", summary_json(r.ppl_ratio)},
                       {"recall", summary_json(r.recall)},
                       {"output_error", summary_json(r.output_error)},
                       {"spearman", summary_json(r.spearman)},
                       {"passkey_correct", r.passkey_correct},
                       {"passkey_eligible", r.passkey_eligible}});
  }
  doc["summary"] = summary;
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path.string());
  // Answers are model output and may hold invalid UTF-8 (a token cut inside a character).
  f << doc.dump(1, ' ', false, json::error_handler_t::replace) << '\n';
}

}  // namespace capkv::llm::eval
