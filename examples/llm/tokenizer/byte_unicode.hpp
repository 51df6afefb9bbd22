#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace capkv::llm {

// GPT-2's reversible byte <-> Unicode mapping. Byte-level BPE vocabularies spell every byte as a
// printable character (space is "Ġ", newline "Ċ") so that merges can be written as "left right"
// text; bytes that are already printable and unambiguous map to themselves.
class ByteUnicodeMap {
 public:
  static const ByteUnicodeMap& instance();

  char32_t code_point(unsigned char byte) const { return to_unicode_[byte]; }
  // The UTF-8 spelling of one byte, as it appears in the vocabulary.
  const std::string& spelling(unsigned char byte) const { return spelling_[byte]; }
  // The byte a code point stands for, or nothing when it is not one of the 256 mapped characters.
  std::optional<unsigned char> byte(char32_t code_point) const;

  // Raw bytes of a vocabulary string. Characters outside the mapping (found in control and
  // user-defined tokens) are kept as their own UTF-8 bytes rather than rejected, so every token has
  // a byte form.
  std::string to_bytes(std::string_view vocab_text) const;

 private:
  ByteUnicodeMap();

  // Every mapped code point is below U+0144 (188 kept bytes, 68 moved ones from U+0100).
  static constexpr char32_t kMappedEnd = 0x144;

  std::array<char32_t, 256> to_unicode_{};
  std::array<int, kMappedEnd> from_unicode_{};  // -1 where a code point stands for no byte
  std::array<std::string, 256> spelling_;
};

}  // namespace capkv::llm
