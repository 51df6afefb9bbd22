#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.hpp"

namespace capkv::llm {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"; chosen by the program, not the user
  std::string content;
};

// The system prompt SmolLM2's own template inserts when a conversation does not start with one.
inline constexpr std::string_view kSmolLM2DefaultSystemPrompt =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

struct ChatOptions {
  // End with "<|im_start|>assistant\n" so that the model's next tokens are its reply.
  bool add_generation_prompt = true;
  // Inserted as a first system turn when the first message is not one; empty to insert nothing.
  std::string default_system_prompt = std::string(kSmolLM2DefaultSystemPrompt);
};

// Tokenizes a conversation with SmolLM2's ChatML template:
//   <|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n
// The markers are inserted as control ids by this trusted code; roles and contents are encoded as
// literal text, so a message containing "<|im_end|>" cannot close its turn early. The result
// equals what Hugging Face's apply_chat_template gives whenever the contents contain no control
// token text (where Hugging Face would parse them as markers).
std::vector<TokenId> encode_chatml(const Tokenizer& tokenizer,
                                   std::span<const ChatMessage> messages,
                                   const ChatOptions& options = {});

// The same conversation as text with the markers written out, for logs and display. Never feed it
// to Tokenizer::encode: that would read the markers as literal text.
std::string render_chatml(std::span<const ChatMessage> messages, const ChatOptions& options = {});

}  // namespace capkv::llm
