#include "tokenizer/byte_unicode.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace capkv::llm {
namespace {

TEST(ByteUnicode, MatchesGpt2Spellings) {
  const ByteUnicodeMap& map = ByteUnicodeMap::instance();
  EXPECT_EQ(map.spelling(' '), "\u0120");   // Ġ
  EXPECT_EQ(map.spelling('\n'), "\u010A");  // Ċ
  EXPECT_EQ(map.spelling('\t'), "\u0109");  // ĉ
  EXPECT_EQ(map.spelling(0), "\u0100");
  EXPECT_EQ(map.spelling(0x7F), "\u0121");  // DEL follows the 33 controls and space
  EXPECT_EQ(map.spelling(0xAD), "\u0143");  // soft hyphen is the last moved byte
  EXPECT_EQ(map.spelling('A'), "A");
  EXPECT_EQ(map.spelling(0xE9), "\u00E9");
}

TEST(ByteUnicode, IsABijection) {
  const ByteUnicodeMap& map = ByteUnicodeMap::instance();
  std::set<char32_t> seen;
  for (unsigned b = 0; b < 256; ++b) {
    const char32_t cp = map.code_point(static_cast<unsigned char>(b));
    EXPECT_TRUE(seen.insert(cp).second) << "byte " << b;
    ASSERT_TRUE(map.byte(cp).has_value());
    EXPECT_EQ(*map.byte(cp), b);
  }
  EXPECT_FALSE(map.byte(U' ').has_value());  // space is spelled Ġ, so U+0020 stands for no byte
  EXPECT_FALSE(map.byte(U'\u0144').has_value());
}

TEST(ByteUnicode, ToBytesInvertsSpelling) {
  const ByteUnicodeMap& map = ByteUnicodeMap::instance();
  std::string all_bytes;
  std::string spelled;
  for (unsigned b = 0; b < 256; ++b) {
    all_bytes.push_back(static_cast<char>(b));
    spelled += map.spelling(static_cast<unsigned char>(b));
  }
  EXPECT_EQ(map.to_bytes(spelled), all_bytes);
  EXPECT_EQ(map.to_bytes("\u0120world"), " world");
  // Characters outside the mapping (in control tokens) are their own UTF-8.
  EXPECT_EQ(map.to_bytes("<|im_start|>"), "<|im_start|>");
  EXPECT_EQ(map.to_bytes("x\u4F60"), "x\u4F60");
}

}  // namespace
}  // namespace capkv::llm
