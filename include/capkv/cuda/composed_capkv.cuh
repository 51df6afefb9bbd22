#pragma once

// ComposedCapKVScores: CapKV's per-KV-head scores with the linear algebra done by the libraries:
//   relevance weights (the fused kernels) -> pack U and sqrt(w + eps) U per query head ->
//   cublasSgemmStridedBatched (A = X X^T) -> + ridge I in fp64 -> cusolverDnDpotrfBatched ->
//   cublasDtrsmBatched (L^-1 from I) -> fp32 -> per KV head cublasSgemmStridedBatched
//   (P = L^-1 U^T for the g heads) -> w ||P_i||^2 reduced over the group.
// The reference the fused CapKVSelect is checked and timed against. It needs Hq * n * d * 4 bytes
// of workspace for the scaled copies (2 GB at n = 128K, d = 128, 32 query heads), and cuBLAS and
// cuSOLVER may allocate inside their handles; run() points both handles at `stream`.

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "capkv/core/layer_inputs.hpp"
#include "capkv/core/scores.hpp"
#include "capkv/cuda/launch_support.cuh"
#include "capkv/cuda/relevance.cuh"
#include "capkv/policies/capkv.hpp"
#include "kernels/composed.cuh"

namespace capkv::cuda {

struct ComposedCapKVScores {
  struct Arguments {
    CapKV policy;
    LayerInputs inputs;  // device views
    GqaReduction gqa = GqaReduction::kMean;
    float* scores = nullptr;  // [Hkv, scores_ld] device, out
    std::int64_t scores_ld = 0;
    cublasHandle_t cublas = nullptr;
    cusolverDnHandle_t cusolver = nullptr;
  };

  struct Layout {
    std::uint32_t* flags = nullptr;
    RelevanceWeights::Buffers relevance;
    float* weights = nullptr;
    float* unscaled = nullptr;
    float* scaled = nullptr;  // reused for the products
    float* gram = nullptr;
    double* factor = nullptr;
    double* inverse = nullptr;
    float* inverse_f32 = nullptr;
    double** factor_pointers = nullptr;
    double** inverse_pointers = nullptr;
    int* info = nullptr;
  };

  static const TensorView& basis(const Arguments& a) {
    return a.policy.config.basis == CapKV::Basis::kValues ? a.inputs.values : a.inputs.keys;
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

  static Status can_implement(const Arguments& a) {
    if (a.policy.config.method != CapKV::Method::kOneShot) {
      return Status::error(StatusCode::kNotSupported, "config.method",
                           "greedy CapKV runs on the CPU only");
    }
    Status s = checked([&] { validate(a.inputs, a.policy.needs()); });
    if (!s) return s;
    if (!a.policy.config.uniform_weights) {
      s = RelevanceWeights::can_implement_inputs(a.policy.config, a.inputs);
      if (!s) return s;
    }
    const std::int64_t n = a.inputs.n_tokens();
    if (basis(a).head_dim() > 256)
      return Status::invalid("values", "head_dim above 256 is not supported");
    if (n > 0x7fffffffLL) return Status::invalid("keys", "more than 2^31 - 1 tokens");
    if (a.cublas == nullptr || a.cusolver == nullptr) {
      return Status::invalid(a.cublas ? "cusolver" : "cublas", "handle is null");
    }
    if (n > 0 && a.scores == nullptr) return Status::invalid("scores", "is null");
    if (a.scores_ld < n) return Status::invalid("scores_ld", "is smaller than the token count");
    return Status::success();
  }

  static Layout carve(WorkspaceCarver& carver, const Arguments& a) {
    const std::int64_t n = a.inputs.n_tokens();
    const std::int64_t rows = n - begin(a);
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t hkv = a.inputs.n_kv_heads();
    const auto d = static_cast<std::size_t>(basis(a).head_dim());
    Layout l;
    l.flags = take_flags(carver);
    if (!a.policy.config.uniform_weights) {
      l.relevance = RelevanceWeights::carve(carver, relevance_arguments(a, nullptr));
      l.weights = carver.take<float>(static_cast<std::size_t>(hq * n));
    }
    l.unscaled = carver.take<float>(static_cast<std::size_t>(hkv * rows) * d);
    l.scaled = carver.take<float>(static_cast<std::size_t>(hq * rows) * d);
    l.gram = carver.take<float>(static_cast<std::size_t>(hq) * d * d);
    l.factor = carver.take<double>(static_cast<std::size_t>(hq) * d * d);
    l.inverse = carver.take<double>(static_cast<std::size_t>(hq) * d * d);
    l.inverse_f32 = carver.take<float>(static_cast<std::size_t>(hq) * d * d);
    l.factor_pointers = carver.take<double*>(static_cast<std::size_t>(hq));
    l.inverse_pointers = carver.take<double*>(static_cast<std::size_t>(hq));
    l.info = carver.take<int>(static_cast<std::size_t>(hq));
    return l;
  }

  static std::size_t workspace_size(const Arguments& a) {
    WorkspaceCarver carver;
    carve(carver, a);
    return carver.size();
  }

  static Status library(bool ok, const char* what) {
    return ok ? Status::success()
              : Status::error(StatusCode::kCudaError, what, "library call failed");
  }

  static Status run(const Arguments& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
    Status s = start_run<ComposedCapKVScores>(a, workspace, workspace_bytes, stream);
    if (!s) return s;
    WorkspaceCarver carver(workspace);
    const Layout l = carve(carver, a);
    const std::int64_t n = a.inputs.n_tokens();
    if (n == 0) return Status::success();
    const CapKV::Config& c = a.policy.config;
    const std::int64_t first = begin(a);
    const std::int64_t rows = n - first;
    const std::int64_t hq = a.inputs.n_query_heads();
    const std::int64_t hkv = a.inputs.n_kv_heads();
    const int g = static_cast<int>(hq / hkv);
    const int d = static_cast<int>(basis(a).head_dim());
    const long long square = static_cast<long long>(d) * d;
    s = library(cublasSetStream(a.cublas, stream) == CUBLAS_STATUS_SUCCESS, "cublasSetStream");
    if (!s) return s;
    s = library(cusolverDnSetStream(a.cusolver, stream) == CUSOLVER_STATUS_SUCCESS,
                "cusolverDnSetStream");
    if (!s) return s;

    if (!c.uniform_weights) {
      s = RelevanceWeights::enqueue(relevance_arguments(a, l.weights), l.relevance, l.flags,
                                    stream);
      if (!s) return s;
    }
    const std::uint32_t basis_flag =
        c.basis == CapKV::Basis::kValues ? kValuesNotFinite : kKeysNotFinite;
    if (rows > 0) {
      kernels::PackParams pp;
      pp.basis = kernels::device_view(basis(a));
      pp.begin = first;
      pp.weights = l.weights;
      pp.weights_ld = n;
      pp.group = g;
      pp.eps = static_cast<float>(c.eps);
      pp.unscaled = l.unscaled;
      pp.scaled = l.scaled;
      pp.nonfinite_flag = basis_flag;
      pp.flags = l.flags;
      kernels::pack_basis_kernel<<<std::min<unsigned>(ceil_div(hkv * rows * d, 256), 65535u), 256,
                                   0, stream>>>(pp);
      // Column-major X_h is d x rows with leading dimension d: A_h = X_h X_h^T.
      const float one = 1.0f;
      const float zero = 0.0f;
      s = library(cublasSgemmStridedBatched(a.cublas, CUBLAS_OP_N, CUBLAS_OP_T, d, d,
                                            static_cast<int>(rows), &one, l.scaled, d, rows * d,
                                            l.scaled, d, rows * d, &zero, l.gram, d, square,
                                            static_cast<int>(hq)) == CUBLAS_STATUS_SUCCESS,
                  "cublasSgemmStridedBatched");
    } else {
      s = cudaMemsetAsync(l.gram, 0, sizeof(float) * hq * square, stream) == cudaSuccess
              ? Status::success()
              : launch_status("cudaMemsetAsync");
    }
    if (!s) return s;

    kernels::PrepareFactorParams fp;
    fp.gram = l.gram;
    fp.d = d;
    fp.ridge = c.ridge;
    fp.factor = l.factor;
    fp.inverse = l.inverse;
    fp.factor_pointers = l.factor_pointers;
    fp.inverse_pointers = l.inverse_pointers;
    kernels::prepare_factor_kernel<<<dim3(ceil_div(square, 256), static_cast<unsigned>(hq)), 256, 0,
                                     stream>>>(fp);
    s = library(cusolverDnDpotrfBatched(a.cusolver, CUBLAS_FILL_MODE_LOWER, d, l.factor_pointers, d,
                                        l.info, static_cast<int>(hq)) == CUSOLVER_STATUS_SUCCESS,
                "cusolverDnDpotrfBatched");
    if (!s) return s;
    const double one_d = 1.0;
    s = library(
        cublasDtrsmBatched(a.cublas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                           CUBLAS_DIAG_NON_UNIT, d, d, &one_d, l.factor_pointers, d,
                           l.inverse_pointers, d, static_cast<int>(hq)) == CUBLAS_STATUS_SUCCESS,
        "cublasDtrsmBatched");
    if (!s) return s;
    kernels::NarrowInverseParams np;
    np.inverse = l.inverse;
    np.info = l.info;
    np.heads = hq;
    np.d = d;
    np.inverse_f32 = l.inverse_f32;
    np.flags = l.flags;
    kernels::narrow_inverse_kernel<<<std::min<unsigned>(ceil_div(hq * square, 256), 65535u), 256, 0,
                                     stream>>>(np);

    if (rows > 0) {
      // P_h (d x rows, column-major, i.e. rows x d row-major) = L_h^-1 U^T; the g heads of a KV
      // group share U, hence stride 0 for B.
      const float one = 1.0f;
      const float zero = 0.0f;
      for (std::int64_t kv = 0; kv < hkv; ++kv) {
        s = library(
            cublasSgemmStridedBatched(
                a.cublas, CUBLAS_OP_N, CUBLAS_OP_N, d, static_cast<int>(rows), d, &one,
                l.inverse_f32 + kv * g * square, d, square, l.unscaled + kv * rows * d, d, 0, &zero,
                l.scaled + kv * g * rows * d, d, rows * d, g) == CUBLAS_STATUS_SUCCESS,
            "cublasSgemmStridedBatched");
        if (!s) return s;
      }
    }
    kernels::ProjectedNormParams pn;
    pn.projected = l.scaled;
    pn.weights = l.weights;
    pn.weights_ld = n;
    pn.n = n;
    pn.begin = first;
    pn.d = d;
    pn.group = g;
    pn.kv_heads = hkv;
    pn.reduction = a.gqa == GqaReduction::kMean  ? kernels::GroupReduction::kMean
                   : a.gqa == GqaReduction::kMax ? kernels::GroupReduction::kMax
                                                 : kernels::GroupReduction::kSum;
    pn.scores = a.scores;
    pn.scores_ld = a.scores_ld;
    kernels::projected_norm_kernel<<<ceil_div(hkv * n * 32, 256), 256, 0, stream>>>(pn);
    return launch_status("composed CapKV kernels");
  }
};

}  // namespace capkv::cuda
