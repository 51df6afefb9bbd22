// Malformed, truncated and hostile files: each must end in a GgufError with a useful message,
// never a crash, a hang or a huge allocation. Run under CAPKV_SANITIZE to catch silent overreads.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gguf/dequantize.hpp"
#include "gguf/gguf_file.hpp"
#include "gguf_writer.hpp"

namespace capkv::llm {
namespace {

using testing::Bytes;
using testing::GgufWriter;
using VT = GgufValueType;

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

// Header with explicit counts; the caller appends the body.
Bytes header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
  Bytes b;
  b.raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  return b;
}

// One tensor info: name, dims, type, offset.
Bytes& tensor_info(Bytes& b, std::string_view name, std::vector<std::uint64_t> shape,
                   std::uint32_t type, std::uint64_t offset) {
  b.str(name).u32(static_cast<std::uint32_t>(shape.size()));
  for (auto ne : shape) b.u64(ne);
  return b.u32(type).u64(offset);
}

// A header of one F32 tensor `t` of 8 elements with its data, padded to 32.
Bytes one_tensor_file(std::vector<std::uint64_t> shape, std::uint32_t type, std::uint64_t offset,
                      std::size_t data_bytes) {
  Bytes b = header(1, 0);
  tensor_info(b, "t", std::move(shape), type, offset);
  b.pad_to(32);
  b.raw(std::vector<std::byte>(data_bytes, std::byte{0}));
  return b;
}

struct BadFile {
  const char* name;
  std::function<std::vector<std::byte>()> bytes;
  const char* message;  // expected substring of the error
};

std::vector<BadFile> bad_files() {
  const auto kv_file = [](std::string_view key, VT type, Bytes payload) {
    Bytes b = header(0, 1);
    b.str(key).u32(static_cast<std::uint32_t>(type)).raw(payload.data());
    return b.data();
  };
  return {
      {"empty", [] { return std::vector<std::byte>{}; }, "need 4 bytes for magic"},
      {"short_magic", [] { return Bytes().raw("GGU").data(); }, "truncated"},
      {"bad_magic", [] { return Bytes().raw("GGML").u32(3).u64(0).u64(0).data(); }, "bad magic"},
      {"version_1", [] { return header(0, 0, 1).data(); }, "version 1"},
      {"version_4", [] { return header(0, 0, 4).data(); }, "unsupported GGUF version 4"},
      {"big_endian", [] { return header(0, 0, 0x03000000).data(); }, "big-endian"},
      {"missing_counts", [] { return Bytes().raw("GGUF").u32(3).u64(0).data(); }, "metadata count"},
      {"huge_kv_count", [] { return header(0, kU64Max).data(); }, "metadata count"},
      {"huge_tensor_count", [] { return header(kU64Max, 0).data(); }, "tensor count"},
      {"kv_count_past_eof",
       [] {
         Bytes b = header(0, 2);
         b.str("a").u32(0).u8(1);
         b.raw(std::string(20, '\0'));  // room for the count check, not for a valid 2nd pair
         return b.data();
       },
       "empty key"},
      {"key_length_past_eof",
       [] {
         Bytes b = header(0, 1);
         b.u64(1000).raw("abcdefgh");
         return b.data();
       },
       "claims 1000 bytes"},
      {"key_length_max",
       [] {
         Bytes b = header(0, 1);
         b.u64(kU64Max).raw("abcdefgh");
         return b.data();
       },
       "metadata #0 key"},
      {"duplicate_key",
       [] {
         Bytes b = header(0, 2);
         b.str("k").u32(0).u8(1).str("k").u32(0).u8(2);
         return b.data();
       },
       "duplicate metadata key 'k'"},
      {"unknown_value_type", [=] { return kv_file("k", static_cast<VT>(13), Bytes().u64(0)); },
       "unknown value type id 13"},
      {"bool_out_of_range", [=] { return kv_file("k", VT::kBool, Bytes().u8(2).u64(0)); },
       "invalid bool"},
      {"truncated_u64", [=] { return kv_file("key", VT::kUint64, Bytes().u16(5)); }, "truncated"},
      {"string_past_eof", [=] { return kv_file("k", VT::kString, Bytes().u64(50).raw("abc")); },
       "claims 50 bytes"},
      {"array_count_huge",
       [=] { return kv_file("k", VT::kArray, Bytes().u32(4).u64(kU64Max / 2).u32(1)); },
       "elements but only"},
      {"string_array_count_huge",
       [=] { return kv_file("k", VT::kArray, Bytes().u32(8).u64(1ull << 40).u64(1)); },
       "elements but only"},
      {"array_string_past_eof",
       [=] { return kv_file("k", VT::kArray, Bytes().u32(8).u64(2).str("ok").u64(99)); }, "k')[1]"},
      {"array_unknown_element",
       [=] { return kv_file("k", VT::kArray, Bytes().u32(77).u64(0).u64(0)); },
       "unknown value type id 77"},
      {"arrays_nested_too_deep",
       [=] {
         Bytes p;
         for (int i = 0; i < 20; ++i) p.u32(9).u64(1);
         p.u32(0).u64(0);
         return kv_file("k", VT::kArray, p);
       },
       "nested deeper"},
      {"alignment_zero",
       [=] { return kv_file("general.alignment", VT::kUint32, Bytes().u32(0).u64(0)); },
       "general.alignment 0"},
      {"alignment_not_power_of_two",
       [=] { return kv_file("general.alignment", VT::kUint32, Bytes().u32(48).u64(0)); },
       "not a power of two"},
      {"alignment_huge",
       [=] { return kv_file("general.alignment", VT::kUint64, Bytes().u64(1ull << 62)); },
       "not a power of two"},
      {"alignment_negative",
       [=] { return kv_file("general.alignment", VT::kInt32, Bytes().u32(0xffffffe0u).u64(0)); },
       "general.alignment -32"},
      {"alignment_string",
       [=] { return kv_file("general.alignment", VT::kString, Bytes().str("32")); },
       "must be an integer"},
      {"tensor_name_past_eof",
       [] {
         Bytes b = header(1, 0);
         b.u64(500).raw(std::string(40, 'x'));
         return b.data();
       },
       "tensor #0 name"},
      {"tensor_empty_name",
       [] {
         Bytes b = header(1, 0);
         tensor_info(b, "", {32}, 0, 0);
         b.raw(std::vector<std::byte>(16));
         return b.data();
       },
       "empty name"},
      {"tensor_zero_dims", [] { return one_tensor_file({}, 0, 0, 64).data(); }, "0 dimensions"},
      {"tensor_five_dims",
       [] {
         return one_tensor_file({1, 1, 1, 1, 1}, 0, 0, 64).data();
       },
       "5 dimensions"},
      {"tensor_ne_product_overflow",
       [] {
         return one_tensor_file({1ull << 32, 1ull << 32}, 0, 0, 64).data();
       },
       "overflows"},
      {"tensor_ne_above_int64", [] { return one_tensor_file({1ull << 63}, 24, 0, 64).data(); },
       "overflows"},
      {"tensor_bytes_overflow",
       // 2^62 F32 elements fit in int64 but take 2^64 bytes.
       [] {
         return one_tensor_file({1ull << 31, 1ull << 31}, 0, 0, 64).data();
       },
       "overflows 64 bits"},
      {"tensor_unknown_type", [] { return one_tensor_file({8}, 99, 0, 64).data(); },
       "unknown ggml type id 99"},
      {"tensor_retired_type", [] { return one_tensor_file({32}, 4, 0, 64).data(); },
       "unknown ggml type id 4"},
      {"tensor_partial_block", [] { return one_tensor_file({31}, 2, 0, 64).data(); },
       "not a multiple of the Q4_0 block size 32"},
      {"tensor_misaligned_offset", [] { return one_tensor_file({8}, 0, 4, 64).data(); },
       "not a multiple of the alignment 32"},
      {"tensor_data_past_eof", [] { return one_tensor_file({8}, 0, 0, 31).data(); },
       "extends past the end of the file"},
      {"tensor_offset_past_eof", [] { return one_tensor_file({8}, 0, 1 << 20, 64).data(); },
       "extends past the end of the file"},
      {"tensor_offset_wraps", [] { return one_tensor_file({8}, 0, kU64Max - 31, 64).data(); },
       "extends past the end of the file"},
      {"tensor_data_section_missing",
       [] {
         Bytes b = header(1, 0);
         tensor_info(b, "t", {8}, 0, 0);
         return b.data();  // ends right after the infos
       },
       "extends past the end of the file"},
      {"duplicate_tensor",
       [] {
         Bytes b = header(2, 0);
         tensor_info(b, "t", {8}, 0, 0);
         tensor_info(b, "t", {8}, 0, 32);
         b.pad_to(32);
         b.raw(std::vector<std::byte>(64));
         return b.data();
       },
       "duplicate tensor name 't'"},
      {"tensor_count_past_infos",
       [] {
         Bytes b = header(3, 0);
         tensor_info(b, "t", {8}, 0, 0);
         b.raw(std::vector<std::byte>(80));
         return b.data();
       },
       "tensor #1 has an empty name"},
  };
}

void PrintTo(const BadFile& f, std::ostream* os) { *os << f.name; }

class Malformed : public ::testing::TestWithParam<BadFile> {};

TEST_P(Malformed, GivesAClearGgufError) {
  const auto bytes = GetParam().bytes();
  try {
    GgufFile::parse(bytes, "bad.gguf");
    FAIL() << "parsed without error";
  } catch (const GgufError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(GetParam().message), std::string::npos) << what;
    EXPECT_EQ(what.rfind("GGUF bad.gguf: ", 0), 0u) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Table, Malformed, ::testing::ValuesIn(bad_files()),
                         [](const auto& info) { return std::string(info.param.name); });

// A valid file with every section populated, to cut and corrupt.
std::vector<std::byte> valid_file() {
  GgufWriter w;
  w.kv_string("general.architecture", "llama")
      .kv("llama.block_count", VT::kUint32, std::uint32_t{2})
      .kv_string_array("tokenizer.ggml.tokens", {"a", "bc", "<|im_end|>"})
      .kv_array("tokenizer.ggml.token_type", VT::kInt32, std::vector<std::int32_t>{1, 1, 3})
      .alignment(16);
  std::vector<std::byte> q(2 * 20, std::byte{0x11});
  w.tensor("norm", {4}, GgmlType::kF32, std::vector<std::byte>(16, std::byte{0x3f}));
  w.tensor("w", {32, 2}, GgmlType::kQ4_1, q);
  return w.bytes();
}

// Parses and, when that succeeds, dequantizes every supported tensor: both must either work or
// throw GgufError.
void parse_and_use(std::span<const std::byte> bytes) {
  try {
    const GgufFile f = GgufFile::parse(bytes);
    for (const auto& t : f.tensors()) {
      if (dequantize_supported(t.type) && t.n_elements < (1u << 20)) dequantize_tensor(f, t);
    }
    for (const auto& kv : f.metadata()) {
      if (kv.value.type() == VT::kArray) {
        const GgufArray& a = kv.value.as_array();
        for (std::size_t i = 0; i < a.size(); ++i) a.at(i);
      }
    }
  } catch (const GgufError&) {
  }
}

TEST(Truncation, EveryPrefixOfAValidFileFailsCleanly) {
  const auto bytes = valid_file();
  ASSERT_NO_THROW(GgufFile::parse(bytes));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<long>(n));
    EXPECT_THROW(GgufFile::parse(prefix), GgufError) << "prefix of " << n << " bytes";
  }
}

TEST(Corruption, RandomByteFlipsNeverCrash) {
  const auto original = valid_file();
  std::mt19937 rng(12345);
  for (int iteration = 0; iteration < 20000; ++iteration) {
    auto bytes = original;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      bytes[rng() % bytes.size()] = static_cast<std::byte>(rng() & 0xff);
    }
    parse_and_use(bytes);
  }
}

}  // namespace
}  // namespace capkv::llm
