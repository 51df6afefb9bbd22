#include "tests/cuda/state_reference.hpp"

#include "capkv/core/compaction.hpp"
#include "capkv/cpu/h2o.hpp"

namespace capkv_cuda_test::state_ref {

struct H2OReference::Impl {
  capkv::cpu::H2OState state;
};

H2OReference::H2OReference(const capkv::H2O& policy, std::int64_t budget)
    : impl_(new Impl{capkv::cpu::H2OState(policy, budget)}) {}
H2OReference::~H2OReference() = default;

void H2OReference::prefill(const capkv::LayerInputs& in) { impl_->state.prefill(in); }

std::vector<std::int64_t> H2OReference::observe(const std::vector<float>& attention,
                                                std::int64_t rows, std::int64_t cols) {
  capkv::cpu::RowMatrixXf a(rows, cols);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) a(r, c) = attention[r * cols + c];
  }
  return impl_->state.observe(a);
}

std::int64_t H2OReference::size() const { return impl_->state.size(); }

std::vector<std::int64_t> H2OReference::positions(std::int64_t head) const {
  const auto p = impl_->state.positions(head);
  return {p.begin(), p.end()};
}

std::vector<double> H2OReference::accumulators(std::int64_t head) const {
  const auto a = impl_->state.accumulators(head);
  return {a.begin(), a.end()};
}

void compact_in_place(const capkv::MutableTensorView& cache, std::int64_t n,
                      const std::vector<std::int64_t>& offsets,
                      const std::vector<std::int32_t>& indices) {
  capkv::Selection sel;
  sel.n_tokens = n;
  sel.offsets = offsets;
  sel.indices = indices;
  capkv::compact_in_place(cache, sel);
}

}  // namespace capkv_cuda_test::state_ref
