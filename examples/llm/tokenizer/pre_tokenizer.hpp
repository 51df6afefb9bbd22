#pragma once

#include <memory>
#include <string_view>
#include <vector>

namespace capkv::llm {

// SmolLM2's pre-tokenizer ("smollm" in GGUF): every numeric character (\p{N}) becomes a piece of
// its own, then the text between them is split by the GPT-2 regex. BPE merges never cross a piece
// boundary, so this decides e.g. that "12345" costs five tokens.
//
// The regex runs in PCRE2 with UTF and UCP so that \p{L}, \p{N} and \s follow Unicode, as in the
// Hugging Face reference. Input need not be valid UTF-8: bytes that are not part of a well-formed
// sequence become one-byte pieces and the regex runs on the valid stretches between them.
//
// Thread-safe: split() keeps its match state on the caller's stack.
class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // The pieces, in order, as views into `text`; they concatenate back to `text` exactly.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Regexes;
  std::unique_ptr<Regexes> regexes_;
};

}  // namespace capkv::llm
