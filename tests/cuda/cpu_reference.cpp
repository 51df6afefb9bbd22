#include "tests/cuda/cpu_reference.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <cmath>
#include <cstddef>
#include <random>
#include <span>

#include "capkv/capkv.hpp"

namespace capkv_cuda_test::ref {
namespace {

Csr to_csr(const capkv::Selection& s) {
  Csr c;
  c.offsets = s.offsets;
  c.indices = s.indices;
  return c;
}

capkv::Selection to_selection(const Csr& c, std::int64_t n) {
  capkv::Selection s;
  s.n_tokens = n;
  s.offsets = c.offsets;
  s.indices = c.indices;
  return s;
}

}  // namespace

std::vector<double> capacity_matrix(std::int64_t d, std::uint64_t seed, double scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd a = Eigen::MatrixXd::Identity(d, d);
  Eigen::VectorXd base(d);
  for (std::int64_t j = 0; j < d; ++j) base[j] = normal(rng);
  for (std::int64_t i = 0; i < 3 * d; ++i) {
    Eigen::VectorXd u(d);
    for (std::int64_t j = 0; j < d; ++j) u[j] = normal(rng) + (i % 4 == 0 ? 3.0 * base[j] : 0.0);
    a += std::exp(-0.01 * static_cast<double>(i)) * u * u.transpose();
  }
  a *= scale;
  std::vector<double> out(static_cast<std::size_t>(d * d));
  for (std::int64_t r = 0; r < d; ++r) {
    for (std::int64_t c = 0; c < d; ++c) out[r * d + c] = a(r, c);
  }
  return out;
}

std::vector<double> inverse_factor_t(const std::vector<double>& a, std::int64_t d) {
  Eigen::MatrixXd m(d, d);
  for (std::int64_t r = 0; r < d; ++r) {
    for (std::int64_t c = 0; c < d; ++c) m(r, c) = a[r * d + c];
  }
  const Eigen::LLT<Eigen::MatrixXd> llt(m);
  const Eigen::MatrixXd l_inv = llt.matrixL().solve(Eigen::MatrixXd::Identity(d, d));
  std::vector<double> w(static_cast<std::size_t>(d * d));
  for (std::int64_t r = 0; r < d; ++r) {
    for (std::int64_t c = 0; c < d; ++c) w[r * d + c] = l_inv(c, r);
  }
  return w;
}

void weighted_gram(const capkv::TensorView& basis, std::int64_t kv, const float* weights,
                   std::int64_t begin, float eps, double ridge, std::vector<double>& gram,
                   std::vector<double>& magnitude) {
  const std::int64_t n = basis.n_tokens();
  const std::int64_t d = basis.head_dim();
  gram.assign(static_cast<std::size_t>(d * d), 0.0);
  magnitude.assign(static_cast<std::size_t>(d * d), 0.0);
  std::vector<double> u(static_cast<std::size_t>(std::max<std::int64_t>(n, 1) * d));
  std::vector<double> w(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)));
  for (std::int64_t i = begin; i < n; ++i) {
    for (std::int64_t a = 0; a < d; ++a) u[i * d + a] = basis.at(i, kv, a);
    w[i] = static_cast<double>(weights ? weights[i] : 1.0f) + static_cast<double>(eps);
  }
#pragma omp parallel for schedule(static)
  for (std::int64_t a = 0; a < d; ++a) {
    for (std::int64_t i = begin; i < n; ++i) {
      const double wa = w[i] * u[i * d + a];
      for (std::int64_t b = 0; b < d; ++b) {
        gram[a * d + b] += wa * u[i * d + b];
        magnitude[a * d + b] += std::abs(wa * u[i * d + b]);
      }
    }
    gram[a * d + a] += ridge;
  }
}

Csr select(const std::vector<float>& scores, std::int64_t heads, std::int64_t n, std::int64_t ld,
           const capkv::Protection& protection, std::int64_t budget, bool adaptive) {
  capkv::ScoreMatrix m(heads, n);
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t i = 0; i < n; ++i) m(h, i) = scores[h * ld + i];
  }
  return to_csr(capkv::select_from_scores(
      m, protection, budget,
      adaptive ? capkv::HeadBudgets::adaptive() : capkv::HeadBudgets::uniform()));
}

std::vector<float> key_scores(const capkv::TensorView& keys, bool position) {
  capkv::LayerInputs in;
  in.keys = keys;
  const capkv::Scores s =
      position ? capkv::cpu::Scorer<capkv::StreamingLLM>::score({}, in, keys.n_tokens())
               : capkv::cpu::Scorer<capkv::L2Norm>::score({}, in, keys.n_tokens());
  return {s.values.data(), s.values.data() + s.values.size()};
}

void compact(const capkv::TensorView& source, const Csr& selection,
             const capkv::MutableTensorView& out) {
  capkv::compact(source, to_selection(selection, source.n_tokens()), out);
}

void compact_varlen(const capkv::TensorView& source, const Csr& selection,
                    std::vector<unsigned char>& out) {
  capkv::compact_varlen(source, to_selection(selection, source.n_tokens()),
                        std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size()));
}

std::vector<float> capkv_weights(const capkv::CapKV::Config& config, const capkv::LayerInputs& in) {
  const std::int64_t n = in.n_tokens();
  const std::int64_t hq = in.n_query_heads();
  const std::int64_t g = in.group_size();
  const std::int64_t begin = std::min(config.sinks, n);
  std::vector<float> out(static_cast<std::size_t>(hq * n));
  for (std::int64_t kv = 0; kv < in.n_kv_heads(); ++kv) {
    const capkv::cpu::HeadMatrix keys(in.keys, kv, "keys");
    for (std::int64_t j = 0; j < g; ++j) {
      const Eigen::RowVectorXf w = capkv::cpu::detail::capkv_weights(
          config, keys.matrix(), capkv::cpu::detail::capkv_anchor(config, in, kv * g + j), begin);
      for (std::int64_t i = 0; i < n; ++i) out[(kv * g + j) * n + i] = w[i];
    }
  }
  return out;
}

std::vector<float> capkv_anchors(const capkv::CapKV::Config& config, const capkv::LayerInputs& in) {
  const std::int64_t d = in.keys.head_dim();
  std::vector<float> out(static_cast<std::size_t>(in.n_query_heads() * d));
  for (std::int64_t h = 0; h < in.n_query_heads(); ++h) {
    const Eigen::VectorXf mu = capkv::cpu::detail::capkv_anchor(config, in, h);
    for (std::int64_t c = 0; c < d; ++c) out[h * d + c] = mu[c];
  }
  return out;
}

namespace {

template <class Policy>
CapKVResult select_with_scores(const Policy& policy, const capkv::LayerInputs& in,
                               const capkv::Budget& budget, capkv::GqaReduction gqa) {
  capkv::SelectOptions options;
  options.gqa = gqa;
  options.return_scores = true;
  const capkv::Selection s = capkv::select(policy, in, budget, options);
  CapKVResult r;
  r.selection = to_csr(s);
  r.scores.assign(s.scores.data(), s.scores.data() + s.scores.size());
  return r;
}

}  // namespace

CapKVResult capkv_select(const capkv::CapKV& policy, const capkv::LayerInputs& in,
                         const capkv::Budget& budget, capkv::GqaReduction gqa) {
  return select_with_scores(policy, in, budget, gqa);
}

CapKVResult snapkv_select(const capkv::SnapKV& policy, const capkv::LayerInputs& in,
                          const capkv::Budget& budget, capkv::GqaReduction gqa) {
  return select_with_scores(policy, in, budget, gqa);
}

CapKVResult h2o_select(const capkv::H2O& policy, const capkv::LayerInputs& in,
                       const capkv::Budget& budget) {
  return select_with_scores(policy, in, budget, capkv::GqaReduction::kMean);  // per KV head already
}

}  // namespace capkv_cuda_test::ref
