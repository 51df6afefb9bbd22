// capkv-eval: the fidelity protocol of EVAL.md on SmolLM2-135M-Instruct. For each context length
// and document window it prefills once, compresses the cache with every policy at every budget,
// and measures what each compression does to the model's own predictions; then passkey retrieval
// and the decode-time mode. Progress on stderr, the tables on stdout, CSV/JSON/PNG in --out.

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <capkv/core/error.hpp>
#include <chrono>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "eval/external_command.hpp"
#include "eval/passkey.hpp"
#include "eval/plots.hpp"
#include "eval/policy_set.hpp"
#include "eval/progress_bar.hpp"
#include "eval/protocol.hpp"
#include "eval/report.hpp"
#include "gguf/gguf_file.hpp"
#include "model/llama_model.hpp"

namespace {

using namespace capkv::llm;
using namespace capkv::llm::eval;

constexpr std::int64_t kPasskeyAnswerTokens = 8;

struct Options {
  std::string model = default_model_path().string();
  std::vector<std::string> texts{"/usr/share/common-licenses/GPL-3"};
  std::vector<std::int64_t> contexts{2048};
  std::string budgets = "10,25,50,75";
  std::string policies = "all";
  std::int64_t docs = 1;
  std::int64_t continuation = 128;
  std::int64_t passkey = 4;
  bool no_decode = false;
  std::string out = "out/eval";
  std::uint64_t seed = 0;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
};

// "10,25,50,75" (percent) or "0.1,0.25" (fractions): values above 1 are read as percent.
std::vector<double> parse_budgets(const std::string& list) {
  std::vector<double> budgets;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.find_first_not_of(" \t") == std::string::npos) continue;
    std::size_t used = 0;
    double v = 0.0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      throw CLI::ValidationError("--budgets", "'" + item + "' is not a number");
    }
    if (v > 1.0) v /= 100.0;
    if (!(v > 0.0 && v <= 1.0)) {
      throw CLI::ValidationError("--budgets", "'" + item + "' is not a kept share in (0, 100%]");
    }
    budgets.push_back(v);
  }
  if (budgets.empty()) throw CLI::ValidationError("--budgets", "no budget given");
  return budgets;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read text file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Every budget must leave room for what each policy protects (SnapKV's 64-token window at a small
// context, say); checked before any forward pass so a hopeless configuration costs nothing.
void check_budgets(const std::vector<PolicyEntry>& policies, const std::vector<double>& budgets,
                   std::int64_t n, bool decode) {
  for (const PolicyEntry& entry : policies) {
    for (double f : budgets) {
      const std::int64_t kept = capkv::Budget::keep_fraction(f).resolve(n);
      const std::int64_t protected_count =
          std::visit([&](const auto& p) { return p.protection(n, kept).count(n); }, entry.policy);
      if (kept < n && kept < protected_count) {
        throw std::invalid_argument(fmt::format(
            "{} protects {} tokens but a {:g}% budget of {} keeps only {}; raise --context or the "
            "budget, or drop the policy",
            entry.name, protected_count, f * 100.0, n, kept));
      }
      if (decode && has_decode_mode(entry.name) && kept < 8) {
        throw std::invalid_argument("the decode-time mode needs a budget of at least 8 tokens");
      }
    }
  }
}

int run(const Options& options, ProgressBar& progress) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<double> budgets = parse_budgets(options.budgets);

  RunConfig config;
  config.model_path = options.model;
  config.texts = options.texts;
  config.contexts = options.contexts;
  config.budgets = budgets;
  config.policies = make_policies(options.policies, options.seed);
  config.docs = options.docs;
  config.continuation = options.continuation;
  config.passkey = options.passkey;
  config.passkey_answer_tokens = kPasskeyAnswerTokens;
  config.decode = !options.no_decode;
  config.seed = options.seed;
  config.threads = options.threads;
  config.date = utc_now();
  for (std::int64_t context : options.contexts)
    check_budgets(config.policies, budgets, context, config.decode);

  if (!std::filesystem::exists(options.model)) {
    throw std::runtime_error("model not found: " + options.model +
                             " (run scripts/fetch_model.sh, or pass --model)");
  }
  progress.note("capkv-eval: loading " + options.model);
  std::optional<LlamaModel> model;
  std::optional<Tokenizer> tokenizer;
  {
    // The mapped file is only needed while the weights are dequantized; closing it returns its
    // pages.
    const GgufFile file = GgufFile::open(options.model);
    model.emplace(LlamaModel::load(file));
    tokenizer.emplace(tokenizer_from_gguf(file));
  }
  config.model_sha256 = sha256_of_file(options.model).value_or("unknown");

  std::vector<std::pair<std::string, std::vector<TokenId>>> texts;
  for (const std::string& path : options.texts)
    texts.emplace_back(path, tokenizer->encode(read_file(path)));

  std::vector<ContextResults> results;
  for (std::int64_t context : options.contexts) {
    const auto context_start = std::chrono::steady_clock::now();
    ContextResults ctx;
    ctx.context = context;
    ProtocolConfig protocol;
    protocol.context = context;
    protocol.continuation = options.continuation;
    protocol.budgets = budgets;
    protocol.policies = config.policies;
    protocol.decode = config.decode;
    protocol.threads = options.threads;
    std::vector<DocumentWindow> windows;
    for (const auto& [path, tokens] : texts) {
      for (auto& w : make_windows(path, tokens, window_tokens(protocol), options.docs)) {
        windows.push_back(std::move(w));
      }
    }
    for (std::size_t i = 0; i < windows.size(); ++i) {
      const std::string label = "L=" + std::to_string(context) + " doc " + std::to_string(i + 1) +
                                "/" + std::to_string(windows.size()) + ": ";
      ctx.documents.push_back(run_document(*model, windows[i], protocol, progress, label));
    }
    const auto prompts = make_passkey_prompts(*tokenizer, options.passkey, context, options.seed);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      const std::string label = "L=" + std::to_string(context) + " passkey " +
                                std::to_string(i + 1) + "/" + std::to_string(prompts.size()) + ": ";
      ctx.passkey.push_back(run_passkey(*model, *tokenizer, prompts[i], config.policies, budgets,
                                        kPasskeyAnswerTokens, options.threads, progress, label));
    }
    ctx.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - context_start).count();
    results.push_back(std::move(ctx));
  }
  progress.finish_stage();

  const std::vector<SummaryRow> rows = summarize_results(results, config);
  const double total_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::filesystem::path out(options.out);
  std::filesystem::create_directories(out);
  write_csv(out / "results.csv", rows);
  write_json(out / "results.json", config, results, rows, total_seconds);
  const PlotOutcome plots = write_plots(out, rows);

  std::cout << markdown_report(rows, results, config);
  std::cout << "Total time " << format_duration(total_seconds) << " (" << options.threads
            << " thread(s)). Files:\n";
  std::cout << "  " << (out / "results.csv").string() << "\n";
  std::cout << "  " << (out / "results.json").string() << "\n";
  for (const auto& image : plots.images) std::cout << "  " << image.string() << "\n";
  if (!plots.problem.empty()) std::cout << "  (plots: " << plots.problem << ")\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{
      "capkv-eval: how much each KV-cache eviction policy changes SmolLM2-135M's predictions "
      "(EVAL.md's protocol). Tables on stdout, progress on stderr, CSV/JSON/PNG in --out."};
  app.option_defaults()->always_capture_default();
  app.add_option("--model", options.model, "GGUF model (scripts/fetch_model.sh fetches it)");
  app.add_option("--text", options.texts, "text file to take windows from (repeatable)")
      ->check(CLI::ExistingFile);
  app.add_option("--context", options.contexts,
                 "prompt length L in tokens (repeatable: 1024, 2048, 4096)")
      ->check(CLI::Range(std::int64_t{16}, std::int64_t{8000}));
  app.add_option("--budgets", options.budgets,
                 "cache kept per layer and KV head, percent or fraction");
  app.add_option(
      "--policies", options.policies,
      "comma-separated: CapKV, CapKV-kvpress, SnapKV, H2O, L2Norm, StreamingLLM, Random; or all");
  app.add_option("--docs", options.docs, "windows per text, at evenly spread offsets")
      ->check(CLI::PositiveNumber);
  app.add_option("--continuation", options.continuation,
                 "M: real tokens teacher-forced after the prompt")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  app.add_option("--passkey", options.passkey, "passkey prompts per context (0: none)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-decode", options.no_decode, "skip the decode-time mode (H2O, StreamingLLM)");
  app.add_option("--out", options.out, "output folder for results.csv, results.json and the plots");
  app.add_option("--seed", options.seed, "seed of the Random policy and the passkeys");
  app.add_option("--threads", options.threads, "worker threads (and OpenMP threads of the prefill)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  ProgressBar progress;
  try {
    return run(options, progress);
  } catch (const CLI::Error& e) {
    progress.finish_stage();
    return app.exit(e);
  } catch (const std::exception& e) {
    progress.note(std::string("capkv-eval: error: ") + e.what());
    return 1;
  }
}
