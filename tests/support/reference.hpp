#pragma once

// Float64 brute-force references of the policies, written the obvious way from SPEC.md: explicit
// loops, an explicit softmax per query with the causal mask, explicit inverses and log-dets, and
// RoPE from its definition. They share nothing with include/capkv but the config structs, so a
// mistake in the library cannot cancel against the same mistake here.

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/LU>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/random_cache.hpp"

namespace capkv_test::ref {

using Eigen::MatrixXd;
using Eigen::VectorXd;

// Unit roundoff of fp32 (half of FLT_EPSILON).
inline constexpr double kU32 = 0x1.0p-24;

// ---------------------------------------------------------------------------------------------
// RoPE from its definition: pair j of a head turns by position * theta^(-2j/d).

inline VectorXd rope_rotate(const VectorXd& x, double position, const capkv::Rope& rope) {
  const auto d = x.size();
  VectorXd y = x;
  for (Eigen::Index j = 0; j < d / 2; ++j) {
    const double angle = position * std::pow(rope.theta, -2.0 * static_cast<double>(j) / d);
    const bool half = rope.layout == capkv::RopeLayout::kHalf;
    const Eigen::Index a = half ? j : 2 * j;
    const Eigen::Index b = half ? j + d / 2 : 2 * j + 1;
    y[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
    y[b] = x[a] * std::sin(angle) + x[b] * std::cos(angle);
  }
  return y;
}

// mean_p R(p) x over p in [first, first + count): literally the average of the rotated vectors.
inline VectorXd rope_rotate_averaged(const VectorXd& x, std::int64_t first, std::int64_t count,
                                     const capkv::Rope& rope) {
  VectorXd sum = VectorXd::Zero(x.size());
  for (std::int64_t p = first; p < first + count; ++p) sum += rope_rotate(x, p, rope);
  return sum / static_cast<double>(count);
}

// ---------------------------------------------------------------------------------------------
// Attention.

// softmax_i(q . k_i / sqrt(d)) over the keys 0..position (the causal mask); 0 beyond.
inline VectorXd causal_softmax(const VectorXd& q, const MatrixXd& keys, std::int64_t position) {
  const std::int64_t n = keys.rows();
  const double scale = 1.0 / std::sqrt(static_cast<double>(keys.cols()));
  VectorXd p = VectorXd::Zero(n);
  double max_logit = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i <= position; ++i) {
    p[i] = keys.row(i).dot(q) * scale;
    max_logit = std::max(max_logit, p[i]);
  }
  double sum = 0.0;
  for (std::int64_t i = 0; i <= position; ++i) {
    p[i] = std::exp(p[i] - max_logit);
    sum += p[i];
  }
  for (std::int64_t i = 0; i <= position; ++i) p[i] /= sum;
  return p;
}

// [Hq, n] -> [Hkv, n] by the mean over each group of g consecutive query heads.
inline MatrixXd gqa_mean(const MatrixXd& per_query_head, std::int64_t kv_heads) {
  const std::int64_t g = per_query_head.rows() / kv_heads;
  MatrixXd out = MatrixXd::Zero(kv_heads, per_query_head.cols());
  for (std::int64_t h = 0; h < per_query_head.rows(); ++h) out.row(h / g) += per_query_head.row(h);
  return out / static_cast<double>(g);
}

// ---------------------------------------------------------------------------------------------
// CapKV.

struct CapKVReference {
  MatrixXd scores;                 // [Hq, n]: s_hi = w_hi u_i^T A_h^-1 u_i, 0 for the sinks
  MatrixXd weights;                // [Hq, n]: w_hi, 0 for the sinks
  MatrixXd stats;                  // [Hq, n]: t_hi
  std::vector<VectorXd> anchors;   // mu_h
  std::vector<MatrixXd> capacity;  // A_h
  std::int64_t begin = 0;          // first candidate (the sinks come before)
};

inline VectorXd capkv_anchor(const Layer& l, const capkv::CapKV::Config& c, std::int64_t h) {
  using Anchor = capkv::CapKV::Anchor;
  const std::int64_t n = l.n();
  const HostTensor& q = c.anchor == Anchor::kRotatedPromptMean ? l.queries_pre_rope : l.queries;
  const std::int64_t m = q.tokens;
  std::vector<std::int64_t> rows;
  for (std::int64_t r = 0; r < m; ++r) {
    if (c.anchor == Anchor::kObservationWindow &&
        r < m - std::max<std::int64_t>(c.observation_window, 1)) {
      continue;
    }
    if (c.anchor == Anchor::kRotatedPromptMean && n - m + r < c.sinks) continue;  // sinks' own
    rows.push_back(r);
  }
  // When every given query belongs to a sink there is nothing "after the sinks"; the library then
  // uses the last query, and so does this reference.
  if (rows.empty()) rows.push_back(m - 1);
  VectorXd mu = VectorXd::Zero(l.dim());
  for (std::int64_t r : rows) mu += q.row(r, h);
  mu /= static_cast<double>(rows.size());
  if (c.anchor == Anchor::kRotatedPromptMean)
    mu = rope_rotate_averaged(mu, n, c.rope_horizon, *l.rope);
  return mu;
}

inline CapKVReference capkv(const Layer& l, const capkv::CapKV::Config& c) {
  const std::int64_t n = l.n();
  const std::int64_t hq = l.query_heads();
  const std::int64_t g = l.group();
  CapKVReference r;
  r.begin = std::min(c.sinks, n);
  r.scores = MatrixXd::Zero(hq, n);
  r.weights = MatrixXd::Zero(hq, n);
  r.stats = MatrixXd::Zero(hq, n);
  for (std::int64_t h = 0; h < hq; ++h) {
    const std::int64_t kv = h / g;
    const MatrixXd keys = l.keys.head(kv);
    const MatrixXd u =
        c.basis == capkv::CapKV::Basis::kValues ? l.values.head(kv) : l.keys.head(kv);
    VectorXd mu = VectorXd::Zero(l.dim());
    if (!c.uniform_weights) mu = capkv_anchor(l, c, h);
    r.anchors.push_back(mu);
    if (r.begin < n) {
      double t_max = -std::numeric_limits<double>::infinity();
      for (std::int64_t i = r.begin; i < n; ++i) {
        double t = keys.row(i).dot(mu);
        if (c.statistic == capkv::CapKV::Statistic::kCosine) {
          const double denom = keys.row(i).norm() * mu.norm();
          t = denom > 0.0 ? std::clamp(t / denom, -1.0, 1.0) : 0.0;
        }
        r.stats(h, i) = t;
        t_max = std::max(t_max, t);
      }
      for (std::int64_t i = r.begin; i < n; ++i) {
        r.weights(h, i) = c.uniform_weights ? 1.0 : std::exp(c.tau * (r.stats(h, i) - t_max));
      }
    }
    MatrixXd a = c.ridge * MatrixXd::Identity(u.cols(), u.cols());
    for (std::int64_t i = r.begin; i < n; ++i) {
      a += (r.weights(h, i) + c.eps) * u.row(i).transpose() * u.row(i);
    }
    const MatrixXd a_inv = a.inverse();
    for (std::int64_t i = r.begin; i < n; ++i) {
      r.scores(h, i) = r.weights(h, i) * u.row(i).dot(a_inv * u.row(i).transpose());
    }
    r.capacity.push_back(a);
  }
  return r;
}

// A per-token bound on the library's fp32 error around the float64 CapKV scores, to first order in
// the rounding errors. With c_ij = u_j^T A^-1 u_i, s_i = w_i c_ii moves by
//   ds_i = dw_i c_ii - w_i sum_j dw_j c_ij^2 - w_i (A^-1 u_i)^T E (A^-1 u_i) + (second pass)
// where
//  - t_i = <k_i, mu> is an fp32 dot product, off by at most (d + 1) u |k_i|.|mu| (componentwise,
//    the + 1 for mu's own rounding; a cosine is scale free: (2d + 4) u), so the weight
//    w_i = exp(tau (t_i - t_max)) is off by rho_i w_i with rho_i = tau (|dt_i| + |dt_max|) + u;
//  - E, the rounding of the fp32 Gram sum_j (w_j + eps) u_j u_j^T, has by the probabilistic
//    rounding bound (Higham & Mary 2019) a norm of about sqrt(n) u sum_j (w_j + eps) ||u_j||^2, and
//    w_i ||A^-1 u_i||^2 <= s_i / ridge because A >= ridge I;
//  - the second pass s_i = w_i ||L^-1 u_i||^2 in fp32 adds about 2 d u w_i ||u_i||^2 / ridge.
// A safety factor of 8 covers the constants dropped on the way.
inline MatrixXd capkv_tolerance(const Layer& l, const capkv::CapKV::Config& c,
                                const CapKVReference& r) {
  const std::int64_t n = l.n();
  const std::int64_t d = l.dim();
  const std::int64_t g = l.group();
  const bool cosine = c.statistic == capkv::CapKV::Statistic::kCosine;
  MatrixXd tol = MatrixXd::Zero(r.scores.rows(), n);
  for (std::int64_t h = 0; h < r.scores.rows(); ++h) {
    const MatrixXd keys = l.keys.head(h / g);
    const MatrixXd u = c.basis == capkv::CapKV::Basis::kValues ? l.values.head(h / g) : keys;
    VectorXd dt = VectorXd::Zero(n);
    double dt_max = 0.0;
    for (std::int64_t i = r.begin; i < n && !c.uniform_weights; ++i) {
      dt[i] = cosine ? (2.0 * d + 4.0) * kU32
                     : (d + 1.0) * kU32 * keys.row(i).cwiseAbs().dot(r.anchors[h].cwiseAbs());
      dt_max = std::max(dt_max, dt[i]);
    }
    VectorXd rho = VectorXd::Zero(n);
    double gram = 0.0;
    for (std::int64_t i = r.begin; i < n; ++i) {
      if (!c.uniform_weights) rho[i] = c.tau * (dt[i] + dt_max) + kU32;
      gram += (r.weights(h, i) + c.eps) * u.row(i).squaredNorm();
    }
    const MatrixXd cross = u * r.capacity[h].inverse() * u.transpose();  // c_ij
    const double e = std::sqrt(static_cast<double>(n)) * kU32 * gram;
    for (std::int64_t i = r.begin; i < n; ++i) {
      double through_weights = 0.0;
      for (std::int64_t j = r.begin; j < n; ++j) {
        through_weights += rho[j] * r.weights(h, j) * cross(i, j) * cross(i, j);
      }
      tol(h, i) =
          8.0 * (r.scores(h, i) * (rho[i] + e / c.ridge) + r.weights(h, i) * through_weights +
                 2.0 * d * kU32 * r.weights(h, i) * u.row(i).squaredNorm() / c.ridge) +
          1e-30;
    }
  }
  return tol;
}

// log det of an SPD matrix through its Cholesky factor.
inline double logdet(const MatrixXd& a) {
  const Eigen::LLT<MatrixXd> llt(a);
  const MatrixXd l = llt.matrixL();
  return 2.0 * l.diagonal().array().log().sum();
}

// The D-optimal greedy written out: at every step each available candidate's gain is the increase
// of sum_h logdet(A_h) computed from the explicitly updated matrices. Returns the picks in order
// and the smallest gap between the best and the second best gain over all steps.
struct GreedyReference {
  std::vector<std::int64_t> picks;
  double min_margin = std::numeric_limits<double>::infinity();
};

inline GreedyReference capkv_greedy(const Layer& l, const capkv::CapKV::Config& c, std::int64_t kv,
                                    const capkv::Protection& protection, std::int64_t picks) {
  const CapKVReference r = capkv(l, c);
  const std::int64_t n = l.n();
  const std::int64_t g = l.group();
  const MatrixXd u = c.basis == capkv::CapKV::Basis::kValues ? l.values.head(kv) : l.keys.head(kv);
  std::vector<MatrixXd> a(static_cast<std::size_t>(g),
                          c.ridge * MatrixXd::Identity(u.cols(), u.cols()));
  std::vector<char> available(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) available[i] = i >= r.begin && !protection.contains(i, n);
  GreedyReference out;
  for (std::int64_t step = 0; step < picks; ++step) {
    double best = -1.0, second = -1.0;
    std::int64_t best_i = -1;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!available[i]) continue;
      double gain = 0.0;
      for (std::int64_t j = 0; j < g; ++j) {
        const double w = r.weights(kv * g + j, i) + c.eps;
        gain += logdet(a[j] + w * u.row(i).transpose() * u.row(i)) - logdet(a[j]);
      }
      if (gain > best || (gain == best && i > best_i)) {
        second = best;
        best = gain;
        best_i = i;
      } else {
        second = std::max(second, gain);
      }
    }
    if (best_i < 0) break;
    if (second >= 0.0) out.min_margin = std::min(out.min_margin, best - second);
    for (std::int64_t j = 0; j < g; ++j) {
      a[j] += (r.weights(kv * g + j, best_i) + c.eps) * u.row(best_i).transpose() * u.row(best_i);
    }
    available[best_i] = 0;
    out.picks.push_back(best_i);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SnapKV, H2O, L2-norm.

// [Hq, n]: the window queries' summed (or mean) attention on the prefix, pooled along the tokens.
inline MatrixXd snapkv(const Layer& l, const capkv::SnapKV::Config& c) {
  const std::int64_t n = l.n();
  const std::int64_t m = l.m();
  const std::int64_t w = std::min(c.window, n);
  const std::int64_t prefix = n - w;
  const std::int64_t pad = c.kernel / 2;
  MatrixXd out = MatrixXd::Zero(l.query_heads(), n);
  for (std::int64_t h = 0; h < l.query_heads(); ++h) {
    const MatrixXd keys = l.keys.head(h / l.group());
    VectorXd raw = VectorXd::Zero(n);
    for (std::int64_t r = 0; r < w; ++r) {
      // The r-th window query is prompt row m - w + r at position n - w + r.
      raw += causal_softmax(l.queries.row(m - w + r, h), keys, n - w + r);
    }
    if (c.aggregation == capkv::SnapKV::Aggregation::kMean) raw /= static_cast<double>(w);
    for (std::int64_t i = 0; i < prefix; ++i) {
      double pooled = c.pooling == capkv::SnapKV::Pooling::kMax
                          ? -std::numeric_limits<double>::infinity()
                          : 0.0;
      for (std::int64_t j = i - pad; j <= i + pad; ++j) {
        if (j < 0 || j >= prefix) continue;  // padding: ignored by max, a zero for the average
        pooled =
            c.pooling == capkv::SnapKV::Pooling::kMax ? std::max(pooled, raw[j]) : pooled + raw[j];
      }
      out(h, i) = c.pooling == capkv::SnapKV::Pooling::kMax
                      ? pooled
                      : pooled / static_cast<double>(c.kernel);
    }
  }
  return out;
}

// [Hkv, n]: every prompt query's causal attention summed over the group (kvpress: divided by the
// number of those queries that see the token).
inline MatrixXd h2o(const Layer& l, const capkv::H2O::Config& c) {
  const std::int64_t n = l.n();
  const std::int64_t m = l.m();
  const std::int64_t g = l.group();
  MatrixXd acc = MatrixXd::Zero(l.kv_heads(), n);
  for (std::int64_t kv = 0; kv < l.kv_heads(); ++kv) {
    const MatrixXd keys = l.keys.head(kv);
    for (std::int64_t j = 0; j < g; ++j) {
      for (std::int64_t r = 0; r < m; ++r) {
        acc.row(kv) += causal_softmax(l.queries.row(r, kv * g + j), keys, n - m + r).transpose();
      }
    }
    if (!c.normalize_by_exposure) continue;
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t seen_by = 0;
      for (std::int64_t r = 0; r < m; ++r) seen_by += n - m + r >= i;
      acc(kv, i) /= static_cast<double>(seen_by);
    }
  }
  return acc;
}

// L = max over query rows r, query heads h and keys i of |q_r|.|k_i| / sqrt(d) (componentwise):
// how far an fp32 logit can be from the exact one, in units of d u.
inline double max_abs_logit(const Layer& l) {
  double out = 0.0;
  for (std::int64_t h = 0; h < l.query_heads(); ++h) {
    const MatrixXd keys = l.keys.head(h / l.group()).cwiseAbs();
    for (std::int64_t r = 0; r < l.m(); ++r) {
      out = std::max(out, (keys * l.queries.row(r, h).cwiseAbs()).maxCoeff() /
                              std::sqrt(static_cast<double>(l.dim())));
    }
  }
  return out;
}

// A relative bound on the fp32 error of softmax-attention sums: every logit is an fp32 dot
// product off by at most d u L; a probability exp(l_i - l_max) / sum is then off by 4 d u L
// (twice in the exponent, twice through the sum) plus (n + 2) u for the exp and the n-term sum;
// summing the m g queries of a group adds m g u. A factor of 2 for the constants dropped.
inline double attention_rel_tolerance(const Layer& l) {
  return 2.0 * (4.0 * l.dim() * kU32 * max_abs_logit(l) + (l.n() + l.m() * l.group() + 2.0) * kU32);
}

// [Hkv, n]: -||k_i||.
inline MatrixXd l2norm(const Layer& l) {
  MatrixXd out(l.kv_heads(), l.n());
  for (std::int64_t h = 0; h < l.kv_heads(); ++h) {
    for (std::int64_t i = 0; i < l.n(); ++i) {
      double sum = 0.0;
      for (std::int64_t j = 0; j < l.dim(); ++j) sum += double(l.keys(i, h, j)) * l.keys(i, h, j);
      out(h, i) = -std::sqrt(sum);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Selection rules.

// Protected tokens plus the best (budget - protected) others by (score desc, index desc), in
// ascending order; everything when budget >= n.
inline std::vector<std::int32_t> top_b(const VectorXd& scores, const capkv::Protection& p,
                                       std::int64_t budget) {
  const std::int64_t n = scores.size();
  std::vector<std::int32_t> kept, others;
  for (std::int32_t i = 0; i < n; ++i) {
    (budget >= n || p.contains(i, n) ? kept : others).push_back(i);
  }
  std::sort(others.begin(), others.end(), [&](std::int32_t a, std::int32_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : a > b;
  });
  const std::int64_t free_slots = std::max<std::int64_t>(0, std::min(budget, n) - p.count(n));
  for (std::int64_t k = 0; k < free_slots && k < static_cast<std::int64_t>(others.size()); ++k) {
    kept.push_back(others[k]);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace capkv_test::ref
