#include "tokenizer/bpe_merges.hpp"

#include <functional>
#include <queue>

namespace capkv::llm {

void BpeMerges::add(TokenId left, TokenId right, TokenId result, std::int32_t rank) {
  rules_.try_emplace(key(left, right), Rule{rank, result});
}

const BpeMerges::Rule* BpeMerges::find(TokenId left, TokenId right) const {
  const auto it = rules_.find(key(left, right));
  return it == rules_.end() ? nullptr : &it->second;
}

void BpeMerges::apply(std::vector<TokenId>& symbols) const {
  const std::size_t n = symbols.size();
  if (n < 2) return;

  // Symbols form a doubly linked list over their original slots; a merge keeps the left slot and
  // unlinks the right one.
  constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  std::vector<std::size_t> prev(n);
  std::vector<std::size_t> next(n);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = i == 0 ? kNone : i - 1;
    next[i] = i + 1 == n ? kNone : i + 1;
  }

  // Heap entries go stale when a neighbour merges first; they carry the ids they were made for
  // and are dropped on pop if the list no longer holds that pair.
  struct Candidate {
    std::int32_t rank;
    std::size_t left;
    std::size_t right;
    TokenId left_id;
    TokenId right_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto push = [&](std::size_t left) {
    if (left == kNone || next[left] == kNone) return;
    const std::size_t right = next[left];
    if (const Rule* rule = find(symbols[left], symbols[right])) {
      heap.push({rule->rank, left, right, symbols[left], symbols[right]});
    }
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(i);

  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        symbols[c.left] != c.left_id || symbols[c.right] != c.right_id) {
      continue;
    }
    symbols[c.left] = find(c.left_id, c.right_id)->result;
    alive[c.right] = false;
    next[c.left] = next[c.right];
    if (next[c.right] != kNone) prev[next[c.right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }

  std::size_t out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (alive[i]) symbols[out++] = symbols[i];
  }
  symbols.resize(out);
}

}  // namespace capkv::llm
