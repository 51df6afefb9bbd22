#pragma once

// The two-term bf16 split that lets the tensor-core kernels (kernels/weighted_gram_mma.cuh,
// kernels/leverage_mma.cuh) keep about 16 significant bits where one bf16 operand keeps 8:
//   x = hi + lo + r,  hi = bf16(x),  lo = bf16(x - hi),  |r| <= 2^-17 |x|
// (|x - hi| < 2^-8 |x| rounds at 8 significant bits, so lo's own rounding is half a unit of the
// 8th bit below that). When one operand b is exact in bf16 (a bf16 cache), a b = hi_a b + lo_a b
// is off by 2^-17 |a b|. When b splits exactly (an fp16 cache) and the kernels keep three of the
// four products, hi_a hi_b + hi_a lo_b + lo_a hi_b, the dropped lo_a lo_b adds up to 2^-16 |a b|
// (|lo| can come within a hair of 2^-8 |x|): 3 * 2^-17 in all.
// Every fp16 value splits exactly (11 significant bits = 8 + at most 3, exponent within range), so
// fp16 caches lose nothing to the split of the basis itself.
// The kernels and the CPU tests run these same functions.

#include <cstdint>
#include <cstring>

#include "capkv/device/host_device.hpp"

namespace capkv::device {

// Bound on |x - hi - lo| relative to |x|, for |x| above bf16's smallest normal (1.2e-38).
inline constexpr double kBf16SplitError = 1.0 / 131072.0;
// Bound on the error of a three-product split product relative to |a b| (see above).
inline constexpr double kBf16ThreeProductError = 3.0 * kBf16SplitError;

CAPKV_HOST_DEVICE inline std::uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}

CAPKV_HOST_DEVICE inline float bits_float(std::uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

// x rounded to the nearest bf16 (ties to even), returned as the float of the same value, so host
// code needs no bf16 type. NaN and Inf pass through (the kernels flag them before they get here).
// A finite x beyond bf16's largest finite value (|x| > 3.3961e38) is truncated to it instead of
// rounding to Inf, so the split stays finite (hi + lo then carries x to 2^-8, not 2^-17).
CAPKV_HOST_DEVICE inline float round_to_bf16(float x) {
  const std::uint32_t bits = float_bits(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return x;
  const std::uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  if ((rounded & 0x7f800000u) == 0x7f800000u) return bits_float(bits & 0xffff0000u);
  return bits_float(rounded);
}

struct Bf16Pair {
  float hi = 0.0f;  // both exactly representable in bf16
  float lo = 0.0f;
};

CAPKV_HOST_DEVICE inline Bf16Pair split_bf16(float x) {
  const float hi = round_to_bf16(x);
  // Exact in fp32: hi is within half a bf16 ulp of x, so x - hi has at most 16 significant bits.
  return {hi, round_to_bf16(x - hi)};
}

}  // namespace capkv::device
