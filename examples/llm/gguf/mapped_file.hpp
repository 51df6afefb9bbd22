#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace capkv::llm {

// A read-only, private memory mapping of a whole file (POSIX mmap), released on destruction.
// Weights are read straight from the page cache instead of being copied into the heap first.
class MappedFile {
 public:
  MappedFile() = default;
  // Throws GgufError naming the path and the OS error when the file cannot be opened or mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }

 private:
  void release() noexcept;

  // Null for an empty file: mmap of length 0 is an error, so nothing is mapped.
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace capkv::llm
