#pragma once

// Helpers of the GPU tests: the skip without a device, owning device buffers that start poisoned
// (so a test can prove every output element was written), and test tensors stored in any dtype,
// layout and stride whose exact stored values the CPU references read.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capkv/core/dtype.hpp"
#include "capkv/core/tensor_view.hpp"
#include "capkv/cuda/status.cuh"

namespace capkv_cuda_test {

// Why there is no usable device, or empty when there is one.
inline std::string missing_device() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
  }
  if (count == 0) return "cudaGetDeviceCount reports 0 devices";
  return {};
}

#define CAPKV_REQUIRE_DEVICE()                                   \
  do {                                                           \
    const std::string why = ::capkv_cuda_test::missing_device(); \
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why; \
  } while (false)

#define CAPKV_CUDA_CHECK(call)                                                       \
  do {                                                                               \
    const cudaError_t capkv_e = (call);                                              \
    ASSERT_EQ(capkv_e, cudaSuccess) << #call << ": " << cudaGetErrorString(capkv_e); \
  } while (false)

// An owning device allocation. Starts filled with `poison` bytes (0xFF: NaN for float and double,
// -1 for integers) so an element a kernel failed to write stands out.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count = 0, unsigned char poison = 0xFF) {
    reset(count, poison);
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  // Replaces the allocation with a fresh, poisoned one of `count` elements.
  void reset(std::size_t count, unsigned char poison = 0xFF) {
    release();
    count_ = count;
    if (count_ == 0) return;
    if (cudaMalloc(&ptr_, bytes()) != cudaSuccess) {
      ptr_ = nullptr;
      ADD_FAILURE() << "cudaMalloc of " << bytes() << " bytes failed";
      count_ = 0;
      return;
    }
    cudaMemset(ptr_, poison, bytes());
  }

  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }
  void upload(const std::vector<T>& host) {
    if (count_) cudaMemcpy(ptr_, host.data(), bytes(), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    if (count_) cudaMemcpy(host.data(), ptr_, bytes(), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  void release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    count_ = 0;
  }

  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

// How a test tensor sits in memory: the two packed layouts, a padded token stride (as in a
// preallocated cache; rows stay 16-byte aligned, the kernels' vector path) and a dim stride of 2
// (the scalar path).
enum class Packing { kTokensHeadsDim, kHeadsTokensDim, kPaddedTokens, kStridedDim };

inline const char* name_of(Packing p) {
  switch (p) {
    case Packing::kTokensHeadsDim:
      return "thd";
    case Packing::kHeadsTokensDim:
      return "htd";
    case Packing::kPaddedTokens:
      return "padded";
    case Packing::kStridedDim:
      return "strided";
  }
  return "?";
}

// A [tokens, heads, dim] tensor stored in `dtype` with the strides of `packing`. value() is the
// stored number (after rounding to the dtype), which is exactly what the kernels read, so the
// references compute from the same inputs.
class StoredTensor {
 public:
  StoredTensor(std::int64_t n, std::int64_t heads, std::int64_t d, capkv::DType dtype,
               Packing packing)
      : n_(n), heads_(heads), d_(d), dtype_(dtype) {
    switch (packing) {
      case Packing::kTokensHeadsDim:
        strides_ = {heads * d, d, 1};
        break;
      case Packing::kHeadsTokensDim:
        strides_ = {d, n * d, 1};
        break;
      case Packing::kPaddedTokens:
        strides_ = {heads * d + 16, d, 1};
        break;
      case Packing::kStridedDim:
        strides_ = {heads * 2 * d, 2 * d, 2};
        break;
    }
    extent_ = std::max<std::int64_t>(
        1, (n - 1) * strides_.token + (heads - 1) * strides_.head + (d - 1) * strides_.dim + 1);
    if (n == 0) extent_ = 1;
    bytes_.assign(static_cast<std::size_t>(extent_) * capkv::size_of(dtype), 0);
    // Gaps between rows hold a loud value, so a kernel that reads outside the view gets garbage.
    for (std::int64_t e = 0; e < extent_; ++e) store_raw(e, 1.0e30f);
  }

  std::int64_t n() const { return n_; }
  std::int64_t heads() const { return heads_; }
  std::int64_t d() const { return d_; }
  capkv::DType dtype() const { return dtype_; }

  void set(std::int64_t t, std::int64_t h, std::int64_t i, float x) {
    store_raw(offset(t, h, i), x);
  }
  float value(std::int64_t t, std::int64_t h, std::int64_t i) const {
    return load_raw(offset(t, h, i));
  }

  capkv::TensorView view(const void* base) const {
    return capkv::TensorView(base, dtype_, n_, heads_, d_, strides_).with_extent(extent_);
  }
  capkv::TensorView host_view() const { return view(bytes_.data()); }
  const std::vector<unsigned char>& bytes() const { return bytes_; }

 private:
  std::int64_t offset(std::int64_t t, std::int64_t h, std::int64_t i) const {
    return t * strides_.token + h * strides_.head + i * strides_.dim;
  }
  void store_raw(std::int64_t o, float x) {
    unsigned char* p = bytes_.data() + o * capkv::size_of(dtype_);
    if (dtype_ == capkv::DType::kF32) {
      std::memcpy(p, &x, 4);
    } else {
      const std::uint16_t h =
          dtype_ == capkv::DType::kF16 ? capkv::float_to_half(x) : capkv::float_to_bf16(x);
      std::memcpy(p, &h, 2);
    }
  }
  float load_raw(std::int64_t o) const {
    const unsigned char* p = bytes_.data() + o * capkv::size_of(dtype_);
    if (dtype_ == capkv::DType::kF32) {
      float x;
      std::memcpy(&x, p, 4);
      return x;
    }
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return dtype_ == capkv::DType::kF16 ? capkv::half_to_float(h) : capkv::bf16_to_float(h);
  }

  std::int64_t n_;
  std::int64_t heads_;
  std::int64_t d_;
  capkv::DType dtype_;
  capkv::Strides strides_{};
  std::int64_t extent_ = 1;
  std::vector<unsigned char> bytes_;
};

// A StoredTensor and its device copy (none with upload = false, for host-only checks).
struct DeviceTensor {
  StoredTensor host;
  DeviceBuffer<unsigned char> device;

  explicit DeviceTensor(StoredTensor t, bool upload = true)
      : host(std::move(t)), device(upload ? host.bytes().size() : 0) {
    device.upload(host.bytes());
  }
  capkv::TensorView view() const { return host.view(device.get()); }
  capkv::TensorView host_view() const { return host.host_view(); }
};

// Cache-like random data: Gaussian entries plus, per head, a shared direction on every third token
// (real K and V are far from isotropic, which is what makes leverage and relevance differ from
// token to token), and a few heavy tokens.
inline StoredTensor random_tensor(std::int64_t n, std::int64_t heads, std::int64_t d,
                                  capkv::DType dtype, Packing packing, std::uint64_t seed,
                                  float scale = 1.0f) {
  StoredTensor t(n, heads, d, dtype, packing);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> direction(static_cast<std::size_t>(heads * d));
  for (auto& x : direction) x = normal(rng);
  for (std::int64_t i = 0; i < n; ++i) {
    const float heavy = i % 17 == 5 ? 3.0f : 1.0f;
    for (std::int64_t h = 0; h < heads; ++h) {
      for (std::int64_t c = 0; c < d; ++c) {
        float x = normal(rng) * heavy;
        if (i % 3 == 0) x += 1.5f * direction[h * d + c];
        t.set(i, h, c, scale * x);
      }
    }
  }
  return t;
}

// Runs a launcher's run() with a workspace of exactly workspace_size() bytes, then waits.
template <class Launcher>
capkv::cuda::Status run_launcher(const typename Launcher::Arguments& args,
                                 DeviceBuffer<unsigned char>& workspace) {
  using capkv::cuda::Status;
  Status s = Launcher::can_implement(args);
  if (!s) return s;
  const std::size_t bytes = Launcher::workspace_size(args);
  workspace.reset(bytes);
  s = Launcher::run(args, workspace.get(), bytes, nullptr);
  if (!s) return s;
  const cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? Status::success() : Status::cuda(e, "cudaDeviceSynchronize");
}

// A device pointer for host-side argument checks; never dereferenced.
template <class T>
T* fake_device_pointer() {
  return reinterpret_cast<T*>(std::uintptr_t{1} << 20);
}

}  // namespace capkv_cuda_test
