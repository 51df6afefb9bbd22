// The shared H2O decoding bookkeeping (include/capkv/device/h2o_step.hpp) on the CPU, held to
// capkv::cpu::H2OState step by step: one worker and teams of real threads, evictions exact (the
// CPU sums in double, the step in float, so a near tie may legitimately split them: the test then
// proves it was one and stops that run), accumulators within the fp32 summation error. The CUDA
// kernel runs h2o_step_head with a block as the team and the same online-softmax pieces.

#include "capkv/device/h2o_step.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "capkv/cpu/h2o.hpp"
#include "capkv/device/host_device.hpp"
#include "thread_team.hpp"

namespace {

namespace dev = capkv::device;

using capkv_cuda_test::run_team;
using capkv_cuda_test::ThreadTeam;

TEST(H2OStepMath, SoftmaxPartialsMergeInAnyOrderToTheRowNormaliser) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 300);
    std::vector<float> x(static_cast<std::size_t>(n));
    for (auto& v : x) v = normal(rng);
    const double mx = *std::max_element(x.begin(), x.end());
    double want = 0.0;
    for (float v : x) want += std::exp(static_cast<double>(v) - mx);
    // Random tiles, each built logit by logit, merged in a random order.
    std::vector<dev::SoftmaxPartial> parts;
    for (int i = 0; i < n;) {
      const int len = 1 + static_cast<int>(rng() % 40);
      dev::SoftmaxPartial p = dev::empty_softmax_partial();
      for (int t = i; t < std::min(n, i + len); ++t) p = dev::add_logit(p, x[t]);
      parts.push_back(p);
      parts.push_back(dev::empty_softmax_partial());  // tiles past the head's size
      i += len;
    }
    std::shuffle(parts.begin(), parts.end(), rng);
    dev::SoftmaxPartial all = dev::empty_softmax_partial();
    for (const auto& p : parts) all = dev::merge_softmax(all, p);
    EXPECT_EQ(all.max, static_cast<float>(mx));
    EXPECT_NEAR(all.sum, want, want * 1e-5);
  }
  const dev::SoftmaxPartial a{1.5f, 3.25f};
  const dev::SoftmaxPartial b{-2.0f, 7.0f};
  EXPECT_EQ(dev::merge_softmax(a, b).max, dev::merge_softmax(b, a).max);
  EXPECT_EQ(dev::merge_softmax(a, b).sum, dev::merge_softmax(b, a).sum);
  EXPECT_EQ(dev::merge_softmax(dev::empty_softmax_partial(), dev::empty_softmax_partial()).max,
            -std::numeric_limits<float>::infinity());
}

TEST(H2OStepMath, LowerSlotPicksTheFirstMinimumInAnyOrder) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 50);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<float>(rng() % 6) * 0.25f;  // many ties
    if (trial % 7 == 0) v[rng() % n] = -0.0f;  // -0 ties +0, as std::min_element sees it
    const auto want = std::min_element(v.begin(), v.end()) - v.begin();
    std::vector<int> order(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    dev::SlotMin m{0.0f, -1};
    for (int i : order) m = dev::lower_slot(m, dev::SlotMin{v[i], i});
    EXPECT_EQ(m.slot, want);
  }
  EXPECT_EQ(dev::lower_slot(dev::SlotMin{0.0f, -1}, dev::SlotMin{0.0f, -1}).slot, -1);
}

TEST(H2OStepMath, EvictableSlotsFollowTheRecentWindow) {
  EXPECT_EQ(dev::h2o_evictable(5, 5, 2), 0);    // within budget: no eviction
  EXPECT_EQ(dev::h2o_evictable(6, 5, 3), 3);    // B = 5, window 3: slots 0..2
  EXPECT_EQ(dev::h2o_evictable(2, 1, 1), 1);    // B = 1: the older of the two
  EXPECT_EQ(dev::h2o_evictable(6, 5, 0), 6);    // no window: any slot, the new one too
  EXPECT_EQ(dev::h2o_evictable(6, 5, 6), -1);   // the window covers everything
  EXPECT_EQ(dev::h2o_evictable(6, 5, 8), -1);
  // The window is H2O::protection's, which depends on the budget only.
  for (std::int64_t b = 1; b < 40; ++b) {
    for (double rf : {0.0, 0.3, 0.5, 1.0}) {
      const std::int64_t window = capkv::H2O(capkv::H2O::Config{rf, false}).protection(b + 1, b).window;
      EXPECT_GE(dev::h2o_evictable(b + 1, b, window), 1) << b << " " << rf;
    }
  }
}

// A layer of fp32 keys and queries: the prompt, then one new key per KV head and one query per
// query head per decoding step.
struct Trajectory {
  std::int64_t hkv;
  std::int64_t g;
  std::int64_t d;
  std::int64_t prompt;
  std::int64_t steps;
  std::vector<float> keys;     // [prompt + steps, hkv, d]
  std::vector<float> queries;  // [prompt + steps, hkv * g, d]

  Trajectory(std::int64_t hkv_, std::int64_t g_, std::int64_t d_, std::int64_t prompt_,
             std::int64_t steps_, unsigned seed)
      : hkv(hkv_), g(g_), d(d_), prompt(prompt_), steps(steps_) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    keys.resize(static_cast<std::size_t>((prompt + steps) * hkv * d));
    queries.resize(static_cast<std::size_t>((prompt + steps) * hkv * g * d));
    for (auto& x : keys) x = normal(rng);
    for (auto& x : queries) x = normal(rng) * 1.5f;
  }
  const float* key(std::int64_t t, std::int64_t h) const { return &keys[(t * hkv + h) * d]; }
  const float* query(std::int64_t t, std::int64_t hq) const {
    return &queries[(t * hkv * g + hq) * d];
  }
};

// Runs `steps` decoding steps through H2OState and through h2o_step_head (run by `step_head`,
// one call per KV head), comparing after every step. Adds the steps compared to *compared.
template <class StepHead>
void compare_with_h2o_state(const Trajectory& tr, const capkv::H2O& policy, std::int64_t budget,
                            StepHead step_head, std::int64_t* compared) {
  capkv::LayerInputs in;
  in.keys = capkv::TensorView(tr.keys.data(), capkv::DType::kF32, capkv::Layout::kTokensHeadsDim,
                              tr.prompt, tr.hkv, tr.d);
  in.values = in.keys;
  in.queries = capkv::TensorView(tr.queries.data(), capkv::DType::kF32,
                                 capkv::Layout::kTokensHeadsDim, tr.prompt, tr.hkv * tr.g, tr.d);
  capkv::cpu::H2OState state(policy, budget);
  state.prefill(in);
  const std::int64_t window = policy.protection(budget + 1, budget).window;
  // The step's own state: float accumulators in the CPU's order.
  std::vector<std::vector<float>> acc(static_cast<std::size_t>(tr.hkv));
  for (std::int64_t h = 0; h < tr.hkv; ++h) {
    for (double a : state.accumulators(h)) acc[h].push_back(static_cast<float>(a));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(tr.d));
  for (std::int64_t step = 0; step < tr.steps; ++step) {
    const std::int64_t t = tr.prompt + step;
    const std::int64_t size = state.size();
    capkv::cpu::RowMatrixXf attention(tr.hkv * tr.g, size + 1);
    std::vector<std::int64_t> got(static_cast<std::size_t>(tr.hkv));
    std::vector<std::vector<double>> before(static_cast<std::size_t>(tr.hkv));
    for (std::int64_t h = 0; h < tr.hkv; ++h) {
      // The head's cache in slot order: the kept positions, then the new token.
      std::vector<std::int64_t> slots(state.positions(h).begin(), state.positions(h).end());
      slots.push_back(t);
      std::vector<float> logits(static_cast<std::size_t>(tr.g * (size + 1)));
      std::vector<dev::SoftmaxPartial> norms(static_cast<std::size_t>(tr.g));
      for (std::int64_t j = 0; j < tr.g; ++j) {
        dev::SoftmaxPartial p = dev::empty_softmax_partial();
        for (std::int64_t s = 0; s <= size; ++s) {
          float dot = 0.0f;
          for (std::int64_t c = 0; c < tr.d; ++c)
            dot += tr.query(t, h * tr.g + j)[c] * tr.key(slots[s], h)[c];
          logits[j * (size + 1) + s] = dot * scale;
          p = dev::add_logit(p, dot * scale);
        }
        norms[j] = p;
        // H2OState gets the very probabilities the step adds.
        for (std::int64_t s = 0; s <= size; ++s) {
          attention(h * tr.g + j, s) =
              dev::detail::exp_f(logits[j * (size + 1) + s] - p.max) / p.sum;
        }
      }
      before[h].assign(state.accumulators(h).begin(), state.accumulators(h).end());
      before[h].push_back(0.0);
      for (std::int64_t j = 0; j < tr.g; ++j) {
        for (std::int64_t s = 0; s <= size; ++s) before[h][s] += attention(h * tr.g + j, s);
      }
      dev::H2OHeadStep hs;
      hs.logits = logits.data();
      hs.logits_ld = size + 1;
      hs.normalisers = norms.data();
      hs.group = static_cast<int>(tr.g);
      hs.size = size;
      hs.budget = budget;
      hs.window = window;
      acc[h].resize(static_cast<std::size_t>(size + 1));
      std::vector<float> updated(static_cast<std::size_t>(size + 1));
      hs.accumulators_in = acc[h].data();
      hs.updated = updated.data();
      hs.accumulators_out = acc[h].data();  // in place, as the kernel runs it
      got[h] = step_head(hs);
      if (got[h] >= 0) acc[h].resize(static_cast<std::size_t>(size));
    }
    const std::vector<std::int64_t> want = state.observe(attention);
    for (std::int64_t h = 0; h < tr.hkv; ++h) {
      if (got[h] != want[h]) {
        // Only a near tie may split float from double; after it the two states differ, so stop.
        ASSERT_TRUE(got[h] >= 0 && want[h] >= 0) << "step " << step << " head " << h;
        const double gap = std::abs(before[h][got[h]] - before[h][want[h]]);
        ASSERT_LE(gap, 1e-5 * (1.0 + std::abs(before[h][want[h]])))
            << "step " << step << " head " << h << ": evicted " << got[h] << ", H2OState "
            << want[h];
        return;
      }
      const auto cpu = state.accumulators(h);
      ASSERT_EQ(acc[h].size(), cpu.size());
      for (std::size_t s = 0; s < cpu.size(); ++s) {
        ASSERT_NEAR(acc[h][s], cpu[s], 1e-5 * (1.0 + cpu[s]) * static_cast<double>(tr.g))
            << "step " << step << " head " << h << " slot " << s;
      }
    }
    ++*compared;
  }
}

TEST(H2OStepMath, OneWorkerFollowsH2OStateStepByStep) {
  std::int64_t compared = 0;
  std::int64_t planned = 0;
  for (std::int64_t budget : {1, 2, 7, 20, 33}) {
    for (double rf : {0.0, 0.5, 1.0}) {
      for (std::int64_t g : {1, 4}) {
        const Trajectory tr(2, g, 16, 33, 30, static_cast<unsigned>(budget * 10 + g));
        const capkv::H2O policy(capkv::H2O::Config{rf, false});
        std::vector<dev::SlotMin> reduce(1);
        compare_with_h2o_state(tr, policy, budget, [&](dev::H2OHeadStep hs) {
          hs.reduce = reduce.data();
          return dev::h2o_step_head(hs, dev::SerialTeam{});
        }, &compared);
        planned += tr.steps;
      }
    }
  }
  EXPECT_GE(compared, planned * 9 / 10) << "too many runs ended at a near tie";
}

TEST(H2OStepMath, ThreadTeamsFollowH2OStateStepByStep) {
  std::int64_t compared = 0;
  std::int64_t planned = 0;
  for (int workers : {3, 4}) {
    for (std::int64_t budget : {1, 9, 40}) {
      const Trajectory tr(2, 2, 8, 40, 25, static_cast<unsigned>(budget + workers));
      std::vector<dev::SlotMin> reduce(static_cast<std::size_t>(workers));
      compare_with_h2o_state(tr, capkv::H2O::paper(), budget, [&](dev::H2OHeadStep hs) {
        hs.reduce = reduce.data();
        std::vector<std::int64_t> seen(static_cast<std::size_t>(workers));
        run_team(workers, [&](const ThreadTeam& team) {
          seen[team.rank()] = dev::h2o_step_head(hs, team);
        });
        for (std::int64_t v : seen) EXPECT_EQ(v, seen[0]) << "every worker gets the victim";
        return seen[0];
      }, &compared);
      planned += tr.steps;
    }
  }
  EXPECT_GE(compared, planned * 9 / 10) << "too many runs ended at a near tie";
}

}  // namespace
