#include "tokenizer/pre_tokenizer.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace capkv::llm {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(std::string_view text) {
  static const PreTokenizer pre_tokenizer;
  Pieces pieces;
  for (const std::string_view piece : pre_tokenizer.split(text)) pieces.emplace_back(piece);
  return pieces;
}

TEST(PreTokenizer, EmptyTextHasNoPieces) { EXPECT_TRUE(split("").empty()); }

TEST(PreTokenizer, SplitsEveryDigitAlone) {
  EXPECT_EQ(split("12345"), (Pieces{"1", "2", "3", "4", "5"}));
  // The space before a number is left alone: the digits were split out before the regex ran.
  EXPECT_EQ(split("1234 apples"), (Pieces{"1", "2", "3", "4", " apples"}));
  EXPECT_EQ(split("a 12"), (Pieces{"a", " ", "1", "2"}));
  EXPECT_EQ(split("x2y"), (Pieces{"x", "2", "y"}));
  // \p{N} is every numeric character, not only ASCII: superscripts, fractions, other scripts.
  EXPECT_EQ(split("\u00B2\u00BD\u0663\u2167"), (Pieces{"\u00B2", "\u00BD", "\u0663", "\u2167"}));
}

TEST(PreTokenizer, WordsTakeTheirLeadingSpace) {
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split("Hello, world!"), (Pieces{"Hello", ",", " world", "!"}));
  EXPECT_EQ(split("a ... b"), (Pieces{"a", " ...", " b"}));
}

TEST(PreTokenizer, WhitespaceRunsLeaveTheLastSpaceToTheNextWord) {
  EXPECT_EQ(split("a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(split("  leading spaces"), (Pieces{" ", " leading", " spaces"}));
  EXPECT_EQ(split("trailing  "), (Pieces{"trailing", "  "}));
  EXPECT_EQ(split("   "), (Pieces{"   "}));
  EXPECT_EQ(split("a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split("a\n\n b"), (Pieces{"a", "\n\n", " b"}));
  EXPECT_EQ(split("\tfoo\t"), (Pieces{"\t", "foo", "\t"}));
  EXPECT_EQ(split("x\r\n"), (Pieces{"x", "\r\n"}));
  // Unicode spaces count as whitespace (UCP), and only an ASCII space joins the next word.
  EXPECT_EQ(split("a\u00A0b"), (Pieces{"a", "\u00A0", "b"}));
  EXPECT_EQ(split("a\u3000 b"), (Pieces{"a", "\u3000", " b"}));
  EXPECT_EQ(split("a\u0085 b"), (Pieces{"a", "\u0085", " b"}));  // NEL is White_Space
}

TEST(PreTokenizer, FollowsUnicodeWhiteSpaceRatherThanPcre2sSpaceClass) {
  // U+180E stopped being a space in Unicode 6.3; PCRE2's \s still matches it, the reference does
  // not. Expected pieces are Hugging Face's.
  EXPECT_EQ(split("a\u180Eb"), (Pieces{"a", "\u180E", "b"}));
  EXPECT_EQ(split("a \u180E"), (Pieces{"a", " \u180E"}));
  // Nor are the ASCII information separators whitespace, although some libraries say so.
  EXPECT_EQ(split("a\x1C b"), (Pieces{"a", "\x1C", " b"}));
}

TEST(PreTokenizer, SplitsLowercaseContractions) {
  EXPECT_EQ(split("don't"), (Pieces{"don", "'t"}));
  EXPECT_EQ(
      split("I'm we're they've he'll she'd it's"),
      (Pieces{"I", "'m", " we", "'re", " they", "'ve", " he", "'ll", " she", "'d", " it", "'s"}));
  // As in GPT-2 the contraction branch is case-sensitive.
  EXPECT_EQ(split("IT'S"), (Pieces{"IT", "'", "S"}));
}

TEST(PreTokenizer, HandlesNonAsciiLetters) {
  EXPECT_EQ(split("\u4F60\u597D\u4E16\u754C"), (Pieces{"\u4F60\u597D\u4E16\u754C"}));  // 你好世界
  EXPECT_EQ(split("caf\u00E9 na\u00EFve"), (Pieces{"caf\u00E9", " na\u00EFve"}));
  EXPECT_EQ(split("\u041F\u0440\u0438\u0432\u0435\u0442 \u043C\u0438\u0440"),
            (Pieces{"\u041F\u0440\u0438\u0432\u0435\u0442", " \u043C\u0438\u0440"}));
  // A combining mark is neither letter nor number, so it leaves the word it decorates.
  EXPECT_EQ(split("e\u0301t\u00E9"), (Pieces{"e", "\u0301", "t\u00E9"}));
  EXPECT_EQ(split("hi \U0001F44B\U0001F30D!"), (Pieces{"hi", " \U0001F44B\U0001F30D!"}));
}

TEST(PreTokenizer, ControlTokenTextIsOrdinaryText) {
  EXPECT_EQ(split("<|im_start|>user"), (Pieces{"<|", "im", "_", "start", "|>", "user"}));
}

TEST(PreTokenizer, InvalidBytesBecomeOneBytePieces) {
  EXPECT_EQ(split("ab\xFF"
                  "cd"),
            (Pieces{"ab", "\xFF", "cd"}));
  EXPECT_EQ(split("\xE4\xBD"), (Pieces{"\xE4", "\xBD"}));              // truncated 你
  EXPECT_EQ(split("\xED\xA0\x80"), (Pieces{"\xED", "\xA0", "\x80"}));  // surrogate
  EXPECT_EQ(split(std::string_view("a\0b", 3)), (Pieces{"a", std::string("\0", 1), "b"}));
}

TEST(PreTokenizer, PiecesConcatenateToTheInputForArbitraryBytes) {
  std::mt19937 rng(7);
  static const std::vector<std::string> kAtoms = {
      "a",      "Z", " ",      "  ",     "\n",         "\t",       "'",
      "'s",     "7", "\u00E9", "\u4F60", "\U0001F600", "\u0301",   "\u00A0",
      "\u3000", ".", "\xFF",   "\xC3",   "\x80",       "\xF0\x9F", std::string(1, '\0')};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int atoms = static_cast<int>(rng() % 40);
    for (int i = 0; i < atoms; ++i) text += kAtoms[rng() % kAtoms.size()];
    std::string joined;
    for (const std::string& piece : split(text)) {
      EXPECT_FALSE(piece.empty());
      joined += piece;
    }
    ASSERT_EQ(joined, text);
  }
}

TEST(PreTokenizer, CopesWithHugeRuns) {
  // Long runs exercise backtracking in \s+(?!\S) and PCRE2's JIT stack.
  for (const char c : {' ', 'a', '.', '\n'}) {
    const std::string text = std::string(1 << 20, c) + "x";
    std::size_t total = 0;
    for (const std::string& piece : split(text)) total += piece.size();
    EXPECT_EQ(total, text.size());
  }
}

}  // namespace
}  // namespace capkv::llm
