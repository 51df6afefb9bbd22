// cpu::H2OState through decoding against an independent float64 simulation of the H2O rule: at
// every step both hold the same positions per KV head, evict the same slot, and agree on the
// accumulators. The simulation recomputes each accumulator from scratch at every step from the
// logged attention of every query so far, rather than carrying a running sum.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"
#include "support/reference.hpp"

namespace capkv_test {
namespace {

// The H2O rule in float64, one KV head at a time.
class ReferenceH2O {
 public:
  ReferenceH2O(const capkv::H2O& policy, std::int64_t budget) : policy_(policy), budget_(budget) {}

  // Prompt: exact accumulators, then the shared top-B rule with the recent window protected.
  void prefill(const Layer& prompt) {
    const Eigen::MatrixXd acc = ref::h2o(prompt, policy_.config);
    const capkv::Protection protection = policy_.protection(prompt.n(), budget_);
    heads_.assign(static_cast<std::size_t>(prompt.kv_heads()), {});
    for (std::int64_t h = 0; h < prompt.kv_heads(); ++h) {
      for (std::int32_t i : ref::top_b(acc.row(h).transpose(), protection, budget_)) {
        heads_[h].positions.push_back(i);
        heads_[h].prefill[i] = acc(h, i);
      }
    }
  }

  const std::vector<std::int64_t>& positions(std::int64_t h) const { return heads_[h].positions; }

  // Accumulator of `position` in head h: its prefill mass plus every logged decoding row.
  double accumulator(std::int64_t h, std::int64_t position) const {
    const Head& head = heads_[h];
    double acc = head.prefill.count(position) ? head.prefill.at(position) : 0.0;
    for (const auto& row : head.log) acc += row.count(position) ? row.at(position) : 0.0;
    return acc;
  }

  // One step for head h: `mass` is the group's summed attention on each position of the cache
  // after appending `position`. Returns the evicted slot or -1, and the gap between the smallest
  // and the second-smallest evictable accumulator (how safely the decision was made).
  std::pair<std::int64_t, double> step(std::int64_t h, std::int64_t position,
                                       const std::map<std::int64_t, double>& mass) {
    Head& head = heads_[h];
    head.positions.push_back(position);
    head.log.push_back(mass);
    const auto size = static_cast<std::int64_t>(head.positions.size());
    if (size <= budget_) return {-1, INFINITY};
    const std::int64_t evictable = size - policy_.protection(size, budget_).window;
    std::int64_t victim = 0;
    double lowest = INFINITY, second = INFINITY;
    for (std::int64_t s = 0; s < evictable; ++s) {
      const double acc = accumulator(h, head.positions[s]);
      if (acc < lowest) {  // strict: the older token goes on ties
        second = lowest;
        lowest = acc;
        victim = s;
      } else {
        second = std::min(second, acc);
      }
    }
    head.positions.erase(head.positions.begin() + victim);
    return {victim, second - lowest};
  }

 private:
  struct Head {
    std::vector<std::int64_t> positions;
    std::map<std::int64_t, double> prefill;
    std::vector<std::map<std::int64_t, double>> log;
  };
  capkv::H2O policy_;
  std::int64_t budget_;
  std::vector<Head> heads_;
};

struct Scenario {
  const char* name;
  capkv::H2O policy;
  LayerShape shape;  // the prompt
  std::int64_t budget;
  std::int64_t steps;
  bool sinks;  // a few prompt tokens every query attends to
};

// Runs prefill and `steps` decoding steps on the library and on the simulation side by side.
void run(const Scenario& sc) {
  SCOPED_TRACE(sc.name);
  const std::int64_t n = sc.shape.n, total = n + sc.steps, g = sc.shape.group;
  // All keys (prompt and decoded) and one query per step and query head come from one layer of
  // `total` tokens: its first n tokens and n query rows are the prompt.
  LayerShape all = sc.shape;
  all.n = total;
  all.queries = total;
  std::vector<Eigen::VectorXd> dirs;
  Layer everything = focused_layer(all, 77, sc.sinks ? 2.0 : 0.0, 1.0, &dirs);
  const std::vector<std::int64_t> sink_tokens =
      sc.sinks ? std::vector<std::int64_t>{1, n / 2} : std::vector<std::int64_t>{};
  for (std::int64_t t : sink_tokens) {
    for (std::int64_t kv = 0; kv < all.kv_heads; ++kv)
      boost_along(everything, t, kv, dirs[kv], 10.0);
  }
  Layer prompt;
  prompt.keys = HostTensor(n, all.kv_heads, all.dim);
  prompt.queries = HostTensor(n, all.kv_heads * g, all.dim);
  std::copy_n(everything.keys.data.begin(), prompt.keys.data.size(), prompt.keys.data.begin());
  std::copy_n(everything.queries.data.begin(), prompt.queries.data.size(),
              prompt.queries.data.begin());

  capkv::cpu::H2OState state(sc.policy, sc.budget);
  ReferenceH2O sim(sc.policy, sc.budget);
  state.prefill(prompt.inputs());
  sim.prefill(prompt);
  const double rel = ref::attention_rel_tolerance(prompt);
  auto check_state = [&](std::int64_t step) {
    for (std::int64_t h = 0; h < all.kv_heads; ++h) {
      const auto got = state.positions(h);
      ASSERT_EQ(std::vector<std::int64_t>(got.begin(), got.end()), sim.positions(h))
          << "step " << step << " head " << h;
      for (std::size_t s = 0; s < got.size(); ++s) {
        const double want = sim.accumulator(h, got[s]);
        // Prefill mass to the prefill's relative tolerance, then one fp32 rounding per step.
        EXPECT_NEAR(state.accumulators(h)[s], want, rel * want + (step + 2) * 4 * ref::kU32 * g)
            << "step " << step << " head " << h << " position " << got[s];
      }
      for (std::int64_t t : sink_tokens) {
        EXPECT_TRUE(std::ranges::binary_search(got, t)) << "sink " << t << " evicted at " << step;
      }
    }
  };
  check_state(-1);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());

  std::int64_t evictions = 0;
  for (std::int64_t step = 0; step < sc.steps; ++step) {
    const std::int64_t position = n + step;
    const std::int64_t size = state.size() + 1;
    capkv::cpu::RowMatrixXf attention(all.kv_heads * g, size);
    std::vector<std::map<std::int64_t, double>> mass(static_cast<std::size_t>(all.kv_heads));
    for (std::int64_t kv = 0; kv < all.kv_heads; ++kv) {
      // This head's cache after the append: its kept positions, then the new token.
      std::vector<std::int64_t> cache = sim.positions(kv);
      cache.push_back(position);
      Eigen::MatrixXd keys(size, all.dim);
      for (std::int64_t s = 0; s < size; ++s)
        keys.row(s) = everything.keys.row(cache[s], kv).transpose();
      for (std::int64_t j = 0; j < g; ++j) {
        const Eigen::VectorXd p =
            ref::causal_softmax(everything.queries.row(position, kv * g + j), keys, size - 1);
        for (std::int64_t s = 0; s < size; ++s) {
          attention(kv * g + j, s) = static_cast<float>(p[s]);
          mass[kv][cache[s]] += static_cast<float>(p[s]);  // what the state is given
        }
      }
    }
    const std::vector<std::int64_t> evicted = state.observe(attention);
    ASSERT_EQ(static_cast<std::int64_t>(evicted.size()), all.kv_heads);
    for (std::int64_t kv = 0; kv < all.kv_heads; ++kv) {
      const auto [victim, margin] = sim.step(kv, position, mass[kv]);
      // A decision closer than the accumulated rounding could go either way; the scenarios are
      // chosen so that none is.
      ASSERT_GT(margin, 1e-5) << "near tie at step " << step << "; choose another seed";
      EXPECT_EQ(evicted[kv], victim) << "step " << step << " head " << kv;
      evictions += victim >= 0;
    }
    check_state(step);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    EXPECT_EQ(state.size(), std::min(sc.budget, std::min(n, sc.budget) + step + 1));
  }
  EXPECT_GT(evictions, 0);
}

TEST(H2ODecoding, PaperPresetMatchesTheSimulationAtEveryStep) {
  run({"paper g=2",
       capkv::H2O::paper(),
       {.n = 40, .kv_heads = 2, .group = 2, .dim = 16},
       16,
       40,
       false});
}

TEST(H2ODecoding, PromptShorterThanTheBudgetGrowsThenEvicts) {
  run({"short prompt",
       capkv::H2O::paper(),
       {.n = 10, .kv_heads = 2, .group = 1, .dim = 8},
       16,
       30,
       false});
}

TEST(H2ODecoding, UnevenSplitAndGqaGroupOfFour) {
  run({"recent 25%",
       capkv::H2O(capkv::H2O::Config{.recent_fraction = 0.25}),
       {.n = 50, .kv_heads = 1, .group = 4, .dim = 16},
       20,
       35,
       false});
}

TEST(H2ODecoding, AttentionSinksAreNeverEvicted) {
  run({"sinks",
       capkv::H2O::paper(),
       {.n = 40, .kv_heads = 2, .group = 3, .dim = 16},
       12,
       40,
       true});
}

// Equal accumulators: the older token goes (the mirror of "ties keep the more recent").
TEST(H2ODecoding, TiesEvictTheOlderToken) {
  Layer prompt = random_layer({.n = 1, .kv_heads = 1, .group = 1, .dim = 4}, 1);
  capkv::cpu::H2OState state(capkv::H2O::paper(), 2);  // one heavy slot, one recent
  state.prefill(prompt.inputs());                      // token 0, accumulator 1
  capkv::cpu::RowMatrixXf row(1, 2);
  row << 0.0f, 1.0f;  // token 1 arrives with accumulator 1 too
  EXPECT_EQ(state.observe(row), std::vector<std::int64_t>{-1});
  capkv::cpu::RowMatrixXf row2(1, 3);
  row2 << 0.5f, 0.5f, 0.0f;  // both reach 1.5; token 2 is in the recent window
  EXPECT_EQ(state.observe(row2), std::vector<std::int64_t>{0});
  const auto kept = state.positions(0);
  EXPECT_EQ(std::vector<std::int64_t>(kept.begin(), kept.end()), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(state.accumulators(0)[0], 1.5);
  EXPECT_EQ(state.accumulators(0)[1], 0.0);
}

TEST(H2ODecoding, RejectsMisuse) {
  const Layer prompt = random_layer({.n = 8, .kv_heads = 2, .group = 2, .dim = 8}, 2);
  auto argument_of = [](auto&& f) {
    try {
      f();
    } catch (const capkv::Error& e) {
      return e.argument();
    }
    return std::string("(no error)");
  };
  {
    capkv::cpu::H2OState state(capkv::H2O::paper(), 4);
    EXPECT_EQ(argument_of([&] { state.observe(capkv::cpu::RowMatrixXf::Zero(4, 1)); }), "state");
    state.prefill(prompt.inputs());
    // [query heads, size + 1] and finite.
    EXPECT_EQ(argument_of([&] { state.observe(capkv::cpu::RowMatrixXf::Zero(2, 5)); }),
              "attention");
    EXPECT_EQ(argument_of([&] { state.observe(capkv::cpu::RowMatrixXf::Zero(4, 4)); }),
              "attention");
    capkv::cpu::RowMatrixXf nan_row = capkv::cpu::RowMatrixXf::Zero(4, 5);
    nan_row(1, 2) = NAN;
    EXPECT_EQ(argument_of([&] { state.observe(nan_row); }), "attention");
    EXPECT_EQ(state.size(), 4);  // nothing was appended by the failed calls
  }
  {
    // ObservedAttention scores the prefill only.
    capkv::cpu::H2OState state(capkv::H2O::kvpress(), 4);
    state.prefill(prompt.inputs());
    EXPECT_EQ(argument_of([&] { state.observe(capkv::cpu::RowMatrixXf::Zero(4, 5)); }), "policy");
  }
  EXPECT_EQ(argument_of([] { capkv::cpu::H2OState(capkv::H2O::paper(), 0); }), "budget");
}

}  // namespace
}  // namespace capkv_test
