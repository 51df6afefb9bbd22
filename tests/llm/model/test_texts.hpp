#pragma once

// The texts the model tests read: a prose passage written for this repository (no OS dependency)
// and, for the long-context test, the GPL-3 text every Debian system ships.

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#ifndef CAPKV_MODEL_TEST_DATA
#error "CAPKV_MODEL_TEST_DATA must name tests/llm/model/data"
#endif

namespace capkv::llm::testing {

inline std::filesystem::path prose_path() {
  return std::filesystem::path(CAPKV_MODEL_TEST_DATA) / "prose.txt";
}
inline std::filesystem::path gpl3_path() { return "/usr/share/common-licenses/GPL-3"; }

// The whole file, or nothing when it cannot be read.
inline std::optional<std::string> read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace capkv::llm::testing
