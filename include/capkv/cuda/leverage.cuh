#pragma once

// WeightedLeverage: s_hi = w_hi ||L_h^-1 u_i||^2 per query head, reduced over each GQA group and
// written per KV head: on the tensor cores for fp16/bf16 bases (kernels/leverage_mma.cuh, after
// splitting W into bf16 hi + lo in the workspace), else on the CUDA cores (kernels/leverage.cuh).
// Tokens before `begin` score 0, as on the CPU.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "capkv/core/scores.hpp"
#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/cuda/math_path.cuh"
#include "capkv/cuda/weighted_gram.cuh"
#include "kernels/leverage.cuh"
#include "kernels/leverage_mma.cuh"

namespace capkv::cuda {

struct WeightedLeverage {
  struct Arguments {
    TensorView basis;  // [n, Hkv, d] device
    BasisTensor basis_tensor = BasisTensor::kValues;
    const float* inverse_factor_t = nullptr;  // [Hq, d, d] device, W = L^-T (InverseCholesky)
    const float* weights = nullptr;           // [Hq, weights_ld] device; null: w = 1
    std::int64_t weights_ld = 0;
    std::int64_t n_query_heads = 0;
    std::int64_t begin = 0;
    GqaReduction reduction = GqaReduction::kMean;
    float* scores = nullptr;  // [Hkv, scores_ld] device, out
    std::int64_t scores_ld = 0;
    MathPath math = MathPath::kAuto;
  };

  // The bf16 split of W for the tensor-core path; sized whenever the shape allows that path.
  struct Buffers {
    __nv_bfloat16* factor_hi = nullptr;  // [Hq, d, d]
    __nv_bfloat16* factor_lo = nullptr;
  };

  static Status can_implement(const Arguments& a) {
    const char* name = a.basis_tensor == BasisTensor::kValues ? "values" : "keys";
    Status s = checked([&] { a.basis.validate(name); });
    if (!s) return s;
    const std::int64_t hkv = a.basis.n_heads();
    if (a.n_query_heads < hkv || a.n_query_heads % hkv != 0) {
      return Status::invalid("n_query_heads", "must be a positive multiple of the KV heads");
    }
    if (a.basis.head_dim() > 256)
      return Status::invalid(name, "head_dim above 256 is not supported on the GPU");
    if (a.begin < 0) return Status::invalid("begin", "is negative");
    const std::int64_t n = a.basis.n_tokens();
    if (a.weights && a.weights_ld < n)
      return Status::invalid("weights_ld", "is smaller than the token count");
    if (n > 0 && (a.scores == nullptr || a.inverse_factor_t == nullptr)) {
      return Status::invalid(a.scores ? "inverse_factor_t" : "scores", "is null");
    }
    if (a.scores_ld < n) return Status::invalid("scores_ld", "is smaller than the token count");
    return check_math_path(a.math, a.basis);
  }

  static Buffers carve(WorkspaceCarver& carver, const Arguments& a) {
    Buffers b;
    if (a.math == MathPath::kCudaCores || !tensor_core_shape(a.basis)) return b;
    const auto count =
        static_cast<std::size_t>(a.n_query_heads * a.basis.head_dim() * a.basis.head_dim());
    b.factor_hi = carver.take<__nv_bfloat16>(count);
    b.factor_lo = carver.take<__nv_bfloat16>(count);
    return b;
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    take_flags(carver);
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<WeightedLeverage>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    const Buffers buffers = carve(carver, a);
    return enqueue(a, buffers, flags, stream);
  }

  static Status enqueue(const Arguments& a, const Buffers& buffers, std::uint32_t* flags,
                        cudaStream_t stream) {
    const std::int64_t n = a.basis.n_tokens();
    if (n == 0) return Status::success();
    bool tensor_cores = false;
    Status s = resolve_math_path(a.math, a.basis, kernel_has_bf16_mma(kernels::leverage_mma_kernel),
                                 tensor_cores);
    if (!s) return s;
    const std::int64_t d = a.basis.head_dim();
    kernels::LeverageParams p;
    p.basis = kernels::device_view(a.basis);
    p.inverse_factor_t = a.inverse_factor_t;
    p.weights = a.weights;
    p.weights_ld = a.weights_ld;
    p.group = static_cast<int>(a.n_query_heads / a.basis.n_heads());
    p.begin = a.begin;
    p.reduction = a.reduction == GqaReduction::kMean  ? kernels::GroupReduction::kMean
                  : a.reduction == GqaReduction::kMax ? kernels::GroupReduction::kMax
                                                      : kernels::GroupReduction::kSum;
    p.scores = a.scores;
    p.scores_ld = a.scores_ld;
    p.nonfinite_flag = a.basis_tensor == BasisTensor::kValues ? kValuesNotFinite : kKeysNotFinite;
    p.flags = flags;
    if (tensor_cores) return enqueue_tensor_cores(a, p, buffers, stream);
    const std::size_t shared =
        sizeof(float) *
        static_cast<std::size_t>(kernels::kLeverageTokens * (kernels::leverage_padded_dim(d) + 1) +
                                 kernels::kLeverageDepth * kernels::kLeverageCols +
                                 kernels::kLeverageTokens);
    s = allow_shared_memory(kernels::leverage_kernel, shared, "leverage_kernel");
    if (!s) return s;
    const dim3 grid(ceil_div(n, kernels::kLeverageTokens),
                    static_cast<unsigned>(a.basis.n_heads()));
    kernels::leverage_kernel<<<grid, kernels::kLeverageThreads, shared, stream>>>(p);
    return launch_status("leverage_kernel");
  }

 private:
  static Status enqueue_tensor_cores(const Arguments& a, const kernels::LeverageParams& p,
                                     const Buffers& buffers, cudaStream_t stream) {
    if (buffers.factor_hi == nullptr) {
      return Status::invalid("workspace", "was carved without the tensor-core buffers");
    }
    const std::int64_t d = a.basis.head_dim();
    kernels::SplitFactorParams split;
    split.factor = a.inverse_factor_t;
    split.count = a.n_query_heads * d * d;
    split.hi = buffers.factor_hi;
    split.lo = buffers.factor_lo;
    kernels::split_factor_kernel<<<std::min(ceil_div(split.count, 256), 4096u), 256, 0, stream>>>(
        split);
    kernels::LeverageMmaParams mp;
    mp.base = p;
    mp.factor_hi = buffers.factor_hi;
    mp.factor_lo = buffers.factor_lo;
    const std::size_t shared =
        kernels::mma_leverage_shared_bytes(d, a.basis.dtype() == DType::kF16);
    Status s = allow_shared_memory(kernels::leverage_mma_kernel, shared, "leverage_mma_kernel");
    if (!s) return s;
    const dim3 grid(ceil_div(a.basis.n_tokens(), kernels::kMmaLeverageTokens),
                    static_cast<unsigned>(a.basis.n_heads()));
    kernels::leverage_mma_kernel<<<grid, kernels::kMmaLeverageThreads, shared, stream>>>(mp);
    return launch_status("leverage_mma_kernel");
  }
};

}  // namespace capkv::cuda
