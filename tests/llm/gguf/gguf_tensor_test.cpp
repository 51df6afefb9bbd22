// Tensor directory: lookup, shapes, the aligned data section, and reading through mmap.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gguf_writer.hpp"

namespace capkv::llm {
namespace {

using testing::as_bytes_of;
using testing::GgufWriter;

std::vector<float> iota_floats(std::size_t n, float start) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// A writer with three tensors of awkward sizes so the padding between them matters.
GgufWriter three_tensors() {
  GgufWriter w;
  w.kv_string("general.architecture", "llama");
  w.tensor("a", {3}, GgmlType::kF32, as_bytes_of(iota_floats(3, 1.0f)));
  w.tensor("b.weight", {4, 2}, GgmlType::kF32, as_bytes_of(iota_floats(8, 10.0f)));
  w.tensor("c", {1, 1, 1, 5}, GgmlType::kF32, as_bytes_of(iota_floats(5, 100.0f)));
  return w;
}

std::vector<float> floats_of(std::span<const std::byte> bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

TEST(GgufTensors, LookupShapesAndData) {
  const auto bytes = three_tensors().bytes();
  const GgufFile f = GgufFile::parse(bytes);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "a");
  EXPECT_EQ(f.tensors()[2].name, "c");

  const GgufTensorInfo& b = f.tensor("b.weight");
  EXPECT_EQ(b.type, GgmlType::kF32);
  EXPECT_EQ(b.shape, (std::vector<std::uint64_t>{4, 2}));
  EXPECT_EQ(b.n_elements, 8u);
  EXPECT_EQ(b.n_bytes, 32u);
  EXPECT_EQ(b.row_length(), 4u);
  EXPECT_EQ(b.n_rows(), 2u);
  EXPECT_EQ(b.row_bytes(), 16u);
  EXPECT_EQ(floats_of(f.tensor_data(b)), iota_floats(8, 10.0f));
  EXPECT_EQ(floats_of(f.tensor_data("a")), iota_floats(3, 1.0f));

  const GgufTensorInfo& c = f.tensor("c");
  EXPECT_EQ(c.shape.size(), 4u);
  EXPECT_EQ(c.row_length(), 1u);
  EXPECT_EQ(c.n_rows(), 5u);
  EXPECT_EQ(floats_of(f.tensor_data(c)), iota_floats(5, 100.0f));

  EXPECT_EQ(f.find_tensor("missing"), nullptr);
  EXPECT_THROW(f.tensor("missing"), GgufError);
}

TEST(GgufTensors, DefaultAlignmentIs32) {
  const auto bytes = three_tensors().bytes();
  const GgufFile f = GgufFile::parse(bytes);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 32, 0u) << t.name;
  // "a" takes 12 bytes, so "b.weight" starts after 20 bytes of padding.
  EXPECT_EQ(f.tensor("b.weight").offset, 32u);
}

class CustomAlignment : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(CustomAlignment, DataSectionAndOffsetsFollowGeneralAlignment) {
  const std::uint32_t alignment = GetParam();
  GgufWriter w;
  w.alignment(alignment);
  w.tensor("x", {3}, GgmlType::kF32, as_bytes_of(iota_floats(3, 0.0f)));
  w.tensor("y", {2}, GgmlType::kF32, as_bytes_of(iota_floats(2, 7.0f)));
  const auto bytes = w.bytes();
  const GgufFile f = GgufFile::parse(bytes);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  EXPECT_EQ(f.tensor("y").offset, (12 + alignment - 1) / alignment * alignment);
  EXPECT_EQ(floats_of(f.tensor_data("y")), iota_floats(2, 7.0f));
}

INSTANTIATE_TEST_SUITE_P(Powers, CustomAlignment, ::testing::Values(1u, 8u, 64u, 4096u));

TEST(GgufTensors, QuantizedSizes) {
  // Q8_0: 34 bytes per 32 elements; a 64 x 3 tensor takes 6 blocks.
  std::vector<std::byte> q8(6 * 34, std::byte{0});
  GgufWriter w;
  w.tensor("q", {64, 3}, GgmlType::kQ8_0, q8);
  const auto bytes = w.bytes();
  const GgufFile f = GgufFile::parse(bytes);
  const auto& q = f.tensor("q");
  EXPECT_EQ(q.n_bytes, 204u);
  EXPECT_EQ(q.row_bytes(), 68u);
  EXPECT_EQ(q.n_rows(), 3u);
  EXPECT_EQ(f.tensor_data(q).size(), 204u);
}

TEST(GgufTensors, OpenMapsTheFileFromDisk) {
  const auto bytes = three_tensors().bytes();
  const auto path = std::filesystem::temp_directory_path() /
                    ("capkv_gguf_open_" + std::to_string(::getpid()) + ".gguf");
  testing::write_file(path, bytes);
  {
    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.source(), path.string());
    EXPECT_EQ(f.bytes().size(), bytes.size());
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    // Moving keeps the mapping (and every view into it) alive.
    GgufFile moved = std::move(f);
    EXPECT_EQ(floats_of(moved.tensor_data("b.weight")), iota_floats(8, 10.0f));
  }
  std::filesystem::remove(path);
}

TEST(GgufTensors, OpenReportsMissingFilesClearly) {
  try {
    GgufFile::open("/nonexistent/capkv/model.gguf");
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot open '/nonexistent/capkv/model.gguf'"), std::string::npos) << what;
  }
  EXPECT_THROW(GgufFile::open(std::filesystem::temp_directory_path()), GgufError);
}

TEST(GgufTensors, TensorInfoFromAnotherFileIsRejected) {
  const auto bytes = three_tensors().bytes();
  const GgufFile f = GgufFile::parse(bytes);
  GgufTensorInfo forged = f.tensor("a");
  forged.offset = 1 << 20;
  EXPECT_THROW(f.tensor_data(forged), GgufError);
}

}  // namespace
}  // namespace capkv::llm
