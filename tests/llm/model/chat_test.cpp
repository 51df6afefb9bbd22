// Sanity (a): the chat model knows the capital of France.
//
// The prompt goes through the ChatML template WITHOUT SmolLM2's default system prompt. With it
// ("You are a helpful AI assistant named SmolLM, ...") the 135M model does not continue with
// "Paris"; without a system turn it answers "The capital of France is Paris." That is a property of
// this small model, not of the runner (the forward pass matches a numpy reference's top-5 logits).

#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "model_fixture.hpp"
#include "tokenizer/chat_template.hpp"

namespace capkv::llm::testing {
namespace {

class ChatTest : public ModelTest {};

TEST_F(ChatTest, CapitalOfFranceContinuesWithParis) {
  const std::vector<ChatMessage> messages{{"user", "The capital of France is"}};
  const std::vector<TokenId> prompt =
      encode_chatml(tokenizer(), messages, ChatOptions{.default_system_prompt = ""});
  KvCache cache = model().make_cache(64);
  RowMatrixXf logits = model().forward(prompt, cache);
  std::vector<TokenId> reply;
  const TokenId im_end = tokenizer().control_token("<|im_end|>");
  for (int step = 0; step < 12; ++step) {
    Eigen::Index next = 0;
    logits.row(0).maxCoeff(&next);
    if (next == im_end) break;
    reply.push_back(static_cast<TokenId>(next));
    logits = model().forward(std::span<const TokenId>(&reply.back(), 1), cache);
  }
  const std::string text = tokenizer().decode(reply);
  std::cout << "[ reply    ] " << text << "\n";
  EXPECT_NE(text.find("Paris"), std::string::npos) << "greedy reply: " << text;
}

}  // namespace
}  // namespace capkv::llm::testing
