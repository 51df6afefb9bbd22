#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace capkv {

// Every argument error the CPU path reports. The message starts with the argument's name so a caller
// can tell which of several buffers was wrong without parsing prose.
class Error : public std::invalid_argument {
 public:
  Error(std::string_view argument, std::string_view what)
      : std::invalid_argument(std::string(argument) + ": " + std::string(what)),
        argument_(argument) {}

  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

inline void require(bool condition, std::string_view argument, std::string_view what) {
  if (!condition) throw Error(argument, what);
}

}  // namespace capkv
