// The two-term bf16 split the tensor-core kernels run (include/capkv/device/bf16_split.hpp), on the
// CPU: rounding matches the bf16 conversion of capkv/core/dtype.hpp, both parts are bf16 values,
// the split error stays within its stated 2^-17 bound, and every fp16 value splits exactly.

#include "capkv/device/bf16_split.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "capkv/core/dtype.hpp"

namespace {

namespace dev = capkv::device;

bool is_bf16_value(float x) { return (dev::float_bits(x) & 0xffffu) == 0u; }

TEST(Bf16Split, RoundingAgreesWithTheLibraryConversionOnEveryExponent) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::uint32_t> bits;
  int checked = 0;
  for (int i = 0; i < 1000000; ++i) {
    const float x = dev::bits_float(bits(rng));
    if (!std::isfinite(x)) continue;
    float want = capkv::bf16_to_float(capkv::float_to_bf16(x));
    // The one intended difference: past bf16's largest finite value the split truncates to it.
    if (std::isinf(want)) want = dev::bits_float(dev::float_bits(x) & 0xffff0000u);
    const float got = dev::round_to_bf16(x);
    ASSERT_EQ(dev::float_bits(got), dev::float_bits(want)) << x;
    ++checked;
  }
  EXPECT_GT(checked, 990000);
}

TEST(Bf16Split, TiesGoToEven) {
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to the even 1. 1 + 3 * 2^-8: up to 1 + 2^-6.
  EXPECT_EQ(dev::round_to_bf16(1.0f + 0x1.0p-8f), 1.0f);
  EXPECT_EQ(dev::round_to_bf16(1.0f + 3 * 0x1.0p-8f), 1.0f + 0x1.0p-6f);
  EXPECT_EQ(dev::round_to_bf16(-(1.0f + 0x1.0p-8f)), -1.0f);
}

TEST(Bf16Split, TheLargestFloatsStayFinite) {
  const float top = std::numeric_limits<float>::max();
  for (float x : {top, -top, 3.3962e38f, -3.3962e38f}) {
    const dev::Bf16Pair s = dev::split_bf16(x);
    ASSERT_TRUE(std::isfinite(s.hi) && std::isfinite(s.lo)) << x;
    ASSERT_TRUE(is_bf16_value(s.hi) && is_bf16_value(s.lo)) << x;
    EXPECT_LE(std::abs(double(x) - s.hi - s.lo), 0x1.0p-8 * std::abs(double(x))) << x;
  }
}

TEST(Bf16Split, ThreeOfFourProductsOfFp16AndFp32StayWithinTheirBound) {
  // The worst case of the dropped lo x lo term: both low parts close to 2^-8 of their values.
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<std::uint32_t> half_bits(0, 0x7bff);  // finite positive fp16
  std::uniform_int_distribution<std::uint32_t> mantissa(0, 0x7fffff);
  double worst = 0.0;
  for (int i = 0; i < 2000000; ++i) {
    const float b = capkv::half_to_float(static_cast<std::uint16_t>(half_bits(rng)));
    const float a = dev::bits_float(0x3f800000u | mantissa(rng));  // [1, 2)
    if (b < 1e-3f) continue;  // stay clear of fp16 subnormals, where b has fewer bits anyway
    const dev::Bf16Pair sa = dev::split_bf16(a);
    const dev::Bf16Pair sb = dev::split_bf16(b);
    const double three = double(sa.hi) * sb.hi + double(sa.hi) * sb.lo + double(sa.lo) * sb.hi;
    const double exact = double(a) * b;
    worst = std::max(worst, std::abs(three - exact) / exact);
    ASSERT_LE(std::abs(three - exact), dev::kBf16ThreeProductError * exact) << a << " * " << b;
  }
  EXPECT_GT(worst, dev::kBf16SplitError);  // the dropped term is what dominates
}

TEST(Bf16Split, NonFiniteValuesPassThrough) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(dev::round_to_bf16(inf), inf);
  EXPECT_EQ(dev::round_to_bf16(-inf), -inf);
  EXPECT_TRUE(std::isnan(dev::round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
}

TEST(Bf16Split, PartsAreBf16AndTheRemainderIsWithinTheBound) {
  std::mt19937_64 rng(2);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> exponent(-100, 100);
  double worst = 0.0;
  for (int i = 0; i < 1000000; ++i) {
    const float x = std::ldexp(normal(rng), exponent(rng));
    const dev::Bf16Pair s = dev::split_bf16(x);
    ASSERT_TRUE(is_bf16_value(s.hi)) << x;
    ASSERT_TRUE(is_bf16_value(s.lo)) << x;
    ASSERT_EQ(s.hi, dev::round_to_bf16(x));
    const double remainder = static_cast<double>(x) - s.hi - s.lo;
    if (x != 0.0f) worst = std::max(worst, std::abs(remainder) / std::abs(double(x)));
    ASSERT_LE(std::abs(remainder), dev::kBf16SplitError * std::abs(double(x))) << x;
  }
  // The bound is tight to within a factor of 2: the split keeps 17 bits, not more.
  EXPECT_GT(worst, dev::kBf16SplitError / 2);
}

TEST(Bf16Split, EveryFiniteFp16ValueSplitsExactly) {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const float x = capkv::half_to_float(static_cast<std::uint16_t>(bits));
    if (!std::isfinite(x)) continue;
    const dev::Bf16Pair s = dev::split_bf16(x);
    ASSERT_EQ(static_cast<double>(s.hi) + s.lo, static_cast<double>(x)) << "fp16 bits " << bits;
  }
}

TEST(Bf16Split, Bf16ValuesHaveNoLowPart) {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const float x = dev::bits_float(bits << 16);
    if (!std::isfinite(x)) continue;
    const dev::Bf16Pair s = dev::split_bf16(x);
    ASSERT_EQ(dev::float_bits(s.hi), dev::float_bits(x));
    ASSERT_EQ(s.lo, 0.0f);
  }
}

}  // namespace
