#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ggml_type.hpp"

namespace capkv::llm {

// One tensor's directory entry, already validated against the file: its data lies entirely inside
// the file and its sizes did not overflow.
struct GgufTensorInfo {
  std::string name;
  GgmlType type;
  // ne[0], ne[1], ...: ne[0] is the contiguous axis, so a 2-D weight with shape {in, out} stores
  // `out` rows of `in` elements each (row-major out x in).
  std::vector<std::uint64_t> shape;
  // Relative to the start of the data section (GgufFile::data_offset()).
  std::uint64_t offset = 0;
  std::uint64_t n_elements = 0;
  std::uint64_t n_bytes = 0;

  // Elements per row (ne[0]) and the number of rows (the product of the other axes).
  std::uint64_t row_length() const { return shape.empty() ? 1 : shape[0]; }
  std::uint64_t n_rows() const { return row_length() == 0 ? 0 : n_elements / row_length(); }
  std::uint64_t row_bytes() const { return ggml_bytes_for(type, row_length()); }
};

}  // namespace capkv::llm
