#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace capkv::llm {

// ggml tensor element types, with the numeric ids the GGUF format stores. Ids that ggml retired
// (4, 5, 31..33, 36..38) and those whose block layout is not settled are deliberately absent: a
// file using them is rejected at parse time because its tensor sizes cannot be validated.
enum class GgmlType : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

// Storage geometry of one type: `block_size` consecutive elements of a row are packed into
// `type_size` bytes. Rows are always a whole number of blocks.
struct GgmlTypeTraits {
  std::uint32_t block_size;
  std::uint32_t type_size;
};

// Traits of a raw type id read from a file, or nullopt when the id is not a known ggml type.
std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t type_id);
GgmlTypeTraits ggml_type_traits(GgmlType type);

// "Q4_1", "F32", ...; "type#<id>" for unknown ids so error messages stay informative.
std::string ggml_type_name(std::uint32_t type_id);
std::string ggml_type_name(GgmlType type);

// Bytes taken by `n_elements` consecutive elements of `type`. Throws GgufError when `n_elements`
// is not a multiple of the block size or the byte count overflows.
std::uint64_t ggml_bytes_for(GgmlType type, std::uint64_t n_elements);

}  // namespace capkv::llm
