// Against the real SmolLM2-135M-Instruct Q4_1 file (scripts/fetch_model.sh): the architecture
// metadata the runner relies on, the tensor directory and dequantized values compared bit for bit
// with gguf-py's numpy dequantizers. Skips when the model or python's gguf package is missing.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/dequantize.hpp"
#include "gguf/gguf_file.hpp"
#include "gguf_writer.hpp"

#ifndef CAPKV_GGUF_REFERENCE_PY
#error "CAPKV_GGUF_REFERENCE_PY must name tests/llm/gguf/gguf_reference.py"
#endif

namespace capkv::llm {
namespace {

namespace fs = std::filesystem;

// $CAPKV_MODEL, else ${CAPKV_CACHE:-$HOME/.cache/capkv}/SmolLM2-135M-Instruct.Q4_1.gguf.
std::optional<fs::path> model_path() {
  if (const char* env = std::getenv("CAPKV_MODEL"); env && *env) return fs::path(env);
  fs::path cache;
  if (const char* env = std::getenv("CAPKV_CACHE"); env && *env) {
    cache = env;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    cache = fs::path(home) / ".cache" / "capkv";
  } else {
    return std::nullopt;
  }
  return cache / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

class SmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto path = model_path();
    if (!path || !fs::exists(*path)) return;
    file_ = new GgufFile(GgufFile::open(*path));
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  void SetUp() override {
    if (file_ == nullptr) {
      GTEST_SKIP() << "model not found (" << model_path().value_or("<no HOME>").string()
                   << "); run scripts/fetch_model.sh or set CAPKV_MODEL";
    }
  }
  static const GgufFile& file() { return *file_; }

  static GgufFile* file_;
};

GgufFile* SmolLM2::file_ = nullptr;

TEST_F(SmolLM2, ArchitectureMetadata) {
  const GgufFile& f = file();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.block_count"), 30u);
  EXPECT_EQ(f.get_u32("llama.embedding_length"), 576u);
  EXPECT_EQ(f.get_u32("llama.feed_forward_length"), 1536u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count"), 9u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), 3u);
  EXPECT_EQ(f.get_u32("llama.rope.dimension_count"), 64u);
  EXPECT_EQ(f.get_u32("llama.context_length"), 8192u);
  EXPECT_EQ(f.get_u32("llama.vocab_size"), 49152u);
  EXPECT_EQ(f.get_f32("llama.rope.freq_base"), 100000.0f);
  EXPECT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "smollm");

  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 49152u);
  EXPECT_EQ(tokens[1], "<|im_start|>");
  EXPECT_EQ(tokens[2], "<|im_end|>");
  EXPECT_EQ(f.get_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(f.get_i64_array("tokenizer.ggml.token_type").size(), 49152u);
}

TEST_F(SmolLM2, TensorDirectory) {
  const GgufFile& f = file();
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr) << "embeddings are tied";
  const GgufTensorInfo& embd = f.tensor("token_embd.weight");
  EXPECT_EQ(embd.type, GgmlType::kQ8_0);
  EXPECT_EQ(embd.shape, (std::vector<std::uint64_t>{576, 49152}));
  const GgufTensorInfo& q = f.tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q.type, GgmlType::kQ4_1);
  EXPECT_EQ(q.shape, (std::vector<std::uint64_t>{576, 576}));
  EXPECT_EQ(f.tensor("blk.29.attn_k.weight").shape, (std::vector<std::uint64_t>{576, 192}));
  EXPECT_EQ(f.tensor("blk.29.ffn_down.weight").shape, (std::vector<std::uint64_t>{1536, 576}));
  EXPECT_EQ(f.tensor("output_norm.weight").type, GgmlType::kF32);
  for (const auto& t : f.tensors()) {
    EXPECT_TRUE(dequantize_supported(t.type)) << t.name;
  }
}

TEST_F(SmolLM2, EveryTensorDequantizesToFiniteValues) {
  const GgufFile& f = file();
  for (const auto& t : f.tensors()) {
    const std::vector<float> values = dequantize_tensor(f, t);
    ASSERT_EQ(values.size(), t.n_elements) << t.name;
    std::size_t non_finite = 0;
    for (float v : values) non_finite += !std::isfinite(v);
    EXPECT_EQ(non_finite, 0u) << t.name;
  }
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RowSpec {
  std::string tensor;
  std::uint64_t first;
  std::uint64_t count;
};

void expect_rows_match(const GgufFile& f, const std::vector<RowSpec>& specs,
                       std::ifstream& rows_file);

// Runs gguf_reference.py on `model` for `specs`, leaving rows.bin and infos.txt in `dir`. Returns
// false when python3 or its gguf package is unavailable (exit status 77 or 127); any other failure
// is a test failure.
bool run_reference(const std::string& model, const std::vector<RowSpec>& specs,
                   const fs::path& dir) {
  fs::create_directories(dir);
  {
    std::ofstream spec_file(dir / "specs.txt");
    for (const auto& s : specs) spec_file << s.tensor << ' ' << s.first << ' ' << s.count << '\n';
  }
  const char* python_env = std::getenv("CAPKV_PYTHON");
  const std::string python = python_env && *python_env ? python_env : "python3";
  const std::string command = shell_quote(python) + " " + shell_quote(CAPKV_GGUF_REFERENCE_PY) +
                              " " + shell_quote(model) + " " +
                              shell_quote((dir / "specs.txt").string()) + " " +
                              shell_quote((dir / "rows.bin").string()) + " " +
                              shell_quote((dir / "infos.txt").string()) + " 2>&1";
  std::string output;
  int status = -1;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
    status = ::pclose(pipe);
  }
  const int code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 77 || code == 127) {
    std::cerr << output;
    fs::remove_all(dir);
    return false;
  }
  EXPECT_EQ(code, 0) << command << "\n" << output;
  return true;
}

TEST_F(SmolLM2, DequantizedValuesMatchGgufPyBitForBit) {
  const GgufFile& f = file();
  // Full matrices for one tensor of each kind, plus the first and last row of every tensor.
  std::vector<RowSpec> specs = {
      {"token_embd.weight", 0, 64},       {"token_embd.weight", 12345, 3},
      {"token_embd.weight", 49150, 2},    {"blk.0.attn_q.weight", 0, 576},
      {"blk.29.ffn_down.weight", 0, 576}, {"blk.17.attn_v.weight", 0, 192},
      {"output_norm.weight", 0, 1},       {"blk.0.attn_norm.weight", 0, 1},
  };
  for (const auto& t : f.tensors()) {
    specs.push_back({t.name, 0, 1});
    if (t.n_rows() > 1) specs.push_back({t.name, t.n_rows() - 1, 1});
  }

  const fs::path dir = fs::temp_directory_path() / ("capkv_gguf_ref_" + std::to_string(::getpid()));
  const auto reference = run_reference(f.source(), specs, dir);
  if (!reference)
    GTEST_SKIP() << "reference needs python3 with the 'gguf' package (pip install gguf)";
  ASSERT_FALSE(HasFailure()) << "gguf_reference.py failed";

  // The tensor directory as gguf-py sees it.
  std::ifstream infos(dir / "infos.txt");
  std::size_t index = 0;
  for (std::string line; std::getline(infos, line); ++index) {
    ASSERT_LT(index, f.tensors().size());
    const GgufTensorInfo& t = f.tensors()[index];
    std::ostringstream expected;
    expected << t.name << ' ' << static_cast<std::uint32_t>(t.type) << ' '
             << f.data_offset() + t.offset << ' ' << t.n_bytes << ' ';
    for (std::size_t d = 0; d < t.shape.size(); ++d) expected << (d ? "," : "") << t.shape[d];
    EXPECT_EQ(line, expected.str());
  }
  EXPECT_EQ(index, f.tensors().size());

  std::ifstream rows_file(dir / "rows.bin", std::ios::binary);
  expect_rows_match(f, specs, rows_file);
  fs::remove_all(dir);
}

// Synthetic tensors of every supported type (random bytes with finite scales), so the formats the
// model does not use are also checked against gguf-py bit for bit. Needs python, not the model.
TEST(GgufPy, EverySupportedTypeMatchesBitForBit) {
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ4_0,
                            GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0,
                            GgmlType::kQ4_K, GgmlType::kQ6_K};
  std::mt19937 rng(2024);
  testing::GgufWriter writer;
  std::vector<RowSpec> specs;
  for (GgmlType type : types) {
    const std::string name = "t." + ggml_type_name(type);
    std::vector<std::byte> bytes(ggml_bytes_for(type, 512 * 4));
    for (auto& b : bytes) b = static_cast<std::byte>(rng() & 0xff);
    // Keep every float finite: clear the top exponent bit of each half/bfloat16/float (and of each
    // f16 scale, which sits at a fixed place in its block).
    const auto traits = ggml_type_traits(type);
    const auto tame = [&](std::size_t offset, std::size_t width) {
      bytes[offset + width - 1] &= std::byte{0xbf};
    };
    for (std::size_t block = 0; block < bytes.size() / traits.type_size; ++block) {
      const std::size_t base = block * traits.type_size;
      switch (type) {
        case GgmlType::kF32:
          tame(base, 4);
          break;
        case GgmlType::kF16:
        case GgmlType::kBF16:
          tame(base, 2);
          break;
        case GgmlType::kQ4_0:
        case GgmlType::kQ5_0:
        case GgmlType::kQ8_0:
          tame(base, 2);
          break;
        case GgmlType::kQ4_1:
        case GgmlType::kQ5_1:
        case GgmlType::kQ4_K:
          tame(base, 2);
          tame(base + 2, 2);
          break;
        case GgmlType::kQ6_K:
          tame(base + 208, 2);
          break;
        default:
          FAIL() << "no scale layout for " << ggml_type_name(type);
      }
    }
    writer.tensor(name, {512, 4}, type, bytes);
    specs.push_back({name, 0, 4});
    specs.push_back({name, 2, 1});
  }
  const fs::path dir =
      fs::temp_directory_path() / ("capkv_gguf_types_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path model = dir / "types.gguf";
  const auto bytes = writer.bytes();
  testing::write_file(model, bytes);
  const GgufFile f = GgufFile::open(model);
  const auto reference = run_reference(model.string(), specs, dir);
  if (!reference)
    GTEST_SKIP() << "reference needs python3 with the 'gguf' package (pip install gguf)";
  ASSERT_FALSE(HasFailure()) << "gguf_reference.py failed";
  std::ifstream rows_file(dir / "rows.bin", std::ios::binary);
  expect_rows_match(f, specs, rows_file);
  fs::remove_all(dir);
}

void expect_rows_match(const GgufFile& f, const std::vector<RowSpec>& specs,
                       std::ifstream& rows_file) {
  for (const auto& s : specs) {
    const GgufTensorInfo& t = f.tensor(s.tensor);
    std::vector<float> ours(s.count * t.row_length());
    std::vector<float> theirs(ours.size());
    dequantize_rows(f, t, s.first, ours);
    rows_file.read(reinterpret_cast<char*>(theirs.data()),
                   static_cast<std::streamsize>(theirs.size() * sizeof(float)));
    ASSERT_TRUE(rows_file) << "reference output ended early at " << s.tensor;
    std::size_t mismatches = 0;
    std::size_t first_mismatch = 0;
    for (std::size_t i = 0; i < ours.size(); ++i) {
      const bool same = std::memcmp(&ours[i], &theirs[i], sizeof(float)) == 0;
      if (!same && mismatches++ == 0) {
        first_mismatch = i;
      }
    }
    EXPECT_EQ(mismatches, 0u) << s.tensor << " rows " << s.first << "+" << s.count
                              << ": first mismatch at " << first_mismatch << ": "
                              << ours[first_mismatch] << " vs " << theirs[first_mismatch];
  }
  rows_file.peek();
  EXPECT_TRUE(rows_file.eof()) << "reference wrote more values than requested";
}

}  // namespace
}  // namespace capkv::llm
