#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ggml_type.hpp"
#include "gguf_file.hpp"
#include "gguf_tensor_info.hpp"

namespace capkv::llm {

// Whether dequantize() decodes `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K.
bool dequantize_supported(GgmlType type);

// Decodes out.size() consecutive elements of `type` from `src` into float. out.size() must be a
// multiple of the block size and src.size() exactly the bytes those elements take. Arithmetic is
// plain float32 in the order ggml (and gguf-py's numpy reference) use, so results are bit-exact.
// Throws GgufError for unsupported types or mismatched sizes.
void dequantize(GgmlType type, std::span<const std::byte> src, std::span<float> out);

// Rows [first_row, first_row + out.size() / row_length) of `info` (seen as n_rows x ne[0]).
// Throws GgufError naming the tensor for unsupported types or out-of-range rows.
void dequantize_rows(const GgufFile& file, const GgufTensorInfo& info, std::uint64_t first_row,
                     std::span<float> out);

// The whole tensor, row-major in ggml order (ne[0] fastest).
std::vector<float> dequantize_tensor(const GgufFile& file, const GgufTensorInfo& info);

}  // namespace capkv::llm
