#include <capkv/capkv.hpp>
#include <cstdio>
#include <vector>

// Keeps 4 of 16 tokens by key norm and checks the answer, so a broken package fails the run.
int main() {
  const std::int64_t n = 16, heads = 1, dim = 2;
  std::vector<float> keys(n * dim), values(n * dim, 1.0f);
  for (std::int64_t t = 0; t < n; ++t) keys[t * dim] = static_cast<float>((t * 7) % n);
  capkv::LayerInputs in;
  in.keys = {keys.data(), capkv::DType::kF32, capkv::Layout::kTokensHeadsDim, n, heads, dim};
  in.values = {values.data(), capkv::DType::kF32, capkv::Layout::kTokensHeadsDim, n, heads, dim};
  const capkv::Selection sel = capkv::select(capkv::L2Norm{}, in, capkv::Budget::tokens(4));
  // Norms are (7t mod 16); the four smallest are at t = 0, 7, 14, 5 (norms 0, 1, 2, 3).
  const std::vector<std::int32_t> want{0, 5, 7, 14};
  if (std::vector<std::int32_t>(sel.head(0).begin(), sel.head(0).end()) != want) {
    std::puts("consumer: wrong selection");
    return 1;
  }
  std::puts("consumer: ok");
  return 0;
}
