#include <capkv/cuda.cuh>
#include <cstdint>
#include <cstdio>

// The CUDA half of the consumer: the umbrella header must compile from the installed tree (every
// launcher and kernel it includes was installed) and capkv::cuda must link. Host-side calls only,
// so it runs on a machine without a GPU.
int main() {
  void* fake = reinterpret_cast<void*>(std::uintptr_t{1} << 20);  // never dereferenced
  capkv::cuda::CompactInPlace::Arguments a;
  a.cache = capkv::MutableTensorView(fake, capkv::DType::kBF16, capkv::Layout::kTokensHeadsDim, 16,
                                     2, 64);
  a.indices = static_cast<const std::int32_t*>(fake);
  a.indices_ld = 4;
  a.kept = 4;
  const bool accepted = capkv::cuda::CompactInPlace::can_implement(a).ok() &&
                        capkv::cuda::CompactInPlace::workspace_size(a) > 0;
  a.kept = 17;
  const capkv::cuda::Status refused = capkv::cuda::CompactInPlace::can_implement(a);
  if (!accepted || refused.ok() || refused.to_string().rfind("kept:", 0) != 0) {
    std::puts("consumer_cuda: wrong launcher answers");
    return 1;
  }
  std::puts("consumer_cuda: ok");
  return 0;
}
