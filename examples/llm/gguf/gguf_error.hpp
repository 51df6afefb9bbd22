#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace capkv::llm {

// Every problem with a GGUF file (malformed, truncated, hostile, unsupported) surfaces as this one
// type, so a caller can tell "bad model file" apart from programming errors.
class GgufError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `text` in single quotes for an error message. Keys and names come from untrusted bytes, so
// non-printable bytes are escaped as \xNN and long names are cut.
std::string gguf_quote(std::string_view text);

}  // namespace capkv::llm
