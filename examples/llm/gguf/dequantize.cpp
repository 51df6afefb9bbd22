#include "dequantize.hpp"

#include <cstring>
#include <string>

#include "gguf_error.hpp"
#include "half.hpp"

namespace capkv::llm {
namespace {

// The kernels below follow ggml's block structs (ggml-common.h). Each decodes one block starting
// at `b` into `y`. Products are written in ggml's evaluation order and the target is built with
// -ffp-contract=off, because fusing d * q + m into an FMA would change the last bit.

constexpr int kQK = 32;  // elements per block of the *_0 / *_1 formats

std::uint8_t u8(const std::byte* p) { return std::to_integer<std::uint8_t>(*p); }

float f16_at(const std::byte* p) {
  std::uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return fp16_to_fp32(h);
}

std::uint32_t u32_at(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// block_q4_0 { half d; u8 qs[16]; }: x = (q - 8) * d, low nibbles first.
void block_q4_0(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const std::byte* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((u8(qs + j) & 0x0f) - 8);
    y[j + kQK / 2] = d * static_cast<float>((u8(qs + j) >> 4) - 8);
  }
}

// block_q4_1 { half d; half m; u8 qs[16]; }: x = q * d + m.
void block_q4_1(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  const std::byte* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(u8(qs + j) & 0x0f) + m;
    y[j + kQK / 2] = d * static_cast<float>(u8(qs + j) >> 4) + m;
  }
}

// block_q5_0 { half d; u8 qh[4]; u8 qs[16]; }: bit j of qh is the fifth bit of element j.
void block_q5_0(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const std::uint32_t qh = u32_at(b + 2);
  const std::byte* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (u8(qs + j) & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (u8(qs + j) >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + kQK / 2] = d * static_cast<float>(hi - 16);
  }
}

// block_q5_1 { half d; half m; u8 qh[4]; u8 qs[16]; }: x = q * d + m.
void block_q5_1(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  const std::uint32_t qh = u32_at(b + 4);
  const std::byte* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (u8(qs + j) & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (u8(qs + j) >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + kQK / 2] = d * static_cast<float>(hi) + m;
  }
}

// block_q8_0 { half d; i8 qs[32]; }: x = q * d.
void block_q8_0(const std::byte* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < kQK; ++j) {
    y[j] = static_cast<float>(static_cast<std::int8_t>(u8(b + 2 + j))) * d;
  }
}

// Q4_K packs eight 6-bit (scale, min) pairs into 12 bytes: pairs 0..3 in the low six bits of bytes
// 0..3 (scales) and 4..7 (mins); pairs 4..7 take their low four bits from bytes 8..11 and their top
// two bits from the spare high bits of bytes 0..7.
void q4_k_scale_min(int j, const std::byte* scales, int& sc, int& mn) {
  if (j < 4) {
    sc = u8(scales + j) & 63;
    mn = u8(scales + j + 4) & 63;
  } else {
    sc = (u8(scales + j + 4) & 0x0f) | ((u8(scales + j - 4) >> 6) << 4);
    mn = (u8(scales + j + 4) >> 4) | ((u8(scales + j) >> 6) << 4);
  }
}

// block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128]; }: eight sub-blocks of 32; each 32
// bytes of qs hold sub-block 2i in the low nibbles and 2i + 1 in the high nibbles;
// x = (d * sc) * q - (dmin * m).
void block_q4_k(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const std::byte* scales = b + 4;
  const std::byte* q = b + 16;
  for (int pair = 0; pair < 4; ++pair) {
    int sc0 = 0, m0 = 0, sc1 = 0, m1 = 0;
    q4_k_scale_min(2 * pair, scales, sc0, m0);
    q4_k_scale_min(2 * pair + 1, scales, sc1, m1);
    const float d0 = d * static_cast<float>(sc0);
    const float min0 = dmin * static_cast<float>(m0);
    const float d1 = d * static_cast<float>(sc1);
    const float min1 = dmin * static_cast<float>(m1);
    for (int l = 0; l < 32; ++l) y[l] = d0 * static_cast<float>(u8(q + l) & 0x0f) - min0;
    for (int l = 0; l < 32; ++l) y[32 + l] = d1 * static_cast<float>(u8(q + l) >> 4) - min1;
    q += 32;
    y += 64;
  }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }: each half of 128 elements uses 64
// bytes of ql (low four bits) and 32 of qh (two high bits each); sixteen sub-blocks of 16 with
// signed 8-bit scales; x = (d * sc) * (q - 32).
void block_q6_k(const std::byte* b, float* y) {
  const std::byte* ql = b;
  const std::byte* qh = b + 128;
  const std::byte* sc = b + 192;
  const float d = f16_at(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((u8(ql + l) & 0x0f) | (((u8(qh + l) >> 0) & 3) << 4)) - 32;
      const int q2 = ((u8(ql + l + 32) & 0x0f) | (((u8(qh + l) >> 2) & 3) << 4)) - 32;
      const int q3 = ((u8(ql + l) >> 4) | (((u8(qh + l) >> 4) & 3) << 4)) - 32;
      const int q4 = ((u8(ql + l + 32) >> 4) | (((u8(qh + l) >> 6) & 3) << 4)) - 32;
      const auto scale = [&](int k) {
        return static_cast<float>(static_cast<std::int8_t>(u8(sc + k)));
      };
      y[l] = d * scale(is + 0) * static_cast<float>(q1);
      y[l + 32] = d * scale(is + 2) * static_cast<float>(q2);
      y[l + 64] = d * scale(is + 4) * static_cast<float>(q3);
      y[l + 96] = d * scale(is + 6) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

void row_f32(const std::byte* src, float* y, std::size_t n) { std::memcpy(y, src, n * 4); }

void row_f16(const std::byte* src, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = f16_at(src + 2 * i);
}

void row_bf16(const std::byte* src, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t v;
    std::memcpy(&v, src + 2 * i, sizeof v);
    y[i] = bf16_to_fp32(v);
  }
}

using BlockKernel = void (*)(const std::byte*, float*);

BlockKernel block_kernel(GgmlType type) {
  switch (type) {
    case GgmlType::kQ4_0:
      return block_q4_0;
    case GgmlType::kQ4_1:
      return block_q4_1;
    case GgmlType::kQ5_0:
      return block_q5_0;
    case GgmlType::kQ5_1:
      return block_q5_1;
    case GgmlType::kQ8_0:
      return block_q8_0;
    case GgmlType::kQ4_K:
      return block_q4_k;
    case GgmlType::kQ6_K:
      return block_q6_k;
    default:
      return nullptr;
  }
}

[[noreturn]] void throw_unsupported(GgmlType type, const std::string& context) {
  throw GgufError(context + "ggml type " + ggml_type_name(type) +
                  " is not supported by the dequantizer (supported: F32, F16, BF16, Q4_0, Q4_1, "
                  "Q5_0, Q5_1, Q8_0, Q4_K, Q6_K)");
}

}  // namespace

bool dequantize_supported(GgmlType type) {
  return type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16 ||
         block_kernel(type) != nullptr;
}

void dequantize(GgmlType type, std::span<const std::byte> src, std::span<float> out) {
  if (!dequantize_supported(type)) throw_unsupported(type, "");
  // Validates that out.size() is whole blocks and computes the exact byte count.
  const std::uint64_t need = ggml_bytes_for(type, out.size());
  if (src.size() != need) {
    throw GgufError(std::to_string(out.size()) + " " + ggml_type_name(type) + " elements take " +
                    std::to_string(need) + " bytes, got " + std::to_string(src.size()));
  }
  switch (type) {
    case GgmlType::kF32:
      row_f32(src.data(), out.data(), out.size());
      return;
    case GgmlType::kF16:
      row_f16(src.data(), out.data(), out.size());
      return;
    case GgmlType::kBF16:
      row_bf16(src.data(), out.data(), out.size());
      return;
    default:
      break;
  }
  const GgmlTypeTraits traits = ggml_type_traits(type);
  const BlockKernel kernel = block_kernel(type);
  const std::size_t n_blocks = out.size() / traits.block_size;
  for (std::size_t i = 0; i < n_blocks; ++i) {
    kernel(src.data() + i * traits.type_size, out.data() + i * traits.block_size);
  }
}

void dequantize_rows(const GgufFile& file, const GgufTensorInfo& info, std::uint64_t first_row,
                     std::span<float> out) {
  const std::string context = "tensor " + gguf_quote(info.name) + ": ";
  if (!dequantize_supported(info.type)) throw_unsupported(info.type, context);
  const std::uint64_t row_length = info.row_length();
  const std::uint64_t n_rows = info.n_rows();
  if (row_length == 0 || out.size() % row_length != 0) {
    throw GgufError(context + "output of " + std::to_string(out.size()) +
                    " floats is not a whole number of rows of " + std::to_string(row_length));
  }
  const std::uint64_t count = out.size() / row_length;
  if (first_row > n_rows || count > n_rows - first_row) {
    throw GgufError(context + "rows [" + std::to_string(first_row) + ", " +
                    std::to_string(first_row) + " + " + std::to_string(count) +
                    ") are out of range (" + std::to_string(n_rows) + " rows)");
  }
  const std::uint64_t row_bytes = info.row_bytes();
  const auto data = file.tensor_data(info);
  try {
    dequantize(info.type, data.subspan(first_row * row_bytes, count * row_bytes), out);
  } catch (const GgufError& e) {
    throw GgufError(context + e.what());
  }
}

std::vector<float> dequantize_tensor(const GgufFile& file, const GgufTensorInfo& info) {
  if (!dequantize_supported(info.type)) {
    throw_unsupported(info.type, "tensor " + gguf_quote(info.name) + ": ");
  }
  std::vector<float> out(info.n_elements);
  if (!out.empty()) dequantize_rows(file, info, 0, out);
  return out;
}

}  // namespace capkv::llm
