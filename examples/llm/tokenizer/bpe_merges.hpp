#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocabulary.hpp"

namespace capkv::llm {

// The merge rules of a BPE model, keyed by token ids rather than strings so that merging a piece
// costs integer hashing only.
class BpeMerges {
 public:
  struct Rule {
    std::int32_t rank;  // position in the merge list: lower merges first
    TokenId result;
  };

  // Records that (left, right) merges into `result` at `rank`. A pair listed twice keeps its first
  // (lowest) rank.
  void add(TokenId left, TokenId right, TokenId result, std::int32_t rank);

  const Rule* find(TokenId left, TokenId right) const;

  // Merges `symbols` in place: repeatedly the adjacent pair with the lowest rank, the leftmost one
  // among equals, until no adjacent pair has a rule. O(n log n) with a heap, because a single piece
  // can be a whole file (a long run of letters has no boundary).
  void apply(std::vector<TokenId>& symbols) const;

  std::size_t size() const { return rules_.size(); }

 private:
  static std::uint64_t key(TokenId left, TokenId right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
  }

  std::unordered_map<std::uint64_t, Rule> rules_;
};

}  // namespace capkv::llm
