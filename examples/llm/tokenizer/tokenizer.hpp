#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_merges.hpp"
#include "tokenizer/pre_tokenizer.hpp"
#include "tokenizer/vocabulary.hpp"

namespace capkv::llm {

// What decode() does with control tokens such as <|im_end|>.
enum class ControlTokens { kRender, kSkip };

// SmolLM2's tokenizer: GPT-2 byte-level BPE behind the "smollm" pre-tokenizer.
//
// encode() treats its input as literal text, whatever it contains: a user who types
// "<|im_start|>" gets ordinary tokens, never the control id, so untrusted text cannot forge chat
// structure. Control tokens enter a sequence only through trusted code (see chat_template.hpp),
// which asks for them by name with control_token().
//
// encode() is lossless for any byte string, valid UTF-8 or not (decode(encode(s)) == s), for the
// bytes the vocabulary can spell. SmolLM2's cannot spell 21 bytes that never occurred in its
// training data (0xC0, 0xC1, 0xF5..0xFF, which valid UTF-8 never holds, and six ASCII controls);
// like the Hugging Face and llama.cpp tokenizers, encode() drops those, since any id it could emit
// instead would mean something else to the model. encodes_byte() tells which bytes survive.
// Thread-safe; the per-piece cache is shared and locked. Movable, not copyable.
class Tokenizer {
 public:
  // Throws std::invalid_argument when the vocabulary cannot be a byte-level BPE vocabulary (empty,
  // token types of the wrong length, a malformed merge).
  explicit Tokenizer(Vocabulary vocabulary);

  std::vector<TokenId> encode(std::string_view text) const;
  // Appends to `ids` instead, for callers assembling a sequence from several parts.
  void encode_append(std::string_view text, std::vector<TokenId>& ids) const;

  // The pre-tokenizer's pieces (raw bytes); BPE never merges across them.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // The bytes the ids stand for. Not necessarily valid UTF-8: a token can end inside a multi-byte
  // character, so stream decoders should buffer bytes rather than decode one token at a time.
  // Throws std::out_of_range on an id outside the vocabulary.
  std::string decode(std::span<const TokenId> ids,
                     ControlTokens control = ControlTokens::kRender) const;

  std::size_t size() const { return spellings_.size(); }
  // The token as the vocabulary spells it ("Ġworld") and as the bytes it stands for (" world").
  const std::string& spelling(TokenId id) const { return spellings_.at(checked(id)); }
  const std::string& bytes(TokenId id) const { return bytes_.at(checked(id)); }
  TokenType type(TokenId id) const { return types_.at(checked(id)); }
  bool is_control(TokenId id) const { return type(id) == TokenType::kControl; }

  // The id of a vocabulary spelling, if present.
  std::optional<TokenId> find(std::string_view spelling) const;
  // The id of a control token by its text, e.g. "<|im_start|>"; throws std::invalid_argument when
  // the vocabulary has no control token of that name.
  TokenId control_token(std::string_view text) const;

  std::size_t merge_count() const { return merges_.size(); }
  // Whether the vocabulary has a (non-control) token for this byte; encode() drops it otherwise.
  bool encodes_byte(unsigned char byte) const { return byte_ids_[byte] != kNoToken; }

 private:
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

  static constexpr TokenId kNoToken = -1;

  std::size_t checked(TokenId id) const;
  void encode_piece(std::string_view piece, std::vector<TokenId>& ids) const;

  std::vector<std::string> spellings_;
  std::vector<std::string> bytes_;
  std::vector<TokenType> types_;
  StringMap ids_by_spelling_;
  TokenId byte_ids_[256] = {};
  BpeMerges merges_;
  PreTokenizer pre_tokenizer_;

  // Natural text repeats its words, so most pieces are merged once and looked up afterwards.
  // Held by pointer so that the tokenizer stays movable despite its mutex.
  struct PieceCache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>> ids;
  };
  std::unique_ptr<PieceCache> cache_ = std::make_unique<PieceCache>();
};

}  // namespace capkv::llm
