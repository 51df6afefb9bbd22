#include "gguf_value.hpp"

#include <cstring>
#include <limits>
#include <utility>

#include "gguf_error.hpp"

namespace capkv::llm {
namespace {

template <typename T>
T load(const std::byte* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return value;
}

}  // namespace

std::string gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
      return "u8";
    case GgufValueType::kInt8:
      return "i8";
    case GgufValueType::kUint16:
      return "u16";
    case GgufValueType::kInt16:
      return "i16";
    case GgufValueType::kUint32:
      return "u32";
    case GgufValueType::kInt32:
      return "i32";
    case GgufValueType::kFloat32:
      return "f32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "u64";
    case GgufValueType::kInt64:
      return "i64";
    case GgufValueType::kFloat64:
      return "f64";
  }
  return "value-type#" + std::to_string(static_cast<std::uint32_t>(type));
}

bool gguf_value_type_is_valid(std::uint32_t id) { return id <= 12; }

bool gguf_value_type_is_integer(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool gguf_value_type_is_float(GgufValueType type) {
  return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64;
}

std::size_t gguf_scalar_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

GgufValue GgufValue::decode_scalar(GgufValueType type, const std::byte* bytes) {
  switch (type) {
    case GgufValueType::kUint8:
      return {type, std::uint64_t{load<std::uint8_t>(bytes)}};
    case GgufValueType::kUint16:
      return {type, std::uint64_t{load<std::uint16_t>(bytes)}};
    case GgufValueType::kUint32:
      return {type, std::uint64_t{load<std::uint32_t>(bytes)}};
    case GgufValueType::kUint64:
      return {type, load<std::uint64_t>(bytes)};
    case GgufValueType::kInt8:
      return {type, std::int64_t{load<std::int8_t>(bytes)}};
    case GgufValueType::kInt16:
      return {type, std::int64_t{load<std::int16_t>(bytes)}};
    case GgufValueType::kInt32:
      return {type, std::int64_t{load<std::int32_t>(bytes)}};
    case GgufValueType::kInt64:
      return {type, load<std::int64_t>(bytes)};
    case GgufValueType::kFloat32:
      return {type, double{load<float>(bytes)}};
    case GgufValueType::kFloat64:
      return {type, load<double>(bytes)};
    case GgufValueType::kBool: {
      const auto raw = load<std::uint8_t>(bytes);
      if (raw > 1)
        throw GgufError("invalid bool value " + std::to_string(raw) + " (must be 0 or 1)");
      return {type, raw == 1};
    }
    case GgufValueType::kString:
    case GgufValueType::kArray:
      break;
  }
  throw GgufError("value type " + gguf_value_type_name(type) + " is not a fixed-size scalar");
}

GgufValue GgufValue::string(std::string_view text) { return {GgufValueType::kString, text}; }

GgufValue GgufValue::array(GgufArray array) {
  return {GgufValueType::kArray, std::make_shared<const GgufArray>(std::move(array))};
}

void GgufValue::throw_kind(const char* wanted) const {
  throw GgufError(std::string("expected ") + wanted + ", found " + gguf_value_type_name(type_));
}

std::uint64_t GgufValue::as_u64() const {
  if (const auto* u = std::get_if<std::uint64_t>(&value_)) return *u;
  if (const auto* i = std::get_if<std::int64_t>(&value_)) {
    if (*i < 0) throw GgufError("expected a non-negative integer, found " + std::to_string(*i));
    return static_cast<std::uint64_t>(*i);
  }
  throw_kind("an unsigned integer");
}

std::uint32_t GgufValue::as_u32() const {
  const std::uint64_t v = as_u64();
  if (v > std::numeric_limits<std::uint32_t>::max()) {
    throw GgufError("integer " + std::to_string(v) + " does not fit in u32");
  }
  return static_cast<std::uint32_t>(v);
}

std::int64_t GgufValue::as_i64() const {
  if (const auto* i = std::get_if<std::int64_t>(&value_)) return *i;
  if (const auto* u = std::get_if<std::uint64_t>(&value_)) {
    if (*u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      throw GgufError("integer " + std::to_string(*u) + " does not fit in i64");
    }
    return static_cast<std::int64_t>(*u);
  }
  throw_kind("an integer");
}

std::int32_t GgufValue::as_i32() const {
  const std::int64_t v = as_i64();
  if (v < std::numeric_limits<std::int32_t>::min() ||
      v > std::numeric_limits<std::int32_t>::max()) {
    throw GgufError("integer " + std::to_string(v) + " does not fit in i32");
  }
  return static_cast<std::int32_t>(v);
}

double GgufValue::as_f64() const {
  if (const auto* d = std::get_if<double>(&value_)) return *d;
  if (const auto* u = std::get_if<std::uint64_t>(&value_)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<std::int64_t>(&value_)) return static_cast<double>(*i);
  throw_kind("a number");
}

float GgufValue::as_f32() const { return static_cast<float>(as_f64()); }

bool GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&value_)) return *b;
  throw_kind("a bool");
}

std::string_view GgufValue::as_string() const {
  if (const auto* s = std::get_if<std::string_view>(&value_)) return *s;
  throw_kind("a string");
}

const GgufArray& GgufValue::as_array() const {
  if (const auto* a = std::get_if<std::shared_ptr<const GgufArray>>(&value_)) return **a;
  throw_kind("an array");
}

GgufArray GgufArray::scalars(GgufValueType element_type, std::size_t count,
                             std::span<const std::byte> packed) {
  const std::size_t width = gguf_scalar_size(element_type);
  if (width == 0) {
    throw GgufError("array element type " + gguf_value_type_name(element_type) +
                    " is not a fixed-size scalar");
  }
  if (count > packed.size() / width || count * width != packed.size()) {
    throw GgufError("array storage of " + std::to_string(packed.size()) + " bytes does not hold " +
                    std::to_string(count) + " " + gguf_value_type_name(element_type) + " elements");
  }
  GgufArray array(element_type, count);
  array.packed_ = packed;
  return array;
}

GgufArray GgufArray::strings(std::vector<std::string_view> items) {
  GgufArray array(GgufValueType::kString, items.size());
  array.strings_ = std::move(items);
  return array;
}

GgufArray GgufArray::arrays(std::vector<GgufValue> items) {
  GgufArray array(GgufValueType::kArray, items.size());
  array.arrays_ = std::move(items);
  return array;
}

void GgufArray::throw_kind(const char* wanted) const {
  throw GgufError(std::string("expected an array of ") + wanted + ", found an array of " +
                  gguf_value_type_name(element_type_));
}

GgufValue GgufArray::at(std::size_t index) const {
  if (index >= size_) {
    throw GgufError("array index " + std::to_string(index) + " out of range (size " +
                    std::to_string(size_) + ")");
  }
  switch (element_type_) {
    case GgufValueType::kString:
      return GgufValue::string(strings_[index]);
    case GgufValueType::kArray:
      return arrays_[index];
    default: {
      const std::size_t width = gguf_scalar_size(element_type_);
      return GgufValue::decode_scalar(element_type_, packed_.data() + index * width);
    }
  }
}

std::vector<std::string> GgufArray::to_strings() const {
  if (element_type_ != GgufValueType::kString) throw_kind("strings");
  return {strings_.begin(), strings_.end()};
}

std::vector<std::string_view> GgufArray::string_views() const {
  if (element_type_ != GgufValueType::kString) throw_kind("strings");
  return strings_;
}

std::vector<std::int64_t> GgufArray::to_i64() const {
  if (!gguf_value_type_is_integer(element_type_)) throw_kind("integers");
  std::vector<std::int64_t> out;
  out.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) out.push_back(at(i).as_i64());
  return out;
}

std::vector<std::uint64_t> GgufArray::to_u64() const {
  if (!gguf_value_type_is_integer(element_type_)) throw_kind("integers");
  std::vector<std::uint64_t> out;
  out.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) out.push_back(at(i).as_u64());
  return out;
}

std::vector<double> GgufArray::to_f64() const {
  if (!gguf_value_type_is_integer(element_type_) && !gguf_value_type_is_float(element_type_)) {
    throw_kind("numbers");
  }
  std::vector<double> out;
  out.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) out.push_back(at(i).as_f64());
  return out;
}

std::vector<float> GgufArray::to_f32() const {
  if (!gguf_value_type_is_integer(element_type_) && !gguf_value_type_is_float(element_type_)) {
    throw_kind("numbers");
  }
  std::vector<float> out;
  out.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) out.push_back(at(i).as_f32());
  return out;
}

}  // namespace capkv::llm
