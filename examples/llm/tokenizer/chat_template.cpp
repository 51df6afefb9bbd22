#include "tokenizer/chat_template.hpp"

namespace capkv::llm {
namespace {

constexpr std::string_view kTurnStart = "<|im_start|>";
constexpr std::string_view kTurnEnd = "<|im_end|>";

// Visits the conversation as the template lays it out: turns as (role, content), then the opening
// of the assistant's turn. Both renderings walk it, so they cannot disagree on structure.
template <typename Turn, typename Opening>
void walk_chatml(std::span<const ChatMessage> messages, const ChatOptions& options, Turn turn,
                 Opening opening) {
  // As in SmolLM2's Jinja template, the default system turn is decided by the first message only,
  // and an empty conversation gets none.
  if (!messages.empty() && messages.front().role != "system" &&
      !options.default_system_prompt.empty()) {
    turn(std::string_view("system"), std::string_view(options.default_system_prompt));
  }
  for (const ChatMessage& message : messages) {
    turn(std::string_view(message.role), std::string_view(message.content));
  }
  if (options.add_generation_prompt) opening(std::string_view("assistant"));
}

}  // namespace

std::vector<TokenId> encode_chatml(const Tokenizer& tokenizer,
                                   std::span<const ChatMessage> messages,
                                   const ChatOptions& options) {
  const TokenId start = tokenizer.control_token(kTurnStart);
  const TokenId end = tokenizer.control_token(kTurnEnd);
  std::vector<TokenId> ids;
  // Role, newline and content are one stretch of text between two markers, so they are encoded
  // together: the pre-tokenizer's whitespace rule looks across the newline.
  std::string text;
  walk_chatml(
      messages, options,
      [&](std::string_view role, std::string_view content) {
        ids.push_back(start);
        text.assign(role).append("\n").append(content);
        tokenizer.encode_append(text, ids);
        ids.push_back(end);
        tokenizer.encode_append("\n", ids);
      },
      [&](std::string_view role) {
        ids.push_back(start);
        text.assign(role).append("\n");
        tokenizer.encode_append(text, ids);
      });
  return ids;
}

std::string render_chatml(std::span<const ChatMessage> messages, const ChatOptions& options) {
  std::string text;
  walk_chatml(
      messages, options,
      [&](std::string_view role, std::string_view content) {
        text.append(kTurnStart).append(role).append("\n").append(content);
        text.append(kTurnEnd).append("\n");
      },
      [&](std::string_view role) { text.append(kTurnStart).append(role).append("\n"); });
  return text;
}

}  // namespace capkv::llm
