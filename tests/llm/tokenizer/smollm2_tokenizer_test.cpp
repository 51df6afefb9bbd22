// Tests against SmolLM2's real vocabulary. They need the model file (CAPKV_MODEL, or
// ~/.cache/capkv/SmolLM2-135M-Instruct.Q4_1.gguf; scripts/fetch_model.sh downloads it) and skip
// without it. The reference comparisons also need python3 with `gguf` and `tokenizers`.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gguf_vocabulary.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/utf8.hpp"

namespace capkv::llm {
namespace {

using Ids = std::vector<TokenId>;
namespace fs = std::filesystem;

std::string model_path() {
  if (const char* env = std::getenv("CAPKV_MODEL"); env != nullptr && *env != '\0') return env;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.cache/capkv/SmolLM2-135M-Instruct.Q4_1.gguf";
}

class SmolLM2Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(model_path())) return;
    tokenizer_ =
        std::make_unique<Tokenizer>(testing::GgufMetadataScanner(model_path()).read_vocabulary());
  }
  static void TearDownTestSuite() { tokenizer_.reset(); }

  void SetUp() override {
    if (!tokenizer_) {
      GTEST_SKIP() << "SmolLM2 model not found at " << model_path()
                   << " (set CAPKV_MODEL or run scripts/fetch_model.sh)";
    }
  }

  static const Tokenizer& tok() { return *tokenizer_; }

  static std::unique_ptr<Tokenizer> tokenizer_;
};

std::unique_ptr<Tokenizer> SmolLM2Tokenizer::tokenizer_;

TEST_F(SmolLM2Tokenizer, HasSmolLM2sVocabulary) {
  EXPECT_EQ(tok().size(), 49152u);
  EXPECT_EQ(tok().merge_count(), 48900u);
  for (TokenId id = 0; id <= 16; ++id) EXPECT_TRUE(tok().is_control(id)) << id;
  EXPECT_FALSE(tok().is_control(17));
  EXPECT_EQ(tok().control_token("<|endoftext|>"), 0);
  EXPECT_EQ(tok().control_token("<|im_start|>"), 1);
  EXPECT_EQ(tok().control_token("<|im_end|>"), 2);
}

// Expected ids from tests/llm/tokenizer/reference_encode.py: Hugging Face `tokenizers` 0.23.3 (a
// BPE model with the GGUF vocabulary and merges, pre-tokenizer Sequence[Digits(individual_digits),
// ByteLevel(add_prefix_space=False, use_regex=True)]), run on each string written to a file.
TEST_F(SmolLM2Tokenizer, MatchesKnownIds) {
  EXPECT_EQ(tok().encode("Hello world"), (Ids{19556, 905}));
  EXPECT_EQ(tok().encode("The capital of France is"), (Ids{504, 3575, 282, 4649, 314}));
  EXPECT_EQ(tok().encode("1234 apples"), (Ids{33, 34, 35, 36, 13855}));
  EXPECT_EQ(tok().encode("  leading spaces"), (Ids{216, 2899, 5600}));
  EXPECT_EQ(tok().encode("Caf\u00E9 na\u00EFve \u2014 \u4F60\u597D\u4E16\u754C \U0001F44B"),
            (Ids{51, 1939, 2756, 15486, 46494, 1841, 216, 18645, 250, 48392, 138, 7906, 240, 178,
                 239, 230, 15107, 235, 229}));
  EXPECT_EQ(tok().encode("I'm here, aren't you?\n\n\tTabs  and   spaces.   "),
            (Ids{57, 5248, 1535, 28, 4775, 982, 346, 47, 1116, 197, 68, 7366, 216, 284, 256, 5600,
                 30, 333}));
}

TEST_F(SmolLM2Tokenizer, KeepsControlTokenTextLiteral) {
  // Same reference without special-token parsing; with it, the text would start with id 1.
  const Ids ids = tok().encode("<|im_start|>user");
  EXPECT_EQ(ids, (Ids{44, 108, 306, 79, 3738, 108, 46, 4093}));
  EXPECT_EQ(tok().decode(ids), "<|im_start|>user");
}

TEST_F(SmolLM2Tokenizer, RendersTheChatTemplate) {
  ChatOptions options;
  options.default_system_prompt.clear();
  const std::vector<ChatMessage> messages = {{"user", "The capital of France is"}};
  const Ids ids = encode_chatml(tok(), messages, options);
  // <|im_start|>user\nThe capital of France is<|im_end|>\n<|im_start|>assistant\n, from the same
  // reference with --special on the rendered text.
  EXPECT_EQ(ids, (Ids{1, 4093, 198, 504, 3575, 282, 4649, 314, 2, 198, 1, 520, 9531, 198}));
  EXPECT_EQ(tok().decode(ids), render_chatml(messages, options));
  EXPECT_EQ(tok().decode(ids, ControlTokens::kSkip), "user\nThe capital of France is\nassistant\n");
}

// Valid UTF-8 from many scripts and character classes: what the regex's \p{L}, \p{N} and \s and
// the byte-level merges must agree on. Characters are from old Unicode versions so that PCRE2's
// and the reference's Unicode tables agree.
std::string random_unicode_text(std::mt19937& rng, std::size_t target_bytes, bool invalid_bytes) {
  static const std::vector<std::string> kWords = {"the",
                                                  "The",
                                                  "capital",
                                                  "of",
                                                  "France",
                                                  "is",
                                                  "Paris",
                                                  "don't",
                                                  "I'm",
                                                  "we're",
                                                  "you've",
                                                  "it'll",
                                                  "she'd",
                                                  "LET'S",
                                                  "hello",
                                                  "world",
                                                  "naïve",
                                                  "café",
                                                  "Straße",
                                                  "Ελληνικά",
                                                  "Привет",
                                                  "мир",
                                                  "مرحبا",
                                                  "שלום",
                                                  "नमस्ते",
                                                  "हिन्दी",
                                                  "สวัสดี",
                                                  "你好",
                                                  "世界",
                                                  "日本語",
                                                  "こんにちは",
                                                  "カタカナ",
                                                  "한국어",
                                                  "x²",
                                                  "½",
                                                  "Ⅷ",
                                                  "٣٤",
                                                  "४२",
                                                  "①",
                                                  "e\u0301",
                                                  "a\u0308\u0323",
                                                  "😀",
                                                  "👋🏽",
                                                  "👨‍👩‍👧",
                                                  "🇫🇷",
                                                  "∑",
                                                  "€",
                                                  "$",
                                                  "...",
                                                  "--",
                                                  "—",
                                                  "«",
                                                  "»",
                                                  "(",
                                                  ")",
                                                  "{",
                                                  "}",
                                                  "'",
                                                  "\"",
                                                  "#",
                                                  "@",
                                                  "_",
                                                  "\\",
                                                  "/",
                                                  "*",
                                                  "\u200B",
                                                  "\uFEFF",
                                                  "\u00AD"};
  static const std::vector<std::string> kSpaces = {
      " ",      " ",      " ",    " ",      "  ",     "   ",    "\n",     "\n\n",   "\t",
      "\r\n",   "\v",     "\f",   "\u00A0", "\u3000", "\u2003", "\u2028", "\u2029", "\u202F",
      "\u205F", "\u1680", " \n ", "\x1C",   "\x1F",   "\u0085", "\u180E"};
  std::string text;
  while (text.size() < target_bytes) {
    const unsigned kind = rng() % 10;
    if (kind < 6) {
      text += kWords[rng() % kWords.size()];
    } else if (kind < 8) {
      text += kSpaces[rng() % kSpaces.size()];
    } else if (kind < 9) {
      text += std::to_string(rng() % 100000);
    } else if (invalid_bytes) {
      text.push_back(static_cast<char>(0x80 + rng() % 0x80));
    } else {
      // Any assigned-looking code point from the BMP's older blocks.
      char32_t cp = 0xA0 + rng() % (0x2FFF - 0xA0);
      utf8_append(text, cp);
    }
  }
  return text;
}

TEST_F(SmolLM2Tokenizer, CannotSpellTwentyOneBytes) {
  // Bytes absent from SmolLM2's vocabulary (checked against the Hugging Face reference, which
  // drops them too): never in valid UTF-8, or rare ASCII controls.
  std::vector<int> missing;
  for (int b = 0; b < 256; ++b) {
    if (!tok().encodes_byte(static_cast<unsigned char>(b))) missing.push_back(b);
  }
  EXPECT_EQ(missing,
            (std::vector<int>{0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5,
                              0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF}));
  EXPECT_EQ(tok().decode(tok().encode("a\x04"
                                      "b\xFF"
                                      "c")),
            "abc");
}

TEST_F(SmolLM2Tokenizer, RoundTripsArbitraryText) {
  std::mt19937 rng(31337);
  for (int trial = 0; trial < 300; ++trial) {
    const std::string text = random_unicode_text(rng, 1 + rng() % 400, trial % 2 == 1);
    const Ids ids = tok().encode(text);
    // Exact, but for the bytes the vocabulary cannot spell (only ever in the invalid trials).
    std::string spellable;
    for (const char c : text) {
      if (tok().encodes_byte(static_cast<unsigned char>(c))) spellable.push_back(c);
    }
    ASSERT_EQ(tok().decode(ids), spellable) << "trial " << trial;
    for (const TokenId id : ids) ASSERT_FALSE(tok().is_control(id));
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// English prose for timing: the GPL text Debian ships, or generated text where it is missing.
std::string english_text(std::size_t bytes) {
  std::string source = read_file("/usr/share/common-licenses/GPL-3");
  if (source.empty()) {
    std::mt19937 rng(5);
    source = random_unicode_text(rng, 1 << 16, false);
  }
  std::string text;
  while (text.size() < bytes) text += source;
  text.resize(bytes);
  return text;
}

TEST_F(SmolLM2Tokenizer, EncodesHundredKilobytesWellUnderASecond) {
  const std::string text = english_text(100 * 1024);
  // A fresh tokenizer, so the piece cache starts cold as in a real first call.
  const Tokenizer fresh{testing::GgufMetadataScanner(model_path()).read_vocabulary()};
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = fresh.encode(text);
  const double cold =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto warm_start = std::chrono::steady_clock::now();
  const Ids again = fresh.encode(text);
  const double warm =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - warm_start).count();
  EXPECT_EQ(again, ids);
  EXPECT_EQ(fresh.decode(ids), text);
  std::cout << "[ timing ] 100 KiB -> " << ids.size() << " tokens: cold " << cold * 1e3
            << " ms, warm " << warm * 1e3 << " ms\n";
  RecordProperty("cold_ms", static_cast<int>(cold * 1e3));
  RecordProperty("warm_ms", static_cast<int>(warm * 1e3));
  EXPECT_LT(cold, 1.0);
}

// --- Comparison with the Python reference --------------------------------------------------

bool python_reference_available() {
  const std::string command =
      std::string(CAPKV_PYTHON3) + " -c \"import gguf, tokenizers\" > /dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

// Runs reference_encode.py on the texts and returns one id list per text.
std::vector<Ids> python_reference(const std::vector<std::string>& texts, bool special) {
  const fs::path dir =
      fs::temp_directory_path() / ("capkv_tokenizer_" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  std::string command = std::string(CAPKV_PYTHON3) + " '" + CAPKV_TOKENIZER_TEST_DIR +
                        "/reference_encode.py' " + (special ? "--special " : "") + "'" +
                        model_path() + "'";
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const fs::path file = dir / ("text" + std::to_string(i) + ".txt");
    std::ofstream(file, std::ios::binary) << texts[i];
    command += " '" + file.string() + "'";
  }
  std::vector<Ids> results;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    std::string output;
    char buffer[1 << 16];
    while (std::size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
    pclose(pipe);
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream numbers(line);
      Ids ids;
      for (TokenId id; numbers >> id;) ids.push_back(id);
      results.push_back(std::move(ids));
    }
  }
  fs::remove_all(dir);
  return results;
}

// Names the first difference with some context, which is what one needs to debug a mismatch.
void expect_same_ids(const Tokenizer& tok, const Ids& ours, const Ids& reference,
                     const std::string& label) {
  if (ours == reference) return;
  std::size_t i = 0;
  while (i < ours.size() && i < reference.size() && ours[i] == reference[i]) ++i;
  const auto show = [&](const Ids& ids) {
    std::string s;
    for (std::size_t j = i; j < ids.size() && j < i + 8; ++j) {
      s += std::to_string(ids[j]) + "(" + tok.spelling(ids[j]) + ") ";
    }
    return s;
  };
  const Ids prefix(ours.begin(), ours.begin() + static_cast<std::ptrdiff_t>(i));
  std::string context = tok.decode(prefix);
  if (context.size() > 40) context = context.substr(context.size() - 40);
  ADD_FAILURE() << label << ": first difference at token " << i << " of " << ours.size()
                << " (reference " << reference.size() << "), after \"" << context
                << "\"\n  ours:      " << show(ours) << "\n  reference: " << show(reference);
}

TEST_F(SmolLM2Tokenizer, AgreesWithHuggingFaceTokenizersOnLargeTexts) {
  if (!python_reference_available()) {
    GTEST_SKIP() << "python3 cannot import gguf and tokenizers (pip install gguf tokenizers); "
                    "skipping the comparison with the Hugging Face reference";
  }
  std::vector<std::string> texts = {english_text(60 * 1024)};
  std::mt19937 rng(424242);
  for (int i = 0; i < 4; ++i) texts.push_back(random_unicode_text(rng, 16 * 1024, false));
  const std::vector<Ids> reference = python_reference(texts, /*special=*/false);
  ASSERT_EQ(reference.size(), texts.size()) << "the reference script failed";
  for (std::size_t i = 0; i < texts.size(); ++i) {
    expect_same_ids(tok(), tok().encode(texts[i]), reference[i], "text " + std::to_string(i));
  }
}

TEST_F(SmolLM2Tokenizer, ChatTemplateAgreesWithHuggingFaceParsingTheRenderedText) {
  if (!python_reference_available()) {
    GTEST_SKIP() << "python3 cannot import gguf and tokenizers; skipping the comparison";
  }
  const std::vector<std::vector<ChatMessage>> conversations = {
      {{"user", "The capital of France is"}},
      {{"system", "You answer in French."},
       {"user", " Where is  Paris?\n"},
       {"assistant", "\u00C0 Paris, 75001."},
       {"user", "\n\nMerci!  "}},
  };
  std::vector<std::string> rendered;
  for (const auto& messages : conversations) rendered.push_back(render_chatml(messages));
  const std::vector<Ids> reference = python_reference(rendered, /*special=*/true);
  ASSERT_EQ(reference.size(), rendered.size()) << "the reference script failed";
  for (std::size_t i = 0; i < conversations.size(); ++i) {
    expect_same_ids(tok(), encode_chatml(tok(), conversations[i]), reference[i],
                    "conversation " + std::to_string(i));
  }
}

}  // namespace
}  // namespace capkv::llm
