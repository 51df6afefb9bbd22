#include "tokenizer/bpe_merges.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <utility>
#include <vector>

namespace capkv::llm {
namespace {

// BPE written the obvious way: scan for the lowest-rank adjacent pair, leftmost first, merge it,
// start over.
std::vector<TokenId> naive_bpe(
    std::vector<TokenId> symbols,
    const std::map<std::pair<TokenId, TokenId>, BpeMerges::Rule>& rules) {
  while (true) {
    std::size_t best = symbols.size();
    std::int32_t best_rank = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto it = rules.find({symbols[i], symbols[i + 1]});
      if (it != rules.end() && (best == symbols.size() || it->second.rank < best_rank)) {
        best = i;
        best_rank = it->second.rank;
      }
    }
    if (best == symbols.size()) return symbols;
    symbols[best] = rules.at({symbols[best], symbols[best + 1]}).result;
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
}

TEST(BpeMerges, MergesLowestRankFirst) {
  BpeMerges merges;
  merges.add(1, 2, 10, 1);  // a b -> ab (rank 1)
  merges.add(2, 3, 11, 0);  // b c -> bc (rank 0): wins over ab in "abc"
  merges.add(1, 11, 12, 2);
  std::vector<TokenId> symbols = {1, 2, 3};
  merges.apply(symbols);
  EXPECT_EQ(symbols, (std::vector<TokenId>{12}));
}

TEST(BpeMerges, BreaksTiesLeftmostFirst) {
  BpeMerges merges;
  merges.add(1, 1, 5, 0);  // a a -> aa
  std::vector<TokenId> symbols = {1, 1, 1};
  merges.apply(symbols);
  EXPECT_EQ(symbols, (std::vector<TokenId>{5, 1}));
}

TEST(BpeMerges, KeepsTheFirstRankOfADuplicatePair) {
  BpeMerges merges;
  merges.add(1, 2, 10, 3);
  merges.add(1, 2, 11, 7);
  ASSERT_NE(merges.find(1, 2), nullptr);
  EXPECT_EQ(merges.find(1, 2)->rank, 3);
  EXPECT_EQ(merges.find(1, 2)->result, 10);
  EXPECT_EQ(merges.find(2, 1), nullptr);
}

TEST(BpeMerges, AgreesWithTheObviousAlgorithm) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    // Four base symbols and random merges over them and earlier results: dense enough that long
    // chains and competing pairs are common.
    BpeMerges merges;
    std::map<std::pair<TokenId, TokenId>, BpeMerges::Rule> rules;
    TokenId next_id = 4;
    for (std::int32_t rank = 0; rank < 30; ++rank) {
      const TokenId left = static_cast<TokenId>(rng() % next_id);
      const TokenId right = static_cast<TokenId>(rng() % next_id);
      if (rules.contains({left, right})) continue;
      rules[{left, right}] = {rank, next_id};
      merges.add(left, right, next_id, rank);
      ++next_id;
    }
    std::vector<TokenId> symbols(rng() % 60);
    for (TokenId& s : symbols) s = static_cast<TokenId>(rng() % 4);
    const std::vector<TokenId> expected = naive_bpe(symbols, rules);
    merges.apply(symbols);
    ASSERT_EQ(symbols, expected) << "trial " << trial;
  }
}

}  // namespace
}  // namespace capkv::llm
