// Writes the seed corpus for gguf_fuzz into the folder given as argv[1]: small valid GGUF files
// covering every metadata kind, every tensor type (supported or not), custom alignments, version 2
// and a miniature of the SmolLM2 layout. Built with the tests' GGUF writer, so seeds and tests
// agree on what a valid file looks like.

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "gguf_writer.hpp"

namespace {

using capkv::llm::ggml_bytes_for;
using capkv::llm::GgmlType;
using capkv::llm::GgufValueType;
using capkv::llm::testing::Bytes;
using capkv::llm::testing::GgufWriter;
using VT = GgufValueType;

std::vector<std::byte> random_bytes(std::size_t n, std::mt19937& rng) {
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xff);
  return out;
}

GgufWriter all_metadata_kinds(std::uint32_t version) {
  GgufWriter w(version);
  w.kv("u8", VT::kUint8, std::uint8_t{1})
      .kv("i8", VT::kInt8, std::int8_t{-1})
      .kv("u16", VT::kUint16, std::uint16_t{2})
      .kv("i16", VT::kInt16, std::int16_t{-2})
      .kv("u32", VT::kUint32, std::uint32_t{3})
      .kv("i32", VT::kInt32, std::int32_t{-3})
      .kv("f32", VT::kFloat32, 1.5f)
      .kv_bool("bool", true)
      .kv_string("string", "llama")
      .kv("u64", VT::kUint64, std::uint64_t{4})
      .kv("i64", VT::kInt64, std::int64_t{-4})
      .kv("f64", VT::kFloat64, 2.5)
      .kv_array("arr_i32", VT::kInt32, std::vector<std::int32_t>{1, 2, 3})
      .kv_array("arr_f32", VT::kFloat32, std::vector<float>{0.5f})
      .kv_string_array("arr_str", {"a", "", "bc"});
  Bytes nested;
  nested.u32(static_cast<std::uint32_t>(VT::kArray)).u64(2);
  nested.u32(static_cast<std::uint32_t>(VT::kUint8)).u64(1).u8(7);
  nested.u32(static_cast<std::uint32_t>(VT::kString)).u64(1).str("x");
  w.kv_raw("nested", VT::kArray, nested);
  return w;
}

GgufWriter every_tensor_type(std::mt19937& rng, std::uint32_t alignment) {
  GgufWriter w;
  if (alignment != 32) w.alignment(alignment);
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ4_0,
                            GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0,
                            GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kQ2_K, GgmlType::kI32};
  for (GgmlType type : types) {
    const std::uint64_t row = capkv::llm::ggml_type_traits(type).block_size == 256 ? 256 : 32;
    w.tensor("t." + capkv::llm::ggml_type_name(type), {row, 2}, type,
             random_bytes(ggml_bytes_for(type, row * 2), rng));
  }
  return w;
}

GgufWriter mini_smollm(std::mt19937& rng) {
  GgufWriter w;
  w.kv_string("general.architecture", "llama")
      .kv("llama.block_count", VT::kUint32, std::uint32_t{1})
      .kv("llama.embedding_length", VT::kUint32, std::uint32_t{64})
      .kv("llama.attention.head_count", VT::kUint32, std::uint32_t{2})
      .kv("llama.rope.freq_base", VT::kFloat32, 100000.0f)
      .kv_string("tokenizer.ggml.model", "gpt2")
      .kv_string_array("tokenizer.ggml.tokens", {"<|endoftext|>", "<|im_start|>", "a", "b", "ab"})
      .kv_string_array("tokenizer.ggml.merges", {"a b"})
      .kv_array("tokenizer.ggml.token_type", VT::kInt32, std::vector<std::int32_t>{3, 3, 1, 1, 1})
      .kv("general.alignment", VT::kUint32, std::uint32_t{32});
  w.tensor("token_embd.weight", {64, 5}, GgmlType::kQ8_0,
           random_bytes(ggml_bytes_for(GgmlType::kQ8_0, 64 * 5), rng));
  w.tensor("blk.0.attn_norm.weight", {64}, GgmlType::kF32, random_bytes(64 * 4, rng));
  w.tensor("blk.0.attn_q.weight", {64, 64}, GgmlType::kQ4_1,
           random_bytes(ggml_bytes_for(GgmlType::kQ4_1, 64 * 64), rng));
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: gguf_fuzz_seeds OUTPUT_DIR\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  std::mt19937 rng(1);
  const auto save = [&](const char* name, const GgufWriter& w) {
    const auto bytes = w.bytes();
    capkv::llm::testing::write_file(dir / name, bytes);
  };
  save("metadata_v3.gguf", all_metadata_kinds(3));
  save("metadata_v2.gguf", all_metadata_kinds(2));
  save("tensors_align32.gguf", every_tensor_type(rng, 32));
  save("tensors_align1.gguf", every_tensor_type(rng, 1));
  save("tensors_align64.gguf", every_tensor_type(rng, 64));
  save("mini_smollm.gguf", mini_smollm(rng));
  save("empty.gguf", GgufWriter());
  return 0;
}
