#include "decode_eviction.hpp"

#include <cmath>

namespace capkv::llm {

void H2OEviction::on_layer(const LayerActivations& a, LayerCache& cache) {
  // Called before the step's K/V enter the cache: attention over the cached tokens, then the new
  // one last, which is the order H2OState::observe expects.
  const std::int64_t d = cache.head_dim();
  const std::int64_t kv_heads = cache.n_kv_heads();
  const std::int64_t group = a.q.cols() / d / kv_heads;
  const std::int64_t n = cache.size(0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  RowMatrixXf attention(kv_heads * group, n + 1);
  for (std::int64_t h = 0; h < kv_heads * group; ++h) {
    const std::int64_t kv = h / group;
    const auto q = a.q.row(0).segment(h * d, d);
    attention.row(h).head(n) = (cache.keys(kv) * q.transpose()).transpose() * scale;
    attention(h, n) = q.dot(a.k.row(0).segment(kv * d, d)) * scale;
    auto row = attention.row(h);
    row = (row.array() - row.maxCoeff()).exp();
    row /= row.sum();
  }
  victims_[a.layer] = states_[a.layer].observe(attention);
}

void H2OEviction::after_step(KvCache& cache) {
  for (std::size_t l = 0; l < cache.layers.size(); ++l) {
    for (std::int64_t h = 0; h < static_cast<std::int64_t>(victims_[l].size()); ++h) {
      if (victims_[l][h] >= 0) cache.layers[l].erase(h, victims_[l][h]);
    }
    victims_[l].clear();
  }
}

void StreamingEviction::after_step(KvCache& cache) {
  for (LayerCache& layer : cache.layers) {
    for (std::int64_t h = 0; h < layer.n_kv_heads(); ++h) {
      while (layer.size(h) > budget_) layer.erase(h, sinks_);
    }
  }
}

}  // namespace capkv::llm
