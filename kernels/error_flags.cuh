#pragma once

// Bad input found on the device. A kernel cannot throw and a launcher that synchronised to ask
// would serialise the caller's stream, so kernels OR a bit into a word in the caller's workspace
// and the last kernel of a pipeline writes the caller's outputs only while that word is zero. The
// host reads the word when it chooses to (capkv::cuda::read_status).

#include <cuda_runtime.h>

#include <cstdint>

namespace capkv::cuda {

enum ErrorFlag : std::uint32_t {
  kKeysNotFinite = 1u << 0,
  kValuesNotFinite = 1u << 1,
  kQueriesNotFinite = 1u << 2,
  kScoresNotFinite = 1u << 3,
  kNotPositiveDefinite = 1u << 4,
  kSelectionOutOfRange = 1u << 5,  // a compaction index outside [0, n)
  kInternalError = 1u << 6,        // a kernel's own invariant failed; a bug, please report
  kSelectionNotAscending = 1u << 7,  // in-place compaction: indices not strictly ascending
  kOffsetsInvalid = 1u << 8,         // varlen: offsets not ascending from 0 to the total
  kNoTokenToEvict = 1u << 9,         // H2O decoding: over budget, the recent window holds all
  kStateInvalid = 1u << 10,          // H2O decoding: a size < 0, or no slot for the new token
  kAccumulatorsNotFinite = 1u << 11,  // H2O decoding: the state's accumulators hold NaN or Inf
};

namespace kernels {

// One atomic per block at most: callers first agree inside the block (__syncthreads_or).
__device__ inline void raise_flag(std::uint32_t* flags, std::uint32_t bit) {
  if (flags != nullptr) atomicOr(flags, bit);
}

__device__ inline bool flags_clear(const std::uint32_t* flags) {
  return flags == nullptr || *reinterpret_cast<const volatile std::uint32_t*>(flags) == 0u;
}

}  // namespace kernels
}  // namespace capkv::cuda
