#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "capkv/core/error.hpp"
#include "capkv/core/rope.hpp"
#include "capkv/core/tensor_view.hpp"

namespace capkv {

// Everything a policy may read for one layer, as views of the engine's own buffers.
//
// The cache holds n tokens at positions 0..n-1. The queries are those of the last m prompt
// positions (n-m .. n-1), m >= 1; most policies use only the last few of them (the observation
// window), H2O's prefill uses all it is given.
struct LayerInputs {
  TensorView keys;                             // [n, Hkv, d], after RoPE, as cached
  TensorView values;                           // [n, Hkv, dv]
  std::optional<TensorView> queries;           // [m, Hq, d], after RoPE
  std::optional<TensorView> queries_pre_rope;  // [m, Hq, d], the same queries before RoPE
  std::optional<Rope> rope;                    // how the model rotates (CapKV kvpress anchor)
  std::int64_t layer = 0;                      // index of this layer in the model

  std::int64_t n_tokens() const { return keys.n_tokens(); }
  std::int64_t n_kv_heads() const { return keys.n_heads(); }
  // From whichever queries were given (the kvpress anchor needs only the pre-RoPE ones).
  std::int64_t n_query_heads() const {
    if (queries) return queries->n_heads();
    if (queries_pre_rope) return queries_pre_rope->n_heads();
    return keys.n_heads();
  }
  std::int64_t group_size() const { return n_query_heads() / n_kv_heads(); }
};

// What a policy reads besides the keys.
struct InputNeeds {
  bool values = false;
  bool queries = false;
  bool queries_pre_rope = false;
  bool rope = false;
};

namespace detail {

inline void check_queries(const TensorView& q, std::string_view name, const TensorView& keys) {
  q.validate(name);
  require(q.n_tokens() >= 1, name, "needs at least one query");
  require(q.head_dim() == keys.head_dim(), name, "head_dim differs from the keys'");
  require(q.n_heads() % keys.n_heads() == 0, name,
          "query heads (" + std::to_string(q.n_heads()) + ") are not a multiple of KV heads (" +
              std::to_string(keys.n_heads()) + ")");
}

}  // namespace detail

// Shape checks, before anything is computed or written. Values are checked for finiteness later,
// as they are read.
inline void validate(const LayerInputs& in, const InputNeeds& needs) {
  in.keys.validate("keys");
  if (needs.values) {
    in.values.validate("values");
    require(in.values.n_tokens() == in.keys.n_tokens(), "values", "token count differs from the keys'");
    require(in.values.n_heads() == in.keys.n_heads(), "values", "head count differs from the keys'");
  }
  if (needs.queries) {
    require(in.queries.has_value(), "queries", "this policy needs the window queries");
    detail::check_queries(*in.queries, "queries", in.keys);
  } else if (in.queries) {
    detail::check_queries(*in.queries, "queries", in.keys);
  }
  if (needs.queries_pre_rope) {
    require(in.queries_pre_rope.has_value(), "queries_pre_rope",
            "this policy needs the queries before RoPE");
    detail::check_queries(*in.queries_pre_rope, "queries_pre_rope", in.keys);
  }
  if (in.queries && in.queries_pre_rope) {
    require(in.queries_pre_rope->n_heads() == in.queries->n_heads(), "queries_pre_rope",
            "has a different number of heads than the queries");
  }
  if (needs.rope) {
    require(in.rope.has_value(), "rope", "this policy needs the RoPE parameters");
    require(in.keys.head_dim() % 2 == 0, "keys", "RoPE needs an even head_dim");
  }
}

}  // namespace capkv
