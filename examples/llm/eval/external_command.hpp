#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>

namespace capkv::llm::eval {

// Runs `command` through /bin/sh and returns its exit status (-1 when it could not run or was
// killed) and its combined stdout and stderr. For the helper programs the tool relies on without
// linking them: gnuplot and sha256sum.
std::pair<int, std::string> run_command(const std::string& command);

// The path single-quoted for /bin/sh.
std::string shell_quoted(const std::filesystem::path& path);

// The file's sha256 from sha256sum, or nothing when it cannot be computed.
std::optional<std::string> sha256_of_file(const std::filesystem::path& path);

}  // namespace capkv::llm::eval
