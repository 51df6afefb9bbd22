// Metadata round trip: every value kind written by the test writer reads back exactly, and the
// typed getters accept equivalent integer widths but refuse lossy conversions.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gguf_writer.hpp"

namespace capkv::llm {
namespace {

using testing::GgufWriter;
using VT = GgufValueType;

std::vector<std::byte> all_kinds_file(std::uint32_t version) {
  GgufWriter w(version);
  w.kv("u8", VT::kUint8, std::uint8_t{250})
      .kv("i8", VT::kInt8, std::int8_t{-100})
      .kv("u16", VT::kUint16, std::uint16_t{65000})
      .kv("i16", VT::kInt16, std::int16_t{-32000})
      .kv("u32", VT::kUint32, std::uint32_t{4000000000u})
      .kv("i32", VT::kInt32, std::int32_t{-2000000000})
      .kv("f32", VT::kFloat32, 100000.0f)
      .kv_bool("bool_true", true)
      .kv_bool("bool_false", false)
      .kv_string("string", "llama")
      .kv_string("empty_string", "")
      .kv_string("binary_string", std::string("a\0b\xff", 4))
      .kv("u64", VT::kUint64, std::numeric_limits<std::uint64_t>::max())
      .kv("i64", VT::kInt64, std::numeric_limits<std::int64_t>::min())
      .kv("f64", VT::kFloat64, 1e-310)
      .kv("small_u64", VT::kUint64, std::uint64_t{30})
      .kv("negative_i32", VT::kInt32, std::int32_t{-1})
      .kv_array("arr_u8", VT::kUint8, std::vector<std::uint8_t>{0, 1, 255})
      .kv_array("arr_i8", VT::kInt8, std::vector<std::int8_t>{-128, 127})
      .kv_array("arr_u16", VT::kUint16, std::vector<std::uint16_t>{1, 65535})
      .kv_array("arr_i16", VT::kInt16, std::vector<std::int16_t>{-32768, 5})
      .kv_array("arr_u32", VT::kUint32, std::vector<std::uint32_t>{7, 4294967295u})
      .kv_array("arr_i32", VT::kInt32, std::vector<std::int32_t>{1, 2, 3, -4})
      .kv_array("arr_f32", VT::kFloat32, std::vector<float>{0.5f, -1.25f, 1e-45f})
      .kv_array("arr_bool", VT::kBool, std::vector<std::uint8_t>{1, 0, 1})
      .kv_array("arr_u64", VT::kUint64, std::vector<std::uint64_t>{1ull << 40})
      .kv_array("arr_i64", VT::kInt64, std::vector<std::int64_t>{-(1ll << 40)})
      .kv_array("arr_f64", VT::kFloat64, std::vector<double>{3.141592653589793})
      .kv_array("arr_empty", VT::kInt32, std::vector<std::int32_t>{})
      .kv_string_array("arr_string", {"<|im_start|>", "", "\xc4\xa0the", "Ġ"});
  // An array of two arrays: [[1, 2], ["x"]].
  testing::Bytes nested;
  nested.u32(static_cast<std::uint32_t>(VT::kArray)).u64(2);
  nested.u32(static_cast<std::uint32_t>(VT::kUint16)).u64(2).u16(1).u16(2);
  nested.u32(static_cast<std::uint32_t>(VT::kString)).u64(1).str("x");
  w.kv_raw("nested", VT::kArray, nested);
  return w.bytes();
}

class MetadataTest : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(MetadataTest, EveryScalarKindRoundTrips) {
  const auto bytes = all_kinds_file(GetParam());
  const GgufFile f = GgufFile::parse(bytes);
  EXPECT_EQ(f.version(), GetParam());
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.alignment(), 32u);

  EXPECT_EQ(f.at("u8").type(), VT::kUint8);
  EXPECT_EQ(f.get_u32("u8"), 250u);
  EXPECT_EQ(f.get_i64("i8"), -100);
  EXPECT_EQ(f.get_u64("u16"), 65000u);
  EXPECT_EQ(f.get_i32("i16"), -32000);
  EXPECT_EQ(f.get_u32("u32"), 4000000000u);
  EXPECT_EQ(f.get_i32("i32"), -2000000000);
  EXPECT_EQ(f.get_f32("f32"), 100000.0f);
  EXPECT_EQ(f.at("f32").type(), VT::kFloat32);
  EXPECT_TRUE(f.get_bool("bool_true"));
  EXPECT_FALSE(f.get_bool("bool_false"));
  EXPECT_EQ(f.get_string("string"), "llama");
  EXPECT_EQ(f.get_string("empty_string"), "");
  EXPECT_EQ(f.get_string("binary_string"), std::string("a\0b\xff", 4));
  EXPECT_EQ(f.get_u64("u64"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(f.get_i64("i64"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(f.get_f64("f64"), 1e-310);
  EXPECT_EQ(f.at("f64").type(), VT::kFloat64);
}

TEST_P(MetadataTest, EveryArrayKindRoundTrips) {
  const auto bytes = all_kinds_file(GetParam());
  const GgufFile f = GgufFile::parse(bytes);
  EXPECT_EQ(f.get_array("arr_u8").to_u64(), (std::vector<std::uint64_t>{0, 1, 255}));
  EXPECT_EQ(f.get_array("arr_i8").to_i64(), (std::vector<std::int64_t>{-128, 127}));
  EXPECT_EQ(f.get_array("arr_u16").to_u64(), (std::vector<std::uint64_t>{1, 65535}));
  EXPECT_EQ(f.get_array("arr_i16").to_i64(), (std::vector<std::int64_t>{-32768, 5}));
  EXPECT_EQ(f.get_array("arr_u32").to_u64(), (std::vector<std::uint64_t>{7, 4294967295u}));
  EXPECT_EQ(f.get_i64_array("arr_i32"), (std::vector<std::int64_t>{1, 2, 3, -4}));
  EXPECT_EQ(f.get_f32_array("arr_f32"), (std::vector<float>{0.5f, -1.25f, 1e-45f}));
  const GgufArray& bools = f.get_array("arr_bool");
  ASSERT_EQ(bools.size(), 3u);
  EXPECT_EQ(bools.element_type(), VT::kBool);
  EXPECT_TRUE(bools.at(0).as_bool());
  EXPECT_FALSE(bools.at(1).as_bool());
  EXPECT_EQ(f.get_array("arr_u64").to_u64(), (std::vector<std::uint64_t>{1ull << 40}));
  EXPECT_EQ(f.get_i64_array("arr_i64"), (std::vector<std::int64_t>{-(1ll << 40)}));
  EXPECT_EQ(f.get_array("arr_f64").to_f64(), (std::vector<double>{3.141592653589793}));
  EXPECT_TRUE(f.get_array("arr_empty").empty());
  EXPECT_EQ(f.get_array("arr_empty").element_type(), VT::kInt32);
  EXPECT_EQ(f.get_string_array("arr_string"),
            (std::vector<std::string>{"<|im_start|>", "", "\xc4\xa0the", "Ġ"}));

  const GgufArray& nested = f.get_array("nested");
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested.element_type(), VT::kArray);
  EXPECT_EQ(nested.at(0).as_array().to_u64(), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(nested.at(1).as_array().to_strings(), (std::vector<std::string>{"x"}));
  EXPECT_THROW(nested.at(2), GgufError);
}

TEST_P(MetadataTest, KeepsFileOrder) {
  const auto bytes = all_kinds_file(GetParam());
  const GgufFile f = GgufFile::parse(bytes);
  ASSERT_GE(f.metadata().size(), 3u);
  EXPECT_EQ(f.metadata()[0].key, "u8");
  EXPECT_EQ(f.metadata()[1].key, "i8");
  EXPECT_EQ(f.metadata().back().key, "nested");
}

INSTANTIATE_TEST_SUITE_P(Versions, MetadataTest, ::testing::Values(2u, 3u),
                         [](const auto& info) { return "v" + std::to_string(info.param); });

TEST(MetadataGetters, IntegerWidthsAreInterchangeable) {
  // Converters disagree on u32 vs u64 for counts; both must read the same.
  const auto bytes = GgufWriter()
                         .kv("as_u32", VT::kUint32, std::uint32_t{30})
                         .kv("as_u64", VT::kUint64, std::uint64_t{30})
                         .kv("as_i32", VT::kInt32, std::int32_t{30})
                         .kv("as_u8", VT::kUint8, std::uint8_t{30})
                         .bytes();
  const GgufFile f = GgufFile::parse(bytes);
  for (const char* key : {"as_u32", "as_u64", "as_i32", "as_u8"}) {
    EXPECT_EQ(f.get_u32(key), 30u) << key;
    EXPECT_EQ(f.get_u64(key), 30u) << key;
    EXPECT_EQ(f.get_i64(key), 30) << key;
    EXPECT_EQ(f.get_i32(key), 30) << key;
    EXPECT_EQ(f.get_f64(key), 30.0) << key;
  }
}

TEST(MetadataGetters, RefuseLossyOrMismatchedKinds) {
  const auto bytes = all_kinds_file(3);
  const GgufFile f = GgufFile::parse(bytes);
  EXPECT_THROW(f.get_u32("u64"), GgufError);           // too large for u32
  EXPECT_THROW(f.get_i64("u64"), GgufError);           // too large for i64
  EXPECT_THROW(f.get_u64("negative_i32"), GgufError);  // negative
  EXPECT_THROW(f.get_i32("u32"), GgufError);           // 4e9 > i32 max
  EXPECT_THROW(f.get_u64("f32"), GgufError);           // float is not an integer
  EXPECT_THROW(f.get_string("u8"), GgufError);
  EXPECT_THROW(f.get_bool("u8"), GgufError);
  EXPECT_THROW(f.get_array("string"), GgufError);
  EXPECT_THROW(f.get_string_array("arr_i32"), GgufError);
  EXPECT_THROW(f.get_i64_array("arr_string"), GgufError);
  EXPECT_THROW(f.get_f32_array("arr_bool"), GgufError);
  EXPECT_EQ(f.get_u64("small_u64"), 30u);
}

TEST(MetadataGetters, ErrorsNameTheKey) {
  const auto bytes = all_kinds_file(3);
  const GgufFile f = GgufFile::parse(bytes, "test.gguf");
  try {
    f.get_u32("llama.block_count");
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("missing metadata key 'llama.block_count'"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("test.gguf"), std::string::npos) << e.what();
  }
  try {
    f.get_string("u32");
    FAIL() << "expected GgufError";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("'u32'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected a string, found u32"), std::string::npos)
        << e.what();
  }
}

TEST(MetadataGetters, FallbacksApplyOnlyWhenAbsent) {
  const auto bytes = all_kinds_file(3);
  const GgufFile f = GgufFile::parse(bytes);
  EXPECT_EQ(f.get_u32_or("missing", 7), 7u);
  EXPECT_EQ(f.get_u64_or("missing", 8), 8u);
  EXPECT_EQ(f.get_f32_or("missing", 1e-5f), 1e-5f);
  EXPECT_TRUE(f.get_bool_or("missing", true));
  EXPECT_EQ(f.get_string_or("missing", "gpt2"), "gpt2");
  EXPECT_EQ(f.get_u32_or("u8", 7), 250u);
  EXPECT_THROW(f.get_u32_or("string", 7), GgufError);  // present but the wrong kind
  EXPECT_FALSE(f.contains("missing"));
  EXPECT_TRUE(f.contains("u8"));
  EXPECT_EQ(f.find("missing"), nullptr);
}

}  // namespace
}  // namespace capkv::llm
