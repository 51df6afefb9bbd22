#include "tokenizer/byte_unicode.hpp"

#include "tokenizer/utf8.hpp"

namespace capkv::llm {

const ByteUnicodeMap& ByteUnicodeMap::instance() {
  static const ByteUnicodeMap map;
  return map;
}

ByteUnicodeMap::ByteUnicodeMap() {
  // Printable Latin-1 bytes keep their code point; the rest (controls, space, DEL, NBSP, soft
  // hyphen) are moved, in byte order, to U+0100 onwards. This ordering is GPT-2's and every
  // byte-level vocabulary depends on it.
  const auto keeps_code_point = [](unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  from_unicode_.fill(-1);
  char32_t next_moved = 0x100;
  for (unsigned b = 0; b < 256; ++b) {
    to_unicode_[b] = keeps_code_point(b) ? static_cast<char32_t>(b) : next_moved++;
    from_unicode_[to_unicode_[b]] = static_cast<int>(b);
    utf8_append(spelling_[b], to_unicode_[b]);
  }
}

std::optional<unsigned char> ByteUnicodeMap::byte(char32_t cp) const {
  if (cp >= kMappedEnd || from_unicode_[cp] < 0) return std::nullopt;
  return static_cast<unsigned char>(from_unicode_[cp]);
}

std::string ByteUnicodeMap::to_bytes(std::string_view text) const {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t len = utf8_sequence_length(text, pos);
    if (len == 0) {  // not UTF-8: the vocabulary string is already bytes
      out.push_back(text[pos++]);
      continue;
    }
    const auto b = byte(utf8_decode(text, pos, len));
    if (b) {
      out.push_back(static_cast<char>(*b));
    } else {
      out.append(text.substr(pos, len));
    }
    pos += len;
  }
  return out;
}

}  // namespace capkv::llm
