#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "capkv/core/compaction.hpp"
#include "capkv/core/head_budgets.hpp"
#include "capkv/core/select.hpp"

namespace capkv {
namespace {

float value(std::int64_t t, std::int64_t h, std::int64_t i) { return 1000.0f * t + 10.0f * h + i; }

std::vector<float> filled(Layout layout, std::int64_t n, std::int64_t heads, std::int64_t d) {
  std::vector<float> buffer(n * heads * d);
  const Strides s = packed_strides(layout, n, heads, d);
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < d; ++i) buffer[t * s.token + h * s.head + i] = value(t, h, i);
  return buffer;
}

Selection make_selection(std::int64_t n, std::vector<std::vector<std::int32_t>> heads) {
  Selection sel;
  sel.n_tokens = n;
  for (const auto& h : heads) {
    sel.indices.insert(sel.indices.end(), h.begin(), h.end());
    sel.offsets.push_back(static_cast<std::int64_t>(sel.indices.size()));
  }
  return sel;
}

TEST(Compaction, DenseGatherIntoEitherLayout) {
  const std::int64_t n = 9, heads = 2, d = 3;
  const auto src = filled(Layout::kTokensHeadsDim, n, heads, d);
  const Selection sel = make_selection(n, {{0, 4, 8}, {1, 2, 7}});
  for (Layout out_layout : {Layout::kTokensHeadsDim, Layout::kHeadsTokensDim}) {
    std::vector<float> out(3 * heads * d, -1.0f);
    compact(TensorView(src.data(), DType::kF32, Layout::kTokensHeadsDim, n, heads, d), sel,
            MutableTensorView(out.data(), DType::kF32, out_layout, 3, heads, d));
    const TensorView view(out.data(), DType::kF32, out_layout, 3, heads, d);
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t j = 0; j < 3; ++j)
        for (std::int64_t i = 0; i < d; ++i) EXPECT_EQ(view.at(j, h, i), value(sel.head(h)[j], h, i));
  }
}

TEST(Compaction, InPlaceMovesKeptRowsToTheFrontOfEachHead) {
  const std::int64_t n = 10, heads = 3, d = 4;
  for (Layout layout : {Layout::kTokensHeadsDim, Layout::kHeadsTokensDim}) {
    auto buffer = filled(layout, n, heads, d);
    const Selection sel = make_selection(n, {{1, 2, 9}, {0, 5, 6, 7, 8}, {3}});
    const MutableTensorView cache(buffer.data(), DType::kF32, layout, n, heads, d);
    compact_in_place(cache, sel);
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t j = 0; j < sel.kept(h); ++j)
        for (std::int64_t i = 0; i < d; ++i) EXPECT_EQ(cache.at(j, h, i), value(sel.head(h)[j], h, i));
  }
}

TEST(Compaction, VarlenPacksHeadsBackToBackAtTheSelectionOffsets) {
  const std::int64_t n = 6, heads = 2, d = 2;
  std::vector<std::uint16_t> src(n * heads * d);
  const MutableTensorView sv(src.data(), DType::kBF16, Layout::kHeadsTokensDim, n, heads, d);
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < d; ++i) sv.store(t, h, i, value(t, h, i) / 64);
  const Selection sel = make_selection(n, {{0, 3, 4, 5}, {2}});
  std::vector<std::uint16_t> out(sel.total_kept() * d);
  compact_varlen(sv, sel, std::as_writable_bytes(std::span(out)));
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < sel.kept(h); ++j)
      for (std::int64_t i = 0; i < d; ++i)
        EXPECT_EQ(out[(sel.offsets[h] + j) * d + i], src[sv.offset(sel.head(h)[j], h, i)]);
}

TEST(Compaction, BadArgumentsThrowAndLeaveTheOutputUntouched) {
  const std::int64_t n = 8, heads = 2, d = 4;
  const auto src = filled(Layout::kTokensHeadsDim, n, heads, d);
  const TensorView source(src.data(), DType::kF32, Layout::kTokensHeadsDim, n, heads, d);
  const Selection uneven = make_selection(n, {{0, 1}, {2, 3, 4}});
  const Selection even = make_selection(n, {{0, 1}, {2, 3}});
  std::vector<float> out(2 * heads * d, 42.0f);
  std::vector<std::uint16_t> out16(2 * heads * d, 7);
  const auto untouched = out;
  auto expect_error = [&](auto call, const char* argument) {
    try {
      call();
      FAIL() << "no error for " << argument;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument);
    }
    EXPECT_EQ(out, untouched);
    EXPECT_EQ(out16, std::vector<std::uint16_t>(2 * heads * d, 7));
  };
  const MutableTensorView dense(out.data(), DType::kF32, Layout::kTokensHeadsDim, 2, heads, d);
  expect_error([&] { compact(source, uneven, dense); }, "selection");
  expect_error([&] { compact(source, make_selection(7, {{0, 1}, {2, 3}}), dense); }, "selection");
  expect_error([&] { compact(source, make_selection(n, {{0, 1}}), dense); }, "selection");
  expect_error([&] {
    compact(source, even, MutableTensorView(out16.data(), DType::kF16, Layout::kTokensHeadsDim, 2, heads, d));
  }, "out");
  expect_error([&] {
    compact(source, make_selection(n, {{0}, {1}}), dense);
  }, "out");
  expect_error([&] { compact(source, even, dense.with_extent(15)); }, "out");
  // 5 kept rows of 4 floats need 80 bytes; `out` holds 64.
  expect_error([&] { compact_varlen(source, uneven, std::as_writable_bytes(std::span(out))); }, "out");
}

}  // namespace
}  // namespace capkv
