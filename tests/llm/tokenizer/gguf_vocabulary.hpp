#pragma once

// Test-only: reads the tokenizer arrays out of a GGUF file's metadata, so the model tests do not
// depend on the project's GGUF reader (they are a check on the tokenizer, and the reader has its
// own tests). Only what the tokenizer needs is decoded; every other value is skipped by type.

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tokenizer/vocabulary.hpp"

namespace capkv::llm::testing {

class GgufMetadataScanner {
 public:
  explicit GgufMetadataScanner(const std::string& path) : in_(path, std::ios::binary) {
    if (!in_) throw std::runtime_error("cannot open " + path);
  }

  Vocabulary read_vocabulary() {
    if (read_string(4) != "GGUF") throw std::runtime_error("not a GGUF file");
    const auto version = read<std::uint32_t>();
    if (version != 2 && version != 3) throw std::runtime_error("unsupported GGUF version");
    read<std::uint64_t>();  // tensor count
    const auto kv_count = read<std::uint64_t>();
    Vocabulary vocabulary;
    for (std::uint64_t i = 0; i < kv_count; ++i) {
      const std::string key = read_string(read<std::uint64_t>());
      const auto type = read<std::uint32_t>();
      if (key == "tokenizer.ggml.tokens") {
        vocabulary.tokens = read_string_array(type);
      } else if (key == "tokenizer.ggml.merges") {
        vocabulary.merges = read_string_array(type);
      } else if (key == "tokenizer.ggml.token_type") {
        expect_array_of(type, kInt32);
        const auto count = read<std::uint64_t>();
        for (std::uint64_t j = 0; j < count; ++j) {
          vocabulary.token_types.push_back(static_cast<TokenType>(read<std::int32_t>()));
        }
      } else {
        skip(type);
      }
    }
    return vocabulary;
  }

 private:
  static constexpr std::uint32_t kInt32 = 5;
  static constexpr std::uint32_t kString = 8;
  static constexpr std::uint32_t kArray = 9;

  template <typename T>
  T read() {
    T value;
    in_.read(reinterpret_cast<char*>(&value), sizeof(T));
    if (!in_) throw std::runtime_error("truncated GGUF metadata");
    return value;
  }

  std::string read_string(std::uint64_t length) {
    if (length > (1u << 24)) throw std::runtime_error("implausible GGUF string length");
    std::string s(length, '\0');
    in_.read(s.data(), static_cast<std::streamsize>(length));
    if (!in_) throw std::runtime_error("truncated GGUF metadata");
    return s;
  }

  void expect_array_of(std::uint32_t type, std::uint32_t element) {
    if (type != kArray || read<std::uint32_t>() != element) {
      throw std::runtime_error("unexpected GGUF type for a tokenizer array");
    }
  }

  std::vector<std::string> read_string_array(std::uint32_t type) {
    expect_array_of(type, kString);
    const auto count = read<std::uint64_t>();
    std::vector<std::string> strings;
    strings.reserve(count);
    for (std::uint64_t j = 0; j < count; ++j) strings.push_back(read_string(read<std::uint64_t>()));
    return strings;
  }

  void skip(std::uint32_t type) {
    // Sizes of GGUF's scalar types, by type code: u8 i8 u16 i16 u32 i32 f32 bool string array u64
    // i64 f64.
    static constexpr int kSizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == kString) {
      in_.seekg(static_cast<std::streamoff>(read<std::uint64_t>()), std::ios::cur);
    } else if (type == kArray) {
      const auto element = read<std::uint32_t>();
      const auto count = read<std::uint64_t>();
      for (std::uint64_t j = 0; j < count; ++j) skip(element);
    } else if (type < sizeof(kSizes) / sizeof(kSizes[0])) {
      in_.seekg(kSizes[type], std::ios::cur);
    } else {
      throw std::runtime_error("unknown GGUF metadata type " + std::to_string(type));
    }
    if (!in_) throw std::runtime_error("truncated GGUF metadata");
  }

  std::ifstream in_;
};

}  // namespace capkv::llm::testing
