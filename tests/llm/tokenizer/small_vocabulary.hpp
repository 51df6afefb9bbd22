#pragma once

// A hand-made byte-level vocabulary small enough to reason about in a test: three ChatML control
// tokens, one control token reachable by a merge ("!!", to prove literal text never yields it), the
// 256 byte tokens, and a few merges.

#include <string>
#include <vector>

#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/vocabulary.hpp"

namespace capkv::llm::testing {

inline constexpr TokenId kEndOfText = 0;
inline constexpr TokenId kImStart = 1;
inline constexpr TokenId kImEnd = 2;
inline constexpr TokenId kBangBang = 3;  // control token "!!"
inline constexpr TokenId kFirstByte = 4;

// Merges in rank order; each result is appended to the vocabulary after the bytes, in this order.
inline const std::vector<std::string>& small_merges() {
  static const std::vector<std::string> merges = {
      "l l", "e ll",  "h ell", "hell o",  "Ġ t", "h e",  "Ġt he", "Ġ w",
      "o r", "Ġw or", "l d",   "Ġwor ld", "Ġ Ġ", "' s",  "a a",   "1 2",
      "! !", "Ċ Ċ",   "ä ½",   "ä½ ł",    "Ġ a", "Ġa a", "; ;",
  };
  return merges;
}

inline std::string merged(const std::string& merge) {
  std::string result = merge;
  result.erase(result.find(' '), 1);
  return result;
}

inline Vocabulary small_vocabulary() {
  Vocabulary vocabulary;
  vocabulary.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "!!"};
  vocabulary.token_types.assign(4, TokenType::kControl);
  const ByteUnicodeMap& map = ByteUnicodeMap::instance();
  for (unsigned b = 0; b < 256; ++b) {
    vocabulary.tokens.push_back(map.spelling(static_cast<unsigned char>(b)));
    vocabulary.token_types.push_back(TokenType::kNormal);
  }
  for (const std::string& merge : small_merges()) {
    if (merged(merge) == "!!") continue;  // the control token above is the result
    vocabulary.tokens.push_back(merged(merge));
    vocabulary.token_types.push_back(TokenType::kNormal);
  }
  vocabulary.merges = small_merges();
  return vocabulary;
}

inline TokenId byte_id(unsigned char b) { return kFirstByte + b; }

}  // namespace capkv::llm::testing
