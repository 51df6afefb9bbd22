// H2OStep on a device against capkv::cpu::H2OState, step by step: the CPU prefill seeds both
// states, then every decoding step gives both the same new keys and query (the CPU its attention
// row computed in float64 from the same stored values) and the evictions must agree exactly, the
// sizes too, and the accumulators within the fp32 error. H2OState sums in double and the GPU in
// float, so a near tie may legitimately be broken differently; the test then proves it was a near
// tie (within the tolerance) and ends that run with a note (the CPU tests of the shared
// bookkeeping, h2o_step_math_test.cpp, bound how often that happens). Bad input leaves the whole
// state untouched. Each device test skips without a GPU; the contract tests at the end run
// anywhere.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "capkv/cuda/h2o_step.cuh"
#include "tests/cuda/state_reference.hpp"
#include "tests/cuda/support.cuh"

namespace {

using capkv::DType;
using capkv::cuda::Status;
using capkv::cuda::StatusCode;
using capkv_cuda_test::DeviceBuffer;
using capkv_cuda_test::DeviceTensor;
using capkv_cuda_test::fake_device_pointer;
using capkv_cuda_test::Packing;
using capkv_cuda_test::random_tensor;
using capkv_cuda_test::run_launcher;
using capkv_cuda_test::StoredTensor;
namespace state_ref = capkv_cuda_test::state_ref;

struct StepCase {
  std::int64_t n;      // prompt tokens (all of them are prompt queries too)
  std::int64_t steps;  // decoding steps
  std::int64_t budget;
  std::int64_t d;
  std::int64_t g;
  DType dtype;
  Packing packing;  // of the key cache
  double recent_fraction;
  std::int64_t extra;  // slots of the cache beyond budget + 1
};

std::string step_name(const StepCase& c) {
  std::ostringstream s;
  s << "n" << c.n << "_steps" << c.steps << "_B" << c.budget << "_d" << c.d << "_g" << c.g << "_"
    << capkv::name_of(c.dtype) << "_" << capkv_cuda_test::name_of(c.packing) << "_rf"
    << static_cast<int>(c.recent_fraction * 100) << "_extra" << c.extra;
  return s.str();
}
void PrintTo(const StepCase& c, std::ostream* os) { *os << step_name(c); }

constexpr std::int64_t kKvHeads = 2;

// The keys and queries of every token (prompt and decoded), stored in the case's dtype.
struct Tokens {
  StoredTensor keys;     // [n + steps, Hkv, d] token-major
  StoredTensor queries;  // [n + steps, Hq, d] token-major

  explicit Tokens(const StepCase& c)
      : keys(random_tensor(c.n + c.steps, kKvHeads, c.d, c.dtype, Packing::kTokensHeadsDim,
                           101 + c.n + c.budget)),
        queries(random_tensor(c.n + c.steps, kKvHeads * c.g, c.d, c.dtype, Packing::kTokensHeadsDim,
                              202 + c.d + c.g, 1.5f)) {}

  capkv::LayerInputs prompt(std::int64_t n) const {
    capkv::LayerInputs in;
    in.keys = capkv::TensorView(keys.bytes().data(), keys.dtype(), capkv::Layout::kTokensHeadsDim,
                                n, keys.heads(), keys.d());
    in.values = in.keys;
    in.queries = capkv::TensorView(queries.bytes().data(), queries.dtype(),
                                   capkv::Layout::kTokensHeadsDim, n, queries.heads(), queries.d());
    return in;
  }
};

// The device state: sizes, accumulators [Hkv, ld] (ld past the capacity, poisoned there).
struct DeviceState {
  std::int64_t ld;
  DeviceBuffer<std::int32_t> sizes;
  DeviceBuffer<float> accumulators;
  DeviceBuffer<std::int32_t> evicted;

  DeviceState(const state_ref::H2OReference& ref, std::int64_t capacity)
      : ld(capacity + 3),
        sizes(kKvHeads),
        accumulators(static_cast<std::size_t>(kKvHeads * ld)),
        evicted(kKvHeads) {
    std::vector<float> acc(static_cast<std::size_t>(kKvHeads * ld),
                           std::numeric_limits<float>::quiet_NaN());
    for (std::int64_t h = 0; h < kKvHeads; ++h) {
      const std::vector<double> a = ref.accumulators(h);
      for (std::size_t s = 0; s < a.size(); ++s) acc[h * ld + s] = static_cast<float>(a[s]);
    }
    // The slots past the size hold NaN: the step must not read them.
    accumulators.upload(acc);
    sizes.upload(std::vector<std::int32_t>(kKvHeads, static_cast<std::int32_t>(ref.size())));
  }
};

// The cache of one step: head h's kept tokens (the CPU's positions) in slots [0, size), the new
// token's key in slot size, the loud 1e30 of StoredTensor everywhere else.
StoredTensor step_cache(const Tokens& tokens, const state_ref::H2OReference& ref, std::int64_t t,
                        std::int64_t capacity, Packing packing) {
  const std::int64_t d = tokens.keys.d();
  StoredTensor cache(capacity, kKvHeads, d, tokens.keys.dtype(), packing);
  for (std::int64_t h = 0; h < kKvHeads; ++h) {
    std::vector<std::int64_t> pos = ref.positions(h);
    pos.push_back(t);
    for (std::size_t s = 0; s < pos.size(); ++s) {
      for (std::int64_t c = 0; c < d; ++c)
        cache.set(static_cast<std::int64_t>(s), h, c, tokens.keys.value(pos[s], h, c));
    }
  }
  return cache;
}

StoredTensor step_query(const Tokens& tokens, std::int64_t t) {
  const std::int64_t hq = tokens.queries.heads();
  const std::int64_t d = tokens.queries.d();
  StoredTensor q(1, hq, d, tokens.queries.dtype(), Packing::kStridedDim);
  for (std::int64_t h = 0; h < hq; ++h) {
    for (std::int64_t c = 0; c < d; ++c) q.set(0, h, c, tokens.queries.value(t, h, c));
  }
  return q;
}

// [Hq, size + 1]: softmax of q.k / sqrt(d) in float64 over the head's slots, rounded to float.
std::vector<float> attention_rows(const StoredTensor& cache, const StoredTensor& query,
                                  std::int64_t g, std::int64_t size) {
  const std::int64_t hq = query.heads();
  const std::int64_t d = query.d();
  const std::int64_t cols = size + 1;
  std::vector<float> out(static_cast<std::size_t>(hq * cols));
  std::vector<double> logits(static_cast<std::size_t>(cols));
  for (std::int64_t h = 0; h < hq; ++h) {
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t s = 0; s < cols; ++s) {
      double dot = 0.0;
      for (std::int64_t c = 0; c < d; ++c)
        dot += static_cast<double>(query.value(0, h, c)) * cache.value(s, h / g, c);
      logits[s] = dot / std::sqrt(static_cast<double>(d));
      mx = std::max(mx, logits[s]);
    }
    double sum = 0.0;
    for (std::int64_t s = 0; s < cols; ++s) sum += std::exp(logits[s] - mx);
    for (std::int64_t s = 0; s < cols; ++s)
      out[h * cols + s] = static_cast<float>(std::exp(logits[s] - mx) / sum);
  }
  return out;
}

double tolerance(double want, std::int64_t g) {
  return 2e-5 * static_cast<double>(g) * (1.0 + std::abs(want));
}

class H2OStepTest : public ::testing::TestWithParam<StepCase> {};

TEST_P(H2OStepTest, FollowsH2OStateStepByStep) {
  CAPKV_REQUIRE_DEVICE();
  const StepCase c = GetParam();
  const capkv::H2O policy(capkv::H2O::Config{c.recent_fraction, false});
  const Tokens tokens(c);
  state_ref::H2OReference ref(policy, c.budget);
  ref.prefill(tokens.prompt(c.n));
  const std::int64_t capacity = std::max(c.budget, ref.size()) + 1 + c.extra;
  DeviceState state(ref, capacity);
  const std::int64_t hq = kKvHeads * c.g;
  DeviceBuffer<unsigned char> workspace;
  std::int64_t compared = 0;
  std::int64_t evictions = 0;
  for (std::int64_t step = 0; step < c.steps; ++step) {
    const std::int64_t t = c.n + step;
    const std::int64_t size = ref.size();
    const DeviceTensor cache(step_cache(tokens, ref, t, capacity, c.packing));
    const DeviceTensor query(step_query(tokens, t));
    capkv::cuda::H2OStep::Arguments args;
    args.policy = policy;
    args.budget = c.budget;
    args.keys = cache.view();
    args.query = query.view();
    args.accumulators = state.accumulators.get();
    args.accumulators_ld = state.ld;
    args.sizes = state.sizes.get();
    args.evicted = state.evicted.get();
    state.evicted.reset(kKvHeads, 0x7F);  // not -1: a step must write -1 itself
    const Status s = run_launcher<capkv::cuda::H2OStep>(args, workspace);
    ASSERT_TRUE(s.ok()) << s.to_string();
    const Status device = capkv::cuda::read_status(workspace.get(), nullptr);
    ASSERT_TRUE(device.ok()) << "step " << step << ": " << device.to_string();

    const std::vector<float> attention = attention_rows(cache.host, query.host, c.g, size);
    // The CPU's accumulators after the adds, before the eviction (for the near-tie check).
    std::vector<std::vector<double>> before(kKvHeads);
    for (std::int64_t h = 0; h < kKvHeads; ++h) {
      before[h] = ref.accumulators(h);
      before[h].push_back(0.0);
      for (std::int64_t j = 0; j < c.g; ++j) {
        for (std::int64_t x = 0; x <= size; ++x)
          before[h][x] += attention[(h * c.g + j) * (size + 1) + x];
      }
    }
    const std::vector<std::int64_t> want = ref.observe(attention, hq, size + 1);
    const std::vector<std::int32_t> got = state.evicted.download();
    const std::vector<std::int32_t> sizes = state.sizes.download();
    const std::vector<float> acc = state.accumulators.download();
    for (std::int64_t h = 0; h < kKvHeads; ++h) {
      if (got[h] != want[h]) {
        ASSERT_TRUE(got[h] >= 0 && want[h] >= 0) << "step " << step << " head " << h << ": evicted "
                                                 << got[h] << ", H2OState " << want[h];
        ASSERT_LE(std::abs(before[h][got[h]] - before[h][want[h]]),
                  tolerance(before[h][want[h]], c.g))
            << "step " << step << " head " << h << ": evicted " << got[h] << ", H2OState "
            << want[h] << " is not a near tie";
        std::printf("note: a near tie at step %lld ended the comparison (%lld steps compared)\n",
                    static_cast<long long>(step), static_cast<long long>(compared));
        return;
      }
      ASSERT_EQ(sizes[h], ref.size()) << "step " << step << " head " << h;
      const std::vector<double> cpu = ref.accumulators(h);
      for (std::size_t x = 0; x < cpu.size(); ++x) {
        ASSERT_LE(std::abs(acc[h * state.ld + x] - cpu[x]), tolerance(cpu[x], c.g))
            << "step " << step << " head " << h << " slot " << x << ": " << acc[h * state.ld + x]
            << " vs " << cpu[x];
      }
      // The columns past the capacity are the caller's: still the NaN they were uploaded as.
      for (std::int64_t x = capacity; x < state.ld; ++x)
        ASSERT_TRUE(std::isnan(acc[h * state.ld + x]));
      evictions += got[h] >= 0;
    }
    ++compared;
  }
  if (c.budget < c.n + c.steps) EXPECT_GT(evictions, 0) << "the case never evicted";
}

std::vector<StepCase> step_cases() {
  std::vector<StepCase> cases;
  const std::int64_t budgets[] = {1, 17, 63, 64, 97, 150};
  const double fractions[] = {0.5, 0.0, 1.0, 0.3};
  const Packing packings[] = {Packing::kTokensHeadsDim, Packing::kHeadsTokensDim,
                              Packing::kPaddedTokens, Packing::kStridedDim};
  int i = 0;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (std::int64_t g : {1, 4}) {
      for (std::int64_t d : {64, 128}) {
        const std::int64_t budget = budgets[i % 6];
        cases.push_back({97, budget > 97 ? 70 : 40, budget, d, g, dtype, packings[i % 4],
                         fractions[(i / 4) % 4], i % 3 == 0 ? 0 : 7});
        ++i;
      }
    }
  }
  // Every budget from 1 to n on a short prompt.
  for (std::int64_t budget = 1; budget <= 12; ++budget) {
    cases.push_back({12, 15, budget, 64, 2, DType::kF32, Packing::kTokensHeadsDim, 0.5, 0});
  }
  // Groups over one 8-head chunk of the logits kernel (a partial last chunk), d not a multiple of
  // 64, and the largest head_dim.
  cases.push_back({97, 40, 63, 80, 12, DType::kBF16, Packing::kPaddedTokens, 0.3, 7});
  cases.push_back({97, 40, 17, 256, 9, DType::kF16, Packing::kTokensHeadsDim, 0.5, 0});
  // A long cache: several tiles of the logits kernel, ragged last tile.
  cases.push_back({700, 10, 650, 128, 4, DType::kBF16, Packing::kTokensHeadsDim, 0.5, 5});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, H2OStepTest, ::testing::ValuesIn(step_cases()),
                         [](const auto& info) { return step_name(info.param); });

// ---------------------------------------------------------------------------------------------
// Bad input found on the device: flagged, and nothing of the state written, for any head.

struct SmallStep {
  StoredTensor keys{random_tensor(9, kKvHeads, 64, DType::kF16, Packing::kTokensHeadsDim, 8)};
  StoredTensor query{random_tensor(1, kKvHeads * 2, 64, DType::kF16, Packing::kTokensHeadsDim, 9)};
  std::vector<std::int32_t> sizes{6, 6};
  std::vector<float> accumulators = std::vector<float>(kKvHeads * 9, 0.25f);
  double recent_fraction = 0.5;
  std::int64_t budget = 6;

  // Runs one step; returns the device status and checks that nothing was written when it fails.
  Status run() const {
    DeviceTensor k(keys);
    DeviceTensor q(query);
    DeviceBuffer<std::int32_t> s(sizes);
    DeviceBuffer<float> acc(accumulators);
    DeviceBuffer<std::int32_t> evicted(kKvHeads, 0x7F);
    capkv::cuda::H2OStep::Arguments args;
    args.policy = capkv::H2O(capkv::H2O::Config{recent_fraction, false});
    args.budget = budget;
    args.keys = k.view();
    args.query = q.view();
    args.accumulators = acc.get();
    args.accumulators_ld = 9;
    args.sizes = s.get();
    args.evicted = evicted.get();
    DeviceBuffer<unsigned char> workspace;
    const Status launched = run_launcher<capkv::cuda::H2OStep>(args, workspace);
    if (!launched) return launched;
    const Status device = capkv::cuda::read_status(workspace.get(), nullptr);
    if (!device.ok()) {
      EXPECT_EQ(s.download(), sizes);
      const std::vector<float> after = acc.download();
      EXPECT_EQ(0, std::memcmp(after.data(), accumulators.data(), after.size() * sizeof(float)));
      for (std::int32_t e : evicted.download()) EXPECT_EQ(e, 0x7F7F7F7F);
    }
    return device;
  }
};

TEST(H2OStepErrors, NaNInTheQueryIsReported) {
  CAPKV_REQUIRE_DEVICE();
  SmallStep step;
  step.query.set(0, 3, 10, std::numeric_limits<float>::quiet_NaN());
  const Status s = step.run();
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "queries");
}

TEST(H2OStepErrors, NaNInACachedKeyIsReportedButNotPastTheSize) {
  CAPKV_REQUIRE_DEVICE();
  SmallStep step;
  step.keys.set(6, 1, 0, std::numeric_limits<float>::infinity());  // the new token of head 1
  Status s = step.run();
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "keys");
  SmallStep past;
  past.keys.set(7, 1, 0, std::numeric_limits<float>::quiet_NaN());  // beyond slot size
  s = past.run();
  EXPECT_TRUE(s.ok()) << s.to_string();
}

TEST(H2OStepErrors, NaNAccumulatorsAreReported) {
  CAPKV_REQUIRE_DEVICE();
  SmallStep step;
  step.accumulators[9 + 2] = std::numeric_limits<float>::quiet_NaN();
  const Status s = step.run();
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "accumulators");
}

TEST(H2OStepErrors, ASizeOutsideTheCacheIsReported) {
  CAPKV_REQUIRE_DEVICE();
  for (std::int32_t bad : {-1, 9, 100}) {
    SmallStep step;
    step.sizes[1] = bad;
    const Status s = step.run();
    EXPECT_EQ(s.code(), StatusCode::kBadInput) << bad;
    EXPECT_STREQ(s.argument(), "sizes");
  }
}

// recent_fraction > 1 gives a window wider than the budget: fine while the cache fits, an error at
// the first eviction, as H2OState throws then.
TEST(H2OStepErrors, AWindowThatCoversEverySlotFailsOnlyWhenEvicting) {
  CAPKV_REQUIRE_DEVICE();
  SmallStep fits;
  fits.recent_fraction = 1.5;
  fits.budget = 7;  // 6 + the new token
  EXPECT_TRUE(fits.run().ok());
  SmallStep over = fits;
  over.budget = 6;
  const Status s = over.run();
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "budget");
}

// ---------------------------------------------------------------------------------------------
// Host-side contract, no device needed.

capkv::cuda::H2OStep::Arguments valid_arguments() {
  capkv::cuda::H2OStep::Arguments a;
  a.policy = capkv::H2O::paper();
  a.budget = 100;
  a.keys = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                             capkv::Layout::kTokensHeadsDim, 101, 8, 128);
  a.query = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                              capkv::Layout::kTokensHeadsDim, 1, 32, 128);
  a.accumulators = fake_device_pointer<float>();
  a.accumulators_ld = 101;
  a.sizes = fake_device_pointer<std::int32_t>();
  a.evicted = fake_device_pointer<std::int32_t>();
  return a;
}

TEST(H2OStepContract, ValidArgumentsAreAcceptedAndTheWorkspaceIsSized) {
  const auto a = valid_arguments();
  const Status s = capkv::cuda::H2OStep::can_implement(a);
  EXPECT_TRUE(s.ok()) << s.to_string();
  const std::size_t bytes = capkv::cuda::H2OStep::workspace_size(a);
  EXPECT_EQ(bytes % capkv::cuda::WorkspaceCarver::kAlignment, 0u);
  // Flags, logits of 32 heads over 101 slots, their partials, the updated accumulators.
  EXPECT_GE(bytes, (32 * 101 + 8 * 101) * sizeof(float));
  EXPECT_EQ(capkv::cuda::H2OStep::run(a, fake_device_pointer<void>(), bytes - 1, nullptr).code(),
            StatusCode::kWorkspaceTooSmall);
  EXPECT_EQ(capkv::cuda::H2OStep::window(a), 50);
}

TEST(H2OStepContract, RefusedArgumentsNameTheArgument) {
  struct Case {
    const char* argument;
    void (*change)(capkv::cuda::H2OStep::Arguments&);
  };
  const Case cases[] = {
      {"policy", [](auto& a) { a.policy = capkv::H2O::kvpress(); }},
      {"policy", [](auto& a) { a.policy.config.recent_fraction = std::nan(""); }},
      {"policy", [](auto& a) { a.policy.config.recent_fraction = -0.5; }},
      {"budget", [](auto& a) { a.budget = 0; }},
      {"keys",
       [](auto& a) {
         a.keys = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                                    capkv::Layout::kTokensHeadsDim, 0, 8, 128);
       }},
      {"keys",
       [](auto& a) {
         a.keys = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                                    capkv::Layout::kTokensHeadsDim, 101, 8, 320);
         a.query = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                                     capkv::Layout::kTokensHeadsDim, 1, 32, 320);
       }},
      {"query",
       [](auto& a) {
         a.query = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                                     capkv::Layout::kTokensHeadsDim, 2, 32, 128);
       }},
      {"query",
       [](auto& a) {
         a.query = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                                     capkv::Layout::kTokensHeadsDim, 1, 12, 128);
       }},
      {"query",
       [](auto& a) {
         a.query = capkv::TensorView(fake_device_pointer<void>(), DType::kBF16,
                                     capkv::Layout::kTokensHeadsDim, 1, 32, 64);
       }},
      {"accumulators", [](auto& a) { a.accumulators = nullptr; }},
      {"accumulators_ld", [](auto& a) { a.accumulators_ld = 100; }},
      {"sizes", [](auto& a) { a.sizes = nullptr; }},
      {"evicted", [](auto& a) { a.evicted = nullptr; }},
  };
  for (const Case& c : cases) {
    auto a = valid_arguments();
    c.change(a);
    const Status s = capkv::cuda::H2OStep::can_implement(a);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.argument;
    EXPECT_STREQ(s.argument(), c.argument) << s.to_string();
  }
}

TEST(H2OStepContract, DeviceFlagsNameTheArgument) {
  EXPECT_STREQ(capkv::cuda::status_from_flags(capkv::cuda::kNoTokenToEvict).argument(), "budget");
  EXPECT_STREQ(capkv::cuda::status_from_flags(capkv::cuda::kStateInvalid).argument(), "sizes");
  EXPECT_STREQ(capkv::cuda::status_from_flags(capkv::cuda::kAccumulatorsNotFinite).argument(),
               "accumulators");
}

}  // namespace
