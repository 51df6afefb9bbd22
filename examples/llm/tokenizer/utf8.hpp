#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace capkv::llm {

// Length of the well-formed UTF-8 sequence starting at text[pos], or 0 when the bytes there are not
// one (truncated, overlong, surrogate, above U+10FFFF, stray continuation byte). The rules are
// those of RFC 3629, which is also what PCRE2 checks, so a run this accepts is safe to hand to
// PCRE2 with PCRE2_NO_UTF_CHECK.
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos);

// Decodes the sequence at text[pos]; the caller has checked it with utf8_sequence_length.
char32_t utf8_decode(std::string_view text, std::size_t pos, std::size_t length);

// Appends the UTF-8 encoding of a valid code point.
void utf8_append(std::string& out, char32_t code_point);

}  // namespace capkv::llm
