#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "eval/passkey.hpp"
#include "eval/protocol.hpp"

namespace capkv::llm::eval {
namespace {

TEST(MakeWindows, SpreadsEvenlyFromTheStartToTheEnd) {
  std::vector<TokenId> text(100);
  std::iota(text.begin(), text.end(), 0);
  const auto windows = make_windows("t", text, 40, 3);
  ASSERT_EQ(windows.size(), 3u);
  EXPECT_EQ(windows[0].token_offset, 0);
  EXPECT_EQ(windows[1].token_offset, 30);
  EXPECT_EQ(windows[2].token_offset, 60);
  EXPECT_EQ(windows[2].tokens.back(), 99);
  EXPECT_EQ(windows[1].tokens.size(), 40u);
  EXPECT_THROW(make_windows("t", text, 101, 1), std::invalid_argument);
}

TEST(Passkey, FoundOnlyWhenAllFiveDigitsAppearTogether) {
  EXPECT_TRUE(passkey_found(" 71432. Remember", "71432"));
  EXPECT_FALSE(passkey_found(" 7143", "71432"));
  EXPECT_FALSE(passkey_found(" 7 1 4 3 2", "71432"));
  EXPECT_FALSE(passkey_found("anything", ""));
  EXPECT_EQ(passkey_sentence("71432"),
            " The pass key is 71432. Remember it. 71432 is the pass key.");
}

}  // namespace
}  // namespace capkv::llm::eval
