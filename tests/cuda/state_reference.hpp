#pragma once

// The CPU side of the state tests (h2o_step_test.cu, compaction_in_place_test.cu), compiled by the
// host compiler in state_reference.cpp so the CUDA translation units instantiate no Eigen: the
// library's CPU path (the oracle) behind plain-vector interfaces.

#include <cstdint>
#include <memory>
#include <vector>

#include "capkv/core/layer_inputs.hpp"
#include "capkv/core/tensor_view.hpp"
#include "capkv/policies/h2o.hpp"

namespace capkv_cuda_test::state_ref {

// capkv::cpu::H2OState. Errors it throws (capkv::Error) pass through.
class H2OReference {
 public:
  H2OReference(const capkv::H2O& policy, std::int64_t budget);
  ~H2OReference();
  H2OReference(const H2OReference&) = delete;
  H2OReference& operator=(const H2OReference&) = delete;

  void prefill(const capkv::LayerInputs& in);
  // attention: [rows = Hq, cols = size() + 1] row-major, as H2OState::observe takes it.
  std::vector<std::int64_t> observe(const std::vector<float>& attention, std::int64_t rows,
                                    std::int64_t cols);
  std::int64_t size() const;
  std::vector<std::int64_t> positions(std::int64_t head) const;
  std::vector<double> accumulators(std::int64_t head) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// capkv::compact_in_place with the CSR selection (offsets, indices) of a cache of n tokens.
void compact_in_place(const capkv::MutableTensorView& cache, std::int64_t n,
                      const std::vector<std::int64_t>& offsets,
                      const std::vector<std::int32_t>& indices);

}  // namespace capkv_cuda_test::state_ref
