// Every CUDA kernel against the CPU path (the oracle) or a float64 reference, on a device. Each
// test starts with CAPKV_REQUIRE_DEVICE(), so without a GPU the whole suite reports SKIPPED with
// "no CUDA device: ..." and passes. Outputs start poisoned (NaN or -1 bytes) so a kernel that
// skips an element fails the test. Tolerances are error bounds of fp32 arithmetic computed from the
// data (fp32 unit roundoff 2^-24 times the length of the sums, plus the bf16 split's 2^-16 per term
// on the tensor-core path), not tuned constants, except for the end-to-end CapKV scores, which go
// through a Cholesky factor and are held to 1e-3 relative.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "capkv/cuda.cuh"
#include "tests/cuda/cpu_reference.hpp"
#include "tests/cuda/support.cuh"

namespace {

using capkv::DType;
using capkv::cuda::Status;
using capkv::cuda::StatusCode;
using capkv_cuda_test::DeviceBuffer;
using capkv_cuda_test::DeviceTensor;
using capkv_cuda_test::Packing;
using capkv_cuda_test::fake_device_pointer;
using capkv_cuda_test::random_tensor;
using capkv_cuda_test::run_launcher;
using capkv_cuda_test::StoredTensor;
namespace ref = capkv_cuda_test::ref;

constexpr double kU = 0x1.0p-24;  // fp32 unit roundoff
using capkv::cuda::MathPath;

// Whether a launch with `math` on `basis` runs on the tensor cores (on a device that has them, as
// every device these tests accept does: sm_80+ for bf16 MMA, checked by the test that needs it).
bool takes_tensor_cores(MathPath math, const capkv::TensorView& basis) {
  return math != MathPath::kCudaCores && capkv::cuda::tensor_core_shape(basis);
}

// Per-term error of the tensor-core products beyond fp32's (capkv/device/bf16_split.hpp): the split
// of one operand for a bf16 basis; for fp16 also the dropped lo x lo product.
double split_term_error(DType basis) {
  return basis == DType::kF16 ? capkv::device::kBf16ThreeProductError
                              : capkv::device::kBf16SplitError;
}
// The MMA's fp32 accumulation is not specified by CUDA (measurements on A100/H100 show aligned,
// truncating adds); twice the round-to-nearest summation bound is an allowance for that, not a
// proven bound.
constexpr double kMmaSumFactor = 2.0;

// Pinned tensor-core cases need bf16 MMA: on an older GPU they skip rather than fail.
#define CAPKV_REQUIRE_TENSOR_CORES(math)                                          \
  do {                                                                            \
    if ((math) == MathPath::kTensorCores && !capkv::cuda::device_has_bf16_mma()) \
      GTEST_SKIP() << "this GPU has no bf16 MMA (sm_80 or newer)";                \
  } while (0)

const char* dtype_name(DType t) { return capkv::name_of(t).data(); }

// ---------------------------------------------------------------------------------------------
// Skips cleanly without a device: this one test documents the behaviour CI relies on.

TEST(CudaDevice, ReportsWhetherADeviceIsPresent) {
  CAPKV_REQUIRE_DEVICE();
  int device = 0;
  cudaDeviceProp prop{};
  CAPKV_CUDA_CHECK(cudaGetDevice(&device));
  CAPKV_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::printf("device %d: %s, sm_%d%d, %zu MB\n", device, prop.name, prop.major, prop.minor,
              static_cast<std::size_t>(prop.totalGlobalMem >> 20));
  EXPECT_GE(prop.major, 7);
}

// ---------------------------------------------------------------------------------------------
// Weighted Gram.

struct GramCase {
  std::int64_t n;
  std::int64_t d;
  std::int64_t g;
  DType dtype;
  Packing packing;
  std::int64_t begin;
  bool uniform;
  MathPath math = MathPath::kAuto;
};

std::string gram_name(const GramCase& c) {
  std::ostringstream s;
  s << "n" << c.n << "_d" << c.d << "_g" << c.g << "_" << dtype_name(c.dtype) << "_"
    << capkv_cuda_test::name_of(c.packing) << "_b" << c.begin << (c.uniform ? "_uniform" : "")
    << (c.math == MathPath::kAuto ? "" : std::string("_") + capkv::cuda::name_of(c.math));
  return s.str();
}

// gtest prints a failing case's parameter; the name is what a reader wants there.
void PrintTo(const GramCase& c, std::ostream* os) { *os << gram_name(c); }

class WeightedGramTest : public ::testing::TestWithParam<GramCase> {};

TEST_P(WeightedGramTest, MatchesFloat64WithinTheSummationBound) {
  CAPKV_REQUIRE_DEVICE();
  const GramCase c = GetParam();
  CAPKV_REQUIRE_TENSOR_CORES(c.math);
  const std::int64_t hkv = 2;
  const std::int64_t hq = hkv * c.g;
  DeviceTensor basis(random_tensor(c.n, hkv, c.d, c.dtype, c.packing, 17 * c.n + c.d));
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const std::int64_t ld = c.n + 3;
  std::vector<float> weights(static_cast<std::size_t>(hq * ld), -1.0f);
  for (std::int64_t h = 0; h < hq; ++h) {
    for (std::int64_t i = 0; i < c.n; ++i) weights[h * ld + i] = std::exp(-5.0f * unit(rng));
  }
  DeviceBuffer<float> weights_d(weights);
  DeviceBuffer<double> gram(static_cast<std::size_t>(hq * c.d * c.d));

  capkv::cuda::WeightedGram::Arguments args;
  args.basis = basis.view();
  args.weights = c.uniform ? nullptr : weights_d.get();
  args.weights_ld = ld;
  args.n_query_heads = hq;
  args.begin = c.begin;
  args.eps = 1e-6;
  args.ridge = 0.5;
  args.gram = gram.get();
  args.math = c.math;
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::WeightedGram>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_TRUE(capkv::cuda::read_status(workspace.get(), nullptr).ok());
  const std::vector<double> got = gram.download();

  const std::int64_t chunk = capkv::cuda::kernels::gram_split(c.n - std::min(c.begin, c.n)).chunk;
  const bool mma = takes_tensor_cores(c.math, basis.view());
  const double relative = mma ? kMmaSumFactor * (static_cast<double>(chunk) + 4.0) * kU +
                                    split_term_error(c.dtype)
                              : (static_cast<double>(chunk) + 4.0) * kU;
  const float eps = 1e-6f;
  for (std::int64_t h = 0; h < hq; ++h) {
    std::vector<double> want;
    std::vector<double> magnitude;
    ref::weighted_gram(basis.host_view(), h / c.g, c.uniform ? nullptr : weights.data() + h * ld,
                       c.begin, eps, 0.5, want, magnitude);
    for (std::int64_t a = 0; a < c.d; ++a) {
      for (std::int64_t b = 0; b < c.d; ++b) {
        const double value = got[(h * c.d + a) * c.d + b];
        const double tol = relative * magnitude[a * c.d + b] * 1.01 + 1e-12;
        ASSERT_LE(std::abs(value - want[a * c.d + b]), tol)
            << "head " << h << " [" << a << ", " << b << "] got " << value << " want "
            << want[a * c.d + b];
        ASSERT_EQ(value, got[(h * c.d + b) * c.d + a]) << "not symmetric at " << a << ", " << b;
      }
    }
  }
}

std::vector<GramCase> gram_cases() {
  std::vector<GramCase> cases;
  for (std::int64_t d : {64, 128, 256}) {
    for (std::int64_t g : {1, 4, 8}) {
      cases.push_back({1000, d, g, DType::kBF16, Packing::kTokensHeadsDim, 4, false});
    }
  }
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (Packing p : {Packing::kHeadsTokensDim, Packing::kPaddedTokens, Packing::kStridedDim}) {
      cases.push_back({777, 128, 4, t, p, 4, false});
    }
  }
  cases.push_back({1, 64, 1, DType::kF32, Packing::kTokensHeadsDim, 0, false});
  cases.push_back({3, 64, 2, DType::kF32, Packing::kTokensHeadsDim, 4, false});   // only sinks
  cases.push_back({33, 96, 2, DType::kF16, Packing::kTokensHeadsDim, 4, false});  // d not a tile
  cases.push_back({4099, 200, 1, DType::kBF16, Packing::kPaddedTokens, 4, true});
  cases.push_back({40000, 128, 4, DType::kBF16, Packing::kTokensHeadsDim, 4, false});  // 64 splits
  // Both units pinned, whatever kAuto picks: the CUDA-core path on 16-bit caches, the tensor-core
  // path on ragged token counts, strided views and every head_dim it takes.
  for (DType t : {DType::kF16, DType::kBF16}) {
    cases.push_back(
        {777, 128, 4, t, Packing::kTokensHeadsDim, 4, false, MathPath::kCudaCores});
    for (std::int64_t d : {64, 128, 256}) {
      cases.push_back(
          {1001, d, 4, t, Packing::kTokensHeadsDim, 4, false, MathPath::kTensorCores});
    }
    cases.push_back({70, 80, 2, t, Packing::kStridedDim, 0, true, MathPath::kTensorCores});
    // head_dim below one 64-wide tile: idle fragment rows and columns.
    cases.push_back({300, 16, 4, t, Packing::kTokensHeadsDim, 4, false, MathPath::kTensorCores});
    cases.push_back({300, 48, 1, t, Packing::kHeadsTokensDim, 0, false, MathPath::kTensorCores});
    cases.push_back({5, 64, 1, t, Packing::kPaddedTokens, 4, false, MathPath::kTensorCores});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, WeightedGramTest, ::testing::ValuesIn(gram_cases()),
                         [](const auto& info) { return gram_name(info.param); });

// ---------------------------------------------------------------------------------------------
// Cholesky + L^-1.

class InverseCholeskyTest : public ::testing::TestWithParam<std::int64_t> {};

TEST_P(InverseCholeskyTest, GivesTheTransposedInverseFactor) {
  CAPKV_REQUIRE_DEVICE();
  const std::int64_t d = GetParam();
  const std::int64_t heads = 5;
  std::vector<double> host;
  for (std::int64_t h = 0; h < heads; ++h) {
    const std::vector<double> a = ref::capacity_matrix(d, 100 * d + h);
    host.insert(host.end(), a.begin(), a.end());
  }
  DeviceBuffer<double> gram(host);
  DeviceBuffer<float> w(static_cast<std::size_t>(heads * d * d));
  DeviceBuffer<int> info(static_cast<std::size_t>(heads));
  capkv::cuda::InverseCholesky::Arguments args{gram.get(), heads, d, w.get(), info.get()};
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::InverseCholesky>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(capkv::cuda::read_status(workspace.get(), nullptr).ok());
  const std::vector<float> got = w.download();
  for (int i : info.download()) EXPECT_EQ(i, 0);
  EXPECT_EQ(gram.download(), host) << "the input must be left as it was";
  for (std::int64_t h = 0; h < heads; ++h) {
    const std::vector<double> w_want = ref::inverse_factor_t(
        std::vector<double>(host.begin() + h * d * d, host.begin() + (h + 1) * d * d), d);
    double scale = 0.0;
    for (double x : w_want) scale = std::max(scale, std::abs(x));
    for (std::int64_t r = 0; r < d; ++r) {
      for (std::int64_t c = 0; c < d; ++c) {
        const double want = w_want[r * d + c];
        const double value = got[(h * d + r) * d + c];
        ASSERT_LE(std::abs(value - want), 2 * kU * std::abs(want) + 1e-10 * scale)
            << "head " << h << " [" << r << ", " << c << "]";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, InverseCholeskyTest,
                         ::testing::Values(1, 7, 64, 128, 129, 200, 256), [](const auto& info) {
                           std::ostringstream s;  // not "d" + to_string: GCC 12 -Wrestrict
                           s << "d" << info.param;
                           return s.str();
                         });

TEST(InverseCholeskyErrors, NotPositiveDefiniteIsReportedPerHead) {
  CAPKV_REQUIRE_DEVICE();
  const std::int64_t d = 16;
  std::vector<double> host = ref::capacity_matrix(d, 1);
  host.insert(host.end(), host.begin(), host.end());
  host[(d + 5) * d + 5] = -1.0e6;  // head 1, pivot 6 (1-based) goes negative
  DeviceBuffer<double> gram(host);
  DeviceBuffer<float> w(static_cast<std::size_t>(2 * d * d));
  DeviceBuffer<int> info(2);
  capkv::cuda::InverseCholesky::Arguments args{gram.get(), 2, d, w.get(), info.get()};
  DeviceBuffer<unsigned char> workspace;
  ASSERT_TRUE(run_launcher<capkv::cuda::InverseCholesky>(args, workspace).ok());
  const std::vector<int> infos = info.download();
  EXPECT_EQ(infos[0], 0);
  EXPECT_EQ(infos[1], 6);
  const Status s = capkv::cuda::read_status(workspace.get(), nullptr);
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "ridge");
  const std::vector<float> got = w.download();
  EXPECT_TRUE(std::isnan(got[d * d + 3]));
  EXPECT_FALSE(std::isnan(got[0]));
}

// ---------------------------------------------------------------------------------------------
// Leverage with the GQA reduction.

struct LeverageCase {
  std::int64_t n;
  std::int64_t d;
  std::int64_t g;
  DType dtype;
  Packing packing;
  capkv::GqaReduction reduction;
  std::int64_t begin;
  MathPath math = MathPath::kAuto;
};

std::string leverage_name(const LeverageCase& c) {
  std::ostringstream s;
  s << "n" << c.n << "_d" << c.d << "_g" << c.g << "_" << dtype_name(c.dtype) << "_"
    << capkv_cuda_test::name_of(c.packing) << "_" << capkv::name_of(c.reduction) << "_b" << c.begin
    << (c.math == MathPath::kAuto ? "" : std::string("_") + capkv::cuda::name_of(c.math));
  return s.str();
}
void PrintTo(const LeverageCase& c, std::ostream* os) { *os << leverage_name(c); }

class LeverageTest : public ::testing::TestWithParam<LeverageCase> {};

TEST_P(LeverageTest, MatchesFloat64WithinTheProductBound) {
  CAPKV_REQUIRE_DEVICE();
  const LeverageCase c = GetParam();
  CAPKV_REQUIRE_TENSOR_CORES(c.math);
  const std::int64_t hkv = 2;
  const std::int64_t hq = hkv * c.g;
  DeviceTensor basis(random_tensor(c.n, hkv, c.d, c.dtype, c.packing, 3 * c.n + c.d));
  // W_h = L_h^-T of a capacity matrix, rounded to fp32: the reference uses the same fp32 values.
  std::vector<float> w(static_cast<std::size_t>(hq * c.d * c.d));
  for (std::int64_t h = 0; h < hq; ++h) {
    const std::vector<double> w_h =
        ref::inverse_factor_t(ref::capacity_matrix(c.d, 7 + h, 4.0), c.d);
    for (std::int64_t e = 0; e < c.d * c.d; ++e) w[h * c.d * c.d + e] = static_cast<float>(w_h[e]);
  }
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> weights(static_cast<std::size_t>(hq * c.n));
  for (auto& x : weights) x = std::exp(-5.0f * unit(rng));
  DeviceBuffer<float> w_d(w);
  DeviceBuffer<float> weights_d(weights);
  const std::int64_t scores_ld = c.n + 5;
  DeviceBuffer<float> scores(static_cast<std::size_t>(hkv * scores_ld));

  capkv::cuda::WeightedLeverage::Arguments args;
  args.basis = basis.view();
  args.inverse_factor_t = w_d.get();
  args.weights = weights_d.get();
  args.weights_ld = c.n;
  args.n_query_heads = hq;
  args.begin = c.begin;
  args.reduction = c.reduction;
  args.scores = scores.get();
  args.scores_ld = scores_ld;
  args.math = c.math;
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::WeightedLeverage>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  const std::vector<float> got = scores.download();
  const bool mma = takes_tensor_cores(c.math, basis.view());
  const double product_relative =
      mma ? kMmaSumFactor * (c.d + 2) * kU + split_term_error(c.dtype) : (c.d + 2) * kU;

  for (std::int64_t kv = 0; kv < hkv; ++kv) {
    for (std::int64_t j = scores_ld - 5; j < scores_ld; ++j) {
      EXPECT_TRUE(std::isnan(got[kv * scores_ld + j])) << "wrote past the row";
    }
    for (std::int64_t i = 0; i < c.n; ++i) {
      const float value = got[kv * scores_ld + i];
      if (i < c.begin) {
        ASSERT_EQ(value, 0.0f) << "sink " << i;
        continue;
      }
      double combined = 0.0;
      double tol = 0.0;
      for (std::int64_t q = 0; q < c.g; ++q) {
        const std::int64_t h = kv * c.g + q;
        double sq = 0.0;
        double err = 0.0;
        for (std::int64_t b = 0; b < c.d; ++b) {
          double p = 0.0;
          double mag = 0.0;
          for (std::int64_t a = 0; a <= b; ++a) {
            const double term =
                basis.host.value(i, kv, a) * static_cast<double>(w[(h * c.d + a) * c.d + b]);
            p += term;
            mag += std::abs(term);
          }
          const double e = product_relative * mag;
          sq += p * p;
          err += 2.0 * std::abs(p) * e + e * e;
        }
        const double wi = weights[h * c.n + i];
        const double s_j = wi * sq;
        const double tol_j = wi * (err + (c.d + 4) * kU * sq) * 1.01;
        switch (c.reduction) {
          case capkv::GqaReduction::kMax:
            combined = q == 0 ? s_j : std::max(combined, s_j);
            tol = std::max(tol, tol_j);
            break;
          default:
            combined += s_j;
            tol += tol_j;
        }
      }
      if (c.reduction == capkv::GqaReduction::kMean) {
        combined /= static_cast<double>(c.g);
        tol /= static_cast<double>(c.g);
      }
      tol += (c.g + 2) * kU * combined;
      ASSERT_LE(std::abs(value - combined), tol) << "kv " << kv << " token " << i;
    }
  }
}

std::vector<LeverageCase> leverage_cases() {
  std::vector<LeverageCase> cases;
  for (std::int64_t d : {64, 128, 256}) {
    for (std::int64_t g : {1, 4, 8}) {
      cases.push_back(
          {300, d, g, DType::kBF16, Packing::kTokensHeadsDim, capkv::GqaReduction::kMean, 4});
    }
  }
  for (DType t : {DType::kF32, DType::kF16}) {
    for (Packing p : {Packing::kHeadsTokensDim, Packing::kPaddedTokens, Packing::kStridedDim}) {
      cases.push_back({129, 128, 4, t, p, capkv::GqaReduction::kMean, 4});
    }
  }
  cases.push_back(
      {200, 64, 4, DType::kF32, Packing::kTokensHeadsDim, capkv::GqaReduction::kMax, 0});
  cases.push_back(
      {200, 64, 4, DType::kF32, Packing::kTokensHeadsDim, capkv::GqaReduction::kSum, 70});
  cases.push_back({1, 64, 2, DType::kF32, Packing::kTokensHeadsDim, capkv::GqaReduction::kMean, 0});
  cases.push_back({3, 64, 2, DType::kF32, Packing::kTokensHeadsDim, capkv::GqaReduction::kMean, 4});
  cases.push_back(
      {65, 100, 2, DType::kBF16, Packing::kTokensHeadsDim, capkv::GqaReduction::kMean, 4});
  // Both units pinned (see gram_cases).
  for (DType t : {DType::kF16, DType::kBF16}) {
    cases.push_back({300, 128, 4, t, Packing::kTokensHeadsDim, capkv::GqaReduction::kMean, 4,
                     MathPath::kCudaCores});
    for (std::int64_t d : {64, 128, 256}) {
      for (capkv::GqaReduction r : {capkv::GqaReduction::kMean, capkv::GqaReduction::kMax}) {
        cases.push_back({301, d, 4, t, Packing::kTokensHeadsDim, r, 4, MathPath::kTensorCores});
      }
    }
    cases.push_back({129, 80, 2, t, Packing::kStridedDim, capkv::GqaReduction::kSum, 70,
                     MathPath::kTensorCores});
    // One and three 16-column blocks: warps with no column block of their own.
    cases.push_back({130, 16, 4, t, Packing::kTokensHeadsDim, capkv::GqaReduction::kMean, 4,
                     MathPath::kTensorCores});
    cases.push_back({65, 48, 3, t, Packing::kPaddedTokens, capkv::GqaReduction::kMax, 0,
                     MathPath::kTensorCores});
    cases.push_back({1, 64, 8, t, Packing::kHeadsTokensDim, capkv::GqaReduction::kMean, 0,
                     MathPath::kTensorCores});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, LeverageTest, ::testing::ValuesIn(leverage_cases()),
                         [](const auto& info) { return leverage_name(info.param); });

// ---------------------------------------------------------------------------------------------
// Top-B: bit-for-bit capkv::select_from_scores.

enum class ScoreKind { kGaussian, kFewValues, kAllEqual, kSignedZeros, kHugeRange };

std::vector<float> make_scores(ScoreKind kind, std::int64_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> few(0, 3);
  std::vector<float> s(static_cast<std::size_t>(count));
  for (auto& x : s) {
    switch (kind) {
      case ScoreKind::kGaussian:
        x = normal(rng);
        break;
      case ScoreKind::kFewValues:
        x = 0.25f * static_cast<float>(few(rng));
        break;
      case ScoreKind::kAllEqual:
        x = -2.5f;
        break;
      case ScoreKind::kSignedZeros:
        x = few(rng) % 2 ? 0.0f : -0.0f;
        break;
      case ScoreKind::kHugeRange:
        x = std::ldexp(normal(rng), few(rng) * 40 - 60);
        break;
    }
  }
  return s;
}

struct TopBCase {
  std::int64_t n;
  std::int64_t heads;
  ScoreKind kind;
  capkv::Protection protection;
};

std::string top_b_name(const TopBCase& c) {
  std::ostringstream s;
  s << "n" << c.n << "_h" << c.heads << "_kind" << static_cast<int>(c.kind) << "_s"
    << c.protection.sinks << "_w" << c.protection.window;
  return s.str();
}
void PrintTo(const TopBCase& c, std::ostream* os) { *os << top_b_name(c); }

class TopBTest : public ::testing::TestWithParam<TopBCase> {};

TEST_P(TopBTest, SelectsExactlyWhatTheCpuSelects) {
  CAPKV_REQUIRE_DEVICE();
  const TopBCase c = GetParam();
  const std::int64_t ld = c.n + 7;
  const std::vector<float> flat = make_scores(c.kind, c.heads * ld, 31 * c.n + c.heads);
  DeviceBuffer<float> scores_d(flat);
  const std::int64_t protected_count = c.protection.count(c.n);
  for (std::int64_t budget : {std::int64_t{0}, protected_count, protected_count + 1, c.n / 4,
                              c.n / 2, c.n - 1, c.n, c.n + 10}) {
    if (budget < protected_count && budget < c.n) continue;
    const std::int64_t kept = std::min(budget, c.n);
    const std::int64_t indices_ld = kept + 3;
    DeviceBuffer<std::int32_t> indices(static_cast<std::size_t>(c.heads * indices_ld));
    DeviceBuffer<std::int64_t> offsets(static_cast<std::size_t>(c.heads + 1));
    capkv::cuda::TopB::Arguments args;
    args.scores = scores_d.get();
    args.scores_ld = ld;
    args.heads = c.heads;
    args.n_tokens = c.n;
    args.budget = budget;
    args.protection = c.protection;
    args.indices = indices.get();
    args.indices_ld = indices_ld;
    args.offsets = offsets.get();
    DeviceBuffer<unsigned char> workspace;
    const Status s = run_launcher<capkv::cuda::TopB>(args, workspace);
    ASSERT_TRUE(s.ok()) << s.to_string();
    ASSERT_TRUE(capkv::cuda::read_status(workspace.get(), nullptr).ok())
        << capkv::cuda::read_status(workspace.get(), nullptr).to_string();
    const ref::Csr want = ref::select(flat, c.heads, c.n, ld, c.protection, budget);
    const std::vector<std::int32_t> got = indices.download();
    const std::vector<std::int64_t> got_offsets = offsets.download();
    for (std::int64_t h = 0; h < c.heads; ++h) {
      const std::vector<std::int32_t> want_h(want.indices.begin() + want.offsets[h],
                                             want.indices.begin() + want.offsets[h + 1]);
      const std::vector<std::int32_t> got_h(got.begin() + h * indices_ld,
                                            got.begin() + h * indices_ld + kept);
      ASSERT_EQ(got_h, want_h) << "head " << h << " budget " << budget;
      for (std::int64_t j = kept; j < indices_ld; ++j) {
        ASSERT_EQ(got[h * indices_ld + j], -1) << "wrote past the kept count";
      }
      ASSERT_EQ(got_offsets[h], h * kept);
    }
    ASSERT_EQ(got_offsets[c.heads], c.heads * kept);
  }
}

std::vector<TopBCase> top_b_cases() {
  std::vector<TopBCase> cases;
  for (ScoreKind kind : {ScoreKind::kGaussian, ScoreKind::kFewValues, ScoreKind::kAllEqual,
                         ScoreKind::kSignedZeros, ScoreKind::kHugeRange}) {
    for (std::int64_t n : {1, 5, 37, 1000, 4099}) {
      cases.push_back({n, 3, kind, {4, 0}});
    }
    cases.push_back({70001, 2, kind, {4, 64}});
  }
  cases.push_back({1000, 8, ScoreKind::kGaussian, {0, 0}});
  cases.push_back({1000, 1, ScoreKind::kFewValues, {0, 32}});
  cases.push_back({10, 2, ScoreKind::kGaussian, {8, 8}});  // protection overlaps
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, TopBTest, ::testing::ValuesIn(top_b_cases()),
                         [](const auto& info) { return top_b_name(info.param); });

TEST(TopBErrors, NaNScoresLeaveTheOutputUntouched) {
  CAPKV_REQUIRE_DEVICE();
  for (std::int64_t bad_token : {0, 2, 500}) {  // a protected sink, then candidates
    std::vector<float> scores = make_scores(ScoreKind::kGaussian, 2 * 1000, 1);
    scores[1000 + bad_token] = std::numeric_limits<float>::quiet_NaN();
    DeviceBuffer<float> scores_d(scores);
    DeviceBuffer<std::int32_t> indices(2 * 100);
    capkv::cuda::TopB::Arguments args;
    args.scores = scores_d.get();
    args.scores_ld = 1000;
    args.heads = 2;
    args.n_tokens = 1000;
    args.budget = 100;
    args.protection = {1, 0};
    args.indices = indices.get();
    args.indices_ld = 100;
    DeviceBuffer<unsigned char> workspace;
    ASSERT_TRUE(run_launcher<capkv::cuda::TopB>(args, workspace).ok());
    const Status s = capkv::cuda::read_status(workspace.get(), nullptr);
    EXPECT_EQ(s.code(), StatusCode::kBadInput);
    EXPECT_STREQ(s.argument(), "scores");
    for (std::int32_t x : indices.download()) ASSERT_EQ(x, -1);
  }
}

TEST(TopBErrors, BudgetBelowTheProtectedSetIsRefusedBeforeAnyWork) {
  capkv::cuda::TopB::Arguments args;
  args.heads = 1;
  args.n_tokens = 100;
  args.scores_ld = 100;
  args.budget = 5;
  args.protection = {4, 4};
  args.indices_ld = 5;
  const Status s = capkv::cuda::TopB::can_implement(args);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_STREQ(s.argument(), "budget");
}

// ---------------------------------------------------------------------------------------------
// L2-norm and positional scores.

class KeyScoresTest : public ::testing::TestWithParam<std::tuple<DType, Packing, std::int64_t>> {};

TEST_P(KeyScoresTest, MatchTheCpuScorersAndSelectLikeThem) {
  CAPKV_REQUIRE_DEVICE();
  const auto [dtype, packing, n] = GetParam();
  const std::int64_t hkv = 3;
  const std::int64_t d = 128;
  DeviceTensor keys(random_tensor(n, hkv, d, dtype, packing, 77 + n));
  for (auto kind :
       {capkv::cuda::KeyScores::Kind::kNegativeL2Norm, capkv::cuda::KeyScores::Kind::kPosition}) {
    DeviceBuffer<float> scores(static_cast<std::size_t>(hkv * n));
    capkv::cuda::KeyScores::Arguments args{keys.view(), kind, scores.get(), n};
    DeviceBuffer<unsigned char> workspace;
    const Status s = run_launcher<capkv::cuda::KeyScores>(args, workspace);
    ASSERT_TRUE(s.ok()) << s.to_string();
    ASSERT_TRUE(capkv::cuda::read_status(workspace.get(), nullptr).ok());
    const std::vector<float> got = scores.download();
    const bool position = kind == capkv::cuda::KeyScores::Kind::kPosition;
    const std::vector<float> want = ref::key_scores(keys.host_view(), position);
    for (std::int64_t e = 0; e < hkv * n; ++e) {
      const double tol = position ? 0.0 : (2 * d + 4) * kU * std::abs(want[e]);
      ASSERT_LE(std::abs(got[e] - want[e]), tol) << "head " << e / n << " token " << e % n;
    }
    // And the device top-B over the device scores is the CPU's selection over the same scores.
    const std::int64_t budget = n / 3 + 4;
    DeviceBuffer<std::int32_t> indices(static_cast<std::size_t>(hkv * budget));
    capkv::cuda::TopB::Arguments top;
    top.scores = scores.get();
    top.scores_ld = n;
    top.heads = hkv;
    top.n_tokens = n;
    top.budget = budget;
    top.protection = {4, 0};
    top.indices = indices.get();
    top.indices_ld = budget;
    ASSERT_TRUE(run_launcher<capkv::cuda::TopB>(top, workspace).ok());
    const ref::Csr want_sel = ref::select(got, hkv, n, n, top.protection, budget);
    const std::vector<std::int32_t> got_idx = indices.download();
    const std::int64_t kept = std::min(budget, n);
    for (std::int64_t h = 0; h < hkv; ++h) {
      ASSERT_EQ(std::vector<std::int32_t>(got_idx.begin() + h * budget,
                                          got_idx.begin() + h * budget + kept),
                std::vector<std::int32_t>(want_sel.indices.begin() + want_sel.offsets[h],
                                          want_sel.indices.begin() + want_sel.offsets[h + 1]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KeyScoresTest,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                       ::testing::Values(Packing::kTokensHeadsDim, Packing::kStridedDim),
                       ::testing::Values<std::int64_t>(1, 333, 5000)),
    [](const auto& info) {
      std::ostringstream s;
      s << dtype_name(std::get<0>(info.param)) << "_"
        << capkv_cuda_test::name_of(std::get<1>(info.param)) << "_n" << std::get<2>(info.param);
      return s.str();
    });

TEST(KeyScoresErrors, InfInTheKeysIsReported) {
  CAPKV_REQUIRE_DEVICE();
  StoredTensor t = random_tensor(50, 2, 64, DType::kF16, Packing::kTokensHeadsDim, 1);
  t.set(49, 1, 63, std::numeric_limits<float>::infinity());
  DeviceTensor keys(std::move(t));
  DeviceBuffer<float> scores(100);
  capkv::cuda::KeyScores::Arguments args{keys.view(), capkv::cuda::KeyScores::Kind::kPosition,
                                         scores.get(), 50};
  DeviceBuffer<unsigned char> workspace;
  ASSERT_TRUE(run_launcher<capkv::cuda::KeyScores>(args, workspace).ok());
  const Status s = capkv::cuda::read_status(workspace.get(), nullptr);
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "keys");
}

// ---------------------------------------------------------------------------------------------
// Compaction, dense and varlen: bitwise the CPU's.

class CompactionTest : public ::testing::TestWithParam<std::tuple<DType, Packing>> {};

TEST_P(CompactionTest, GathersTheSameBytesAsTheCpu) {
  CAPKV_REQUIRE_DEVICE();
  const auto [dtype, packing] = GetParam();
  const std::int64_t n = 301;
  const std::int64_t heads = 3;
  const std::int64_t d = 72;
  DeviceTensor source(random_tensor(n, heads, d, dtype, packing, 5));
  const std::vector<float> flat = make_scores(ScoreKind::kGaussian, heads * n, 2);
  const std::int64_t budget = 77;
  const ref::Csr sel = ref::select(flat, heads, n, n, {4, 8}, budget);
  DeviceBuffer<std::int32_t> indices(sel.indices);

  // Dense, into a [B, heads, d] output with a padded token stride.
  const std::size_t elem = capkv::size_of(dtype);
  const capkv::Strides out_strides{heads * d + 8, d, 1};
  const std::int64_t out_extent = (budget - 1) * out_strides.token + heads * d;
  std::vector<unsigned char> want(static_cast<std::size_t>(out_extent) * elem, 0xAB);
  ref::compact(source.host_view(), sel,
               capkv::MutableTensorView(want.data(), dtype, budget, heads, d, out_strides)
                   .with_extent(out_extent));
  DeviceBuffer<unsigned char> out(want.size(), 0xAB);
  capkv::cuda::Compact::Arguments args;
  args.source = source.view();
  args.out = capkv::MutableTensorView(out.get(), dtype, budget, heads, d, out_strides)
                 .with_extent(out_extent);
  args.indices = indices.get();
  args.indices_ld = budget;
  DeviceBuffer<unsigned char> workspace;
  Status s = run_launcher<capkv::cuda::Compact>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out.download(), want);

  // Varlen with head-adaptive counts.
  const ref::Csr ada = ref::select(flat, heads, n, n, {4, 8}, budget, /*adaptive=*/true);
  const std::int64_t total = ada.offsets.back();
  bool uneven = false;
  for (std::int64_t h = 0; h < heads; ++h) uneven |= ada.offsets[h + 1] - ada.offsets[h] != budget;
  ASSERT_TRUE(uneven) << "the adaptive selection should give heads different counts";
  std::vector<unsigned char> want_v(static_cast<std::size_t>(total * d) * elem + 13, 0xCD);
  ref::compact_varlen(source.host_view(), ada, want_v);
  DeviceBuffer<std::int32_t> ada_indices(ada.indices);
  DeviceBuffer<std::int64_t> ada_offsets(ada.offsets);
  DeviceBuffer<unsigned char> out_v(want_v.size(), 0xCD);
  capkv::cuda::CompactVarlen::Arguments vargs;
  vargs.source = source.view();
  vargs.out = out_v.get();
  vargs.out_bytes = out_v.size();
  vargs.indices = ada_indices.get();
  vargs.offsets = ada_offsets.get();
  vargs.total = total;
  s = run_launcher<capkv::cuda::CompactVarlen>(vargs, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out_v.download(), want_v);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CompactionTest,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                       ::testing::Values(Packing::kTokensHeadsDim, Packing::kHeadsTokensDim,
                                         Packing::kStridedDim)),
    [](const auto& info) {
      return std::string(dtype_name(std::get<0>(info.param))) + "_" +
             capkv_cuda_test::name_of(std::get<1>(info.param));
    });

TEST(CompactionErrors, AnIndexOutsideTheCacheIsReportedNotRead) {
  CAPKV_REQUIRE_DEVICE();
  DeviceTensor source(random_tensor(10, 1, 8, DType::kF32, Packing::kTokensHeadsDim, 1));
  DeviceBuffer<std::int32_t> indices(std::vector<std::int32_t>{0, 3, 10});
  DeviceBuffer<float> out(3 * 8);
  capkv::cuda::Compact::Arguments args;
  args.source = source.view();
  args.out =
      capkv::MutableTensorView(out.get(), DType::kF32, capkv::Layout::kTokensHeadsDim, 3, 1, 8);
  args.indices = indices.get();
  args.indices_ld = 3;
  DeviceBuffer<unsigned char> workspace;
  ASSERT_TRUE(run_launcher<capkv::cuda::Compact>(args, workspace).ok());
  EXPECT_EQ(capkv::cuda::read_status(workspace.get(), nullptr).code(), StatusCode::kBadInput);
}

// ---------------------------------------------------------------------------------------------
// A layer's inputs on the host and on the device, with the same strides.

enum class Preset { kDefault, kPaper, kKvpress, kKeyLeverage };

const char* name_of(Preset p) {
  switch (p) {
    case Preset::kDefault:
      return "window";
    case Preset::kPaper:
      return "paper";
    case Preset::kKvpress:
      return "kvpress";
    case Preset::kKeyLeverage:
      return "keylev";
  }
  return "?";
}

capkv::CapKV policy_of(Preset p) {
  switch (p) {
    case Preset::kDefault:
      return capkv::CapKV();
    case Preset::kPaper:
      return capkv::CapKV::paper();
    case Preset::kKvpress:
      return capkv::CapKV::kvpress();
    case Preset::kKeyLeverage:
      return capkv::CapKV::key_leverage(0.7);
  }
  return {};
}

struct LayerCase {
  std::int64_t n;
  std::int64_t d;
  std::int64_t g;
  std::int64_t m;  // query rows
  DType dtype;
  Packing packing;
  Preset preset;
  double keep;  // fraction kept
  capkv::GqaReduction gqa = capkv::GqaReduction::kMean;
  std::int64_t recent_window = 0;
  MathPath math = MathPath::kAuto;  // CapKV's products; the other policies ignore it
};

std::string layer_name(const LayerCase& c) {
  std::ostringstream s;
  s << name_of(c.preset) << "_n" << c.n << "_d" << c.d << "_g" << c.g << "_m" << c.m << "_"
    << dtype_name(c.dtype) << "_" << capkv_cuda_test::name_of(c.packing) << "_keep"
    << static_cast<int>(c.keep * 100) << "_" << capkv::name_of(c.gqa) << "_w" << c.recent_window
    << (c.math == MathPath::kAuto ? "" : std::string("_") + capkv::cuda::name_of(c.math));
  return s.str();
}

void PrintTo(const LayerCase& c, std::ostream* os) { *os << layer_name(c); }

struct Layer {
  static constexpr std::int64_t kKvHeads = 2;
  DeviceTensor keys;
  DeviceTensor values;
  DeviceTensor queries;
  DeviceTensor queries_pre_rope;
  capkv::Rope rope{100000.0, capkv::RopeLayout::kHalf};

  explicit Layer(const LayerCase& c, bool upload = true)
      : keys(random_tensor(c.n, kKvHeads, c.d, c.dtype, c.packing, 11 * c.n + c.d, 0.3f), upload),
        values(random_tensor(c.n, kKvHeads, c.d, c.dtype, c.packing, 13 * c.n + c.d + 1), upload),
        queries(
            random_tensor(c.m, kKvHeads * c.g, c.d, c.dtype, c.packing, 17 * c.m + c.d + 2, 0.3f),
            upload),
        queries_pre_rope(
            random_tensor(c.m, kKvHeads * c.g, c.d, c.dtype, c.packing, 19 * c.m + c.d + 3, 0.3f),
            upload) {}

  capkv::LayerInputs inputs(bool device) const {
    capkv::LayerInputs in;
    in.keys = device ? keys.view() : keys.host_view();
    in.values = device ? values.view() : values.host_view();
    in.queries = device ? queries.view() : queries.host_view();
    in.queries_pre_rope = device ? queries_pre_rope.view() : queries_pre_rope.host_view();
    in.rope = rope;
    return in;
  }
};

// ---------------------------------------------------------------------------------------------
// Relevance weights.

class RelevanceTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(RelevanceTest, MatchesTheCpuWeightsWithinTheDotProductBound) {
  CAPKV_REQUIRE_DEVICE();
  const LayerCase c = GetParam();
  const Layer layer(c);
  capkv::CapKV::Config config = policy_of(c.preset).config;
  const std::int64_t hq = Layer::kKvHeads * c.g;
  const std::int64_t ld = c.n + 1;
  DeviceBuffer<float> weights(static_cast<std::size_t>(hq * ld));
  capkv::cuda::RelevanceWeights::Arguments args;
  args.config = config;
  args.inputs = layer.inputs(true);
  args.weights = weights.get();
  args.weights_ld = ld;
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::RelevanceWeights>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_TRUE(capkv::cuda::read_status(workspace.get(), nullptr).ok());
  const std::vector<float> got = weights.download();

  const capkv::LayerInputs host = layer.inputs(false);
  const std::vector<float> want = ref::capkv_weights(config, host);
  const std::vector<float> mu = ref::capkv_anchors(config, host);
  const bool cosine = config.statistic == capkv::CapKV::Statistic::kCosine;
  const std::int64_t begin = std::min(config.sinks, c.n);
  for (std::int64_t h = 0; h < hq; ++h) {
    const std::int64_t kv = h / c.g;
    double mu_norm = 0.0;
    for (std::int64_t k = 0; k < c.d; ++k) mu_norm += double(mu[h * c.d + k]) * mu[h * c.d + k];
    mu_norm = std::sqrt(mu_norm);
    // Both sides round the dot product (d terms) and may round the anchor differently by an ulp.
    std::vector<double> tol_t(static_cast<std::size_t>(c.n), 0.0);
    double tol_max = 0.0;
    for (std::int64_t i = begin; i < c.n; ++i) {
      double mag = 0.0;
      double key_norm = 0.0;
      for (std::int64_t k = 0; k < c.d; ++k) {
        const double x = layer.keys.host.value(i, kv, k);
        mag += std::abs(x * mu[h * c.d + k]);
        key_norm += x * x;
      }
      tol_t[i] = (2 * c.d + 8) * kU * mag;
      if (cosine) {
        const double denom = std::sqrt(key_norm) * mu_norm;
        tol_t[i] = denom > 0 ? tol_t[i] / denom + (2 * c.d + 8) * kU : 0.0;
      }
      tol_max = std::max(tol_max, tol_t[i]);
    }
    for (std::int64_t i = 0; i < c.n; ++i) {
      const double w = want[h * c.n + i];
      const double value = got[h * ld + i];
      if (i < begin) {
        ASSERT_EQ(value, 0.0) << "sink " << i;
        continue;
      }
      const double tol = w * std::expm1(config.tau * (tol_t[i] + tol_max)) + 8 * kU * w + 1e-30;
      ASSERT_LE(std::abs(value - w), tol)
          << "head " << h << " token " << i << " got " << value << " want " << w;
    }
    EXPECT_TRUE(std::isnan(got[h * ld + c.n])) << "wrote past the row";
  }
}

std::vector<LayerCase> relevance_cases() {
  std::vector<LayerCase> cases;
  for (Preset p : {Preset::kDefault, Preset::kPaper, Preset::kKvpress}) {
    for (std::int64_t g : {1, 4, 8}) {
      cases.push_back({1000, 128, g, 48, DType::kBF16, Packing::kTokensHeadsDim, p, 0.25});
    }
    cases.push_back({300, 64, 2, 5, DType::kF32, Packing::kStridedDim, p, 0.25});
    cases.push_back({300, 256, 2, 40, DType::kF16, Packing::kHeadsTokensDim, p, 0.25});
    cases.push_back({3, 64, 2, 3, DType::kF32, Packing::kPaddedTokens, p, 0.25});
    cases.push_back({1, 64, 1, 1, DType::kBF16, Packing::kTokensHeadsDim, p, 0.25});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, RelevanceTest, ::testing::ValuesIn(relevance_cases()),
                         [](const auto& info) { return layer_name(info.param); });

// ---------------------------------------------------------------------------------------------
// The whole CapKV selection, and the composed cuBLAS/cuSOLVER reference, against capkv::select.

// Checks a selection against reference scores known to within `tol` each (the logic of
// tests/support/checks.hpp's SelectionAgrees): protected tokens kept, a candidate that fewer than
// (kept - protected) others could outrank is kept, one that at least that many surely outrank is
// dropped; ties go to the more recent token. Candidates too close to the cut are not judged.
::testing::AssertionResult selection_agrees(const std::vector<std::int32_t>& indices,
                                            std::int64_t indices_ld, const std::vector<float>& want,
                                            const std::vector<double>& tol, std::int64_t heads,
                                            std::int64_t n, const capkv::Protection& protection,
                                            std::int64_t kept) {
  for (std::int64_t h = 0; h < heads; ++h) {
    std::vector<char> in(static_cast<std::size_t>(n), 0);
    for (std::int64_t k = 0; k < kept; ++k) {
      const std::int32_t i = indices[h * indices_ld + k];
      if (i < 0 || i >= n) return ::testing::AssertionFailure() << "index " << i << " out of range";
      if (k > 0 && i <= indices[h * indices_ld + k - 1])
        return ::testing::AssertionFailure() << "not ascending";
      in[i] = 1;
    }
    if (kept == n) continue;
    const std::int64_t free_slots = kept - protection.count(n);
    for (std::int64_t i = 0; i < n; ++i) {
      if (protection.contains(i, n)) {
        if (!in[i])
          return ::testing::AssertionFailure() << "head " << h << " drops protected " << i;
        continue;
      }
      const double lo = want[h * n + i] - tol[h * n + i];
      const double hi = want[h * n + i] + tol[h * n + i];
      std::int64_t could = 0;
      std::int64_t surely = 0;
      for (std::int64_t j = 0; j < n; ++j) {
        if (j == i || protection.contains(j, n)) continue;
        const double lo_j = want[h * n + j] - tol[h * n + j];
        const double hi_j = want[h * n + j] + tol[h * n + j];
        could += hi_j > lo || (hi_j == lo && j > i);
        surely += lo_j > hi || (lo_j == hi && j > i);
      }
      if (could < free_slots && !in[i]) {
        return ::testing::AssertionFailure() << "head " << h << " drops token " << i << " (score "
                                             << want[h * n + i] << ") which must be kept";
      }
      if (surely >= free_slots && in[i]) {
        return ::testing::AssertionFailure() << "head " << h << " keeps token " << i << " (score "
                                             << want[h * n + i] << ") which must be dropped";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// End-to-end scores go through a Cholesky factor, so no simple a-priori bound applies; 1e-3
// relative (plus 1e-6 of the head's largest score) is far above the fp32 differences seen between
// two correct implementations on these well-conditioned caches and far below any real bug.
std::vector<double> score_tolerance(const std::vector<float>& want, std::int64_t heads,
                                    std::int64_t n) {
  std::vector<double> tol(want.size());
  for (std::int64_t h = 0; h < heads; ++h) {
    double top = 0.0;
    for (std::int64_t i = 0; i < n; ++i) top = std::max(top, std::abs(double(want[h * n + i])));
    for (std::int64_t i = 0; i < n; ++i)
      tol[h * n + i] = 1e-3 * std::abs(want[h * n + i]) + 1e-6 * top;
  }
  return tol;
}

class CapKVSelectTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(CapKVSelectTest, AgreesWithTheCpuSelection) {
  CAPKV_REQUIRE_DEVICE();
  const LayerCase c = GetParam();
  CAPKV_REQUIRE_TENSOR_CORES(c.math);
  const Layer layer(c);
  capkv::CapKV policy = policy_of(c.preset);
  policy.config.recent_window = c.recent_window;
  const capkv::Budget budget = capkv::Budget::keep_fraction(c.keep);
  const std::int64_t hkv = Layer::kKvHeads;

  capkv::cuda::CapKVSelect::Arguments args;
  args.policy = policy;
  args.inputs = layer.inputs(true);
  args.budget = budget;
  args.gqa = c.gqa;
  args.math = c.math;
  const std::int64_t kept = capkv::cuda::CapKVSelect::kept(args);
  const std::int64_t indices_ld = kept + 2;
  DeviceBuffer<std::int32_t> indices(static_cast<std::size_t>(hkv * indices_ld));
  DeviceBuffer<std::int64_t> offsets(static_cast<std::size_t>(hkv + 1));
  DeviceBuffer<float> scores(static_cast<std::size_t>(hkv * c.n));
  args.indices = indices.get();
  args.indices_ld = indices_ld;
  args.offsets = offsets.get();
  args.scores = scores.get();
  args.scores_ld = c.n;
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::CapKVSelect>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  const Status device = capkv::cuda::read_status(workspace.get(), nullptr);
  ASSERT_TRUE(device.ok()) << device.to_string();

  const ref::CapKVResult want = ref::capkv_select(policy, layer.inputs(false), budget, c.gqa);
  const std::vector<float> got_scores = scores.download();
  const std::vector<std::int32_t> got = indices.download();
  const std::vector<double> tol = score_tolerance(want.scores, hkv, c.n);
  for (std::int64_t e = 0; e < hkv * c.n; ++e) {
    ASSERT_LE(std::abs(double(got_scores[e]) - want.scores[e]), tol[e])
        << "head " << e / c.n << " token " << e % c.n << " got " << got_scores[e] << " want "
        << want.scores[e];
  }
  const capkv::Protection protection = policy.protection(c.n, kept);
  EXPECT_TRUE(selection_agrees(got, indices_ld, want.scores, tol, hkv, c.n, protection, kept));
  // Exactly: the device's indices are the CPU's top-B of the device's own scores.
  const ref::Csr own = ref::select(got_scores, hkv, c.n, c.n, protection, kept);
  for (std::int64_t h = 0; h < hkv; ++h) {
    ASSERT_EQ(std::vector<std::int32_t>(got.begin() + h * indices_ld,
                                        got.begin() + h * indices_ld + kept),
              std::vector<std::int32_t>(own.indices.begin() + own.offsets[h],
                                        own.indices.begin() + own.offsets[h + 1]));
    ASSERT_EQ(got[h * indices_ld + kept], -1);
  }
  EXPECT_EQ(offsets.download(), own.offsets);
}

TEST_P(CapKVSelectTest, ComposedLibraryPathAgreesWithTheCpuScores) {
  CAPKV_REQUIRE_DEVICE();
  const LayerCase c = GetParam();
  const Layer layer(c);
  capkv::CapKV policy = policy_of(c.preset);
  const std::int64_t hkv = Layer::kKvHeads;
  cublasHandle_t cublas = nullptr;
  cusolverDnHandle_t cusolver = nullptr;
  ASSERT_EQ(cublasCreate(&cublas), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cusolverDnCreate(&cusolver), CUSOLVER_STATUS_SUCCESS);
  DeviceBuffer<float> scores(static_cast<std::size_t>(hkv * c.n));
  capkv::cuda::ComposedCapKVScores::Arguments args;
  args.policy = policy;
  args.inputs = layer.inputs(true);
  args.gqa = c.gqa;
  args.scores = scores.get();
  args.scores_ld = c.n;
  args.cublas = cublas;
  args.cusolver = cusolver;
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::ComposedCapKVScores>(args, workspace);
  cusolverDnDestroy(cusolver);
  cublasDestroy(cublas);
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_TRUE(capkv::cuda::read_status(workspace.get(), nullptr).ok());
  const ref::CapKVResult want =
      ref::capkv_select(policy, layer.inputs(false), capkv::Budget::tokens(c.n), c.gqa);
  const std::vector<float> got = scores.download();
  const std::vector<double> tol = score_tolerance(want.scores, hkv, c.n);
  for (std::int64_t e = 0; e < hkv * c.n; ++e) {
    ASSERT_LE(std::abs(double(got[e]) - want.scores[e]), tol[e])
        << "head " << e / c.n << " token " << e % c.n;
  }
}

std::vector<LayerCase> capkv_cases() {
  std::vector<LayerCase> cases;
  for (std::int64_t d : {64, 128, 256}) {
    for (std::int64_t g : {1, 4, 8}) {
      cases.push_back(
          {1000, d, g, 40, DType::kBF16, Packing::kTokensHeadsDim, Preset::kDefault, 0.25});
    }
  }
  for (Preset p : {Preset::kPaper, Preset::kKvpress, Preset::kKeyLeverage}) {
    cases.push_back({777, 128, 4, 64, DType::kBF16, Packing::kTokensHeadsDim, p, 0.3});
  }
  for (DType t : {DType::kF32, DType::kF16}) {
    for (Packing k : {Packing::kHeadsTokensDim, Packing::kPaddedTokens, Packing::kStridedDim}) {
      cases.push_back({333, 64, 2, 33, t, k, Preset::kDefault, 0.5});
    }
  }
  cases.push_back({500, 64, 4, 32, DType::kF32, Packing::kTokensHeadsDim, Preset::kDefault, 0.2,
                   capkv::GqaReduction::kMax});
  cases.push_back({500, 64, 4, 32, DType::kF32, Packing::kTokensHeadsDim, Preset::kDefault, 0.2,
                   capkv::GqaReduction::kSum, 16});
  cases.push_back({4099, 128, 4, 32, DType::kBF16, Packing::kPaddedTokens, Preset::kKvpress, 0.1});
  cases.push_back({1, 64, 2, 1, DType::kF32, Packing::kTokensHeadsDim, Preset::kDefault, 1.0});
  cases.push_back(
      {3, 64, 2, 3, DType::kF32, Packing::kTokensHeadsDim, Preset::kDefault, 1.0});  // n < sinks
  cases.push_back(
      {9, 64, 2, 9, DType::kF32, Packing::kTokensHeadsDim, Preset::kDefault, 0.5});  // B = sinks
  cases.push_back(
      {50, 64, 2, 8, DType::kBF16, Packing::kTokensHeadsDim, Preset::kPaper, 1.0});  // B = n
  // The 16-bit caches above run on the tensor cores (kAuto); the same shapes on the CUDA cores.
  for (DType t : {DType::kF16, DType::kBF16}) {
    for (Preset p : {Preset::kDefault, Preset::kKeyLeverage}) {
      cases.push_back({1000, 128, 4, 40, t, Packing::kTokensHeadsDim, p, 0.25,
                       capkv::GqaReduction::kMean, 0, MathPath::kCudaCores});
      cases.push_back({1000, 128, 4, 40, t, Packing::kTokensHeadsDim, p, 0.25,
                       capkv::GqaReduction::kMean, 0, MathPath::kTensorCores});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, CapKVSelectTest, ::testing::ValuesIn(capkv_cases()),
                         [](const auto& info) { return layer_name(info.param); });

TEST(CapKVSelectErrors, NaNValuesLeaveTheOutputsUntouched) {
  CAPKV_REQUIRE_DEVICE();
  const LayerCase c{200, 64, 2, 16, DType::kBF16, Packing::kTokensHeadsDim, Preset::kDefault, 0.25};
  Layer layer(c);
  layer.values.host.set(150, 1, 7, std::numeric_limits<float>::quiet_NaN());
  layer.values.device.upload(layer.values.host.bytes());
  capkv::cuda::CapKVSelect::Arguments args;
  args.inputs = layer.inputs(true);
  args.budget = capkv::Budget::keep_fraction(c.keep);
  const std::int64_t kept = capkv::cuda::CapKVSelect::kept(args);
  DeviceBuffer<std::int32_t> indices(static_cast<std::size_t>(2 * kept));
  DeviceBuffer<float> scores(static_cast<std::size_t>(2 * c.n), 0x11);
  args.indices = indices.get();
  args.indices_ld = kept;
  args.scores = scores.get();
  args.scores_ld = c.n;
  DeviceBuffer<unsigned char> workspace;
  ASSERT_TRUE(run_launcher<capkv::cuda::CapKVSelect>(args, workspace).ok());
  const Status s = capkv::cuda::read_status(workspace.get(), nullptr);
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "values");
  for (std::int32_t x : indices.download()) ASSERT_EQ(x, -1);
  float poison;
  std::memset(&poison, 0x11, sizeof poison);
  for (float x : scores.download()) ASSERT_EQ(std::memcmp(&x, &poison, sizeof x), 0);
}

TEST(CapKVSelectErrors, RefusedArgumentsNameTheArgument) {
  // No device needed: can_implement runs on the host and never touches the (null) data.
  const LayerCase c{100, 64, 2, 16, DType::kF32, Packing::kTokensHeadsDim, Preset::kDefault, 0.25};
  const Layer layer(c, /*upload=*/false);
  capkv::cuda::CapKVSelect::Arguments args;
  args.inputs = layer.inputs(false);
  args.budget = capkv::Budget::tokens(2);  // below the 4 sinks
  args.indices_ld = 2;
  Status s = capkv::cuda::CapKVSelect::can_implement(args);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_STREQ(s.argument(), "budget");

  args.budget = capkv::Budget::tokens(20);
  args.indices_ld = 20;
  args.policy = capkv::CapKV().greedy();
  s = capkv::cuda::CapKVSelect::can_implement(args);
  EXPECT_EQ(s.code(), StatusCode::kNotSupported);

  args.policy = capkv::CapKV();
  args.inputs.queries.reset();
  s = capkv::cuda::CapKVSelect::can_implement(args);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_STREQ(s.argument(), "queries");

  args.inputs = layer.inputs(false);
  args.inputs.keys = capkv::TensorView(nullptr, DType::kF32, 0, 2, 64, capkv::Strides{128, 64, 1});
  args.inputs.values = args.inputs.keys;
  s = capkv::cuda::CapKVSelect::can_implement(args);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_STREQ(s.argument(), "budget");  // nonzero budget, empty cache
}

// ---------------------------------------------------------------------------------------------
// SnapKV against capkv::select(SnapKV).

struct SnapCase {
  std::int64_t n;
  std::int64_t d;
  std::int64_t g;
  std::int64_t m;
  DType dtype;
  Packing packing;
  bool kvpress;  // window 64, avg pool 5, mean; else the paper's window 32, max pool 7, sum
  double keep;
  capkv::GqaReduction gqa = capkv::GqaReduction::kMean;
};

std::string snap_name(const SnapCase& c) {
  std::ostringstream s;
  s << (c.kvpress ? "kvpress" : "paper") << "_n" << c.n << "_d" << c.d << "_g" << c.g << "_m" << c.m
    << "_" << dtype_name(c.dtype) << "_" << capkv_cuda_test::name_of(c.packing) << "_keep"
    << static_cast<int>(c.keep * 100) << "_" << capkv::name_of(c.gqa);
  return s.str();
}
void PrintTo(const SnapCase& c, std::ostream* os) { *os << snap_name(c); }

class SnapKVSelectTest : public ::testing::TestWithParam<SnapCase> {};

TEST_P(SnapKVSelectTest, AgreesWithTheCpuSelection) {
  CAPKV_REQUIRE_DEVICE();
  const SnapCase c = GetParam();
  const Layer layer(LayerCase{c.n, c.d, c.g, c.m, c.dtype, c.packing, Preset::kDefault, c.keep});
  const capkv::SnapKV policy = c.kvpress ? capkv::SnapKV::kvpress() : capkv::SnapKV::paper();
  const capkv::Budget budget = capkv::Budget::keep_fraction(c.keep);
  const std::int64_t hkv = Layer::kKvHeads;
  capkv::cuda::SnapKVSelect::Arguments args;
  args.policy = policy;
  args.inputs = layer.inputs(true);
  args.budget = budget;
  args.gqa = c.gqa;
  const std::int64_t kept = capkv::cuda::SnapKVSelect::kept(args);
  const std::int64_t indices_ld = kept + 1;
  DeviceBuffer<std::int32_t> indices(static_cast<std::size_t>(hkv * indices_ld));
  DeviceBuffer<float> scores(static_cast<std::size_t>(hkv * c.n));
  args.indices = indices.get();
  args.indices_ld = indices_ld;
  args.scores = scores.get();
  args.scores_ld = c.n;
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::SnapKVSelect>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  const Status device = capkv::cuda::read_status(workspace.get(), nullptr);
  ASSERT_TRUE(device.ok()) << device.to_string();

  const ref::CapKVResult want = ref::snapkv_select(policy, layer.inputs(false), budget, c.gqa);
  const std::vector<float> got_scores = scores.download();
  const std::vector<std::int32_t> got = indices.download();
  const std::vector<double> tol = score_tolerance(want.scores, hkv, c.n);
  for (std::int64_t e = 0; e < hkv * c.n; ++e) {
    ASSERT_LE(std::abs(double(got_scores[e]) - want.scores[e]), tol[e])
        << "head " << e / c.n << " token " << e % c.n << " got " << got_scores[e] << " want "
        << want.scores[e];
  }
  const capkv::Protection protection = policy.protection(c.n, kept);
  EXPECT_TRUE(selection_agrees(got, indices_ld, want.scores, tol, hkv, c.n, protection, kept));
  const ref::Csr own = ref::select(got_scores, hkv, c.n, c.n, protection, kept);
  for (std::int64_t h = 0; h < hkv; ++h) {
    ASSERT_EQ(std::vector<std::int32_t>(got.begin() + h * indices_ld,
                                        got.begin() + h * indices_ld + kept),
              std::vector<std::int32_t>(own.indices.begin() + own.offsets[h],
                                        own.indices.begin() + own.offsets[h + 1]));
  }
}

std::vector<SnapCase> snap_cases() {
  std::vector<SnapCase> cases;
  for (bool kvpress : {false, true}) {
    for (std::int64_t d : {64, 128, 256}) {
      cases.push_back({1000, d, 4, 70, DType::kBF16, Packing::kTokensHeadsDim, kvpress, 0.25});
    }
    for (std::int64_t g : {1, 8}) {
      cases.push_back({300, 128, g, 64, DType::kF16, Packing::kPaddedTokens, kvpress, 0.4});
    }
    cases.push_back({129, 64, 2, 80, DType::kF32, Packing::kStridedDim, kvpress, 0.5,
                     capkv::GqaReduction::kMax});
    cases.push_back({4099, 128, 4, 64, DType::kBF16, Packing::kHeadsTokensDim, kvpress, 0.1});
    cases.push_back({kvpress ? 64 : 32, 64, 2, 64, DType::kF32, Packing::kTokensHeadsDim, kvpress,
                     1.0});                                                               // n = w
    cases.push_back({5, 64, 2, 5, DType::kF32, Packing::kTokensHeadsDim, kvpress, 1.0});  // n < w
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, SnapKVSelectTest, ::testing::ValuesIn(snap_cases()),
                         [](const auto& info) { return snap_name(info.param); });

TEST(SnapKVSelectErrors, NaNInTheWindowQueriesIsReported) {
  CAPKV_REQUIRE_DEVICE();
  const LayerCase c{200, 64, 2, 40, DType::kBF16, Packing::kTokensHeadsDim, Preset::kDefault, 0.5};
  Layer layer(c);
  layer.queries.host.set(39, 3, 5, std::numeric_limits<float>::quiet_NaN());
  layer.queries.device.upload(layer.queries.host.bytes());
  capkv::cuda::SnapKVSelect::Arguments args;
  args.inputs = layer.inputs(true);
  args.budget = capkv::Budget::keep_fraction(c.keep);
  const std::int64_t kept = capkv::cuda::SnapKVSelect::kept(args);
  DeviceBuffer<std::int32_t> indices(static_cast<std::size_t>(2 * kept));
  args.indices = indices.get();
  args.indices_ld = kept;
  DeviceBuffer<unsigned char> workspace;
  ASSERT_TRUE(run_launcher<capkv::cuda::SnapKVSelect>(args, workspace).ok());
  const Status s = capkv::cuda::read_status(workspace.get(), nullptr);
  EXPECT_EQ(s.code(), StatusCode::kBadInput);
  EXPECT_STREQ(s.argument(), "queries");
  for (std::int32_t x : indices.download()) ASSERT_EQ(x, -1);
}

// ---------------------------------------------------------------------------------------------
// H2O's prefill accumulators and selection against capkv::select(H2O).

struct H2OCase {
  std::int64_t n;
  std::int64_t m;  // prompt queries, m <= n
  std::int64_t d;
  std::int64_t g;
  DType dtype;
  Packing packing;
  bool kvpress;  // ObservedAttention: divided by exposure, no recent window
  double keep;
};

std::string h2o_name(const H2OCase& c) {
  std::ostringstream s;
  s << (c.kvpress ? "kvpress" : "paper") << "_n" << c.n << "_m" << c.m << "_d" << c.d << "_g" << c.g
    << "_" << dtype_name(c.dtype) << "_" << capkv_cuda_test::name_of(c.packing) << "_keep"
    << static_cast<int>(c.keep * 100);
  return s.str();
}
void PrintTo(const H2OCase& c, std::ostream* os) { *os << h2o_name(c); }

class H2OSelectTest : public ::testing::TestWithParam<H2OCase> {};

TEST_P(H2OSelectTest, AgreesWithTheCpuSelection) {
  CAPKV_REQUIRE_DEVICE();
  const H2OCase c = GetParam();
  const Layer layer(LayerCase{c.n, c.d, c.g, c.m, c.dtype, c.packing, Preset::kDefault, c.keep});
  const capkv::H2O policy = c.kvpress ? capkv::H2O::kvpress() : capkv::H2O::paper();
  const capkv::Budget budget = capkv::Budget::keep_fraction(c.keep);
  const std::int64_t hkv = Layer::kKvHeads;
  capkv::cuda::H2OSelect::Arguments args;
  args.policy = policy;
  args.inputs = layer.inputs(true);
  args.budget = budget;
  const std::int64_t kept = capkv::cuda::H2OSelect::kept(args);
  const std::int64_t indices_ld = kept + 1;
  DeviceBuffer<std::int32_t> indices(static_cast<std::size_t>(hkv * indices_ld));
  DeviceBuffer<float> scores(static_cast<std::size_t>(hkv * c.n));
  args.indices = indices.get();
  args.indices_ld = indices_ld;
  args.scores = scores.get();
  args.scores_ld = c.n;
  DeviceBuffer<unsigned char> workspace;
  const Status s = run_launcher<capkv::cuda::H2OSelect>(args, workspace);
  ASSERT_TRUE(s.ok()) << s.to_string();
  const Status device = capkv::cuda::read_status(workspace.get(), nullptr);
  ASSERT_TRUE(device.ok()) << device.to_string();

  const ref::CapKVResult want = ref::h2o_select(policy, layer.inputs(false), budget);
  const std::vector<float> got_scores = scores.download();
  const std::vector<std::int32_t> got = indices.download();
  const std::vector<double> tol = score_tolerance(want.scores, hkv, c.n);
  for (std::int64_t e = 0; e < hkv * c.n; ++e) {
    ASSERT_LE(std::abs(double(got_scores[e]) - want.scores[e]), tol[e])
        << "head " << e / c.n << " token " << e % c.n << " got " << got_scores[e] << " want "
        << want.scores[e];
  }
  const capkv::Protection protection = policy.protection(c.n, kept);
  EXPECT_TRUE(selection_agrees(got, indices_ld, want.scores, tol, hkv, c.n, protection, kept));
  const ref::Csr own = ref::select(got_scores, hkv, c.n, c.n, protection, kept);
  for (std::int64_t h = 0; h < hkv; ++h) {
    ASSERT_EQ(std::vector<std::int32_t>(got.begin() + h * indices_ld,
                                        got.begin() + h * indices_ld + kept),
              std::vector<std::int32_t>(own.indices.begin() + own.offsets[h],
                                        own.indices.begin() + own.offsets[h + 1]));
  }
}

std::vector<H2OCase> h2o_cases() {
  std::vector<H2OCase> cases;
  for (bool kvpress : {false, true}) {
    for (std::int64_t d : {64, 128, 256}) {
      cases.push_back({400, 400, d, 4, DType::kBF16, Packing::kTokensHeadsDim, kvpress, 0.25});
    }
    for (std::int64_t g : {1, 8}) {
      cases.push_back({300, 150, 128, g, DType::kF16, Packing::kPaddedTokens, kvpress, 0.3});
    }
    cases.push_back({129, 33, 64, 2, DType::kF32, Packing::kStridedDim, kvpress, 0.5});
    cases.push_back({1000, 1000, 64, 2, DType::kBF16, Packing::kHeadsTokensDim, kvpress, 0.1});
    cases.push_back({37, 1, 64, 2, DType::kF32, Packing::kTokensHeadsDim, kvpress, 0.5});
    cases.push_back({1, 1, 64, 2, DType::kF32, Packing::kTokensHeadsDim, kvpress, 1.0});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, H2OSelectTest, ::testing::ValuesIn(h2o_cases()),
                         [](const auto& info) { return h2o_name(info.param); });

// ---------------------------------------------------------------------------------------------
// Host-side contract of every launcher, no device needed: valid arguments pass can_implement,
// workspace sizes are positive multiples of the carving alignment, and run() refuses a workspace
// smaller than it asked for without touching anything.

TEST(LauncherContract, ValidArgumentsAreAcceptedAndWorkspacesAreSized) {
  const LayerCase c{257, 128, 4, 40, DType::kBF16, Packing::kTokensHeadsDim, Preset::kDefault,
                    0.25};
  const Layer layer(c, /*upload=*/false);
  const std::int64_t hq = Layer::kKvHeads * c.g;
  auto sized = [](std::size_t bytes) {
    return bytes > 0 && bytes % capkv::cuda::WorkspaceCarver::kAlignment == 0;
  };
  for (Preset preset : {Preset::kDefault, Preset::kPaper, Preset::kKvpress, Preset::kKeyLeverage}) {
    capkv::cuda::CapKVSelect::Arguments args;
    args.policy = policy_of(preset);
    args.inputs = layer.inputs(false);
    args.budget = capkv::Budget::keep_fraction(c.keep);
    args.indices = fake_device_pointer<std::int32_t>();
    args.indices_ld = capkv::cuda::CapKVSelect::kept(args);
    Status s = capkv::cuda::CapKVSelect::can_implement(args);
    EXPECT_TRUE(s.ok()) << name_of(preset) << ": " << s.to_string();
    EXPECT_TRUE(sized(capkv::cuda::CapKVSelect::workspace_size(args)));
    // Too small a workspace: refused before any CUDA call.
    s = capkv::cuda::CapKVSelect::run(args, fake_device_pointer<unsigned char>(), 16, nullptr);
    EXPECT_EQ(s.code(), StatusCode::kWorkspaceTooSmall);

    capkv::cuda::ComposedCapKVScores::Arguments composed;
    composed.policy = args.policy;
    composed.inputs = args.inputs;
    composed.scores = fake_device_pointer<float>();
    composed.scores_ld = c.n;
    composed.cublas = reinterpret_cast<cublasHandle_t>(fake_device_pointer<char>());
    composed.cusolver = reinterpret_cast<cusolverDnHandle_t>(fake_device_pointer<char>());
    s = capkv::cuda::ComposedCapKVScores::can_implement(composed);
    EXPECT_TRUE(s.ok()) << name_of(preset) << ": " << s.to_string();
    EXPECT_TRUE(sized(capkv::cuda::ComposedCapKVScores::workspace_size(composed)));

    if (preset != Preset::kKeyLeverage) {
      capkv::cuda::RelevanceWeights::Arguments relevance;
      relevance.config = args.policy.config;
      relevance.inputs = args.inputs;
      relevance.weights = fake_device_pointer<float>();
      relevance.weights_ld = c.n;
      s = capkv::cuda::RelevanceWeights::can_implement(relevance);
      EXPECT_TRUE(s.ok()) << s.to_string();
      relevance.weights = nullptr;
      EXPECT_STREQ(capkv::cuda::RelevanceWeights::can_implement(relevance).argument(), "weights");
    }
  }

  capkv::cuda::SnapKVSelect::Arguments snap;
  snap.inputs = layer.inputs(false);
  snap.budget = capkv::Budget::keep_fraction(0.5);
  snap.indices = fake_device_pointer<std::int32_t>();
  snap.indices_ld = capkv::cuda::SnapKVSelect::kept(snap);
  Status snap_status = capkv::cuda::SnapKVSelect::can_implement(snap);
  EXPECT_TRUE(snap_status.ok()) << snap_status.to_string();
  EXPECT_TRUE(sized(capkv::cuda::SnapKVSelect::workspace_size(snap)));
  snap.policy.config.kernel = 4;
  EXPECT_STREQ(capkv::cuda::SnapKVSelect::can_implement(snap).argument(), "kernel");

  capkv::cuda::H2OSelect::Arguments h2o;
  h2o.inputs = layer.inputs(false);
  h2o.budget = capkv::Budget::keep_fraction(0.5);
  h2o.indices = fake_device_pointer<std::int32_t>();
  h2o.indices_ld = capkv::cuda::H2OSelect::kept(h2o);
  Status h2o_status = capkv::cuda::H2OSelect::can_implement(h2o);
  EXPECT_TRUE(h2o_status.ok()) << h2o_status.to_string();
  EXPECT_TRUE(sized(capkv::cuda::H2OSelect::workspace_size(h2o)));

  capkv::cuda::WeightedGram::Arguments gram;
  gram.basis = layer.values.host_view();
  gram.n_query_heads = hq;
  gram.begin = 4;
  gram.gram = fake_device_pointer<double>();
  EXPECT_TRUE(capkv::cuda::WeightedGram::can_implement(gram).ok());
  EXPECT_TRUE(sized(capkv::cuda::WeightedGram::workspace_size(gram)));
  // Either unit can be pinned on a bf16 basis with head_dim a multiple of 16.
  gram.math = MathPath::kCudaCores;
  EXPECT_TRUE(capkv::cuda::WeightedGram::can_implement(gram).ok());
  gram.math = MathPath::kTensorCores;
  EXPECT_TRUE(capkv::cuda::WeightedGram::can_implement(gram).ok());
  gram.n_query_heads = 3;
  EXPECT_STREQ(capkv::cuda::WeightedGram::can_implement(gram).argument(), "n_query_heads");

  capkv::cuda::InverseCholesky::Arguments chol{fake_device_pointer<double>(), hq, 256,
                                               fake_device_pointer<float>(), nullptr};
  EXPECT_TRUE(capkv::cuda::InverseCholesky::can_implement(chol).ok());
  EXPECT_TRUE(sized(capkv::cuda::InverseCholesky::workspace_size(chol)));
  chol.d = 257;
  EXPECT_STREQ(capkv::cuda::InverseCholesky::can_implement(chol).argument(), "d");

  capkv::cuda::WeightedLeverage::Arguments leverage;
  leverage.basis = layer.values.host_view();
  leverage.inverse_factor_t = fake_device_pointer<float>();
  leverage.n_query_heads = hq;
  leverage.scores = fake_device_pointer<float>();
  leverage.scores_ld = c.n;
  EXPECT_TRUE(capkv::cuda::WeightedLeverage::can_implement(leverage).ok());
  const std::size_t with_split = capkv::cuda::WeightedLeverage::workspace_size(leverage);
  leverage.math = MathPath::kCudaCores;
  const std::size_t without_split = capkv::cuda::WeightedLeverage::workspace_size(leverage);
  EXPECT_GE(with_split, without_split + 2 * sizeof(std::uint16_t) * hq * c.d * c.d);
  leverage.math = MathPath::kTensorCores;
  EXPECT_TRUE(capkv::cuda::WeightedLeverage::can_implement(leverage).ok());
  leverage.scores_ld = c.n - 1;
  EXPECT_STREQ(capkv::cuda::WeightedLeverage::can_implement(leverage).argument(), "scores_ld");
  leverage.scores_ld = c.n;

  // Tensor cores pinned on a basis they cannot take: refused by name, before any device call.
  const LayerCase fp32_case{33, 64, 2, 8, DType::kF32, Packing::kTokensHeadsDim, Preset::kDefault,
                            0.5};
  const Layer fp32_layer(fp32_case, /*upload=*/false);
  leverage.basis = fp32_layer.values.host_view();
  leverage.n_query_heads = Layer::kKvHeads * fp32_case.g;
  leverage.scores_ld = fp32_case.n;
  EXPECT_STREQ(capkv::cuda::WeightedLeverage::can_implement(leverage).argument(), "math");
  gram.basis = fp32_layer.values.host_view();
  gram.n_query_heads = Layer::kKvHeads * fp32_case.g;
  gram.math = MathPath::kTensorCores;
  EXPECT_STREQ(capkv::cuda::WeightedGram::can_implement(gram).argument(), "math");
  const LayerCase odd_dim{33, 72, 2, 8, DType::kBF16, Packing::kTokensHeadsDim, Preset::kDefault,
                          0.5};
  const Layer odd_layer(odd_dim, /*upload=*/false);
  gram.basis = odd_layer.values.host_view();
  EXPECT_STREQ(capkv::cuda::WeightedGram::can_implement(gram).argument(), "math");
  gram.math = MathPath::kAuto;  // kAuto falls back to the CUDA cores instead
  EXPECT_TRUE(capkv::cuda::WeightedGram::can_implement(gram).ok());

  capkv::cuda::KeyScores::Arguments keys{layer.keys.host_view(),
                                         capkv::cuda::KeyScores::Kind::kNegativeL2Norm,
                                         fake_device_pointer<float>(), c.n};
  EXPECT_TRUE(capkv::cuda::KeyScores::can_implement(keys).ok());

  capkv::cuda::Compact::Arguments compact;
  compact.source = layer.keys.host_view();
  compact.out = capkv::MutableTensorView(fake_device_pointer<void>(), DType::kBF16,
                                         capkv::Layout::kTokensHeadsDim, 10, Layer::kKvHeads, c.d);
  compact.indices = fake_device_pointer<std::int32_t>();
  compact.indices_ld = 10;
  EXPECT_TRUE(capkv::cuda::Compact::can_implement(compact).ok());
  compact.out = capkv::MutableTensorView(fake_device_pointer<void>(), DType::kF16,
                                         capkv::Layout::kTokensHeadsDim, 10, Layer::kKvHeads, c.d);
  EXPECT_STREQ(capkv::cuda::Compact::can_implement(compact).argument(), "out");

  capkv::cuda::CompactVarlen::Arguments varlen;
  varlen.source = layer.keys.host_view();
  varlen.out = fake_device_pointer<void>();
  varlen.out_bytes = 10 * c.d * 2;
  varlen.indices = fake_device_pointer<std::int32_t>();
  varlen.offsets = fake_device_pointer<std::int64_t>();
  varlen.total = 10;
  EXPECT_TRUE(capkv::cuda::CompactVarlen::can_implement(varlen).ok());
  varlen.total = 11;
  EXPECT_STREQ(capkv::cuda::CompactVarlen::can_implement(varlen).argument(), "out");
}

TEST(LauncherContract, StatusCarriesTheArgumentAndTheCpuMessage) {
  const Status s =
      capkv::cuda::checked([] { capkv::require(false, "values", "token count differs"); });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_STREQ(s.argument(), "values");
  EXPECT_STREQ(s.message(), "token count differs");
  EXPECT_EQ(s.to_string(), "values: token count differs");
  EXPECT_STREQ(
      capkv::cuda::status_from_flags(capkv::cuda::kQueriesNotFinite | capkv::cuda::kScoresNotFinite)
          .argument(),
      "queries");
  EXPECT_TRUE(capkv::cuda::status_from_flags(0).ok());
}

}  // namespace
