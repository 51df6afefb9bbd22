#pragma once

// Test caches for the policy tests: the ground truth is always an fp32 [tokens, heads, dim] tensor
// owned by the test (HostTensor); views in other dtypes, layouts and strides are derived from it
// (StoredTensor), and the float64 references read it directly.

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <optional>
#include <vector>

#include "capkv/capkv.hpp"

namespace capkv_test {

// splitmix64 and Box-Muller written out, because std::normal_distribution differs between
// standard libraries: a seed chosen for well-separated scores must stay so under libc++ too.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// An fp32 [tokens, heads, dim] tensor, packed tokens-heads-dim.
struct HostTensor {
  std::int64_t tokens = 0;
  std::int64_t heads = 0;
  std::int64_t dim = 0;
  std::vector<float> data;

  HostTensor() = default;
  HostTensor(std::int64_t t, std::int64_t h, std::int64_t d)
      : tokens(t), heads(h), dim(d), data(static_cast<std::size_t>(t * h * d), 0.0f) {}

  bool empty() const { return data.empty() && tokens == 0; }
  std::size_t index(std::int64_t t, std::int64_t h, std::int64_t i) const {
    return static_cast<std::size_t>((t * heads + h) * dim + i);
  }
  float& operator()(std::int64_t t, std::int64_t h, std::int64_t i) { return data[index(t, h, i)]; }
  float operator()(std::int64_t t, std::int64_t h, std::int64_t i) const {
    return data[index(t, h, i)];
  }

  Eigen::VectorXd row(std::int64_t t, std::int64_t h) const {
    Eigen::VectorXd x(dim);
    for (std::int64_t i = 0; i < dim; ++i) x[i] = (*this)(t, h, i);
    return x;
  }
  void set_row(std::int64_t t, std::int64_t h, const Eigen::VectorXd& x) {
    for (std::int64_t i = 0; i < dim; ++i) (*this)(t, h, i) = static_cast<float>(x[i]);
  }
  // One head as a float64 [tokens, dim] matrix.
  Eigen::MatrixXd head(std::int64_t h) const {
    Eigen::MatrixXd m(tokens, dim);
    for (std::int64_t t = 0; t < tokens; ++t) m.row(t) = row(t, h).transpose();
    return m;
  }

  capkv::TensorView view() const {
    return capkv::TensorView(data.data(), capkv::DType::kF32, capkv::Layout::kTokensHeadsDim,
                             tokens, heads, dim)
        .with_extent(static_cast<std::int64_t>(data.size()));
  }
};

inline HostTensor random_tensor(std::int64_t tokens, std::int64_t heads, std::int64_t dim, Rng& rng,
                                double stddev = 1.0) {
  HostTensor x(tokens, heads, dim);
  for (float& v : x.data) v = static_cast<float>(stddev * rng.normal());
  return x;
}

inline float round_trip(float x, capkv::DType dtype) {
  switch (dtype) {
    case capkv::DType::kF32:
      return x;
    case capkv::DType::kF16:
      return capkv::half_to_float(capkv::float_to_half(x));
    case capkv::DType::kBF16:
      return capkv::bf16_to_float(capkv::float_to_bf16(x));
  }
  return x;
}

// The values a half-precision view of `x` actually holds, for references on the rounded input.
inline HostTensor rounded(const HostTensor& x, capkv::DType dtype) {
  HostTensor y = x;
  for (float& v : y.data) v = round_trip(v, dtype);
  return y;
}

// One layer's worth of inputs. Query row r sits at position n - m + r (the last m prompt tokens).
struct Layer {
  HostTensor keys;              // [n, Hkv, d]
  HostTensor values;            // [n, Hkv, dv]
  HostTensor queries;           // [m, Hq, d], after RoPE; empty when not given
  HostTensor queries_pre_rope;  // [m, Hq, d]; empty when not given
  std::optional<capkv::Rope> rope;
  std::int64_t layer = 0;

  std::int64_t n() const { return keys.tokens; }
  std::int64_t kv_heads() const { return keys.heads; }
  std::int64_t dim() const { return keys.dim; }
  const HostTensor& any_queries() const { return queries.empty() ? queries_pre_rope : queries; }
  std::int64_t m() const { return any_queries().tokens; }
  std::int64_t query_heads() const {
    return any_queries().empty() ? kv_heads() : any_queries().heads;
  }
  std::int64_t group() const { return query_heads() / kv_heads(); }

  capkv::LayerInputs inputs() const {
    capkv::LayerInputs in;
    in.keys = keys.view();
    if (!values.empty()) in.values = values.view();
    if (!queries.empty()) in.queries = queries.view();
    if (!queries_pre_rope.empty()) in.queries_pre_rope = queries_pre_rope.view();
    in.rope = rope;
    in.layer = layer;
    return in;
  }
};

struct LayerShape {
  std::int64_t n = 64;  // cached tokens
  std::int64_t kv_heads = 2;
  std::int64_t group = 1;  // query heads per KV head
  std::int64_t dim = 16;
  std::int64_t queries = 0;    // prompt queries given (m); 0 means all n
  std::int64_t value_dim = 0;  // 0 means dim
};

// Standard normal K, V and Q.
inline Layer random_layer(const LayerShape& s, std::uint64_t seed) {
  Rng rng(seed);
  Layer l;
  const std::int64_t m = s.queries > 0 ? s.queries : s.n;
  l.keys = random_tensor(s.n, s.kv_heads, s.dim, rng);
  l.values = random_tensor(s.n, s.kv_heads, s.value_dim > 0 ? s.value_dim : s.dim, rng);
  l.queries = random_tensor(m, s.kv_heads * s.group, s.dim, rng);
  return l;
}

// Query heads of a GQA group read the same keys and in trained models look alike: every query of a
// group becomes a shared per-row vector plus `spread` times its own.
inline void correlate_group_queries(Layer& l, double spread) {
  const std::int64_t g = l.group();
  for (std::int64_t r = 0; r < l.queries.tokens; ++r) {
    for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) {
      const Eigen::VectorXd shared = l.queries.row(r, kv * g);
      for (std::int64_t j = 1; j < g; ++j) {
        l.queries.set_row(r, kv * g + j, shared + spread * l.queries.row(r, kv * g + j));
      }
    }
  }
}

// A layer whose queries all point roughly along one direction per KV head (returned through
// `directions`): every query is `alignment` times that unit vector plus standard normal noise, and
// the keys are `key_scale` times standard normal. Keys boosted along the direction then draw
// attention from every query in proportion to their strength, which makes attention scores well
// separated by construction.
inline Layer focused_layer(const LayerShape& s, std::uint64_t seed, double alignment,
                           double key_scale, std::vector<Eigen::VectorXd>* directions) {
  Layer l = random_layer(s, seed);
  Rng rng(seed ^ 0xABCDEFull);
  for (float& k : l.keys.data) k *= static_cast<float>(key_scale);
  directions->clear();
  for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) {
    Eigen::VectorXd e(l.dim());
    for (std::int64_t i = 0; i < l.dim(); ++i) e[i] = rng.normal();
    directions->push_back(e.normalized());
    for (std::int64_t r = 0; r < l.queries.tokens; ++r) {
      for (std::int64_t j = 0; j < s.group; ++j) {
        const std::int64_t h = kv * s.group + j;
        l.queries.set_row(r, h, alignment * directions->back() + l.queries.row(r, h));
      }
    }
  }
  return l;
}

// Makes the current queries the pre-RoPE ones and the post-RoPE queries their rotation to positions
// n - m + r with the library's RoPE, as an engine would hand both to the kvpress CapKV preset.
inline void apply_rope_to_queries(Layer& l, const capkv::Rope& rope) {
  l.rope = rope;
  l.queries_pre_rope = l.queries;
  const std::int64_t first = l.n() - l.m();
  for (std::int64_t r = 0; r < l.m(); ++r) {
    for (std::int64_t h = 0; h < l.queries.heads; ++h) {
      rope.rotate(&l.queries(r, h, 0), l.dim(), static_cast<double>(first + r));
    }
  }
}

// The mean direction of the queries of KV head kv's group (pre- or post-RoPE, whichever exists).
inline Eigen::VectorXd group_query_direction(const Layer& l, std::int64_t kv) {
  const HostTensor& q = l.any_queries();
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(l.dim());
  for (std::int64_t j = 0; j < l.group(); ++j) {
    for (std::int64_t r = 0; r < q.tokens; ++r) mean += q.row(r, kv * l.group() + j);
  }
  return mean.normalized();
}

// Pushes token t's key in every KV head toward its group's queries: a large strength makes an
// attention sink (every query puts most of its mass there), a moderate one a heavy hitter.
inline void boost_toward_queries(Layer& l, std::int64_t t, double strength) {
  for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) {
    l.keys.set_row(t, kv, l.keys.row(t, kv) + strength * group_query_direction(l, kv));
  }
}

// The same along a given unit direction of one KV head.
inline void boost_along(Layer& l, std::int64_t t, std::int64_t kv, const Eigen::VectorXd& direction,
                        double strength) {
  l.keys.set_row(t, kv, l.keys.row(t, kv) + strength * direction);
}

// Token `to` becomes an exact copy of token `from` (keys and values, every head).
inline void duplicate_token(Layer& l, std::int64_t from, std::int64_t to) {
  for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
    l.keys.set_row(to, h, l.keys.row(from, h));
    if (!l.values.empty()) l.values.set_row(to, h, l.values.row(from, h));
  }
}

// Token `to` becomes token `from` plus a perturbation of relative size `delta` (keys and values).
inline void make_near_collinear(Layer& l, std::int64_t from, std::int64_t to, double delta,
                                Rng& rng) {
  for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
    Eigen::VectorXd k = l.keys.row(from, h);
    for (std::int64_t i = 0; i < k.size(); ++i) k[i] *= 1.0 + delta * rng.normal();
    l.keys.set_row(to, h, k);
    if (l.values.empty()) continue;
    Eigen::VectorXd v = l.values.row(from, h);
    for (std::int64_t i = 0; i < v.size(); ++i) v[i] *= 1.0 + delta * rng.normal();
    l.values.set_row(to, h, v);
  }
}

// How a tensor is stored: dtype, packed order, extra elements after every token row (a paged or
// preallocated cache) and the distance between consecutive elements of a row.
struct StorageSpec {
  capkv::DType dtype = capkv::DType::kF32;
  capkv::Layout layout = capkv::Layout::kTokensHeadsDim;
  std::int64_t token_pad = 0;
  std::int64_t dim_stride = 1;
};

// A HostTensor copied into caller-style storage described by a StorageSpec. Every element the view
// does not address holds NaN, so a library read outside the view shows up as a bad-input error.
class StoredTensor {
 public:
  StoredTensor(const HostTensor& x, const StorageSpec& spec) : spec_(spec), shape_(x) {
    const std::int64_t ds = spec.dim_stride;
    if (spec.layout == capkv::Layout::kTokensHeadsDim) {
      strides_.dim = ds;
      strides_.head = x.dim * ds;
      strides_.token = x.heads * x.dim * ds + spec.token_pad;
      elements_ = x.tokens * strides_.token;
    } else {
      strides_.dim = ds;
      strides_.token = x.dim * ds + spec.token_pad;
      strides_.head = x.tokens * strides_.token;
      elements_ = x.heads * strides_.head;
    }
    const float nan = std::numeric_limits<float>::quiet_NaN();
    if (spec.dtype == capkv::DType::kF32) {
      f32_.assign(static_cast<std::size_t>(elements_), nan);
    } else {
      u16_.assign(static_cast<std::size_t>(elements_), encode(nan));
    }
    for (std::int64_t t = 0; t < x.tokens; ++t) {
      for (std::int64_t h = 0; h < x.heads; ++h) {
        for (std::int64_t i = 0; i < x.dim; ++i) set(t, h, i, x(t, h, i));
      }
    }
  }
  // The view points into the vectors, whose buffers survive a move but not a copy.
  StoredTensor(StoredTensor&&) = default;
  StoredTensor(const StoredTensor&) = delete;
  StoredTensor& operator=(const StoredTensor&) = delete;

  void set(std::int64_t t, std::int64_t h, std::int64_t i, float value) {
    const std::int64_t o = t * strides_.token + h * strides_.head + i * strides_.dim;
    if (spec_.dtype == capkv::DType::kF32) {
      f32_[static_cast<std::size_t>(o)] = value;
    } else {
      u16_[static_cast<std::size_t>(o)] = encode(value);
    }
  }

  capkv::MutableTensorView view() {
    void* data = f32_.empty() ? static_cast<void*>(u16_.data()) : static_cast<void*>(f32_.data());
    return capkv::MutableTensorView(data, spec_.dtype, shape_.tokens, shape_.heads, shape_.dim,
                                    strides_)
        .with_extent(elements_);
  }
  // Bytes of the whole allocation, to prove a failed call wrote nothing.
  std::vector<unsigned char> bytes() const {
    const auto* p = f32_.empty() ? reinterpret_cast<const unsigned char*>(u16_.data())
                                 : reinterpret_cast<const unsigned char*>(f32_.data());
    return {p, p + elements_ * static_cast<std::int64_t>(capkv::size_of(spec_.dtype))};
  }

 private:
  std::uint16_t encode(float v) const {
    return spec_.dtype == capkv::DType::kF16 ? capkv::float_to_half(v) : capkv::float_to_bf16(v);
  }

  StorageSpec spec_;
  HostTensor shape_;  // only the shape is used; kept whole for simplicity
  capkv::Strides strides_;
  std::int64_t elements_ = 0;
  std::vector<float> f32_;
  std::vector<std::uint16_t> u16_;
};

// A Layer re-stored with one StorageSpec for every tensor it holds.
struct StoredLayer {
  StoredLayer(const Layer& l, const StorageSpec& spec)
      : keys(l.keys, spec), rope(l.rope), layer(l.layer) {
    if (!l.values.empty()) values.emplace(l.values, spec);
    if (!l.queries.empty()) queries.emplace(l.queries, spec);
    if (!l.queries_pre_rope.empty()) queries_pre_rope.emplace(l.queries_pre_rope, spec);
  }

  capkv::LayerInputs inputs() {
    capkv::LayerInputs in;
    in.keys = keys.view();
    if (values) in.values = values->view();
    if (queries) in.queries = queries->view();
    if (queries_pre_rope) in.queries_pre_rope = queries_pre_rope->view();
    in.rope = rope;
    in.layer = layer;
    return in;
  }

  StoredTensor keys;
  std::optional<StoredTensor> values;
  std::optional<StoredTensor> queries;
  std::optional<StoredTensor> queries_pre_rope;
  std::optional<capkv::Rope> rope;
  std::int64_t layer = 0;
};

}  // namespace capkv_test
