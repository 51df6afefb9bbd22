#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace capkv::llm {

using TokenId = std::int32_t;

// Token kinds as GGUF stores them in `tokenizer.ggml.token_type` (llama.cpp's numbering).
enum class TokenType : std::int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// A byte-level BPE vocabulary as plain data, so the tokenizer does not depend on where it came
// from (GGUF metadata, text files, a hand-made test vocabulary).
struct Vocabulary {
  // Token strings in GPT-2's byte-to-Unicode spelling; the index is the token id.
  std::vector<std::string> tokens;
  // "left right" pairs in the same spelling; a merge's rank is its index (lower merges first).
  std::vector<std::string> merges;
  // One TokenType per token, or empty when every token is normal.
  std::vector<TokenType> token_types;
};

}  // namespace capkv::llm
