#pragma once

// The two-term bf16 split that lets the tensor-core kernels (kernels/weighted_gram_mma.cuh,
// kernels/leverage_mma.cuh) keep about 16 significant bits where one bf16 operand keeps 8:
//   x = hi + lo + r,  hi = bf16(x),  lo = bf16(x - hi),  |r| <= 2^-17 |x|
// (|x - hi| < 2^-8 |x| rounds at 8 significant bits, so lo's own rounding is half a unit of the
// 8th bit below that). A product a * b of two split operands is hi_a hi_b + hi_a lo_b + lo_a hi_b
// up to 2^-17 (|a b| + |a b|) + 2^-18 |a b| (the dropped lo_a lo_b), and when one operand is
// exact in bf16 (a bf16 cache) two products carry only the other's 2^-17.
// Every fp16 value splits exactly (11 significant bits = 8 + at most 3, exponent within range), so
// fp16 caches lose nothing to the split of the basis itself.
// The kernels and the CPU tests run these same functions.

#include <cstdint>
#include <cstring>

#include "capkv/device/host_device.hpp"

namespace capkv::device {

// Bound on |x - hi - lo| relative to |x|, for |x| above bf16's smallest normal (1.2e-38).
inline constexpr double kBf16SplitError = 1.0 / 131072.0;

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
CAPKV_HOST_DEVICE inline float round_to_bf16(float x) {
  std::uint32_t bits = float_bits(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return x;
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return bits_float(bits & 0xffff0000u);
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
