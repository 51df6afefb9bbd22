// StreamingLLM: the first four tokens plus the most recent B - 4, and the key re-rotation that
// makes the kept keys' positions contiguous after compaction, in both RoPE layouts.

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "capkv/capkv.hpp"
#include "support/checks.hpp"
#include "support/random_cache.hpp"
#include "support/reference.hpp"

namespace capkv_test {
namespace {

std::vector<std::int32_t> sinks_and_recent(std::int64_t n, std::int64_t sinks,
                                           std::int64_t budget) {
  std::vector<std::int32_t> out;
  for (std::int64_t i = 0; i < n; ++i) {
    if (budget >= n || i < sinks || i >= n - (budget - sinks))
      out.push_back(static_cast<std::int32_t>(i));
  }
  return out;
}

TEST(StreamingLLM, KeepsTheSinksAndTheMostRecentTokens) {
  for (std::int64_t n : {1, 4, 5, 30, 257}) {
    const Layer l = random_layer({.n = n, .kv_heads = 3, .group = 1, .dim = 8}, n);
    for (std::int64_t budget : std::vector<std::int64_t>{0, 1, 2, 4, 5, 17, n - 1, n, n + 5}) {
      for (const capkv::StreamingLLM& policy :
           {capkv::StreamingLLM::paper(),
            capkv::StreamingLLM(capkv::StreamingLLM::Config{.sinks = 1})}) {
        SCOPED_TRACE("n " + std::to_string(n) + " budget " + std::to_string(budget) + " sinks " +
                     std::to_string(policy.config.sinks));
        if (budget < std::min(n, policy.config.sinks)) {
          // Fewer slots than sinks is a budget below the protected set: an error, not a truncation.
          try {
            capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget));
            ADD_FAILURE() << "no error";
          } catch (const capkv::Error& e) {
            EXPECT_EQ(e.argument(), "budget");
          }
          continue;
        }
        const capkv::Selection sel =
            capkv::select(policy, l.inputs(), capkv::Budget::tokens(budget));
        for (std::int64_t h = 0; h < 3; ++h) {
          EXPECT_EQ(as_vector(sel.head(h)), sinks_and_recent(n, policy.config.sinks, budget));
        }
      }
    }
  }
}

// The keys' values do not matter: a cache whose later tokens all have huge keys is treated the
// same.
TEST(StreamingLLM, IgnoresTheKeyValues) {
  Layer a = random_layer({.n = 50, .kv_heads = 2, .group = 1, .dim = 8}, 1);
  Layer b = random_layer({.n = 50, .kv_heads = 2, .group = 1, .dim = 8}, 2);
  for (float& x : b.keys.data) x *= 1000.0f;
  const auto sa =
      capkv::select(capkv::StreamingLLM(), a.inputs(), capkv::Budget::keep_fraction(0.4));
  const auto sb =
      capkv::select(capkv::StreamingLLM(), b.inputs(), capkv::Budget::keep_fraction(0.4));
  EXPECT_EQ(sa.indices, sb.indices);
  EXPECT_EQ(sa.offsets, sb.offsets);
}

struct RerotateCase {
  capkv::RopeLayout rope_layout;
  capkv::DType dtype;
  capkv::Layout out_layout;
};

// Cached keys are the pre-RoPE keys rotated at their positions 0..n-1; after compaction and
// re-rotation, slot j of every head must be its pre-RoPE key rotated at j (checked against RoPE
// from its definition in double). The tolerance: fp32 rotation is off by a few u ||k||; a
// half-precision cache is rounded twice (when cached, after re-rotation).
void check_rerotation(const RerotateCase& c, const capkv::Selection& sel, const Layer& pre,
                      const capkv::Rope& rope) {
  const std::int64_t n = pre.n(), heads = pre.kv_heads(), d = pre.dim();
  HostTensor cached(n, heads, d);
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t h = 0; h < heads; ++h)
      cached.set_row(t, h, ref::rope_rotate(pre.keys.row(t, h), t, rope));
  }
  StoredTensor source(cached, {.dtype = c.dtype});
  const std::int64_t kept = sel.kept(0);
  StoredTensor out(HostTensor(kept, heads, d), {.dtype = c.dtype, .layout = c.out_layout});
  capkv::compact(source.view(), sel, out.view());
  capkv::rerotate_kept_keys(out.view(), sel, rope);

  const double unit = c.dtype == capkv::DType::kF32   ? ref::kU32
                      : c.dtype == capkv::DType::kF16 ? 0x1.0p-11
                                                      : 0x1.0p-8;
  const capkv::TensorView result = out.view();
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t j = 0; j < kept; ++j) {
      const std::int64_t old = sel.head(h)[j];
      const Eigen::VectorXd want = ref::rope_rotate(pre.keys.row(old, h), j, rope);
      const double tol = (c.dtype == capkv::DType::kF32 ? 16.0 : 3.0) * unit * want.norm();
      for (std::int64_t i = 0; i < d; ++i) {
        ASSERT_NEAR(result.at(j, h, i), want[i], tol)
            << "head " << h << " slot " << j << " (was " << old << ") dim " << i;
      }
    }
  }
}

class Rerotation : public ::testing::TestWithParam<RerotateCase> {};

TEST_P(Rerotation, KeptKeysEqualThePreRopeKeysRotatedAtTheirNewPositions) {
  const capkv::Rope rope{10000.0, GetParam().rope_layout};
  const Layer pre = random_layer({.n = 300, .kv_heads = 2, .group = 1, .dim = 16}, 5);
  const capkv::Selection sel =
      capkv::select(capkv::StreamingLLM(), pre.inputs(), capkv::Budget::tokens(40));
  check_rerotation(GetParam(), sel, pre, rope);
}

// Heads that kept different positions (any uniform selection, here L2-norm's) are re-rotated each
// by its own deltas.
TEST_P(Rerotation, HeadsWithDifferentKeptPositions) {
  const capkv::Rope rope{500000.0, GetParam().rope_layout};
  const Layer pre = random_layer({.n = 120, .kv_heads = 3, .group = 1, .dim = 8}, 6);
  const capkv::Selection sel =
      capkv::select(capkv::L2Norm(), pre.inputs(), capkv::Budget::tokens(30));
  ASSERT_NE(as_vector(sel.head(0)), as_vector(sel.head(1)));
  check_rerotation(GetParam(), sel, pre, rope);
}

INSTANTIATE_TEST_SUITE_P(
    LayoutsAndDtypes, Rerotation,
    ::testing::Values(
        RerotateCase{capkv::RopeLayout::kHalf, capkv::DType::kF32, capkv::Layout::kTokensHeadsDim},
        RerotateCase{capkv::RopeLayout::kInterleaved, capkv::DType::kF32,
                     capkv::Layout::kTokensHeadsDim},
        RerotateCase{capkv::RopeLayout::kHalf, capkv::DType::kF32, capkv::Layout::kHeadsTokensDim},
        RerotateCase{capkv::RopeLayout::kInterleaved, capkv::DType::kF32,
                     capkv::Layout::kHeadsTokensDim},
        RerotateCase{capkv::RopeLayout::kHalf, capkv::DType::kF16, capkv::Layout::kTokensHeadsDim},
        RerotateCase{capkv::RopeLayout::kInterleaved, capkv::DType::kBF16,
                     capkv::Layout::kHeadsTokensDim}),
    [](const ::testing::TestParamInfo<RerotateCase>& info) {
      const auto& c = info.param;
      return std::string(c.rope_layout == capkv::RopeLayout::kHalf ? "Half" : "Interleaved") + "_" +
             std::string(capkv::name_of(c.dtype)) + "_" +
             (c.out_layout == capkv::Layout::kTokensHeadsDim ? "TokensHeadsDim" : "HeadsTokensDim");
    });

// An engine compacts in place and re-rotates the first B rows of its own cache through a view of
// them (same strides as the whole cache).
TEST(StreamingLLM, RerotationAfterInPlaceCompaction) {
  const capkv::Rope rope{10000.0, capkv::RopeLayout::kHalf};
  const Layer pre = random_layer({.n = 100, .kv_heads = 2, .group = 1, .dim = 8}, 8);
  Layer cached = pre;
  for (std::int64_t t = 0; t < 100; ++t) {
    for (std::int64_t h = 0; h < 2; ++h) {
      cached.keys.set_row(t, h, ref::rope_rotate(pre.keys.row(t, h), t, rope));
    }
  }
  const capkv::Selection sel =
      capkv::select(capkv::StreamingLLM(), cached.inputs(), capkv::Budget::tokens(20));
  const capkv::MutableTensorView whole(cached.keys.data.data(), capkv::DType::kF32,
                                       capkv::Layout::kTokensHeadsDim, 100, 2, 8);
  capkv::compact_in_place(whole, sel);
  const capkv::MutableTensorView front(cached.keys.data.data(), capkv::DType::kF32, 20, 2, 8,
                                       whole.strides());
  capkv::rerotate_kept_keys(front, sel, rope);
  for (std::int64_t h = 0; h < 2; ++h) {
    for (std::int64_t j = 0; j < 20; ++j) {
      const Eigen::VectorXd want = ref::rope_rotate(pre.keys.row(sel.head(h)[j], h), j, rope);
      EXPECT_LT((cached.keys.row(j, h) - want).norm(), 16 * ref::kU32 * want.norm())
          << "head " << h << " slot " << j;
    }
  }
}

}  // namespace
}  // namespace capkv_test
