#include "tokenizer/pre_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdexcept>
#include <string>

#include "tokenizer/utf8.hpp"

namespace capkv::llm {
namespace {

// The GPT-2 pre-tokenizer regex, as Hugging Face's ByteLevel pre-tokenizer and llama.cpp use it:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \s spelled out as Unicode's White_Space property. PCRE2's own \s under UCP also matches
// U+180E MONGOLIAN VOWEL SEPARATOR (a space before Unicode 6.3), which the reference (Oniguruma)
// and llama.cpp do not, and that one character would change tokenization around it.
// Contractions are case-sensitive there, so they are here.
std::string gpt2_pattern() {
  const std::string space = R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A})"
                            R"(\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" + space + R"(\p{L}\p{N}]+|[)" + space +
         "]+(?![^" + space + "])|[" + space + "]+";
}

constexpr std::string_view kDigitPattern = R"(\p{N})";

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using Code = std::unique_ptr<pcre2_code, CodeDeleter>;
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

Code compile(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  Code code{pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr)};
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    throw std::runtime_error("capkv tokenizer: PCRE2 cannot compile the pre-tokenizer regex at " +
                             std::to_string(offset) + ": " +
                             reinterpret_cast<const char*>(message));
  }
  // JIT is a large speed-up but optional: where it is unavailable the interpreter gives the same
  // matches, so a failure here is not an error.
  pcre2_jit_compile(code.get(), PCRE2_JIT_COMPLETE);
  return code;
}

// Finds the next match of `code` in `subject` at or after `start`; false when there is none or
// PCRE2 reports an error (callers then keep the rest of the subject as one piece, losing nothing).
bool find(const pcre2_code* code, std::string_view subject, std::size_t start,
          pcre2_match_data* data, std::size_t& match_begin, std::size_t& match_end) {
  // The subject was validated by the caller, and PCRE2 would otherwise re-check it on every call.
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(),
                             start, PCRE2_NO_UTF_CHECK, data, nullptr);
  if (rc < 0) return false;
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
  match_begin = ovector[0];
  match_end = ovector[1];
  return match_end <= subject.size() && match_begin <= match_end && match_begin >= start;
}

}  // namespace

struct PreTokenizer::Regexes {
  Code gpt2 = compile(gpt2_pattern());
  Code digit = compile(kDigitPattern);
};

PreTokenizer::PreTokenizer() : regexes_(std::make_unique<Regexes>()) {}
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  MatchData data{pcre2_match_data_create(1, nullptr)};
  if (!data) throw std::bad_alloc();

  // Each piece is a separate subject, so the regex's (?!\S) sees the end of the piece, not the
  // digit or invalid byte that follows it, exactly as when the pieces are split one after another.
  const auto split_words = [&](std::string_view part) {
    std::size_t pos = 0;
    while (pos < part.size()) {
      std::size_t begin = 0;
      std::size_t end = 0;
      if (!find(regexes_->gpt2.get(), part, pos, data.get(), begin, end)) {
        pieces.push_back(part.substr(pos));
        return;
      }
      if (begin > pos) pieces.push_back(part.substr(pos, begin - pos));
      // Every branch of the regex consumes a character; guard anyway so a surprise cannot loop.
      if (end == begin) end = begin + utf8_sequence_length(part, begin);
      pieces.push_back(part.substr(begin, end - begin));
      pos = end;
    }
  };
  const auto split_valid = [&](std::string_view run) {
    std::size_t pos = 0;
    while (pos < run.size()) {
      std::size_t begin = 0;
      std::size_t end = 0;
      if (!find(regexes_->digit.get(), run, pos, data.get(), begin, end) || end == begin) {
        split_words(run.substr(pos));
        return;
      }
      if (begin > pos) split_words(run.substr(pos, begin - pos));
      pieces.push_back(run.substr(begin, end - begin));
      pos = end;
    }
  };

  std::size_t run_start = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t length = utf8_sequence_length(text, pos);
    if (length > 0) {
      pos += length;
      continue;
    }
    split_valid(text.substr(run_start, pos - run_start));
    pieces.push_back(text.substr(pos, 1));
    run_start = ++pos;
  }
  split_valid(text.substr(run_start));
  return pieces;
}

}  // namespace capkv::llm
