#include "tokenizer/tokenizer.hpp"

#include <stdexcept>

#include "tokenizer/byte_unicode.hpp"

namespace capkv::llm {
namespace {

// Pieces longer than this are rare (long numbers are split by digit, so these are runs of letters,
// symbols or spaces) and are merged without being cached, which bounds each entry. The entry count
// is bounded by dropping the whole cache when it fills: simple, and frequent words return at once.
constexpr std::size_t kMaxCachedPieceBytes = 64;
constexpr std::size_t kMaxCacheEntries = 1 << 17;

}  // namespace

Tokenizer::Tokenizer(Vocabulary vocabulary)
    : spellings_(std::move(vocabulary.tokens)), types_(std::move(vocabulary.token_types)) {
  if (spellings_.empty()) throw std::invalid_argument("capkv tokenizer: empty vocabulary");
  if (types_.empty()) types_.assign(spellings_.size(), TokenType::kNormal);
  if (types_.size() != spellings_.size()) {
    throw std::invalid_argument("capkv tokenizer: " + std::to_string(types_.size()) +
                                " token types for " + std::to_string(spellings_.size()) +
                                " tokens");
  }

  const ByteUnicodeMap& byte_map = ByteUnicodeMap::instance();
  bytes_.reserve(spellings_.size());
  ids_by_spelling_.reserve(spellings_.size());
  for (std::size_t id = 0; id < spellings_.size(); ++id) {
    bytes_.push_back(byte_map.to_bytes(spellings_[id]));
    ids_by_spelling_.try_emplace(spellings_[id], static_cast<TokenId>(id));  // first one wins
  }

  // Byte-level BPE starts every piece from one token per byte. A byte without one is dropped
  // from its piece before merging, as the reference implementations do (see the class comment).
  for (unsigned b = 0; b < 256; ++b) {
    const auto id = find(byte_map.spelling(static_cast<unsigned char>(b)));
    byte_ids_[b] = id && !is_control(*id) ? *id : kNoToken;
  }

  for (std::size_t rank = 0; rank < vocabulary.merges.size(); ++rank) {
    const std::string& merge = vocabulary.merges[rank];
    // Byte-level spellings never contain a space (space is spelled "Ġ"), so the first space is
    // the separator.
    const std::size_t space = merge.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == merge.size()) {
      throw std::invalid_argument("capkv tokenizer: merge " + std::to_string(rank) + " \"" + merge +
                                  "\" is not \"left right\"");
    }
    const std::string_view left = std::string_view(merge).substr(0, space);
    const std::string_view right = std::string_view(merge).substr(space + 1);
    const auto left_id = find(left);
    const auto right_id = find(right);
    const auto result_id = find(std::string(left) + std::string(right));
    // A merge whose parts or result are missing cannot fire (the reference implementations skip
    // it too). One that would produce a control token is dropped so that no literal text can
    // become a control id.
    if (!left_id || !right_id || !result_id || is_control(*result_id)) continue;
    merges_.add(*left_id, *right_id, *result_id, static_cast<std::int32_t>(rank));
  }
}

std::size_t Tokenizer::checked(TokenId id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= spellings_.size()) {
    throw std::out_of_range("capkv tokenizer: token id " + std::to_string(id) +
                            " outside the vocabulary of " + std::to_string(spellings_.size()));
  }
  return static_cast<std::size_t>(id);
}

std::optional<TokenId> Tokenizer::find(std::string_view spelling) const {
  const auto it = ids_by_spelling_.find(spelling);
  if (it == ids_by_spelling_.end()) return std::nullopt;
  return it->second;
}

TokenId Tokenizer::control_token(std::string_view text) const {
  const auto id = find(text);
  if (!id || !is_control(*id)) {
    throw std::invalid_argument("capkv tokenizer: the vocabulary has no control token \"" +
                                std::string(text) + "\"");
  }
  return *id;
}

void Tokenizer::encode_piece(std::string_view piece, std::vector<TokenId>& ids) const {
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    const std::lock_guard lock(cache_->mutex);
    const auto it = cache_->ids.find(piece);
    if (it != cache_->ids.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<TokenId> symbols;
  symbols.reserve(piece.size());
  for (const char c : piece) {
    const TokenId id = byte_ids_[static_cast<unsigned char>(c)];
    if (id != kNoToken) symbols.push_back(id);
  }
  merges_.apply(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  if (cacheable) {
    const std::lock_guard lock(cache_->mutex);
    if (cache_->ids.size() >= kMaxCacheEntries) cache_->ids.clear();
    cache_->ids.try_emplace(std::string(piece), std::move(symbols));
  }
}

void Tokenizer::encode_append(std::string_view text, std::vector<TokenId>& ids) const {
  for (const std::string_view piece : pre_tokenizer_.split(text)) encode_piece(piece, ids);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 1);
  encode_append(text, ids);
  return ids;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  for (const std::string_view piece : pre_tokenizer_.split(text)) pieces.emplace_back(piece);
  return pieces;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, ControlTokens control) const {
  std::string text;
  for (const TokenId id : ids) {
    const std::size_t index = checked(id);
    if (control == ControlTokens::kSkip && types_[index] == TokenType::kControl) continue;
    text += bytes_[index];
  }
  return text;
}

}  // namespace capkv::llm
