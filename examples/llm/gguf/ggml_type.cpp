#include "ggml_type.hpp"

#include <array>
#include <limits>

#include "gguf_error.hpp"

namespace capkv::llm {
namespace {

struct TypeEntry {
  std::uint32_t id;
  const char* name;
  GgmlTypeTraits traits;
};

// Sizes follow ggml's type_traits table (block struct sizeof), cross-checked against gguf-py's
// GGML_QUANT_SIZES.
constexpr std::array<TypeEntry, 31> kTypes{{
    {0, "F32", {1, 4}},         {1, "F16", {1, 2}},         {2, "Q4_0", {32, 18}},
    {3, "Q4_1", {32, 20}},      {6, "Q5_0", {32, 22}},      {7, "Q5_1", {32, 24}},
    {8, "Q8_0", {32, 34}},      {10, "Q2_K", {256, 84}},    {11, "Q3_K", {256, 110}},
    {12, "Q4_K", {256, 144}},   {13, "Q5_K", {256, 176}},   {14, "Q6_K", {256, 210}},
    {15, "Q8_K", {256, 292}},   {16, "IQ2_XXS", {256, 66}}, {17, "IQ2_XS", {256, 74}},
    {18, "IQ3_XXS", {256, 98}}, {19, "IQ1_S", {256, 50}},   {20, "IQ4_NL", {32, 18}},
    {21, "IQ3_S", {256, 110}},  {22, "IQ2_S", {256, 82}},   {23, "IQ4_XS", {256, 136}},
    {24, "I8", {1, 1}},         {25, "I16", {1, 2}},        {26, "I32", {1, 4}},
    {27, "I64", {1, 8}},        {28, "F64", {1, 8}},        {29, "IQ1_M", {256, 56}},
    {30, "BF16", {1, 2}},       {34, "TQ1_0", {256, 54}},   {35, "TQ2_0", {256, 66}},
    {39, "MXFP4", {32, 17}},
}};

const TypeEntry* find_entry(std::uint32_t id) {
  for (const auto& entry : kTypes) {
    if (entry.id == id) return &entry;
  }
  return nullptr;
}

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t type_id) {
  if (const auto* entry = find_entry(type_id)) return entry->traits;
  return std::nullopt;
}

GgmlTypeTraits ggml_type_traits(GgmlType type) {
  const auto* entry = find_entry(static_cast<std::uint32_t>(type));
  if (entry == nullptr) {
    throw GgufError("unknown ggml type id " + std::to_string(static_cast<std::uint32_t>(type)));
  }
  return entry->traits;
}

std::string ggml_type_name(std::uint32_t type_id) {
  if (const auto* entry = find_entry(type_id)) return entry->name;
  return "type#" + std::to_string(type_id);
}

std::string ggml_type_name(GgmlType type) {
  return ggml_type_name(static_cast<std::uint32_t>(type));
}

std::uint64_t ggml_bytes_for(GgmlType type, std::uint64_t n_elements) {
  const GgmlTypeTraits traits = ggml_type_traits(type);
  if (n_elements % traits.block_size != 0) {
    throw GgufError(std::to_string(n_elements) + " elements are not a whole number of " +
                    ggml_type_name(type) + " blocks of " + std::to_string(traits.block_size));
  }
  const std::uint64_t blocks = n_elements / traits.block_size;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / traits.type_size) {
    throw GgufError("byte size of " + std::to_string(n_elements) + " " + ggml_type_name(type) +
                    " elements overflows 64 bits");
  }
  return blocks * traits.type_size;
}

}  // namespace capkv::llm
