#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "gguf_error.hpp"

namespace capkv::llm {

// A forward cursor over untrusted bytes. Every read checks the remaining length first (without
// forming out-of-range pointers or overflowing), so a truncated or hostile file ends in a GgufError
// that says what was being read and where, never in an out-of-bounds access. Reads go through
// memcpy because nothing in a GGUF header is aligned.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  std::size_t offset() const { return offset_; }
  std::size_t remaining() const { return bytes_.size() - offset_; }

  template <typename T>
  T read(std::string_view what) {
    static_assert(std::is_trivially_copyable_v<T>);
    require(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  std::span<const std::byte> read_bytes(std::uint64_t n, std::string_view what) {
    require(n, what);
    const auto out = bytes_.subspan(offset_, static_cast<std::size_t>(n));
    offset_ += static_cast<std::size_t>(n);
    return out;
  }

  // A GGUF string: u64 byte length, then the bytes (not NUL-terminated, not validated as UTF-8).
  std::string_view read_string(std::string_view what) {
    const auto length = read<std::uint64_t>(what);
    if (length > remaining()) {
      throw GgufError("truncated GGUF: " + std::string(what) + " claims " + std::to_string(length) +
                      " bytes at offset " + std::to_string(offset_) + " but only " +
                      std::to_string(remaining()) + " remain");
    }
    const auto bytes = read_bytes(length, what);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }

 private:
  void require(std::uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      throw GgufError("truncated GGUF: need " + std::to_string(n) + " bytes for " +
                      std::string(what) + " at offset " + std::to_string(offset_) + ", only " +
                      std::to_string(remaining()) + " remain");
    }
  }

  std::span<const std::byte> bytes_;
  std::size_t offset_ = 0;
};

}  // namespace capkv::llm
