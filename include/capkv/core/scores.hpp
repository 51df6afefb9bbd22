#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string_view>

#include "capkv/core/error.hpp"

namespace capkv {

// Scores are one row per head and one column per cached token; higher means keep.
using ScoreMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A policy scores either per query head (then the GQA reduction maps the rows onto KV heads) or
// directly per KV head (policies that only look at keys, or that reduce inside their own math).
struct Scores {
  enum class Granularity { kQueryHead, kKvHead };
  ScoreMatrix values;
  Granularity granularity = Granularity::kKvHead;
};

enum class GqaReduction { kMean, kMax, kSum };

constexpr std::string_view name_of(GqaReduction r) {
  switch (r) {
    case GqaReduction::kMean: return "mean";
    case GqaReduction::kMax: return "max";
    case GqaReduction::kSum: return "sum";
  }
  return "?";
}

// [Hq, n] -> [Hkv, n]: query head h reads KV head h / g.
inline ScoreMatrix reduce_gqa(const ScoreMatrix& per_query_head, std::int64_t n_kv_heads,
                              GqaReduction reduction) {
  const std::int64_t hq = per_query_head.rows();
  require(n_kv_heads >= 1 && hq % n_kv_heads == 0, "scores",
          "query heads must be a multiple of KV heads");
  const std::int64_t g = hq / n_kv_heads;
  ScoreMatrix out(n_kv_heads, per_query_head.cols());
  for (std::int64_t h = 0; h < n_kv_heads; ++h) {
    const auto group = per_query_head.middleRows(h * g, g);
    switch (reduction) {
      case GqaReduction::kMean: out.row(h) = group.colwise().mean(); break;
      case GqaReduction::kMax: out.row(h) = group.colwise().maxCoeff(); break;
      case GqaReduction::kSum: out.row(h) = group.colwise().sum(); break;
    }
  }
  return out;
}

}  // namespace capkv
