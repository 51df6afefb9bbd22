#include "eval/decode_eviction.hpp"

#include <cmath>
#include <stdexcept>

namespace capkv::llm::eval {
namespace {

void apply_pending(std::vector<std::int64_t>& pending, LayerCache& cache) {
  for (std::size_t h = 0; h < pending.size(); ++h) {
    if (pending[h] >= 0) cache.erase(static_cast<std::int64_t>(h), pending[h]);
    pending[h] = -1;
  }
}

}  // namespace

RowMatrixXf step_attention(const LayerActivations& a, const LayerCache& cache, std::int64_t group) {
  if (a.q.rows() != 1) throw std::invalid_argument("step_attention: one token per step");
  const std::int64_t d = cache.head_dim();
  const std::int64_t n_q = a.q.cols() / d;
  const std::int64_t size = cache.size(0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  RowMatrixXf attention(n_q, size + 1);
  for (std::int64_t h = 0; h < n_q; ++h) {
    const std::int64_t kv = h / group;
    if (cache.size(kv) != size) throw std::logic_error("step_attention: heads differ in size");
    const auto q = a.q.row(0).segment(h * d, d);
    auto row = attention.row(h);
    row.head(size).noalias() = (cache.keys(kv) * q.transpose()).transpose() * scale;
    row[size] = q.dot(a.k.row(0).segment(kv * d, d)) * scale;
    row = (row.array() - row.maxCoeff()).exp();
    row /= row.sum();
  }
  return attention;
}

H2ODecodeEviction::H2ODecodeEviction(std::vector<capkv::cpu::H2OState> states)
    : states_(std::move(states)), pending_(states_.size()) {
  for (std::size_t l = 0; l < states_.size(); ++l) {
    pending_[l].assign(static_cast<std::size_t>(states_[l].n_kv_heads()), -1);
  }
}

void H2ODecodeEviction::on_layer(const LayerActivations& a, LayerCache& cache) {
  const auto layer = static_cast<std::size_t>(a.layer);
  apply_pending(pending_.at(layer), cache);
  capkv::cpu::H2OState& state = states_[layer];
  if (cache.size(0) != state.size()) {
    throw std::logic_error("H2ODecodeEviction: the cache and the H2O state disagree on the size");
  }
  const std::int64_t group = a.q.cols() / (cache.head_dim() * cache.n_kv_heads());
  pending_[layer] = state.observe(step_attention(a, cache, group));
}

StreamingDecodeEviction::StreamingDecodeEviction(std::int64_t n_layers, std::int64_t budget,
                                                 std::int64_t sinks)
    : budget_(budget), sinks_(sinks), pending_(static_cast<std::size_t>(n_layers)) {
  if (budget <= sinks)
    throw std::invalid_argument("StreamingLLM decoding needs a budget above the sinks");
}

void StreamingDecodeEviction::on_layer(const LayerActivations& a, LayerCache& cache) {
  auto& pending = pending_.at(static_cast<std::size_t>(a.layer));
  apply_pending(pending, cache);
  pending.assign(static_cast<std::size_t>(cache.n_kv_heads()), -1);
  for (std::int64_t h = 0; h < cache.n_kv_heads(); ++h) {
    // After this step's append the head holds size + 1; past the budget, the oldest non-sink goes.
    if (cache.size(h) + 1 > budget_) pending[h] = sinks_;
  }
}

}  // namespace capkv::llm::eval
