// Each dequantizer against a float64 reference. Blocks are packed by hand from known quantized
// values and scales, following the block layouts; the reference then evaluates the formula on
// those known values, so a wrong nibble order, bit position or scale unpacking shows up directly.

#include "gguf/dequantize.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gguf/half.hpp"
#include "gguf_writer.hpp"

namespace capkv::llm {
namespace {

using testing::GgufWriter;

// binary16 decoded the textbook way, in double.
double ref_f16(std::uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exponent = (h >> 10) & 31;
  const int mantissa = h & 1023;
  if (exponent == 31) {
    return mantissa ? std::numeric_limits<double>::quiet_NaN()
                    : sign * std::numeric_limits<double>::infinity();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// Known inputs for one tensor row, plus the reference and a per-element error bound for float32
// evaluation (a few roundings of the magnitudes involved).
struct Case {
  Case(GgmlType t, std::size_t count) : type(t), n(count) {}
  GgmlType type;
  std::size_t n;
  std::vector<std::byte> bytes;
  std::vector<double> ref;
  std::vector<double> tol;
};

class Packer {
 public:
  explicit Packer(std::uint32_t seed) : rng_(seed) {}

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  // A random finite binary16 scale. Block 0 of every row uses 1.0 and block 1 a subnormal, so the
  // exact and the denormal paths are always covered.
  std::uint16_t scale(std::size_t block, bool allow_negative) {
    if (block == 0) return 0x3c00;
    if (block == 1) return static_cast<std::uint16_t>(uniform(1, 1023));
    const int sign = allow_negative && uniform(0, 1) ? 0x8000 : 0;
    return static_cast<std::uint16_t>(sign | (uniform(5, 20) << 10) | uniform(0, 1023));
  }

  template <typename T>
  void put(std::vector<std::byte>& out, T value) {
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    out.insert(out.end(), p, p + sizeof(T));
  }

 private:
  std::mt19937 rng_;
};

constexpr double kEps = std::numeric_limits<float>::epsilon();

Case make_q4_0(std::size_t n_blocks, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kQ4_0, n_blocks * 32};
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint16_t d = p.scale(b, true);
    int q[32];
    for (int& v : q) v = p.uniform(0, 15);
    p.put(c.bytes, d);
    for (int j = 0; j < 16; ++j) p.put(c.bytes, static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4)));
    for (int i = 0; i < 32; ++i) {
      c.ref.push_back(ref_f16(d) * (q[i] - 8));
      c.tol.push_back(kEps * std::abs(ref_f16(d)) * 8);
    }
  }
  return c;
}

Case make_q4_1(std::size_t n_blocks, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kQ4_1, n_blocks * 32};
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint16_t d = p.scale(b, false);
    const std::uint16_t m = b == 0 ? 0xc800 /* -8 */ : p.scale(b + 2, true);
    int q[32];
    for (int& v : q) v = p.uniform(0, 15);
    p.put(c.bytes, d);
    p.put(c.bytes, m);
    for (int j = 0; j < 16; ++j) p.put(c.bytes, static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4)));
    for (int i = 0; i < 32; ++i) {
      c.ref.push_back(ref_f16(d) * q[i] + ref_f16(m));
      c.tol.push_back(2 * kEps * (std::abs(ref_f16(d)) * 15 + std::abs(ref_f16(m))));
    }
  }
  return c;
}

// The fifth bit of element i is bit i of the little-endian u32 qh.
std::uint32_t pack_qh(const int* q) {
  std::uint32_t qh = 0;
  for (int i = 0; i < 32; ++i) qh |= static_cast<std::uint32_t>(q[i] >> 4) << i;
  return qh;
}

Case make_q5_0(std::size_t n_blocks, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kQ5_0, n_blocks * 32};
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint16_t d = p.scale(b, true);
    int q[32];
    for (int& v : q) v = p.uniform(0, 31);
    p.put(c.bytes, d);
    p.put(c.bytes, pack_qh(q));
    for (int j = 0; j < 16; ++j) {
      p.put(c.bytes, static_cast<std::uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4)));
    }
    for (int i = 0; i < 32; ++i) {
      c.ref.push_back(ref_f16(d) * (q[i] - 16));
      c.tol.push_back(kEps * std::abs(ref_f16(d)) * 16);
    }
  }
  return c;
}

Case make_q5_1(std::size_t n_blocks, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kQ5_1, n_blocks * 32};
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint16_t d = p.scale(b, false);
    const std::uint16_t m = b == 0 ? 0xcc00 /* -16 */ : p.scale(b + 2, true);
    int q[32];
    for (int& v : q) v = p.uniform(0, 31);
    p.put(c.bytes, d);
    p.put(c.bytes, m);
    p.put(c.bytes, pack_qh(q));
    for (int j = 0; j < 16; ++j) {
      p.put(c.bytes, static_cast<std::uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4)));
    }
    for (int i = 0; i < 32; ++i) {
      c.ref.push_back(ref_f16(d) * q[i] + ref_f16(m));
      c.tol.push_back(2 * kEps * (std::abs(ref_f16(d)) * 31 + std::abs(ref_f16(m))));
    }
  }
  return c;
}

Case make_q8_0(std::size_t n_blocks, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kQ8_0, n_blocks * 32};
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint16_t d = p.scale(b, true);
    p.put(c.bytes, d);
    for (int i = 0; i < 32; ++i) {
      const int q = i == 0 ? -128 : i == 1 ? 127 : p.uniform(-128, 127);
      p.put(c.bytes, static_cast<std::int8_t>(q));
      c.ref.push_back(ref_f16(d) * q);
      c.tol.push_back(kEps * std::abs(ref_f16(d)) * 128);
    }
  }
  return c;
}

Case make_q4_k(std::size_t n_blocks, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kQ4_K, n_blocks * 256};
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint16_t d = p.scale(b, false);
    const std::uint16_t dmin = p.scale(b + 2, false);
    int sc[8], mn[8], q[256];
    for (int j = 0; j < 8; ++j) {
      // Extremes in the first two sub-blocks so every bit of the 6-bit packing is exercised.
      sc[j] = j == 0 ? 63 : j == 4 ? 48 : p.uniform(0, 63);
      mn[j] = j == 1 ? 63 : j == 5 ? 33 : p.uniform(0, 63);
    }
    for (int& v : q) v = p.uniform(0, 15);
    p.put(c.bytes, d);
    p.put(c.bytes, dmin);
    // Sub-blocks 0..3: six bits in bytes 0..3 (scale) and 4..7 (min). Sub-blocks 4..7: low four
    // bits in bytes 8..11 (scale low nibble, min high nibble), top two bits in bits 6..7 of bytes
    // 0..3 (scale) and 4..7 (min).
    std::uint8_t packed[12];
    for (int j = 0; j < 4; ++j) {
      packed[j] = static_cast<std::uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
      packed[j + 4] = static_cast<std::uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
      packed[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (std::uint8_t v : packed) p.put(c.bytes, v);
    // Element i sits in sub-block s = i / 32; sub-blocks 2k and 2k + 1 share bytes 32k..32k + 31,
    // the even one in the low nibbles.
    std::uint8_t qs[128] = {};
    for (int i = 0; i < 256; ++i) {
      const int s = i / 32;
      const int byte = (s / 2) * 32 + i % 32;
      qs[byte] |= static_cast<std::uint8_t>(s % 2 ? q[i] << 4 : q[i]);
    }
    for (std::uint8_t v : qs) p.put(c.bytes, v);
    for (int i = 0; i < 256; ++i) {
      const int s = i / 32;
      const double scale = ref_f16(d) * sc[s];
      const double offset = ref_f16(dmin) * mn[s];
      c.ref.push_back(scale * q[i] - offset);
      c.tol.push_back(3 * kEps * (std::abs(scale) * 15 + std::abs(offset)));
    }
  }
  return c;
}

Case make_q6_k(std::size_t n_blocks, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kQ6_K, n_blocks * 256};
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint16_t d = p.scale(b, true);
    int q[256], sc[16];
    for (int& v : q) v = p.uniform(0, 63);
    q[0] = 63;
    q[255] = 0;
    for (int j = 0; j < 16; ++j) sc[j] = j == 0 ? -128 : j == 15 ? 127 : p.uniform(-128, 127);
    // Each half of 128 elements: element r = 32k + l has its low four bits in ql[64h + 32(k % 2)
    // + l] (low nibble for k < 2, high for k >= 2) and its top two bits at bit 2k of qh[32h + l].
    std::uint8_t ql[128] = {}, qh[64] = {};
    for (int i = 0; i < 256; ++i) {
      const int h = i / 128, k = (i % 128) / 32, l = i % 32;
      ql[64 * h + 32 * (k % 2) + l] |= static_cast<std::uint8_t>((q[i] & 15) << (k >= 2 ? 4 : 0));
      qh[32 * h + l] |= static_cast<std::uint8_t>((q[i] >> 4) << (2 * k));
    }
    for (std::uint8_t v : ql) p.put(c.bytes, v);
    for (std::uint8_t v : qh) p.put(c.bytes, v);
    for (int v : sc) p.put(c.bytes, static_cast<std::int8_t>(v));
    p.put(c.bytes, d);
    for (int i = 0; i < 256; ++i) {
      const double scale = ref_f16(d) * sc[i / 16];
      c.ref.push_back(scale * (q[i] - 32));
      c.tol.push_back(2 * kEps * std::abs(scale) * 32);
    }
  }
  return c;
}

Case make_f32(std::size_t n, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kF32, n};
  for (std::size_t i = 0; i < n; ++i) {
    const float v = i == 0   ? -0.0f
                    : i == 1 ? 1e-45f
                             : static_cast<float>(p.uniform(-1000000, 1000000)) / 7.0f;
    p.put(c.bytes, v);
    c.ref.push_back(v);
    c.tol.push_back(0);
  }
  return c;
}

Case make_f16(std::size_t n, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kF16, n};
  const std::uint16_t special[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                                   0xfbff, 0x3c00, 0x7c00, 0xfc00, 0x3555};
  for (std::size_t i = 0; i < n; ++i) {
    const auto h = i < std::size(special)
                       ? special[i]
                       : static_cast<std::uint16_t>(p.uniform(0, 0xffff) & 0xfbff);
    p.put(c.bytes, h);
    c.ref.push_back(ref_f16(h));
    c.tol.push_back(0);
  }
  return c;
}

Case make_bf16(std::size_t n, std::uint32_t seed) {
  Packer p(seed);
  Case c{GgmlType::kBF16, n};
  for (std::size_t i = 0; i < n; ++i) {
    // Finite values only: sign, exponent 1..254, seven mantissa bits.
    const int sign = p.uniform(0, 1);
    const int exponent = i == 0 ? 127 : p.uniform(1, 254);
    const int mantissa = p.uniform(0, 127);
    p.put(c.bytes, static_cast<std::uint16_t>((sign << 15) | (exponent << 7) | mantissa));
    c.ref.push_back((sign ? -1.0 : 1.0) * std::ldexp(128 + mantissa, exponent - 127 - 7));
    c.tol.push_back(0);
  }
  return c;
}

using Maker = Case (*)(std::size_t, std::uint32_t);
struct TypeCase {
  const char* name;
  Maker make;
  std::size_t units_per_row;  // blocks (or elements, for the float types) in one row
};

void PrintTo(const TypeCase& t, std::ostream* os) { *os << t.name; }

class Dequantize : public ::testing::TestWithParam<TypeCase> {};

void expect_matches(const Case& c, std::span<const float> got, std::size_t first = 0) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double ref = c.ref[first + i];
    if (std::isinf(ref)) {
      EXPECT_EQ(static_cast<double>(got[i]), ref) << "element " << first + i;
    } else {
      EXPECT_NEAR(got[i], ref, c.tol[first + i]) << "element " << first + i;
    }
    if (c.tol[first + i] == 0 && ref == 0) {
      EXPECT_EQ(std::signbit(got[i]), std::signbit(ref)) << "sign of zero, element " << first + i;
    }
  }
}

TEST_P(Dequantize, BlocksMatchFloat64Reference) {
  const TypeCase& t = GetParam();
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    const Case c = t.make(t.units_per_row, seed);
    ASSERT_EQ(c.bytes.size(), ggml_bytes_for(c.type, c.n));
    std::vector<float> out(c.n);
    dequantize(c.type, c.bytes, out);
    expect_matches(c, out);
    if (HasFailure()) FAIL() << t.name << " seed " << seed;
  }
}

TEST_P(Dequantize, TensorRowsThroughAFile) {
  const TypeCase& t = GetParam();
  // Three rows of the same type, so row offsets inside the tensor matter.
  const Case c = t.make(t.units_per_row * 3, 7);
  const std::size_t row = c.n / 3;
  GgufWriter w;
  w.tensor("pad", {1}, GgmlType::kF32, std::vector<std::byte>(4, std::byte{0}));
  w.tensor("blk.0.w", {row, 3}, c.type, c.bytes);
  const auto bytes = w.bytes();
  const GgufFile f = GgufFile::parse(bytes);
  const GgufTensorInfo& info = f.tensor("blk.0.w");

  const std::vector<float> all = dequantize_tensor(f, info);
  ASSERT_EQ(all.size(), c.n);
  expect_matches(c, all);

  std::vector<float> rows(2 * row);
  dequantize_rows(f, info, 1, rows);
  expect_matches(c, rows, row);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(std::memcmp(&rows[i], &all[row + i], sizeof(float)), 0) << i;
  }

  std::vector<float> too_many(2 * row);
  EXPECT_THROW(dequantize_rows(f, info, 2, too_many), GgufError);
  std::vector<float> ragged(row + 1);
  EXPECT_THROW(dequantize_rows(f, info, 0, ragged), GgufError);
}

INSTANTIATE_TEST_SUITE_P(
    Types, Dequantize,
    ::testing::Values(TypeCase{"F32", make_f32, 67}, TypeCase{"F16", make_f16, 67},
                      TypeCase{"BF16", make_bf16, 67}, TypeCase{"Q4_0", make_q4_0, 4},
                      TypeCase{"Q4_1", make_q4_1, 4}, TypeCase{"Q5_0", make_q5_0, 4},
                      TypeCase{"Q5_1", make_q5_1, 4}, TypeCase{"Q8_0", make_q8_0, 4},
                      TypeCase{"Q4_K", make_q4_k, 2}, TypeCase{"Q6_K", make_q6_k, 2}),
    [](const auto& info) { return std::string(info.param.name); });

class DequantizeExact : public ::testing::TestWithParam<TypeCase> {};

TEST_P(DequantizeExact, FirstBlockIsExactWhenTheScaleIsOne) {
  // Block 0 uses d = 1 (and m = -8 / -16 for the offset formats): every output is an integer the
  // formula gives exactly, so this pins the layout without any tolerance.
  const TypeCase& t = GetParam();
  const Case c = t.make(t.units_per_row, 99);
  std::vector<float> out(c.n);
  dequantize(c.type, c.bytes, out);
  for (std::size_t i = 0; i < 32; ++i) {
    EXPECT_EQ(static_cast<double>(out[i]), c.ref[i]) << "element " << i;
    EXPECT_EQ(out[i], std::round(out[i])) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, DequantizeExact,
                         ::testing::Values(TypeCase{"Q4_0", make_q4_0, 1},
                                           TypeCase{"Q4_1", make_q4_1, 1},
                                           TypeCase{"Q5_0", make_q5_0, 1},
                                           TypeCase{"Q5_1", make_q5_1, 1},
                                           TypeCase{"Q8_0", make_q8_0, 1}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(DequantizeErrors, UnsupportedTypeNamesTensorAndType) {
  GgufWriter w;
  w.tensor("blk.3.ffn_up.weight", {256, 1}, GgmlType::kQ2_K, std::vector<std::byte>(84));
  const auto bytes = w.bytes();
  const GgufFile f = GgufFile::parse(bytes);
  EXPECT_FALSE(dequantize_supported(GgmlType::kQ2_K));
  try {
    dequantize_tensor(f, f.tensor("blk.3.ffn_up.weight"));
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'blk.3.ffn_up.weight'"), std::string::npos) << what;
    EXPECT_NE(what.find("Q2_K"), std::string::npos) << what;
    EXPECT_NE(what.find("not supported"), std::string::npos) << what;
  }
}

TEST(DequantizeErrors, SizeMismatchesThrow) {
  std::vector<std::byte> block(18);
  std::vector<float> out32(32), out31(31), out64(64);
  EXPECT_NO_THROW(dequantize(GgmlType::kQ4_0, block, out32));
  EXPECT_THROW(dequantize(GgmlType::kQ4_0, block, out31), GgufError);  // not whole blocks
  EXPECT_THROW(dequantize(GgmlType::kQ4_0, block, out64), GgufError);  // source too short
  EXPECT_THROW(dequantize(GgmlType::kF32, block, out32), GgufError);
  EXPECT_THROW(dequantize(GgmlType::kIQ2_XXS, block, out32), GgufError);
}

TEST(Half, MatchesTheTextbookDecodingForEveryBitPattern) {
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const float got = fp16_to_fp32(static_cast<std::uint16_t>(h));
    const double ref = ref_f16(static_cast<std::uint16_t>(h));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), ref) << h;
      ASSERT_EQ(std::signbit(got), std::signbit(ref)) << h;
    }
  }
}

}  // namespace
}  // namespace capkv::llm
