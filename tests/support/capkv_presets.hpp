#pragma once

// The CapKV presets as test parameters, with what each needs from a layer.

#include <string>

#include "capkv/capkv.hpp"
#include "support/random_cache.hpp"

namespace capkv_test {

enum class CapKVPreset { kDefault, kPaper, kKvpress, kKeyLeverage };

inline std::string name_of(CapKVPreset p) {
  switch (p) {
    case CapKVPreset::kDefault:
      return "Default";
    case CapKVPreset::kPaper:
      return "Paper";
    case CapKVPreset::kKvpress:
      return "Kvpress";
    case CapKVPreset::kKeyLeverage:
      return "KeyLeverage";
  }
  return "?";
}

inline capkv::CapKV make_capkv(CapKVPreset p) {
  switch (p) {
    case CapKVPreset::kDefault:
      return capkv::CapKV();
    case CapKVPreset::kPaper:
      return capkv::CapKV::paper();
    case CapKVPreset::kKvpress:
      return capkv::CapKV::kvpress();
    case CapKVPreset::kKeyLeverage:
      return capkv::CapKV::key_leverage(2.0);
  }
  return capkv::CapKV();
}

// The kvpress anchor reads pre-RoPE queries and the RoPE parameters; the post-RoPE queries are
// their rotation, given too, as an engine would.
inline void prepare_for(CapKVPreset p, Layer& l) {
  if (p == CapKVPreset::kKvpress)
    apply_rope_to_queries(l, capkv::Rope{10000.0, capkv::RopeLayout::kHalf});
}

}  // namespace capkv_test
