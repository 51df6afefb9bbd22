#include "eval/external_command.hpp"

#include <sys/wait.h>

#include <array>
#include <cctype>
#include <cstdio>

namespace capkv::llm::eval {

std::pair<int, std::string> run_command(const std::string& command) {
  std::FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  std::array<char, 512> buffer{};
  while (std::fgets(buffer.data(), static_cast<int>(buffer.size()), pipe) != nullptr) {
    output += buffer.data();
  }
  const int status = pclose(pipe);
  return {status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string shell_quoted(const std::filesystem::path& path) {
  std::string s = "'";
  for (char c : path.string()) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return s + "'";
}

std::optional<std::string> sha256_of_file(const std::filesystem::path& path) {
  const auto [status, output] = run_command("sha256sum " + shell_quoted(path));
  if (status != 0 || output.size() < 64) return std::nullopt;
  const std::string digest = output.substr(0, 64);
  for (char c : digest) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return digest;
}

}  // namespace capkv::llm::eval
