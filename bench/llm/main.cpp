// capkv-llm-bench: what the SmolLM2 runner costs on this machine. Plain timers, not Google
// Benchmark: each measurement is one multi-second call, and what matters is a single honest
// number per line with the conditions it was taken under (threads, machine load).
//
//   capkv-llm-bench [--prefill 2048] [--decode 32] [--rss-context 4096] [--profile]
//
// 1. model load (GGUF mmap + dequantization to fp32 + tokenizer), and the RSS it leaves;
// 2. prefill of --prefill tokens into an empty cache (the prompt's logits row only);
// 3. greedy decoding of --decode tokens after it (tokens/s at that context);
// 4. a fresh prefill of --rss-context tokens, then the process's peak RSS (VmHWM);
// 5. --profile: the prefill of (2) again on one thread, and its linear layers alone on random
//    matrices of the same shapes, in CPU time: the rest (attention, norms, RoPE, cache appends) is
//    the difference.
// The text is GPL-3 (repeated as needed), else pseudo-random token ids: cost does not depend on it.

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "model/llama_model.hpp"

namespace {

using namespace capkv::llm;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU seconds of every thread of the process: on shared cores the wall time depends on the
// neighbours, this much less (it includes OpenMP's spinning, though).
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

// A "Vm...:  123 kB" line of /proc/self/status, in MB; 0 where it is missing (not Linux).
double proc_status_mb(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;
  }
  return 0.0;
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

std::vector<TokenId> bench_tokens(const Tokenizer& tokenizer, std::size_t count) {
  std::ifstream in("/usr/share/common-licenses/GPL-3");
  std::ostringstream text;
  text << in.rdbuf();
  std::vector<TokenId> tokens = tokenizer.encode(text.str());
  if (tokens.empty()) {
    std::mt19937 rng(7);
    for (std::size_t i = 0; i < count; ++i)
      tokens.push_back(static_cast<TokenId>(17 + rng() % 49000));
  }
  const std::size_t n = tokens.size();
  for (std::size_t i = n; i < count; ++i) tokens.push_back(tokens[i % n]);
  tokens.resize(count);
  return tokens;
}

// The 7 projections of every layer for T tokens, on random weights of the model's shapes: the GEMM
// share of a prefill. Returns a checksum so that the work cannot be optimised away.
float linear_layers(const LlamaConfig& c, std::int64_t t) {
  const RowMatrixXf x = RowMatrixXf::Random(t, c.hidden);
  const RowMatrixXf wq = RowMatrixXf::Random(c.q_width(), c.hidden);
  const RowMatrixXf wkv = RowMatrixXf::Random(c.kv_width(), c.hidden);
  const RowMatrixXf wo = RowMatrixXf::Random(c.hidden, c.q_width());
  const RowMatrixXf w_in = RowMatrixXf::Random(c.ffn, c.hidden);
  const RowMatrixXf w_down = RowMatrixXf::Random(c.hidden, c.ffn);
  RowMatrixXf q, k, v, o, gate, up, down;
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    q.noalias() = x * wq.transpose();
    k.noalias() = x * wkv.transpose();
    v.noalias() = x * wkv.transpose();
    o.noalias() = q * wo.transpose();
    gate.noalias() = x * w_in.transpose();
    up.noalias() = x * w_in.transpose();
    down.noalias() = gate * w_down.transpose();
  }
  return q(0, 0) + k(0, 0) + v(0, 0) + o(0, 0) + up(0, 0) + down(0, 0);
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t prefill = 2048, decode = 32, rss_context = 4096;
  bool profile = false;
  std::string model_path = default_model_path().string();
  CLI::App app{"Load time, prefill time, decode speed and peak memory of the SmolLM2 runner."};
  app.add_option("--prefill", prefill, "Prefill length")->capture_default_str();
  app.add_option("--decode", decode, "Tokens decoded after the prefill")->capture_default_str();
  app.add_option("--rss-context", rss_context, "Context of the peak-memory prefill (0: skip)")
      ->capture_default_str();
  app.add_flag("--profile", profile, "Also time the linear layers alone");
  app.add_option("--model", model_path, "SmolLM2-135M-Instruct GGUF")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  int threads = 1;
#if defined(_OPENMP)
  threads = omp_get_max_threads();
#endif
  std::printf("threads %d, load average before %s\n", threads, load_average().c_str());

  auto start = Clock::now();
  const GgufFile file = GgufFile::open(model_path);
  const LlamaModel model = LlamaModel::load(file);
  const Tokenizer tokenizer = tokenizer_from_gguf(file);
  std::printf("model load: %.2f s, RSS after load %.0f MB\n", seconds_since(start),
              proc_status_mb("VmRSS"));

  const std::vector<TokenId> tokens =
      bench_tokens(tokenizer, static_cast<std::size_t>(std::max(prefill + decode, rss_context)));
  const std::span<const TokenId> all(tokens);
  {
    KvCache cache = model.make_cache(prefill + decode);
    start = Clock::now();
    double cpu = cpu_seconds();
    model.forward(all.first(prefill), cache);
    const double prefill_s = seconds_since(start);
    std::printf("prefill %lld tokens: %.2f s (%.1f tokens/s), CPU %.2f s\n",
                static_cast<long long>(prefill), prefill_s,
                static_cast<double>(prefill) / prefill_s, cpu_seconds() - cpu);
    start = Clock::now();
    cpu = cpu_seconds();
    for (std::int64_t i = 0; i < decode; ++i) model.forward(all.subspan(prefill + i, 1), cache);
    const double decode_s = seconds_since(start);
    std::printf("decode %lld tokens at %lld context: %.2f s (%.2f tokens/s), CPU %.2f s\n",
                static_cast<long long>(decode), static_cast<long long>(prefill), decode_s,
                static_cast<double>(decode) / decode_s, cpu_seconds() - cpu);
  }
  if (rss_context > 0) {
    KvCache cache = model.make_cache(rss_context);
    start = Clock::now();
    const double cpu = cpu_seconds();
    model.forward(all.first(rss_context), cache);
    std::printf(
        "prefill %lld tokens: %.2f s, CPU %.2f s; peak RSS (VmHWM) %.0f MB, cache %.0f MB\n",
        static_cast<long long>(rss_context), seconds_since(start), cpu_seconds() - cpu,
        proc_status_mb("VmHWM"), static_cast<double>(cache.bytes_held()) / 1e6);
  }
  if (profile) {
    // On one thread and in that thread's CPU time, so neither threading nor the neighbours blur
    // the split between the linear layers and the rest.
#if defined(_OPENMP)
    omp_set_num_threads(1);
#endif
    KvCache cache = model.make_cache(prefill);
    double cpu = thread_cpu_seconds();
    model.forward(all.first(prefill), cache);
    const double prefill_cpu = thread_cpu_seconds() - cpu;
    cpu = thread_cpu_seconds();
    volatile float checksum = linear_layers(model.config(), prefill);
    (void)checksum;
    const double linear_cpu = thread_cpu_seconds() - cpu;
    std::printf(
        "profile, one thread, prefill %lld tokens: %.2f s CPU = linear layers %.2f s "
        "(timed alone) + attention, norms, RoPE, cache %.2f s\n",
        static_cast<long long>(prefill), prefill_cpu, linear_cpu, prefill_cpu - linear_cpu);
  }
  std::printf("load average after %s\n", load_average().c_str());
  return 0;
}
