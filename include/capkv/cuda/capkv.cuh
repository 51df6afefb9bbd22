#pragma once

// CapKVSelect: the whole CapKV selection of one layer on the GPU, the counterpart of
// capkv::select(CapKV, inputs, budget) for the one-shot method with uniform head budgets:
//   relevance weights -> weighted Gram -> Cholesky + L^-1 -> leverage with the GQA reduction ->
//   top-B with the sinks protected -> ascending indices (and the scores, if asked).
// Nine kernel launches on the caller's stream, no allocation, no synchronisation. The outputs are
// written by the last kernel only if no earlier one found bad input; read_status(workspace,
// stream) tells which argument was bad.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "capkv/core/budget.hpp"
#include "capkv/core/layer_inputs.hpp"
#include "capkv/core/scores.hpp"
#include "capkv/cuda/cholesky.cuh"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/cuda/leverage.cuh"
#include "capkv/cuda/relevance.cuh"
#include "capkv/cuda/top_b.cuh"
#include "capkv/cuda/weighted_gram.cuh"
#include "capkv/policies/capkv.hpp"

namespace capkv::cuda {

struct CapKVSelect {
  struct Arguments {
    CapKV policy;
    LayerInputs inputs;  // device views
    Budget budget = Budget::tokens(0);
    GqaReduction gqa = GqaReduction::kMean;
    std::int32_t* indices = nullptr;  // [Hkv, indices_ld] device, out
    std::int64_t indices_ld = 0;      // >= kept(arguments)
    std::int64_t* offsets = nullptr;  // [Hkv + 1] device, out, optional
    float* scores = nullptr;          // [Hkv, scores_ld] device, out, optional
    std::int64_t scores_ld = 0;
    MathPath math = MathPath::kAuto;  // the Gram and leverage products (capkv/cuda/math_path.cuh)
  };

  // Tokens kept per KV head, as capkv::select resolves the budget.
  static std::int64_t kept(const Arguments& a) {
    return a.policy.resolve_budget(a.budget, a.inputs);
  }

  struct Layout {
    std::uint32_t* flags = nullptr;
    RelevanceWeights::Buffers relevance;
    float* weights = nullptr;
    float* gram_partials = nullptr;
    double* gram = nullptr;
    double* cholesky_scratch = nullptr;
    float* inverse_factor_t = nullptr;
    WeightedLeverage::Buffers leverage;
    float* scores = nullptr;
    capkv::device::Threshold* thresholds = nullptr;
  };

  static Status can_implement(const Arguments& a) {
    const CapKV::Config& c = a.policy.config;
    if (c.method != CapKV::Method::kOneShot) {
      return Status::error(StatusCode::kNotSupported, "config.method",
                           "greedy CapKV runs on the CPU only");
    }
    Status s = checked([&] { validate(a.inputs, a.policy.needs()); });
    if (!s) return s;
    const std::int64_t n = a.inputs.n_tokens();
    if (n == 0 && !a.budget.is_zero())
      return Status::invalid("budget", "is nonzero but the cache is empty");
    if (n > 0x7fffffffLL) return Status::invalid("keys", "more than 2^31 - 1 tokens");
    const std::int64_t k = kept(a);
    const Protection protection = a.policy.protection(n, k);
    if (k < n && k < protection.count(n)) {
      return Status::invalid("budget",
                             "keeps fewer tokens than CapKV protects (sinks + recent window)");
    }
    if (c.ridge < 0.0 || c.eps < 0.0)
      return Status::invalid("config.ridge", "ridge and eps cannot be negative");
    if (!c.uniform_weights) {
      s = RelevanceWeights::can_implement_inputs(a.policy.config, a.inputs);
      if (!s) return s;
    }
    if (basis(a).head_dim() > 256)
      return Status::invalid(basis_name(a), "head_dim above 256 is not supported on the GPU");
    s = check_math_path(a.math, basis(a));
    if (!s) return s;
    if (k > 0 && a.indices == nullptr) return Status::invalid("indices", "is null");
    if (a.indices_ld < k) return Status::invalid("indices_ld", "is smaller than the kept count");
    if (a.scores && a.scores_ld < n)
      return Status::invalid("scores_ld", "is smaller than the token count");
    return Status::success();
  }

  static Layout carve(WorkspaceCarver& carver, const Arguments& a) {
    const std::int64_t n = a.inputs.n_tokens();
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t hkv = a.inputs.n_kv_heads();
    const auto d = static_cast<std::size_t>(basis(a).head_dim());
    Layout l;
    l.flags = take_flags(carver);
    if (!a.policy.config.uniform_weights) {
      l.relevance = RelevanceWeights::carve(carver, relevance_arguments(a, nullptr));
      l.weights = carver.take<float>(static_cast<std::size_t>(hq * n));
    }
    const WeightedGram::Arguments gram = gram_arguments(a, l);
    l.gram_partials = WeightedGram::carve(carver, gram);
    l.gram = carver.take<double>(static_cast<std::size_t>(hq) * d * d);
    l.cholesky_scratch = InverseCholesky::carve(carver, cholesky_arguments(a, l));
    l.inverse_factor_t = carver.take<float>(static_cast<std::size_t>(hq) * d * d);
    l.leverage = WeightedLeverage::carve(carver, leverage_arguments(a, l));
    l.scores = carver.take<float>(static_cast<std::size_t>(hkv * n));
    l.thresholds = carver.take<capkv::device::Threshold>(static_cast<std::size_t>(hkv));
    return l;
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<CapKVSelect>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    // A pinned math path that cannot run here fails now, before any kernel is queued.
    for (const bool built : {kernel_has_bf16_mma(kernels::gram_partial_mma_kernel),
                             kernel_has_bf16_mma(kernels::leverage_mma_kernel)}) {
      bool tensor_cores = false;
      s = resolve_math_path(a.math, basis(a), built, tensor_cores);
      if (!s) return s;
    }
    WorkspaceCarver carver(workspace);
    const Layout l = carve(carver, a);
    if (!a.policy.config.uniform_weights) {
      s = RelevanceWeights::enqueue(relevance_arguments(a, l.weights), l.relevance, l.flags,
                                    stream);
      if (!s) return s;
    }
    s = WeightedGram::enqueue(gram_arguments(a, l), l.gram_partials, l.flags, stream);
    if (!s) return s;
    s = InverseCholesky::enqueue(cholesky_arguments(a, l), l.cholesky_scratch, l.flags, stream);
    if (!s) return s;
    s = WeightedLeverage::enqueue(leverage_arguments(a, l), l.leverage, l.flags, stream);
    if (!s) return s;
    return TopB::enqueue(top_b_arguments(a, l), l.thresholds, l.flags, stream);
  }

  // The stages' arguments, for the pipeline above and for benchmarks that time them one by one.
  static const TensorView& basis(const Arguments& a) {
    return a.policy.config.basis == CapKV::Basis::kValues ? a.inputs.values : a.inputs.keys;
  }
  static const char* basis_name(const Arguments& a) {
    return a.policy.config.basis == CapKV::Basis::kValues ? "values" : "keys";
  }
  static std::int64_t begin(const Arguments& a) {
    return std::min(a.policy.config.sinks, a.inputs.n_tokens());
  }

  static RelevanceWeights::Arguments relevance_arguments(const Arguments& a, float* weights) {
    RelevanceWeights::Arguments r;
    r.config = a.policy.config;
    r.inputs = a.inputs;
    r.weights = weights;
    r.weights_ld = a.inputs.n_tokens();
    return r;
  }

  static WeightedGram::Arguments gram_arguments(const Arguments& a, const Layout& l) {
    WeightedGram::Arguments g;
    g.basis = basis(a);
    g.basis_tensor =
        a.policy.config.basis == CapKV::Basis::kValues ? BasisTensor::kValues : BasisTensor::kKeys;
    g.weights = l.weights;
    g.weights_ld = a.inputs.n_tokens();
    g.n_query_heads = a.inputs.n_query_heads();
    g.begin = begin(a);
    g.eps = a.policy.config.eps;
    g.ridge = a.policy.config.ridge;
    g.gram = l.gram;
    g.math = a.math;
    return g;
  }

  static InverseCholesky::Arguments cholesky_arguments(const Arguments& a, const Layout& l) {
    InverseCholesky::Arguments c;
    c.gram = l.gram;
    c.heads = a.inputs.n_query_heads();
    c.d = basis(a).head_dim();
    c.inverse_factor_t = l.inverse_factor_t;
    return c;
  }

  static WeightedLeverage::Arguments leverage_arguments(const Arguments& a, const Layout& l) {
    WeightedLeverage::Arguments v;
    v.basis = basis(a);
    v.basis_tensor =
        a.policy.config.basis == CapKV::Basis::kValues ? BasisTensor::kValues : BasisTensor::kKeys;
    v.inverse_factor_t = l.inverse_factor_t;
    v.weights = l.weights;
    v.weights_ld = a.inputs.n_tokens();
    v.n_query_heads = a.inputs.n_query_heads();
    v.begin = begin(a);
    v.reduction = a.gqa;
    v.scores = l.scores;
    v.scores_ld = a.inputs.n_tokens();
    v.math = a.math;
    return v;
  }

  static TopB::Arguments top_b_arguments(const Arguments& a, const Layout& l) {
    return selection_top_b(a, l.scores, kept(a));
  }
};

}  // namespace capkv::cuda
