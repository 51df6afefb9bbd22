#pragma once

// A tiny GGUF writer for the tests: builds files byte by byte so each test states exactly what is
// on disk, including deliberately broken files.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gguf/ggml_type.hpp"
#include "gguf/gguf_value.hpp"

namespace capkv::llm::testing {

// Little-endian byte sink.
class Bytes {
 public:
  template <typename T>
  Bytes& put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    data_.insert(data_.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& u8(std::uint8_t v) { return put(v); }
  Bytes& u16(std::uint16_t v) { return put(v); }
  Bytes& u32(std::uint32_t v) { return put(v); }
  Bytes& u64(std::uint64_t v) { return put(v); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    return raw(s);
  }
  Bytes& raw(std::string_view s) {
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    data_.insert(data_.end(), p, p + s.size());
    return *this;
  }
  Bytes& raw(std::span<const std::byte> s) {
    data_.insert(data_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad_to(std::size_t alignment) {
    while (data_.size() % alignment != 0) data_.push_back(std::byte{0});
    return *this;
  }
  std::size_t size() const { return data_.size(); }
  const std::vector<std::byte>& data() const { return data_; }

 private:
  std::vector<std::byte> data_;
};

// GGUF header + metadata + tensor infos + aligned data section.
class GgufWriter {
 public:
  explicit GgufWriter(std::uint32_t version = 3) : version_(version) {}

  // Appends one metadata entry whose value bytes (after the type id) are `payload`.
  GgufWriter& kv_raw(std::string_view key, GgufValueType type, const Bytes& payload) {
    kv_.str(key).u32(static_cast<std::uint32_t>(type)).raw(payload.data());
    ++n_kv_;
    return *this;
  }
  template <typename T>
  GgufWriter& kv(std::string_view key, GgufValueType type, T value) {
    Bytes b;
    b.put(value);
    return kv_raw(key, type, b);
  }
  GgufWriter& kv_bool(std::string_view key, bool value) {
    return kv(key, GgufValueType::kBool, std::uint8_t{value ? std::uint8_t{1} : std::uint8_t{0}});
  }
  GgufWriter& kv_string(std::string_view key, std::string_view value) {
    Bytes b;
    b.str(value);
    return kv_raw(key, GgufValueType::kString, b);
  }
  template <typename T>
  GgufWriter& kv_array(std::string_view key, GgufValueType element, const std::vector<T>& items) {
    Bytes b;
    b.u32(static_cast<std::uint32_t>(element)).u64(items.size());
    for (const T& item : items) b.put(item);
    return kv_raw(key, GgufValueType::kArray, b);
  }
  GgufWriter& kv_string_array(std::string_view key, const std::vector<std::string>& items) {
    Bytes b;
    b.u32(static_cast<std::uint32_t>(GgufValueType::kString)).u64(items.size());
    for (const auto& item : items) b.str(item);
    return kv_raw(key, GgufValueType::kArray, b);
  }
  // Sets general.alignment (as u32, as the spec says) and uses it for the layout.
  GgufWriter& alignment(std::uint32_t value) {
    alignment_ = value;
    return kv("general.alignment", GgufValueType::kUint32, value);
  }

  // Adds a tensor whose data is `bytes`, placed at the next aligned data offset (or at `offset`
  // when given, for tests that need a specific layout).
  GgufWriter& tensor(std::string_view name, std::vector<std::uint64_t> shape, std::uint32_t type,
                     std::span<const std::byte> bytes, std::int64_t offset = -1) {
    data_.pad_to(alignment_);
    const std::uint64_t at = offset >= 0 ? static_cast<std::uint64_t>(offset) : data_.size();
    infos_.str(name).u32(static_cast<std::uint32_t>(shape.size()));
    for (auto ne : shape) infos_.u64(ne);
    infos_.u32(type).u64(at);
    data_.raw(bytes);
    ++n_tensors_;
    return *this;
  }
  GgufWriter& tensor(std::string_view name, std::vector<std::uint64_t> shape, GgmlType type,
                     std::span<const std::byte> bytes) {
    return tensor(name, std::move(shape), static_cast<std::uint32_t>(type), bytes);
  }

  std::vector<std::byte> bytes() const {
    Bytes out;
    out.raw("GGUF").u32(version_).u64(n_tensors_).u64(n_kv_);
    out.raw(kv_.data()).raw(infos_.data());
    if (n_tensors_ > 0) {
      out.pad_to(alignment_);
      out.raw(data_.data());
    }
    return out.data();
  }

 private:
  std::uint32_t version_;
  std::uint64_t alignment_ = 32;
  std::uint64_t n_kv_ = 0;
  std::uint64_t n_tensors_ = 0;
  Bytes kv_;
  Bytes infos_;
  Bytes data_;
};

template <typename T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

inline void write_file(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

}  // namespace capkv::llm::testing
