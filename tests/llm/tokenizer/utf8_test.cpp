#include "tokenizer/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

namespace capkv::llm {
namespace {

TEST(Utf8, AcceptsWellFormedSequences) {
  EXPECT_EQ(utf8_sequence_length("a", 0), 1u);
  EXPECT_EQ(utf8_sequence_length("\xC3\xA9", 0), 2u);          // é
  EXPECT_EQ(utf8_sequence_length("\xE4\xBD\xA0", 0), 3u);      // 你
  EXPECT_EQ(utf8_sequence_length("\xF0\x9F\x91\x8B", 0), 4u);  // 👋
  EXPECT_EQ(utf8_sequence_length("\xF4\x8F\xBF\xBF", 0), 4u);  // U+10FFFF
  EXPECT_EQ(utf8_sequence_length(std::string_view("\0", 1), 0), 1u);
}

TEST(Utf8, RejectsMalformedSequences) {
  EXPECT_EQ(utf8_sequence_length("\x80", 0), 0u);              // stray continuation
  EXPECT_EQ(utf8_sequence_length("\xC0\x80", 0), 0u);          // overlong NUL
  EXPECT_EQ(utf8_sequence_length("\xC1\xBF", 0), 0u);          // overlong
  EXPECT_EQ(utf8_sequence_length("\xE0\x80\x80", 0), 0u);      // overlong
  EXPECT_EQ(utf8_sequence_length("\xED\xA0\x80", 0), 0u);      // surrogate U+D800
  EXPECT_EQ(utf8_sequence_length("\xF0\x80\x80\x80", 0), 0u);  // overlong
  EXPECT_EQ(utf8_sequence_length("\xF4\x90\x80\x80", 0), 0u);  // above U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\xF5\x80\x80\x80", 0), 0u);
  EXPECT_EQ(utf8_sequence_length("\xFF", 0), 0u);
  EXPECT_EQ(utf8_sequence_length("\xE4\xBD", 0), 0u);  // truncated
  EXPECT_EQ(utf8_sequence_length("\xE4\xBD"
                                 "a",
                                 0),
            0u);  // interrupted
}

TEST(Utf8, DecodeAndAppendAreInverse) {
  for (char32_t cp : {U'\0', U'a', U'\u00E9', U'\u0800', U'\uFFFD', U'\U0001F44B', U'\U0010FFFF'}) {
    std::string encoded;
    utf8_append(encoded, cp);
    const std::size_t length = utf8_sequence_length(encoded, 0);
    ASSERT_EQ(length, encoded.size());
    EXPECT_EQ(utf8_decode(encoded, 0, length), cp);
  }
}

}  // namespace
}  // namespace capkv::llm
