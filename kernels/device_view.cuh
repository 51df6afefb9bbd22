#pragma once

// How kernels read the caller's tensors: a capkv::TensorView flattened into a trivially copyable
// kernel argument, element loads in fp32/fp16/bf16 with any strides, and the cooperative load of a
// [rows, dim] tile of one head into shared memory as fp32 that most kernels start with.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "capkv/core/dtype.hpp"
#include "capkv/core/tensor_view.hpp"

namespace capkv::cuda::kernels {

struct DeviceView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::int64_t n_tokens = 0;
  std::int64_t n_heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t token_stride = 0;
  std::int64_t head_stride = 0;
  std::int64_t dim_stride = 1;
  // Rows can be read as 16-byte vectors: unit dim stride, and the base, the token and head strides
  // and head_dim all multiples of 16 bytes. Decided on the host, where the pointer is known.
  bool vector_rows = false;

  __device__ std::int64_t offset(std::int64_t token, std::int64_t head, std::int64_t i) const {
    return token * token_stride + head * head_stride + i * dim_stride;
  }

  __device__ float load(std::int64_t token, std::int64_t head, std::int64_t i) const {
    const std::int64_t o = offset(token, head, i);
    switch (dtype) {
      case DType::kF32:
        return static_cast<const float*>(data)[o];
      case DType::kF16:
        return __half2float(static_cast<const __half*>(data)[o]);
      case DType::kBF16:
        return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[o]);
    }
    return 0.0f;
  }
};

inline DeviceView device_view(const TensorView& v) {
  DeviceView d;
  d.data = v.data();
  d.dtype = v.dtype();
  d.n_tokens = v.n_tokens();
  d.n_heads = v.n_heads();
  d.head_dim = v.head_dim();
  d.token_stride = v.strides().token;
  d.head_stride = v.strides().head;
  d.dim_stride = v.strides().dim;
  const auto elem = static_cast<std::int64_t>(size_of(v.dtype()));
  const std::int64_t per_vector = 16 / elem;
  d.vector_rows = d.dim_stride == 1 && reinterpret_cast<std::uintptr_t>(v.data()) % 16 == 0 &&
                  d.head_dim % per_vector == 0 &&
                  (d.n_tokens <= 1 || d.token_stride % per_vector == 0) &&
                  (d.n_heads <= 1 || d.head_stride % per_vector == 0);
  return d;
}

// Eight (fp16/bf16) or four (fp32) consecutive elements of a row starting at element `i`, which is
// a multiple of that count; only valid when view.vector_rows.
__device__ inline int load_vector(const DeviceView& v, std::int64_t token, std::int64_t head,
                                  std::int64_t i, float* out) {
  const std::int64_t o = v.offset(token, head, i);
  if (v.dtype == DType::kF32) {
    const float4 x = *reinterpret_cast<const float4*>(static_cast<const float*>(v.data) + o);
    out[0] = x.x;
    out[1] = x.y;
    out[2] = x.z;
    out[3] = x.w;
    return 4;
  }
  const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const std::uint16_t*>(v.data) + o);
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
  for (int w = 0; w < 4; ++w) {
    if (v.dtype == DType::kF16) {
      const __half2 h = *reinterpret_cast<const __half2*>(&words[w]);
      const float2 f = __half22float2(h);
      out[2 * w] = f.x;
      out[2 * w + 1] = f.y;
    } else {
      const __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162*>(&words[w]);
      const float2 f = __bfloat1622float2(h);
      out[2 * w] = f.x;
      out[2 * w + 1] = f.y;
    }
  }
  return 8;
}

// Loads rows [token0, token0 + rows) of `head`, all head_dim columns, into tile[r * ld + c] as fp32
// with every thread of the block taking part. Rows at or past `valid_rows` (ragged last tile) and
// columns in [head_dim, padded_dim) are zero, so the caller's tile loops need no bounds checks.
// Returns, to every thread, whether any loaded element was NaN or Inf; it also serves as the
// barrier after the load.
__device__ inline bool load_tile(const DeviceView& v, std::int64_t head, std::int64_t token0,
                                 int rows, int valid_rows, int padded_dim, float* tile, int ld) {
  const int d = static_cast<int>(v.head_dim);
  bool bad = false;
  if (v.vector_rows) {
    const int per = v.dtype == DType::kF32 ? 4 : 8;
    const int vectors_per_row = d / per;
    for (int e = threadIdx.x; e < rows * vectors_per_row; e += blockDim.x) {
      const int r = e / vectors_per_row;
      const int c = (e % vectors_per_row) * per;
      float x[8];
      if (r < valid_rows) {
        load_vector(v, token0 + r, head, c, x);
      } else {
        for (int q = 0; q < per; ++q) x[q] = 0.0f;
      }
      for (int q = 0; q < per; ++q) {
        bad |= !isfinite(x[q]);
        tile[r * ld + c + q] = x[q];
      }
    }
    for (int e = threadIdx.x; e < rows * (padded_dim - d); e += blockDim.x) {
      tile[(e / (padded_dim - d)) * ld + d + e % (padded_dim - d)] = 0.0f;
    }
  } else {
    for (int e = threadIdx.x; e < rows * padded_dim; e += blockDim.x) {
      const int r = e / padded_dim;
      const int c = e % padded_dim;
      float x = 0.0f;
      if (r < valid_rows && c < d) x = v.load(token0 + r, head, c);
      bad |= !isfinite(x);
      tile[r * ld + c] = x;
    }
  }
  return __syncthreads_or(bad) != 0;
}

}  // namespace capkv::cuda::kernels
