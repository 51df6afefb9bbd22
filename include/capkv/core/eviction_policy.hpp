#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>

#include "capkv/core/budget.hpp"
#include "capkv/core/layer_inputs.hpp"
#include "capkv/core/protection.hpp"
#include "capkv/core/scores.hpp"

namespace capkv {

namespace cpu {
// Each backend specialises its scorer per policy: `static Scores score(const Policy&, const
// LayerInputs&, std::int64_t budget)`. A class template (not an overload set) so a policy's
// backend header can be included after this one and still be found.
template <class Policy>
struct Scorer;
}  // namespace cpu

// What every policy gets unless it says otherwise.
struct PolicyDefaults {
  // Tokens to keep per KV head out of the layer's n. Policies that skip layers or short caches
  // (Knorm's paper preset) override it.
  std::int64_t resolve_budget(const Budget& budget, const LayerInputs& in) const {
    return budget.resolve(in.n_tokens());
  }
};

// A policy is math with a config: a name, the inputs it reads, the tokens it protects, the budget it
// will actually keep, and a scorer on the CPU backend.
template <class P>
concept EvictionPolicy = requires(const P& p, const LayerInputs& in, const Budget& b,
                                  std::int64_t n) {
  { p.name() } -> std::convertible_to<std::string_view>;
  { p.needs() } -> std::same_as<InputNeeds>;
  { p.protection(n, n) } -> std::same_as<Protection>;
  { p.resolve_budget(b, in) } -> std::same_as<std::int64_t>;
  { cpu::Scorer<P>::score(p, in, n) } -> std::same_as<Scores>;
};

}  // namespace capkv
