#pragma once

// The CPU side of the GPU tests, compiled by the host compiler (with OpenMP) in cpu_reference.cpp
// so that the CUDA translation unit instantiates no Eigen decomposition: the library's CPU path
// (the oracle) behind plain-vector interfaces, and float64 references written out.

#include <cstdint>
#include <vector>

#include "capkv/core/budget.hpp"
#include "capkv/core/layer_inputs.hpp"
#include "capkv/core/protection.hpp"
#include "capkv/core/scores.hpp"
#include "capkv/core/tensor_view.hpp"
#include "capkv/policies/capkv.hpp"
#include "capkv/policies/h2o.hpp"
#include "capkv/policies/snapkv.hpp"

namespace capkv_cuda_test::ref {

// A selection as the GPU writes it: per head, ascending indices, back to back.
struct Csr {
  std::vector<std::int64_t> offsets{0};
  std::vector<std::int32_t> indices;
};

// ridge I + sum of weighted outer products with a dominant direction; row-major d x d.
std::vector<double> capacity_matrix(std::int64_t d, std::uint64_t seed, double scale = 1.0);

// W = L^-T for A = L L^T (float64, row-major d x d).
std::vector<double> inverse_factor_t(const std::vector<double>& a, std::int64_t d);

// ridge I + sum_{i >= begin} (w_i + eps) u_i u_i^T in float64 for KV head `kv` of `basis`, and
// sum (w + eps) |u_a| |u_b| (the scale of the fp32 rounding error). Weights null: w = 1.
void weighted_gram(const capkv::TensorView& basis, std::int64_t kv, const float* weights,
                   std::int64_t begin, float eps, double ridge, std::vector<double>& gram,
                   std::vector<double>& magnitude);

// capkv::select_from_scores over scores[h * ld + i].
Csr select(const std::vector<float>& scores, std::int64_t heads, std::int64_t n, std::int64_t ld,
           const capkv::Protection& protection, std::int64_t budget, bool adaptive = false);

// capkv::cpu::Scorer<L2Norm> (position = false) or <StreamingLLM> (true): [Hkv, n].
std::vector<float> key_scores(const capkv::TensorView& keys, bool position);

// capkv::compact and capkv::compact_varlen for a Csr selection of a cache with n tokens.
void compact(const capkv::TensorView& source, const Csr& selection,
             const capkv::MutableTensorView& out);
void compact_varlen(const capkv::TensorView& source, const Csr& selection,
                    std::vector<unsigned char>& out);

// capkv::cpu::detail::capkv_weights with capkv_anchor for every query head: [Hq, n].
std::vector<float> capkv_weights(const capkv::CapKV::Config& config, const capkv::LayerInputs& in);

// capkv::cpu::detail::capkv_anchor for every query head: [Hq, d].
std::vector<float> capkv_anchors(const capkv::CapKV::Config& config, const capkv::LayerInputs& in);

// capkv::select(policy, in, budget) with the scores returned ([Hkv, n]).
struct CapKVResult {
  Csr selection;
  std::vector<float> scores;
};
CapKVResult capkv_select(const capkv::CapKV& policy, const capkv::LayerInputs& in,
                         const capkv::Budget& budget, capkv::GqaReduction gqa);

// capkv::select(SnapKV policy, in, budget) with the scores returned ([Hkv, n]).
CapKVResult snapkv_select(const capkv::SnapKV& policy, const capkv::LayerInputs& in,
                          const capkv::Budget& budget, capkv::GqaReduction gqa);

// capkv::select(H2O policy, in, budget) with the accumulators returned ([Hkv, n]).
CapKVResult h2o_select(const capkv::H2O& policy, const capkv::LayerInputs& in,
                       const capkv::Budget& budget);

}  // namespace capkv_cuda_test::ref
