// CompactInPlace and CompactInPlaceVarlen on a device against capkv::compact_in_place: the whole
// cache buffer bytewise equal afterwards, so the rows past each head's kept count (and the gaps of
// padded or strided views, which hold a loud 1e30) are proven untouched. Bad selections leave the
// cache byte for byte as it was. Each device test skips without a GPU; the contract tests at the
// end run anywhere.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "capkv/cuda/compaction_in_place.cuh"
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

capkv::MutableTensorView mutable_view(const capkv::TensorView& v) {
  return capkv::MutableTensorView(const_cast<void*>(v.data()), v.dtype(), v.n_tokens(), v.n_heads(),
                                  v.head_dim(), v.strides())
      .with_extent(*v.extent());
}

// Per head an ascending selection of `kept` tokens (dense) or of a head-dependent count (varlen):
// head 0 keeps a prefix in place then skips (the identity prefix the kernel does not move), the
// others random subsets, one of them (varlen) everything and one nothing.
struct Csr {
  std::vector<std::int64_t> offsets{0};
  std::vector<std::int32_t> indices;
};

Csr make_selection(std::int64_t n, std::int64_t heads, std::int64_t kept, bool varlen,
                   std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Csr sel;
  for (std::int64_t h = 0; h < heads; ++h) {
    std::int64_t count = kept;
    if (varlen) count = h == 1 ? n : h == 2 ? 0 : static_cast<std::int64_t>(rng() % (n + 1));
    std::vector<std::int32_t> all(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) all[i] = static_cast<std::int32_t>(i);
    std::vector<std::int32_t> pick;
    if (h == 0) {
      // A prefix kept in place, then every other token from there on.
      const std::int64_t prefix = count / 3;
      for (std::int64_t i = 0; i < prefix; ++i) pick.push_back(static_cast<std::int32_t>(i));
      for (std::int64_t i = prefix + 1; static_cast<std::int64_t>(pick.size()) < count && i < n;
           i += 1 + static_cast<std::int64_t>(rng() % 2)) {
        pick.push_back(static_cast<std::int32_t>(i));
      }
      for (std::int64_t i = n - 1; static_cast<std::int64_t>(pick.size()) < count; --i) {
        if (std::find(pick.begin(), pick.end(), i) == pick.end())
          pick.push_back(static_cast<std::int32_t>(i));
      }
    } else {
      std::shuffle(all.begin(), all.end(), rng);
      pick.assign(all.begin(), all.begin() + count);
    }
    std::sort(pick.begin(), pick.end());
    sel.indices.insert(sel.indices.end(), pick.begin(), pick.end());
    sel.offsets.push_back(static_cast<std::int64_t>(sel.indices.size()));
  }
  return sel;
}

struct InPlaceCase {
  std::int64_t n;
  std::int64_t heads;
  std::int64_t d;
  std::int64_t kept;
  DType dtype;
  Packing packing;
};

std::string in_place_name(const InPlaceCase& c) {
  return std::string(capkv::name_of(c.dtype)) + "_" + capkv_cuda_test::name_of(c.packing) + "_n" +
         std::to_string(c.n) + "_h" + std::to_string(c.heads) + "_d" + std::to_string(c.d) +
         "_kept" + std::to_string(c.kept);
}
void PrintTo(const InPlaceCase& c, std::ostream* os) { *os << in_place_name(c); }

class CompactInPlaceTest : public ::testing::TestWithParam<InPlaceCase> {};

TEST_P(CompactInPlaceTest, MovesTheSameBytesAsTheCpu) {
  CAPKV_REQUIRE_DEVICE();
  const InPlaceCase c = GetParam();
  for (bool varlen : {false, true}) {
    SCOPED_TRACE(varlen ? "varlen" : "dense");
    DeviceTensor cache(random_tensor(c.n, c.heads, c.d, c.dtype, c.packing, 17));
    const Csr sel = make_selection(c.n, c.heads, c.kept, varlen, 5 + c.n);
    std::vector<unsigned char> want = cache.host.bytes();
    const capkv::TensorView host = cache.host_view();
    state_ref::compact_in_place(
        capkv::MutableTensorView(want.data(), host.dtype(), host.n_tokens(), host.n_heads(),
                                 host.head_dim(), host.strides())
            .with_extent(*host.extent()),
        c.n, sel.offsets, sel.indices);

    DeviceBuffer<std::int32_t> indices(sel.indices.empty() ? std::vector<std::int32_t>{0}
                                                           : sel.indices);
    DeviceBuffer<std::int64_t> offsets(sel.offsets);
    DeviceBuffer<unsigned char> workspace;
    Status s;
    if (varlen) {
      capkv::cuda::CompactInPlaceVarlen::Arguments a;
      a.cache = mutable_view(cache.view());
      a.indices = indices.get();
      a.offsets = offsets.get();
      a.total = sel.offsets.back();
      s = run_launcher<capkv::cuda::CompactInPlaceVarlen>(a, workspace);
    } else {
      capkv::cuda::CompactInPlace::Arguments a;
      a.cache = mutable_view(cache.view());
      a.indices = indices.get();
      a.indices_ld = c.kept;
      a.kept = c.kept;
      s = run_launcher<capkv::cuda::CompactInPlace>(a, workspace);
    }
    ASSERT_TRUE(s.ok()) << s.to_string();
    const Status device = capkv::cuda::read_status(workspace.get(), nullptr);
    ASSERT_TRUE(device.ok()) << device.to_string();
    const std::vector<unsigned char> got = cache.device.download();
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t b = 0; b < want.size(); ++b) {
      ASSERT_EQ(got[b], want[b]) << "byte " << b << " of " << want.size();
    }
  }
}

std::vector<InPlaceCase> in_place_cases() {
  std::vector<InPlaceCase> cases;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (Packing packing : {Packing::kTokensHeadsDim, Packing::kHeadsTokensDim,
                            Packing::kPaddedTokens, Packing::kStridedDim}) {
      cases.push_back({301, 3, 72, 77, dtype, packing});
    }
    // Rows wider than the 32 KB buffer (fp32 and 16-bit): moved in column segments.
    cases.push_back(
        {40, 3, dtype == DType::kF32 ? 9000 : 17000, 13, dtype, Packing::kTokensHeadsDim});
    // More chunks than one: 1000 kept rows of 128 (64 fp32 rows or 128 half rows per chunk).
    cases.push_back({2500, 3, 128, 1000, dtype, Packing::kHeadsTokensDim});
  }
  cases.push_back({1, 3, 64, 1, DType::kF32, Packing::kTokensHeadsDim});
  cases.push_back({50, 3, 64, 50, DType::kBF16, Packing::kTokensHeadsDim});  // keep all: no move
  cases.push_back({50, 3, 64, 0, DType::kBF16, Packing::kTokensHeadsDim});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, CompactInPlaceTest, ::testing::ValuesIn(in_place_cases()),
                         [](const auto& info) { return in_place_name(info.param); });

// H2OSelect's scores as [n, Hkv, 1] fp32 with strides {1, scores_ld, 1}: compacting them leaves
// the kept tokens' accumulators in slot order, the start of an H2OStep state.
TEST(CompactInPlaceScores, AScoreRowViewCompactsLikeACache) {
  CAPKV_REQUIRE_DEVICE();
  const std::int64_t n = 123;
  const std::int64_t heads = 3;
  const std::int64_t ld = 130;
  std::vector<float> scores(static_cast<std::size_t>(heads * ld));
  for (std::size_t e = 0; e < scores.size(); ++e) scores[e] = 0.5f * static_cast<float>(e);
  const Csr sel = make_selection(n, heads, 40, false, 3);
  DeviceBuffer<float> device(scores);
  DeviceBuffer<std::int32_t> indices(sel.indices);
  capkv::cuda::CompactInPlace::Arguments a;
  a.cache = capkv::MutableTensorView(device.get(), DType::kF32, n, heads, 1, {1, ld, 1})
                .with_extent(heads * ld);
  a.indices = indices.get();
  a.indices_ld = 40;
  a.kept = 40;
  DeviceBuffer<unsigned char> workspace;
  ASSERT_TRUE(run_launcher<capkv::cuda::CompactInPlace>(a, workspace).ok());
  ASSERT_TRUE(capkv::cuda::read_status(workspace.get(), nullptr).ok());
  const std::vector<float> got = device.download();
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t k = 0; k < ld; ++k) {
      const float want = k < 40 ? scores[h * ld + sel.indices[h * 40 + k]] : scores[h * ld + k];
      ASSERT_EQ(got[h * ld + k], want) << "head " << h << " slot " << k;
    }
  }
}

// A bad selection: the device flags it and the cache keeps every byte.
struct BadSelection {
  const char* name;
  std::vector<std::int32_t> indices;  // 2 heads
  std::vector<std::int64_t> offsets;  // empty: dense with 3 per head
  const char* argument;
};

TEST(CompactInPlaceErrors, BadSelectionsAreReportedAndNothingIsWritten) {
  CAPKV_REQUIRE_DEVICE();
  const std::vector<BadSelection> cases{
      {"out of range", {0, 2, 5, 1, 3, 10}, {}, "selection"},
      {"negative", {-1, 2, 5, 1, 3, 4}, {}, "selection"},
      {"repeated", {1, 2, 5, 1, 3, 3}, {}, "selection"},
      {"descending", {1, 2, 5, 4, 3, 8}, {}, "selection"},
      {"offsets past the total", {1, 2, 5, 1, 3, 8}, {0, 3, 7}, "offsets"},
      {"offsets not from 0", {1, 2, 5, 1, 3, 8}, {1, 3, 6}, "offsets"},
      {"offsets descending", {1, 2, 5, 1, 3, 8}, {0, 4, 3}, "offsets"},
      {"varlen descending", {1, 2, 5, 1, 3, 2}, {0, 2, 6}, "selection"},
  };
  for (const BadSelection& bad : cases) {
    SCOPED_TRACE(bad.name);
    DeviceTensor cache(random_tensor(10, 2, 16, DType::kBF16, Packing::kTokensHeadsDim, 4));
    DeviceBuffer<std::int32_t> indices(bad.indices);
    DeviceBuffer<unsigned char> workspace;
    Status s;
    if (bad.offsets.empty()) {
      capkv::cuda::CompactInPlace::Arguments a;
      a.cache = mutable_view(cache.view());
      a.indices = indices.get();
      a.indices_ld = 3;
      a.kept = 3;
      s = run_launcher<capkv::cuda::CompactInPlace>(a, workspace);
    } else {
      DeviceBuffer<std::int64_t> offsets(bad.offsets);
      capkv::cuda::CompactInPlaceVarlen::Arguments a;
      a.cache = mutable_view(cache.view());
      a.indices = indices.get();
      a.offsets = offsets.get();
      a.total = 6;
      s = run_launcher<capkv::cuda::CompactInPlaceVarlen>(a, workspace);
    }
    ASSERT_TRUE(s.ok()) << s.to_string();
    const Status device = capkv::cuda::read_status(workspace.get(), nullptr);
    EXPECT_EQ(device.code(), StatusCode::kBadInput);
    EXPECT_STREQ(device.argument(), bad.argument) << device.to_string();
    EXPECT_EQ(cache.device.download(), cache.host.bytes());
  }
}

// ---------------------------------------------------------------------------------------------
// Host-side contract, no device needed.

TEST(CompactInPlaceContract, ArgumentsAreCheckedBeforeAnyWork) {
  const capkv::MutableTensorView cache(fake_device_pointer<void>(), DType::kF16,
                                       capkv::Layout::kHeadsTokensDim, 100, 4, 64);
  capkv::cuda::CompactInPlace::Arguments a;
  a.cache = cache;
  a.indices = fake_device_pointer<std::int32_t>();
  a.indices_ld = 30;
  a.kept = 30;
  EXPECT_TRUE(capkv::cuda::CompactInPlace::can_implement(a).ok());
  const std::size_t bytes = capkv::cuda::CompactInPlace::workspace_size(a);
  EXPECT_TRUE(bytes > 0 && bytes % capkv::cuda::WorkspaceCarver::kAlignment == 0);
  EXPECT_EQ(capkv::cuda::CompactInPlace::run(a, nullptr, 0, nullptr).code(),
            StatusCode::kWorkspaceTooSmall);
  a.kept = 101;
  a.indices_ld = 101;
  EXPECT_STREQ(capkv::cuda::CompactInPlace::can_implement(a).argument(), "kept");
  a.kept = 30;
  a.indices_ld = 29;
  EXPECT_STREQ(capkv::cuda::CompactInPlace::can_implement(a).argument(), "indices_ld");
  a.indices_ld = 30;
  a.indices = nullptr;
  EXPECT_STREQ(capkv::cuda::CompactInPlace::can_implement(a).argument(), "indices");
  a.indices = fake_device_pointer<std::int32_t>();
  a.cache = capkv::MutableTensorView(fake_device_pointer<void>(), DType::kF16, 100, 4, 64,
                                     {64, 64, 1});  // heads alias tokens
  EXPECT_STREQ(capkv::cuda::CompactInPlace::can_implement(a).argument(), "cache");

  capkv::cuda::CompactInPlaceVarlen::Arguments v;
  v.cache = cache;
  v.indices = fake_device_pointer<std::int32_t>();
  v.offsets = fake_device_pointer<std::int64_t>();
  v.total = 400;
  EXPECT_TRUE(capkv::cuda::CompactInPlaceVarlen::can_implement(v).ok());
  v.total = 401;
  EXPECT_STREQ(capkv::cuda::CompactInPlaceVarlen::can_implement(v).argument(), "total");
  v.total = 10;
  v.offsets = nullptr;
  EXPECT_STREQ(capkv::cuda::CompactInPlaceVarlen::can_implement(v).argument(), "offsets");
}

TEST(CompactInPlaceContract, FlagsNameTheArgument) {
  EXPECT_STREQ(capkv::cuda::status_from_flags(capkv::cuda::kSelectionNotAscending).argument(),
               "selection");
  EXPECT_STREQ(capkv::cuda::status_from_flags(capkv::cuda::kOffsetsInvalid).argument(), "offsets");
  EXPECT_EQ(capkv::cuda::status_from_flags(capkv::cuda::kSelectionNotAscending).code(),
            StatusCode::kBadInput);
}

}  // namespace
