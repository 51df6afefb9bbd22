#pragma once

// WeightedGram: A_h = ridge * I + sum_{i >= begin} (w_hi + eps) u_i u_i^T for every query head of
// every KV group, fp32 accumulation per token chunk, fp64 sum over chunks: on the tensor cores for
// fp16/bf16 bases (kernels/weighted_gram_mma.cuh), else on the CUDA cores
// (kernels/weighted_gram.cuh); both write the same partials and share the reduction.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/cuda/math_path.cuh"
#include "kernels/weighted_gram.cuh"
#include "kernels/weighted_gram_mma.cuh"

namespace capkv::cuda {

// Which tensor the basis is, for error messages and the error word.
enum class BasisTensor { kValues, kKeys };

struct WeightedGram {
  struct Arguments {
    TensorView basis;  // [n, Hkv, d] device: values (CapKV) or keys (key leverage)
    BasisTensor basis_tensor = BasisTensor::kValues;
    const float* weights = nullptr;  // [Hq, weights_ld] device; null: w = 1 for every candidate
    std::int64_t weights_ld = 0;
    std::int64_t n_query_heads = 0;  // Hq, a multiple of Hkv
    std::int64_t begin = 0;          // first candidate token (the sinks are left out)
    double eps = 1e-6;
    double ridge = 1.0;
    double* gram = nullptr;  // [Hq, d, d] device, out (full, symmetric)
    MathPath math = MathPath::kAuto;
  };

  static const char* basis_name(const Arguments& a) {
    return a.basis_tensor == BasisTensor::kValues ? "values" : "keys";
  }

  static Status can_implement(const Arguments& a) {
    Status s = checked([&] { a.basis.validate(basis_name(a)); });
    if (!s) return s;
    const std::int64_t hkv = a.basis.n_heads();
    if (a.n_query_heads < hkv || a.n_query_heads % hkv != 0) {
      return Status::invalid("n_query_heads", "must be a positive multiple of the KV heads");
    }
    if (a.basis.head_dim() > 256) {
      return Status::invalid(basis_name(a), "head_dim above 256 is not supported on the GPU");
    }
    if (a.begin < 0) return Status::invalid("begin", "is negative");
    if (a.weights && a.weights_ld < a.basis.n_tokens()) {
      return Status::invalid("weights_ld", "is smaller than the token count");
    }
    if (a.gram == nullptr) return Status::invalid("gram", "is null");
    return check_math_path(a.math, a.basis);
  }

  static kernels::GramSplit split(const Arguments& a) {
    return kernels::gram_split(a.basis.n_tokens() - std::min(a.begin, a.basis.n_tokens()));
  }

  static float* carve(WorkspaceCarver& carver, const Arguments& a) {
    const auto d = static_cast<std::size_t>(a.basis.head_dim());
    return carver.take<float>(static_cast<std::size_t>(split(a).splits * a.n_query_heads) * d * d);
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    take_flags(carver);
    carve(carver, a);
    return carver.size();
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<WeightedGram>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    std::uint32_t* flags = take_flags(carver);
    float* partials = carve(carver, a);
    return enqueue(a, partials, flags, stream);
  }

  static Status enqueue(const Arguments& a, float* partials, std::uint32_t* flags,
                        cudaStream_t stream) {
    const std::int64_t d = a.basis.head_dim();
    const std::int64_t hkv = a.basis.n_heads();
    const kernels::GramSplit sp = split(a);
    // Resolved even when there is nothing to sum, so a pinned path that cannot run always fails.
    bool tensor_cores = false;
    Status s = resolve_math_path(
        a.math, a.basis, kernel_has_bf16_mma(kernels::gram_partial_mma_kernel), tensor_cores);
    if (!s) return s;
    if (sp.splits > 0) {
      kernels::GramParams p;
      p.basis = kernels::device_view(a.basis);
      p.weights = a.weights;
      p.weights_ld = a.weights_ld;
      p.group = static_cast<int>(a.n_query_heads / hkv);
      p.begin = a.begin;
      p.chunk = sp.chunk;
      p.eps = static_cast<float>(a.eps);
      p.partials = partials;
      p.nonfinite_flag = a.basis_tensor == BasisTensor::kValues ? kValuesNotFinite : kKeysNotFinite;
      p.flags = flags;
      if (tensor_cores) {
        const dim3 grid(static_cast<unsigned>(p.group * kernels::mma_gram_tile_pairs(d)),
                        static_cast<unsigned>(sp.splits), static_cast<unsigned>(hkv));
        kernels::gram_partial_mma_kernel<<<grid, kernels::kMmaGramThreads, 0, stream>>>(p);
      } else {
        const int padded = kernels::gram_tiles(d) * kernels::gram_tile(d);
        const std::size_t shared =
            sizeof(float) *
            static_cast<std::size_t>(kernels::kGramTokens * (padded + 4) + kernels::kGramTokens);
        const dim3 grid(static_cast<unsigned>(p.group * kernels::gram_tile_pairs(d)),
                        static_cast<unsigned>(sp.splits), static_cast<unsigned>(hkv));
        if (kernels::gram_micro(d) == 4) {
          kernels::gram_partial_kernel<4><<<grid, kernels::kGramThreads, shared, stream>>>(p);
        } else {
          kernels::gram_partial_kernel<8><<<grid, kernels::kGramThreads, shared, stream>>>(p);
        }
      }
    }
    kernels::GramReduceParams r;
    r.partials = partials;
    r.splits = sp.splits;
    r.heads = a.n_query_heads;
    r.d = static_cast<int>(d);
    r.ridge = a.ridge;
    r.gram = a.gram;
    const dim3 grid(ceil_div(d * d, 256), static_cast<unsigned>(a.n_query_heads));
    kernels::gram_reduce_kernel<<<grid, 256, 0, stream>>>(r);
    return launch_status("weighted gram kernels");
  }
};

}  // namespace capkv::cuda
