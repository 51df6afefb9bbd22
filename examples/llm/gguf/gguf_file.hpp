#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf_error.hpp"
#include "gguf_tensor_info.hpp"
#include "gguf_value.hpp"
#include "mapped_file.hpp"

namespace capkv::llm {

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

// A parsed GGUF file (versions 2 and 3, little-endian): typed metadata, the tensor directory and
// views of each tensor's bytes. Everything is validated up front, so once construction succeeds
// every tensor_data() view lies inside the file.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata key/values,
// the tensor infos, then the data section at align_up(end of infos, general.alignment or 32).
class GgufFile {
 public:
  static constexpr std::uint64_t kDefaultAlignment = 32;

  // Memory-maps `path`. Throws GgufError for I/O failures and for any malformed content.
  static GgufFile open(const std::filesystem::path& path);
  // Parses bytes the caller keeps alive for the lifetime of the returned object (no copy).
  static GgufFile parse(std::span<const std::byte> bytes, std::string source = "<memory>");

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;

  // The path given to open(), or the `source` label given to parse(); used in error messages.
  const std::string& source() const { return source_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }
  std::span<const std::byte> bytes() const { return bytes_; }

  // --- Metadata, in file order. ---
  const std::vector<GgufKeyValue>& metadata() const { return metadata_; }
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const GgufValue* find(std::string_view key) const;
  // Throws GgufError "missing metadata key" when absent.
  const GgufValue& at(std::string_view key) const;

  // Typed getters: throw GgufError naming the key when it is absent, of an incompatible kind or out
  // of range. Integers may be stored with any integer kind (u32 vs u64 differs between converters).
  std::uint64_t get_u64(std::string_view key) const;
  std::uint32_t get_u32(std::string_view key) const;
  std::int64_t get_i64(std::string_view key) const;
  std::int32_t get_i32(std::string_view key) const;
  double get_f64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  const GgufArray& get_array(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<std::int64_t> get_i64_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;

  // Same, but `fallback` when the key is absent (a present key of the wrong kind still throws).
  std::uint64_t get_u64_or(std::string_view key, std::uint64_t fallback) const;
  std::uint32_t get_u32_or(std::string_view key, std::uint32_t fallback) const;
  float get_f32_or(std::string_view key, float fallback) const;
  bool get_bool_or(std::string_view key, bool fallback) const;
  std::string get_string_or(std::string_view key, std::string_view fallback) const;

  // --- Tensors, in file order. ---
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // Throws GgufError "missing tensor" when absent.
  const GgufTensorInfo& tensor(std::string_view name) const;
  // The tensor's raw bytes (n_bytes of them), inside this file's buffer.
  std::span<const std::byte> tensor_data(const GgufTensorInfo& info) const;
  std::span<const std::byte> tensor_data(std::string_view name) const {
    return tensor_data(tensor(name));
  }

 private:
  GgufFile() = default;
  void parse_all();
  [[noreturn]] void fail(const std::string& message) const;

  MappedFile mapping_;  // empty when parsing a caller's buffer
  std::span<const std::byte> bytes_;
  std::string source_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = kDefaultAlignment;
  std::uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  std::map<std::string, std::size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace capkv::llm
