#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace capkv::llm {

// Metadata value kinds, with the ids GGUF stores.
enum class GgufValueType : std::uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "u32", "string", ...; "value-type#<id>" for ids outside the enum.
std::string gguf_value_type_name(GgufValueType type);
bool gguf_value_type_is_valid(std::uint32_t id);
bool gguf_value_type_is_integer(GgufValueType type);
bool gguf_value_type_is_float(GgufValueType type);
// Encoded size of a fixed-size scalar kind; 0 for string and array.
std::size_t gguf_scalar_size(GgufValueType type);

class GgufArray;

// One typed metadata value. Strings (and array storage) are views into the file's bytes, so a value
// must not outlive the GgufFile it came from.
//
// The typed accessors accept any stored kind that represents the requested value exactly: a count
// written as u32 by one converter and u64 by another reads the same through as_u64(). They throw
// GgufError when the kind does not fit or the number is out of range.
class GgufValue {
 public:
  // Decodes one fixed-size scalar of `type` from `bytes` (which must hold gguf_scalar_size bytes).
  static GgufValue decode_scalar(GgufValueType type, const std::byte* bytes);
  static GgufValue string(std::string_view text);
  static GgufValue array(GgufArray array);

  GgufValueType type() const { return type_; }
  bool is_integer() const { return gguf_value_type_is_integer(type_); }
  bool is_float() const { return gguf_value_type_is_float(type_); }

  std::uint64_t as_u64() const;
  std::uint32_t as_u32() const;
  std::int64_t as_i64() const;
  std::int32_t as_i32() const;
  // Floats, and integers (converted), since a converter may store e.g. a rope base as an integer.
  double as_f64() const;
  float as_f32() const;
  bool as_bool() const;
  std::string_view as_string() const;
  const GgufArray& as_array() const;

 private:
  using Storage = std::variant<std::uint64_t, std::int64_t, double, bool, std::string_view,
                               std::shared_ptr<const GgufArray>>;
  GgufValue(GgufValueType type, Storage value) : type_(type), value_(std::move(value)) {}
  [[noreturn]] void throw_kind(const char* wanted) const;

  GgufValueType type_;
  Storage value_;
};

// A homogeneous metadata array: fixed-size scalars stay packed in the file and are decoded on
// access (a 49152-entry token-type table costs no copies); strings are views; nested arrays are
// parsed eagerly.
class GgufArray {
 public:
  static GgufArray scalars(GgufValueType element_type, std::size_t count,
                           std::span<const std::byte> packed);
  static GgufArray strings(std::vector<std::string_view> items);
  static GgufArray arrays(std::vector<GgufValue> items);

  GgufValueType element_type() const { return element_type_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Bounds-checked element access.
  GgufValue at(std::size_t index) const;

  // Whole-array conversions with the same exactness rules as GgufValue's accessors.
  std::vector<std::string> to_strings() const;
  std::vector<std::string_view> string_views() const;
  std::vector<std::int64_t> to_i64() const;
  std::vector<std::uint64_t> to_u64() const;
  std::vector<float> to_f32() const;
  std::vector<double> to_f64() const;

 private:
  GgufArray(GgufValueType element_type, std::size_t size)
      : element_type_(element_type), size_(size) {}
  [[noreturn]] void throw_kind(const char* wanted) const;

  GgufValueType element_type_;
  std::size_t size_;
  std::span<const std::byte> packed_;
  std::vector<std::string_view> strings_;
  std::vector<GgufValue> arrays_;
};

}  // namespace capkv::llm
