#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "capkv/core/tensor_view.hpp"

namespace capkv {
namespace {

float value(std::int64_t t, std::int64_t h, std::int64_t i) { return 100.0f * t + 10.0f * h + i; }

TEST(TensorView, BothPackedLayoutsAddressTheSameLogicalElements) {
  const std::int64_t n = 5, heads = 3, d = 4;
  std::vector<float> thd(n * heads * d), htd(n * heads * d);
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < d; ++i) {
        thd[(t * heads + h) * d + i] = value(t, h, i);
        htd[(h * n + t) * d + i] = value(t, h, i);
      }
  const TensorView a(thd.data(), DType::kF32, Layout::kTokensHeadsDim, n, heads, d);
  const TensorView b(htd.data(), DType::kF32, Layout::kHeadsTokensDim, n, heads, d);
  a.validate("a");
  b.validate("b");
  std::vector<float> row(d);
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t h = 0; h < heads; ++h) {
      b.load_row(t, h, row.data());
      for (std::int64_t i = 0; i < d; ++i) {
        EXPECT_EQ(a.at(t, h, i), value(t, h, i));
        EXPECT_EQ(row[i], value(t, h, i));
      }
    }
}

TEST(TensorView, StridedHalfPrecisionViewsConvertOnLoad) {
  // A paged-cache-like view: token stride padded, dim stride 2 (every other element).
  const std::int64_t n = 3, heads = 2, d = 4;
  const Strides s{.token = 40, .head = 12, .dim = 2};
  std::vector<std::uint16_t> f16(120, 0xffff), bf16(120, 0xffff);  // 0xffff is NaN: never read
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < d; ++i) {
        f16[t * s.token + h * s.head + i * s.dim] = float_to_half(value(t, h, i) / 8);
        bf16[t * s.token + h * s.head + i * s.dim] = float_to_bf16(value(t, h, i));
      }
  const TensorView a(f16.data(), DType::kF16, n, heads, d, s);
  const TensorView b = TensorView(bf16.data(), DType::kBF16, n, heads, d, s).with_extent(120);
  a.validate("a");
  b.validate("b");
  std::vector<float> row(d);
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t h = 0; h < heads; ++h) {
      a.load_row(t, h, row.data());
      for (std::int64_t i = 0; i < d; ++i) {
        EXPECT_EQ(row[i], half_to_float(float_to_half(value(t, h, i) / 8)));
        EXPECT_EQ(b.at(t, h, i), bf16_to_float(float_to_bf16(value(t, h, i))));
      }
    }
}

struct BadView {
  const char* why;
  std::int64_t n, heads, d;
  Strides strides;
  std::int64_t extent;
};

class TensorViewRejects : public testing::TestWithParam<BadView> {};

TEST_P(TensorViewRejects, WithTheArgumentName) {
  const BadView& c = GetParam();
  std::vector<float> buffer(64);
  const TensorView v = TensorView(buffer.data(), DType::kF32, c.n, c.heads, c.d, c.strides)
                           .with_extent(c.extent);
  try {
    v.validate("keys");
    FAIL() << "accepted: " << c.why;
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "keys") << c.why;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, TensorViewRejects,
    testing::Values(BadView{"negative tokens", -1, 1, 4, {4, 4, 1}, 64},
                    BadView{"no heads", 2, 0, 4, {4, 4, 1}, 64},
                    BadView{"no dim", 2, 1, 0, {4, 4, 1}, 64},
                    BadView{"rows overlap", 4, 1, 4, {2, 16, 1}, 64},
                    BadView{"heads alias", 2, 2, 4, {8, 0, 1}, 64},
                    BadView{"negative stride", 2, 1, 4, {-4, 4, 1}, 64},
                    BadView{"past the buffer", 4, 2, 8, {16, 8, 1}, 63},
                    BadView{"dim stride overlaps heads", 2, 2, 4, {16, 2, 1}, 64}));

TEST(TensorView, AcceptsPaddedAndEmptyViews) {
  std::vector<float> buffer(64);
  TensorView(buffer.data(), DType::kF32, 4, 2, 4, Strides{16, 4, 1}).with_extent(64).validate("k");
  TensorView(buffer.data(), DType::kF32, 2, 2, 4, Strides{1, 2, 4}).with_extent(64).validate("k");
  TensorView(nullptr, DType::kF32, Layout::kTokensHeadsDim, 0, 2, 4).validate("k");
  EXPECT_THROW(TensorView(nullptr, DType::kF32, Layout::kTokensHeadsDim, 1, 2, 4).validate("k"), Error);
}

TEST(TensorView, MutableViewStoresInItsOwnDtype) {
  std::vector<std::uint16_t> buffer(8);
  const MutableTensorView v(buffer.data(), DType::kBF16, Layout::kTokensHeadsDim, 2, 1, 4);
  v.store(1, 0, 2, 3.25f);
  EXPECT_EQ(buffer[6], float_to_bf16(3.25f));
  EXPECT_EQ(v.at(1, 0, 2), 3.25f);
}

}  // namespace
}  // namespace capkv
