// The shared in-place compaction (include/capkv/device/in_place_compaction.hpp) on the CPU: one
// worker and teams of real threads moving a head's rows with buffers small enough to force many
// chunks and column segments, bitwise against capkv::compact_in_place, rows past the kept count
// untouched. The CUDA kernel runs this same function with a block as the team.

#include "capkv/device/in_place_compaction.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "capkv/core/compaction.hpp"
#include "capkv/device/host_device.hpp"
#include "thread_team.hpp"

namespace {

namespace dev = capkv::device;

using capkv_cuda_test::run_team;
using capkv_cuda_test::ThreadTeam;

TEST(InPlaceCompactionMath, FirstMovedSlotIsTheIdentityPrefixLength) {
  const std::vector<std::int32_t> none;
  EXPECT_EQ(dev::first_moved_slot(none.data(), 0), 0);
  const std::vector<std::int32_t> all{0, 1, 2, 3};
  EXPECT_EQ(dev::first_moved_slot(all.data(), 4), 4);
  const std::vector<std::int32_t> first{1, 2, 5};
  EXPECT_EQ(dev::first_moved_slot(first.data(), 3), 0);
  const std::vector<std::int32_t> mid{0, 1, 2, 4, 7, 9};
  EXPECT_EQ(dev::first_moved_slot(mid.data(), 6), 3);
  // Against a linear scan on random ascending selections.
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 60);
    std::vector<std::int32_t> idx;
    const int keep_prefix = static_cast<int>(rng() % (n + 1));
    for (int i = 0; i < n; ++i) {
      if (i < keep_prefix || rng() % 3 == 0) idx.push_back(i);
    }
    std::int64_t want = 0;
    while (want < static_cast<std::int64_t>(idx.size()) && idx[want] == want) ++want;
    EXPECT_EQ(dev::first_moved_slot(idx.data(), static_cast<std::int64_t>(idx.size())), want);
  }
}

TEST(InPlaceCompactionMath, ChunksHoldWholeRowsOrSegmentsOfOne) {
  EXPECT_EQ(dev::in_place_chunk(128, 8192).rows, 64);
  EXPECT_EQ(dev::in_place_chunk(128, 8192).width, 128);
  EXPECT_EQ(dev::in_place_chunk(100, 8192).rows, 81);
  EXPECT_EQ(dev::in_place_chunk(20000, 8192).rows, 1);
  EXPECT_EQ(dev::in_place_chunk(20000, 8192).width, 8192);
  EXPECT_EQ(dev::in_place_chunk(1, 1).rows, 1);
}

TEST(InPlaceCompactionMath, KeptIndexChecksRangeAndStrictOrder) {
  const std::vector<std::int32_t> idx{0, 3, 3, 2, 9, -1, 10};
  EXPECT_EQ(dev::check_kept_index(idx.data(), 0, 10), dev::kKeptIndexOk);
  EXPECT_EQ(dev::check_kept_index(idx.data(), 1, 10), dev::kKeptIndexOk);
  EXPECT_EQ(dev::check_kept_index(idx.data(), 2, 10), dev::kKeptIndexNotAscending);
  EXPECT_EQ(dev::check_kept_index(idx.data(), 3, 10), dev::kKeptIndexNotAscending);
  EXPECT_EQ(dev::check_kept_index(idx.data(), 4, 10), dev::kKeptIndexOk);
  EXPECT_EQ(dev::check_kept_index(idx.data(), 5, 10),
            dev::kKeptIndexOutOfRange | dev::kKeptIndexNotAscending);
  EXPECT_EQ(dev::check_kept_index(idx.data(), 6, 10), dev::kKeptIndexOutOfRange);
}

// A cache of random bits in one of the layouts the GPU test uses, and a ragged selection.
struct Case {
  std::int64_t n;
  std::int64_t heads;
  std::int64_t d;
  capkv::DType dtype;
  int packing;  // 0 token-major, 1 head-major, 2 padded token stride, 3 dim stride 2
};

capkv::Strides strides_of(const Case& c) {
  switch (c.packing) {
    case 0:
      return {c.heads * c.d, c.d, 1};
    case 1:
      return {c.d, c.n * c.d, 1};
    case 2:
      return {c.heads * c.d + 5, c.d, 1};
    default:
      return {c.heads * 2 * c.d, 2 * c.d, 2};
  }
}

std::int64_t extent_of(const Case& c, const capkv::Strides& s) {
  return (c.n - 1) * s.token + (c.heads - 1) * s.head + (c.d - 1) * s.dim + 1;
}

capkv::Selection random_selection(std::int64_t n, std::int64_t heads, std::mt19937& rng) {
  capkv::Selection sel;
  sel.n_tokens = n;
  for (std::int64_t h = 0; h < heads; ++h) {
    // Different shapes per head: everything, nothing, a kept prefix, a sparse tail.
    const int kind = static_cast<int>((h + rng()) % 4);
    for (std::int64_t i = 0; i < n; ++i) {
      const bool keep = kind == 0 ? true : kind == 1 ? false : kind == 2 ? (i < n / 3 || rng() % 2 == 0) : rng() % 5 == 0;
      if (keep) sel.indices.push_back(static_cast<std::int32_t>(i));
    }
    sel.offsets.push_back(static_cast<std::int64_t>(sel.indices.size()));
  }
  return sel;
}

template <class Word, class RunHead>
void check_against_cpu(const Case& c, std::uint64_t seed, RunHead run_head) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  const capkv::Strides s = strides_of(c);
  const std::int64_t extent = extent_of(c, s);
  std::vector<Word> original(static_cast<std::size_t>(extent));
  for (auto& w : original) w = static_cast<Word>(rng());
  const capkv::Selection sel = random_selection(c.n, c.heads, rng);

  std::vector<Word> want = original;
  capkv::compact_in_place(
      capkv::MutableTensorView(want.data(), c.dtype, c.n, c.heads, c.d, s).with_extent(extent),
      sel);
  std::vector<Word> got = original;
  const dev::ElementStrides es{s.token, s.head, s.dim};
  for (std::int64_t h = 0; h < c.heads; ++h) {
    run_head(got.data(), es, h, sel.indices.data() + sel.offsets[h], sel.kept(h));
  }
  ASSERT_EQ(got, want) << "n " << c.n << " heads " << c.heads << " d " << c.d << " packing "
                       << c.packing;
}

TEST(InPlaceCompactionMath, OneWorkerMatchesTheCpuCompactionBitwise) {
  for (std::int64_t buffer : {1, 7, 64, 100000}) {
    for (int packing = 0; packing < 4; ++packing) {
      const Case c{57, 3, 13, capkv::DType::kF16, packing};
      std::vector<std::uint16_t> scratch(static_cast<std::size_t>(buffer));
      check_against_cpu<std::uint16_t>(
          c, 11 + packing, [&](std::uint16_t* base, const dev::ElementStrides& es, std::int64_t h,
                               const std::int32_t* idx, std::int64_t count) {
            dev::compact_head_in_place(base, es, h, c.d, idx, count, scratch.data(), buffer,
                                       dev::SerialTeam{});
          });
    }
  }
}

TEST(InPlaceCompactionMath, ThreadTeamsMatchTheCpuCompactionBitwise) {
  for (int workers : {2, 5}) {
    for (std::int64_t buffer : {3, 40, 4096}) {
      for (int packing = 0; packing < 4; ++packing) {
        const Case c{131, 2, 24, capkv::DType::kF32, packing};
        std::vector<std::uint32_t> scratch(static_cast<std::size_t>(buffer));
        check_against_cpu<std::uint32_t>(
            c, 7 * workers + packing,
            [&](std::uint32_t* base, const dev::ElementStrides& es, std::int64_t h,
                const std::int32_t* idx, std::int64_t count) {
              run_team(workers, [&](const ThreadTeam& team) {
                dev::compact_head_in_place(base, es, h, c.d, idx, count, scratch.data(), buffer,
                                           team);
              });
            });
      }
    }
  }
}

// Reading every source row of a chunk before writing is what makes it safe: the worst case is a
// selection where each slot's source is the next slot's destination, e.g. keep 1, 2, 3, ...
TEST(InPlaceCompactionMath, ShiftByOneSurvivesEveryChunkBoundary) {
  const std::int64_t n = 40;
  const std::int64_t d = 3;
  std::vector<std::int32_t> idx;
  for (std::int32_t i = 1; i < n; ++i) idx.push_back(i);
  for (std::int64_t buffer : {1, 2, 3, 4, 6, 9, 200}) {
    std::vector<std::uint32_t> cache(static_cast<std::size_t>(n * d));
    for (std::size_t e = 0; e < cache.size(); ++e) cache[e] = static_cast<std::uint32_t>(e);
    std::vector<std::uint32_t> scratch(static_cast<std::size_t>(buffer));
    run_team(3, [&](const ThreadTeam& team) {
      dev::compact_head_in_place(cache.data(), dev::ElementStrides{d, 0, 1}, 0, d, idx.data(),
                                 n - 1, scratch.data(), buffer, team);
    });
    for (std::int64_t k = 0; k < n - 1; ++k) {
      for (std::int64_t c = 0; c < d; ++c) {
        ASSERT_EQ(cache[k * d + c], static_cast<std::uint32_t>((k + 1) * d + c)) << buffer;
      }
    }
    for (std::int64_t c = 0; c < d; ++c) ASSERT_EQ(cache[(n - 1) * d + c], (n - 1) * d + c);
  }
}

}  // namespace
