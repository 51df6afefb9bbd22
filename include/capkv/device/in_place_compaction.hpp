#pragma once

// In-place compaction of one head's rows, written for a team of workers with barriers so that one
// CUDA block (kernels/compaction_in_place.cuh) and the CPU tests (one worker, or real threads
// meeting at a std::barrier) run the same code.
//
// Why it is safe in place: the kept indices of a head are strictly ascending, so idx[k] >= k. Slot
// k is written with row idx[k]; the only slots that read row k are those k' with idx[k'] == k,
// hence k' <= k. The slots are processed in chunks, in order; a chunk first reads all of its source
// rows into the buffer, then (after a barrier) writes its slots. A row written by chunk c is
// therefore read, if at all, by chunk c itself (before the barrier) or by an earlier chunk, never
// by a later one. Rows wider than the buffer are moved in column segments; a segment's writes touch
// only its own columns, which no later segment reads.
//
// The slots k with idx[k] == k need no copy, and they form a prefix: once idx[k] > k, every later
// idx[k'] >= idx[k] + (k' - k) > k'. The move starts after that prefix.

#include <cstdint>

#include "capkv/device/host_device.hpp"

namespace capkv::device {

// Element strides of a cache view (capkv::Strides without the host-only header).
struct ElementStrides {
  std::int64_t token = 0;
  std::int64_t head = 0;
  std::int64_t dim = 1;
};

// The first slot whose row must move: the length of the prefix with idx[k] == k. Binary search,
// valid because that prefix property holds for strictly ascending non-negative indices.
CAPKV_HOST_DEVICE inline std::int64_t first_moved_slot(const std::int32_t* idx,
                                                       std::int64_t count) {
  std::int64_t lo = 0;
  std::int64_t hi = count;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (idx[mid] == mid) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// How many rows, each `width` columns of a row, the buffer holds per chunk: whole rows when they
// fit (width = head_dim), else one row in segments of the buffer's size.
struct InPlaceChunk {
  std::int64_t rows = 1;
  std::int64_t width = 1;
};

CAPKV_HOST_DEVICE inline InPlaceChunk in_place_chunk(std::int64_t head_dim,
                                                     std::int64_t buffer_elements) {
  InPlaceChunk c;
  c.width = head_dim < buffer_elements ? head_dim : buffer_elements;
  c.rows = buffer_elements / c.width;
  return c;
}

// What is wrong with kept index number k of a head (idx points at the head's first index), for
// a cache of n tokens: out of [0, n), or not above its predecessor. Both at once report both.
enum KeptIndexProblem : unsigned {
  kKeptIndexOk = 0,
  kKeptIndexOutOfRange = 1u << 0,
  kKeptIndexNotAscending = 1u << 1,
};

CAPKV_HOST_DEVICE inline unsigned check_kept_index(const std::int32_t* idx, std::int64_t k,
                                                   std::int64_t n) {
  unsigned problem = kKeptIndexOk;
  if (idx[k] < 0 || idx[k] >= n) problem |= kKeptIndexOutOfRange;
  if (k > 0 && idx[k] <= idx[k - 1]) problem |= kKeptIndexNotAscending;
  return problem;
}

// Moves slot k of head `head` to hold row idx[k] of that head, for k < count, bitwise (Word is a
// storage word: 4 bytes for fp32, 2 for fp16/bf16). `buffer` holds `buffer_elements` words that
// only this team uses. The indices must have passed check_kept_index; every worker of the team
// calls this with the same arguments. Rows at or past `count` are left as they were.
CAPKV_HD_TEMPLATE
template <class Word, class Team>
CAPKV_HOST_DEVICE void compact_head_in_place(Word* base, const ElementStrides& strides,
                                             std::int64_t head, std::int64_t head_dim,
                                             const std::int32_t* idx, std::int64_t count,
                                             Word* buffer, std::int64_t buffer_elements,
                                             const Team& team) {
  const std::int64_t rank = team.rank();
  const std::int64_t workers = team.size();
  const InPlaceChunk chunk = in_place_chunk(head_dim, buffer_elements);
  const std::int64_t head0 = head * strides.head;
  // Bounds below are the same for every worker, so every worker meets every barrier.
  for (std::int64_t k0 = first_moved_slot(idx, count); k0 < count; k0 += chunk.rows) {
    const std::int64_t rows = count - k0 < chunk.rows ? count - k0 : chunk.rows;
    for (std::int64_t c0 = 0; c0 < head_dim; c0 += chunk.width) {
      const std::int64_t width = head_dim - c0 < chunk.width ? head_dim - c0 : chunk.width;
      const std::int64_t elements = rows * width;
      for (std::int64_t e = rank; e < elements; e += workers) {
        const std::int64_t r = e / width;
        const std::int64_t c = c0 + e % width;
        buffer[e] = base[head0 + idx[k0 + r] * strides.token + c * strides.dim];
      }
      team.sync();  // every source row of the chunk is in the buffer before any slot is written
      for (std::int64_t e = rank; e < elements; e += workers) {
        const std::int64_t r = e / width;
        const std::int64_t c = c0 + e % width;
        base[head0 + (k0 + r) * strides.token + c * strides.dim] = buffer[e];
      }
      team.sync();  // the buffer is drained before the next segment or chunk refills it
    }
  }
}

}  // namespace capkv::device
