#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "capkv/core/dtype.hpp"

namespace capkv {
namespace {

// Every binary16 value converts to the float of the same value: checked against the formula
// (-1)^s * 2^(e-15) * (1 + m/1024), the subnormal one, and the specials.
TEST(Dtype, HalfToFloatIsExactForAllBitPatterns) {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const int sign = (h >> 15) ? -1 : 1;
    const int e = (h >> 10) & 0x1f;
    const int m = h & 0x3ff;
    const float got = half_to_float(h);
    if (e == 0x1f) {
      if (m == 0) EXPECT_EQ(got, sign * std::numeric_limits<float>::infinity());
      else EXPECT_TRUE(std::isnan(got));
      continue;
    }
    const double expected = e == 0 ? sign * std::ldexp(m / 1024.0, -14)
                                   : sign * std::ldexp(1.0 + m / 1024.0, e - 15);
    ASSERT_EQ(static_cast<double>(got), expected) << "bits " << bits;
  }
}

TEST(Dtype, FloatToHalfRoundTripsAndRoundsToNearestEven) {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const float f = half_to_float(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), h) << "bits " << bits;
  }
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half(1e6f), 0x7c00);
  EXPECT_EQ(float_to_half(-1e-10f), 0x8000);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
}

TEST(Dtype, Bf16IsTheHighHalfOfFloatWithNearestEven) {
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(-3.5f)), -3.5f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even.
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))),
            1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  for (std::uint32_t bits = 0; bits < 0x10000u; bits += 7) {
    const float f = bf16_to_float(static_cast<std::uint16_t>(bits));
    if (!std::isnan(f)) ASSERT_EQ(float_to_bf16(f), bits);
  }
}

}  // namespace
}  // namespace capkv
