// CapKV's hot path on its own: capkv::cpu::weighted_leverage over one basis U (n x d) and g weight
// rows, against a naive transcription of the formula, so the speedup is a ratio from one run.
//
// Flops, per query head (g rows of weights = g heads), counted as the kernel executes them:
//   Gram      A = ridge I + sum_i (w_i + eps) u_i u_i^T   2 n d^2 (a full GEMM, both triangles)
//   leverage  s_i = w_i ||L^-1 u_i||^2                   2 n d^2 (U times the dense L^-T)
// so 4 n d^2 per head. The floor is 2 n d^2: a symmetric rank-k update (n d^2) and a triangular
// product (n d^2) do the same math; the summariser reports the time against both.

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/LU>
#include <cmath>
#include <cstdint>
#include <string>

#include "capkv/cpu/weighted_leverage.hpp"
#include "registry.hpp"
#include "synthetic.hpp"

namespace capkv::bench {
namespace {

using cpu::RowMatrixXf;

constexpr std::int64_t kSinks = 4;
constexpr double kEps = 1e-6;
constexpr double kRidge = 1.0;

// A basis of n tokens with `stride` floats between rows (d for a packed head, Hkv * d for one head
// read in place from a [tokens, heads, dim] cache), and CapKV-like weights exp(5 (t - max t)).
struct Problem {
  std::int64_t n, d, g, stride;
  std::vector<float> storage;
  RowMatrixXf weights;

  Problem(std::int64_t n_, std::int64_t d_, std::int64_t g_, std::int64_t stride_)
      : n(n_), d(d_), g(g_), stride(stride_), storage(static_cast<std::size_t>(n_ * stride_)) {
    fill(storage, 6);
    weights.resize(g, n);
    for (std::int64_t h = 0; h < g; ++h) {
      for (std::int64_t i = 0; i < n; ++i) {
        weights(h, i) = i < kSinks ? 0.0f : std::exp(5.0f * (noise(7 + h, i) - 1.0f));
      }
    }
  }
  cpu::ConstRowMap basis() const {
    return cpu::ConstRowMap(storage.data(), n, d, Eigen::OuterStride<>(stride));
  }
  double flop() const { return 4.0 * g * n * d * d; }
  double byte() const { return 4.0 * n * d; }  // U read once
};

void set_shape(benchmark::State& state, const Problem& p) {
  state.counters["threads"] = max_threads();
  state.counters["n"] = static_cast<double>(p.n);
  state.counters["d"] = static_cast<double>(p.d);
  state.counters["g"] = static_cast<double>(p.g);
  set_work(state, p.flop(), p.byte());
}

void weighted_leverage(benchmark::State& state, std::int64_t n, std::int64_t d, std::int64_t g,
                       std::int64_t stride, int threads) {
  const ThreadScope scope(threads);
  const Problem p(n, d, g, stride);
  const cpu::ConstRowMap u = p.basis();
  for (auto _ : state) {
    RowMatrixXf s = cpu::weighted_leverage(u, p.weights, kSinks, kEps, kRidge);
    benchmark::DoNotOptimize(s.data());
  }
  set_shape(state, p);
}

// The formula as written, with no structure exploited: A accumulated one token at a time, an
// explicit inverse, then u_i^T A^-1 u_i one token at a time. Same 4 n d^2 flops per head as the
// real path, but as rank-1 updates and matrix-vector products (memory bound, one thread: Eigen only
// threads matrix-matrix products), so the ratio shows what blocking into GEMMs and OpenMP buy.
RowMatrixXf naive_leverage(const cpu::ConstRowMap& u, const RowMatrixXf& w) {
  const std::int64_t n = u.rows(), d = u.cols();
  RowMatrixXf s = RowMatrixXf::Zero(w.rows(), n);
  for (std::int64_t h = 0; h < w.rows(); ++h) {
    Eigen::MatrixXf a = static_cast<float>(kRidge) * Eigen::MatrixXf::Identity(d, d);
    for (std::int64_t i = kSinks; i < n; ++i) {
      a.noalias() += (w(h, i) + static_cast<float>(kEps)) * u.row(i).transpose() * u.row(i);
    }
    const Eigen::MatrixXf a_inv = a.inverse();
    Eigen::VectorXf y(d);
    for (std::int64_t i = kSinks; i < n; ++i) {
      y.noalias() = a_inv * u.row(i).transpose();
      s(h, i) = w(h, i) * u.row(i).dot(y);
    }
  }
  return s;
}

void naive(benchmark::State& state, std::int64_t n, std::int64_t d, std::int64_t g) {
  const ThreadScope scope(1);  // what it gets anyway: Eigen threads no matrix-vector product
  const Problem p(n, d, g, d);
  const cpu::ConstRowMap u = p.basis();
  for (auto _ : state) {
    RowMatrixXf s = naive_leverage(u, p.weights);
    benchmark::DoNotOptimize(s.data());
  }
  set_shape(state, p);
}

// Not the library: the same math with the structure the library leaves unused, to size what a fix
// in include/ would buy. The Gram is symmetric, so a rank-k update (SYRK) fills one triangle for
// half the flops; L^-T is triangular, so the projection is a TRMM, again half. 2 n d^2 per head.
RowMatrixXf leverage_prototype(const cpu::ConstRowMap& u, const RowMatrixXf& weights) {
  const std::int64_t n = u.rows(), d = u.cols(), g = weights.rows();
  constexpr std::int64_t kBlock = cpu::kLeverageBlock;
  RowMatrixXf scores = RowMatrixXf::Zero(g, n);
  const std::int64_t blocks = (n - kSinks + kBlock - 1) / kBlock;
  std::vector<Eigen::MatrixXf> grams(static_cast<std::size_t>(g), Eigen::MatrixXf::Zero(d, d));
#pragma omp parallel
  {
    std::vector<Eigen::MatrixXf> local(static_cast<std::size_t>(g), Eigen::MatrixXf::Zero(d, d));
    RowMatrixXf scaled(kBlock, d);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::int64_t r0 = kSinks + b * kBlock, len = std::min(kBlock, n - r0);
      for (std::int64_t h = 0; h < g; ++h) {
        const auto root_w =
            (weights.row(h).segment(r0, len).array() + static_cast<float>(kEps)).sqrt();
        scaled.topRows(len) = root_w.matrix().transpose().asDiagonal() * u.middleRows(r0, len);
        local[h].selfadjointView<Eigen::Lower>().rankUpdate(scaled.topRows(len).transpose());
      }
    }
#pragma omp critical
    for (std::int64_t h = 0; h < g; ++h) grams[h] += local[h];
  }
  std::vector<Eigen::MatrixXf> factor_t(static_cast<std::size_t>(g));
  for (std::int64_t h = 0; h < g; ++h) {
    Eigen::MatrixXd a = grams[h].cast<double>();
    a.diagonal().array() += kRidge;
    const Eigen::LLT<Eigen::MatrixXd> llt(a);  // reads the lower triangle only
    factor_t[h] = llt.matrixL().solve(Eigen::MatrixXd::Identity(d, d)).transpose().cast<float>();
  }
#pragma omp parallel
  {
    RowMatrixXf projected(kBlock, d);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::int64_t r0 = kSinks + b * kBlock, len = std::min(kBlock, n - r0);
      for (std::int64_t h = 0; h < g; ++h) {
        projected.topRows(len).noalias() =
            u.middleRows(r0, len) * factor_t[h].triangularView<Eigen::Upper>();
        scores.row(h).segment(r0, len) =
            weights.row(h).segment(r0, len).array() *
            projected.topRows(len).rowwise().squaredNorm().transpose().array();
      }
    }
  }
  return scores;
}

void prototype(benchmark::State& state, std::int64_t n, std::int64_t d, std::int64_t g,
               int threads) {
  const ThreadScope scope(threads);
  const Problem p(n, d, g, d);
  const cpu::ConstRowMap u = p.basis();
  // A faster wrong answer proves nothing: it must match the library to fp32 GEMM accuracy.
  const RowMatrixXf expected = cpu::weighted_leverage(u, p.weights, kSinks, kEps, kRidge);
  const float error = (leverage_prototype(u, p.weights) - expected).cwiseAbs().maxCoeff();
  state.counters["max_abs_error"] = error;
  if (!(error <= 1e-4f * std::max(1.0f, expected.cwiseAbs().maxCoeff()))) {
    state.SkipWithError("the prototype's scores differ from weighted_leverage's");
    return;
  }
  for (auto _ : state) {
    RowMatrixXf s = leverage_prototype(u, p.weights);
    benchmark::DoNotOptimize(s.data());
  }
  set_shape(state, p);  // still 4 n d^2 per head: the same work, so rates compare directly
}

// The finiteness check every policy runs before scoring (HeadMatrix / check_finite: per head, row
// by row) against one contiguous pass over the same [tokens, heads, dim] buffer.
void check_finite_library(benchmark::State& state, std::int64_t n, std::int64_t d) {
  const Layer& l = layer(Shape{.n = n, .d = d});
  for (auto _ : state) cpu::check_finite(l.inputs.keys, "keys");
  state.counters["n"] = static_cast<double>(n);
  state.counters["d"] = static_cast<double>(d);
  set_work(state, 0.0, l.key_bytes());
}

void check_finite_contiguous(benchmark::State& state, std::int64_t n, std::int64_t d) {
  const Layer& l = layer(Shape{.n = n, .d = d});
  const auto size = static_cast<std::int64_t>(l.keys.size());
  const auto* bits = reinterpret_cast<const std::uint32_t*>(l.keys.data());
  for (auto _ : state) {
    // An exponent of all ones is Inf or NaN; the bit test vectorises where std::isfinite may not.
    std::uint32_t bad = 0;
#pragma omp parallel for simd reduction(| : bad) schedule(static)
    for (std::int64_t i = 0; i < size; ++i) bad |= ((bits[i] & 0x7f800000u) == 0x7f800000u);
    benchmark::DoNotOptimize(bad);
  }
  state.counters["n"] = static_cast<double>(n);
  state.counters["d"] = static_cast<double>(d);
  set_work(state, 0.0, l.key_bytes());
}

// SnapKV and H2O score each query head on its own: one (w x d) x (d x n) logits product per query
// head, so a GQA group reads its KV head's keys g times, through a GEMM only w = 32 rows tall. The
// g query heads share the keys, so the same logits are one (g w x d) x (d x n) product. Here both
// on one KV head of the 64K x 8 x 128 layer, keys read in place as the scorers do.
void window_logits(benchmark::State& state, bool stacked) {
  constexpr std::int64_t kWindow = 32, kGroup = 4;
  const Layer& l = layer(Shape{.n = 65536, .d = 128});
  const cpu::HeadMatrix keys(l.inputs.keys, 0, "keys");
  const std::int64_t n = keys.rows(), d = keys.cols();
  RowMatrixXf q(kGroup * kWindow, d), logits(kGroup * kWindow, n);
  for (std::int64_t i = 0; i < q.size(); ++i) q.data()[i] = noise(8, i);
  for (auto _ : state) {
    if (stacked) {
      logits.noalias() = q * keys.matrix().transpose();
    } else {
      for (std::int64_t j = 0; j < kGroup; ++j) {
        logits.middleRows(j * kWindow, kWindow).noalias() =
            q.middleRows(j * kWindow, kWindow) * keys.matrix().transpose();
      }
    }
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["threads"] = max_threads();
  set_work(state, 2.0 * kGroup * kWindow * n * d, 4.0 * (stacked ? 1 : kGroup) * n * d);
}

// The greedy CapKV's per-pick update: q_hi -= w c_i^2 with c = U z_h, one matrix-vector product
// per query head over all n tokens, in fp64 (greedy_logdet_scores). The g products share U, so
// one n x d x g product reads it once. n = 4K, d = 128, g = 4, as in the policy sweep.
void greedy_update(benchmark::State& state, bool stacked) {
  constexpr std::int64_t n = 4096, d = 128, g = 4;
  Eigen::MatrixXd u(n, d), z(d, g), c(n, g);
  for (std::int64_t i = 0; i < u.size(); ++i) u.data()[i] = noise(9, i);
  for (std::int64_t i = 0; i < z.size(); ++i) z.data()[i] = noise(10, i);
  Eigen::VectorXd col(n);
  for (auto _ : state) {
    if (stacked) {
      c.noalias() = u * z;
    } else {
      for (std::int64_t h = 0; h < g; ++h) {
        col.noalias() = u * z.col(h);
        c.col(h) = col;
      }
    }
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["threads"] = max_threads();
  set_work(state, 2.0 * n * d * g, 8.0 * (stacked ? 1 : g) * n * d);
}

std::string name(const char* kernel, std::int64_t n, std::int64_t d, std::int64_t g,
                 const char* layout, int threads) {
  return std::string("kernel/") + kernel + "/n:" + std::to_string(n) + "/d:" + std::to_string(d) +
         "/g:" + std::to_string(g) + "/" + layout + "/threads:" + std::to_string(threads);
}

}  // namespace

void register_kernels() {
  constexpr std::int64_t kTargetN = 32768, kTargetD = 128, kHkv = 8;
  const int all = max_threads();
  const auto add = [](const std::string& label, auto fn) {
    configure(benchmark::RegisterBenchmark(label.c_str(), fn));
  };
  // The target shape: one KV head, g = 1 and g = 4, packed and strided as in an 8-KV-head cache;
  // the packed ones also on one thread, against the one-thread sgemm.
  for (const std::int64_t g : {1, 4}) {
    add(name("weighted_leverage", kTargetN, kTargetD, g, "packed", all),
        [g, all](benchmark::State& s) {
          weighted_leverage(s, kTargetN, kTargetD, g, kTargetD, all);
        });
    add(name("weighted_leverage", kTargetN, kTargetD, g, "cache", all),
        [g, all](benchmark::State& s) {
          weighted_leverage(s, kTargetN, kTargetD, g, kHkv * kTargetD, all);
        });
    if (all > 1) {
      add(name("weighted_leverage", kTargetN, kTargetD, g, "packed", 1),
          [g](benchmark::State& s) { weighted_leverage(s, kTargetN, kTargetD, g, kTargetD, 1); });
      add(name("prototype_syrk_trmm", kTargetN, kTargetD, g, "packed", 1),
          [g](benchmark::State& s) { prototype(s, kTargetN, kTargetD, g, 1); });
    }
    add(name("naive_leverage", kTargetN, kTargetD, g, "packed", 1),
        [g](benchmark::State& s) { naive(s, kTargetN, kTargetD, g); });
    add(name("prototype_syrk_trmm", kTargetN, kTargetD, g, "packed", all),
        [g, all](benchmark::State& s) { prototype(s, kTargetN, kTargetD, g, all); });
  }
  // The largest cache of the policy sweep: 64K tokens x 8 KV heads x 128.
  add("kernel/check_finite/library/n:65536/d:128",
      [](benchmark::State& s) { check_finite_library(s, 65536, 128); });
  add("kernel/check_finite/contiguous/n:65536/d:128",
      [](benchmark::State& s) { check_finite_contiguous(s, 65536, 128); });
  add("kernel/window_logits/per_query_head/n:65536/d:128/g:4",
      [](benchmark::State& s) { window_logits(s, false); });
  add("kernel/window_logits/gqa_stacked/n:65536/d:128/g:4",
      [](benchmark::State& s) { window_logits(s, true); });
  add("kernel/greedy_update/per_query_head/n:4096/d:128/g:4",
      [](benchmark::State& s) { greedy_update(s, false); });
  add("kernel/greedy_update/gqa_stacked/n:4096/d:128/g:4",
      [](benchmark::State& s) { greedy_update(s, true); });
  // Linear scaling of the kernel alone (g = 1): the fit's slope is the per-token cost.
  for (const std::int64_t d : {64, 128}) {
    for (const std::int64_t n : {1024, 4096, 16384, 65536}) {
      add(name("weighted_leverage", n, d, 1, "packed", all),
          [n, d, all](benchmark::State& s) { weighted_leverage(s, n, d, 1, d, all); });
    }
  }
}

}  // namespace capkv::bench
