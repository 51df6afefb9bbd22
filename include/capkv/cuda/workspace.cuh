#pragma once

// Carves the caller's workspace into a launcher's buffers. The same code computes the size (with a
// null base) and the pointers (with the real one), so the two cannot disagree.

#include <cstddef>
#include <cstdint>

namespace capkv::cuda {

class WorkspaceCarver {
 public:
  static constexpr std::size_t kAlignment = 256;  // cudaMalloc's, and enough for any vector load

  explicit WorkspaceCarver(void* base = nullptr) : base_(static_cast<std::byte*>(base)) {}

  template <class T>
  T* take(std::size_t count) {
    offset_ = (offset_ + kAlignment - 1) / kAlignment * kAlignment;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += count * sizeof(T);
    return p;
  }

  std::size_t size() const { return (offset_ + kAlignment - 1) / kAlignment * kAlignment; }

 private:
  std::byte* base_;
  std::size_t offset_ = 0;
};

}  // namespace capkv::cuda
