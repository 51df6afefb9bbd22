// libFuzzer entry point for the GGUF reader. Any input must either parse or raise GgufError; every
// other outcome (a sanitizer report, another exception type, a crash, a hang) is a bug. Valid
// parses are used the way the runner uses them: all metadata read through the typed accessors,
// every tensor's bytes touched and a few rows of each dequantized.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "gguf/dequantize.hpp"
#include "gguf/gguf_file.hpp"

namespace {

using capkv::llm::GgufArray;
using capkv::llm::GgufError;
using capkv::llm::GgufFile;
using capkv::llm::GgufValue;

// Keeps reads from being optimized away, so ASan sees each access.
volatile std::uint64_t g_sink = 0;

template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const GgufError&) {
    // Expected for kind mismatches and out-of-range values.
  }
}

void exercise(const GgufValue& value);

void exercise(const GgufArray& array) {
  g_sink = g_sink + array.size();
  for (std::size_t i = 0; i < array.size(); ++i) exercise(array.at(i));
  expect_clean([&] { array.at(array.size()); });
  expect_clean([&] { g_sink = g_sink + array.to_strings().size(); });
  expect_clean([&] { g_sink = g_sink + array.string_views().size(); });
  expect_clean([&] { g_sink = g_sink + array.to_i64().size(); });
  expect_clean([&] { g_sink = g_sink + array.to_u64().size(); });
  expect_clean([&] { g_sink = g_sink + array.to_f32().size(); });
  expect_clean([&] { g_sink = g_sink + array.to_f64().size(); });
}

void exercise(const GgufValue& value) {
  expect_clean([&] { g_sink = g_sink + value.as_u64(); });
  expect_clean([&] { g_sink = g_sink + value.as_u32(); });
  expect_clean([&] { g_sink = g_sink + static_cast<std::uint64_t>(value.as_i64()); });
  expect_clean([&] { g_sink = g_sink + static_cast<std::uint64_t>(value.as_i32()); });
  expect_clean([&] { g_sink = g_sink + static_cast<std::uint64_t>(value.as_f64() != 0.0); });
  expect_clean([&] { g_sink = g_sink + static_cast<std::uint64_t>(value.as_f32() != 0.0f); });
  expect_clean([&] { g_sink = g_sink + value.as_bool(); });
  expect_clean([&] {
    const std::string_view s = value.as_string();
    for (char c : s) g_sink = g_sink + static_cast<unsigned char>(c);
  });
  expect_clean([&] { exercise(value.as_array()); });
}

void exercise(const GgufFile& file) {
  for (const auto& kv : file.metadata()) exercise(kv.value);
  // The keys the runner reads, through the file-level getters (including their error paths).
  for (const char* key :
       {"general.architecture", "general.alignment", "llama.block_count", "llama.embedding_length",
        "llama.rope.freq_base", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"}) {
    expect_clean([&] { g_sink = g_sink + file.get_u32(key); });
    expect_clean([&] { g_sink = g_sink + file.get_u64_or(key, 1); });
    expect_clean([&] { g_sink = g_sink + static_cast<std::uint64_t>(file.get_f32(key) > 0); });
    expect_clean([&] { g_sink = g_sink + file.get_string(key).size(); });
    expect_clean([&] { g_sink = g_sink + file.get_string_array(key).size(); });
    expect_clean([&] { g_sink = g_sink + file.get_i64_array(key).size(); });
  }

  constexpr std::uint64_t kRowsPerEnd = 2;
  for (const auto& info : file.tensors()) {
    const auto data = file.tensor_data(info);
    if (!data.empty()) {
      g_sink = g_sink + std::to_integer<unsigned>(data.front());
      g_sink = g_sink + std::to_integer<unsigned>(data.back());
    }
    if (!capkv::llm::dequantize_supported(info.type)) {
      expect_clean([&] { capkv::llm::dequantize_tensor(file, info); });
      continue;
    }
    const std::uint64_t rows = info.n_rows();
    const std::uint64_t row_length = info.row_length();
    if (rows == 0 || row_length == 0 || row_length > (1u << 20)) continue;
    const std::uint64_t take = std::min(rows, kRowsPerEnd);
    std::vector<float> out(take * row_length);
    // The first and the last rows: the ends of the tensor are where bounds bugs live.
    capkv::llm::dequantize_rows(file, info, 0, out);
    capkv::llm::dequantize_rows(file, info, rows - take, out);
    for (float v : out) g_sink = g_sink + static_cast<std::uint64_t>(v != v);
    // Out-of-range requests must be refused.
    expect_clean([&] { capkv::llm::dequantize_rows(file, info, rows, out); });
  }
  expect_clean([&] { file.tensor("missing.weight"); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const GgufFile file = GgufFile::parse(bytes, "fuzz-input");
    exercise(file);
  } catch (const GgufError&) {
    // A clean rejection is the expected outcome for most inputs.
  }
  return 0;
}
